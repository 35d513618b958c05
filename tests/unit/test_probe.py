"""The node probe: tool outputs in, autoglm.io labels out, and the inventory reading them. The NVIDIA fixture is
real: `nvidia-smi` and /proc/cpuinfo as the device machine's H100 printed them (tests/fixtures/probe/)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from autoglm.core.hardware import build_inventory
from autoglm.core.probe import ascend, cambricon, cpu_labels, gaudi, label_value, nvidia
from autoglm.face.probe import labels_patch, run

H100 = Path(__file__).resolve().parents[1] / "fixtures" / "probe" / "nvidia-h100"


def _node(name: str, resource: str, labels: dict[str, str]) -> dict[str, object]:
    """A Ready node whose device plugin advertises the probe's count of `resource`, with only the probe's labels."""
    devices = labels["autoglm.io/accelerator.count"]
    resources = {"cpu": "64", "memory": "512Gi", resource: devices}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **labels}},
        "status": {
            "capacity": resources,
            "allocatable": resources,
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def test_the_h100_as_nvidia_smi_reported_it() -> None:
    found = nvidia((H100 / "nvidia-smi-query.csv").read_text(), (H100 / "nvidia-smi-topo.txt").read_text())
    assert found is not None
    assert found.labels() == {
        "autoglm.io/accelerator.vendor": "nvidia",
        "autoglm.io/accelerator.product": "NVIDIA-H100-80GB-HBM3",
        "autoglm.io/accelerator.count": "1",
        "autoglm.io/accelerator.memory-mib": "81559",
        "autoglm.io/accelerator.compute-capability": "9.0",
    }


def test_eight_gpus_on_nvlink_and_a_mixed_node_report_the_most_numerous() -> None:
    header = "index, name, uuid, memory.total [MiB], compute_cap, pci.bus_id, driver_version\n"
    rows = [f"{i}, NVIDIA H100 80GB HBM3, GPU-{i}, 81559 MiB, 9.0, 0000:{i:02x}:00.0, 580.159.04" for i in range(8)]
    rows.append("8, NVIDIA A10, GPU-8, 23028 MiB, 8.6, 0000:09:00.0, 580.159.04")
    topology = "\tGPU0\tGPU1\nGPU0\t X \tNV18\nGPU1\tNV18\t X \n"
    found = nvidia(header + "\n".join(rows), topology)
    assert found is not None and (found.count, found.interconnect) == (8, "nvlink")
    assert nvidia(header) is None  # the driver answers but there is no GPU


def test_the_cpu_features_llama_cpp_uses_come_from_cpuinfo() -> None:
    labels = cpu_labels((H100 / "cpuinfo-flags.txt").read_text())
    assert labels["autoglm.io/cpu.AVX512BF16"] == "true" and labels["autoglm.io/cpu.AMXINT8"] == "true"
    assert labels["autoglm.io/cpu.model"] == "IntelR-XeonR-Processor"
    assert label_value("A" * 80 + " x") == "A" * 63


def test_the_inventory_sizes_a_node_from_the_probes_labels_alone() -> None:
    """A node with the device plugin's resource but no GPU Feature Discovery labels: the probe's product and
    memory make it a known H100 pool, sized from the memory nvidia-smi reported."""
    found = nvidia((H100 / "nvidia-smi-query.csv").read_text())
    assert found is not None
    (pool,) = build_inventory([_node("gpu-0", "nvidia.com/gpu", found.labels())]).pools
    assert pool.known and pool.vendor == "nvidia" and "H100" in pool.product
    assert pool.memory_bytes == 81559 * 2**20


def test_stale_labels_are_removed_and_unchanged_ones_not_rewritten() -> None:
    found = nvidia((H100 / "nvidia-smi-query.csv").read_text())
    assert found is not None
    current = {**found.labels(), "autoglm.io/accelerator.interconnect": "nvlink", "team": "ml"}
    assert labels_patch(current, [found], {}) == {"autoglm.io/accelerator.interconnect": None}
    gone = labels_patch(found.labels(), [], {"autoglm.io/cpu.AVX2": "true"})
    assert gone["autoglm.io/cpu.AVX2"] == "true" and gone["autoglm.io/accelerator.product"] is None


def _fake_tool(folder: Path, name: str, script: str) -> None:
    tool = folder / name
    tool.write_text("#!/bin/sh\n" + script)
    tool.chmod(tool.stat().st_mode | stat.S_IEXEC)


def test_the_agent_runs_the_tool_it_finds_and_survives_one_that_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """nvidia-smi as the H100 printed it: the labels; nvidia-smi failing, or absent: CPU labels only, no exit."""
    bin_dir, proc = tmp_path / "bin", tmp_path / "proc"
    bin_dir.mkdir()
    proc.mkdir()
    (proc / "cpuinfo").write_text((H100 / "cpuinfo-flags.txt").read_text())
    query, topo = H100 / "nvidia-smi-query.csv", H100 / "nvidia-smi-topo.txt"
    _fake_tool(bin_dir, "nvidia-smi", f'if [ "$1" = topo ]; then cat {topo}; else cat {query}; fi\n')
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}/usr/bin:/bin")
    printed: list[str] = []
    patch = run("gpu-0", None, once=True, interval=0, dry_run=True, proc=proc, echo=printed.append)
    assert patch["autoglm.io/accelerator.product"] == "NVIDIA-H100-80GB-HBM3"
    assert "autoglm.io/accelerator.memory-mib=81559" in printed[0]
    _fake_tool(bin_dir, "nvidia-smi", "echo 'NVIDIA-SMI has failed' >&2; exit 9\n")
    patch = run("gpu-0", None, once=True, interval=0, dry_run=True, proc=proc, echo=printed.append)
    assert not any(k.startswith("autoglm.io/accelerator.") for k in patch) and patch["autoglm.io/cpu.AVX2"] == "true"
    # a write that fails (no API server here) is logged and retried next round, never raised
    assert run("gpu-0", object(), once=True, interval=0, dry_run=False, proc=proc) == {}


def test_what_the_probe_printed_on_the_h100_is_what_it_computes_from_the_recorded_tools(tmp_path: Path) -> None:
    """autoglm-probe.txt is `autoglm probe --dry-run --once` as it ran on the device machine's H100 (2026-11-27);
    the same labels come out of the tool outputs recorded there."""
    found = nvidia((H100 / "nvidia-smi-query.csv").read_text(), (H100 / "nvidia-smi-topo.txt").read_text())
    assert found is not None
    computed = {**found.labels(), **cpu_labels((H100 / "cpuinfo-flags.txt").read_text())}
    printed = dict(line.split("=", 1) for line in (H100 / "autoglm-probe.txt").read_text().splitlines() if line)
    assert printed == computed


# Recorded outputs of the vendors' tools (tests/fixtures/probe/README.md cites each): the parser, the files it
# reads, the device plugin's resource, then the labels and the inventory's (product, devices, MiB) from them.
# Gaudi: the compute-process table below the cards has no HL- name and adds nothing. Cambricon: the catalog's
# 48 GiB is the dual-chip board's; cnmon lists each device with its own 23374 MiB, which sizes a replica.
RECORDED = {
    "ascend-910b3": (
        ascend,
        ("npu-smi-info.txt", "npu-smi-topo.txt"),
        "huawei.com/Ascend910",
        ("huawei", "Ascend910B3", 8, 65536, "hccs"),
        ("Ascend910B3", 8),
    ),
    "gaudi2-hl225": (
        gaudi,
        ("hl-smi.txt",),
        "habana.ai/gaudi",
        ("intel-gaudi", "HL-225", 8, 98304, None),
        ("Gaudi2-96GB", 8),
    ),
    "cambricon-mlu370-x8": (
        cambricon,
        ("cnmon.txt",),
        "cambricon.com/mlu",
        ("cambricon", "MLU370-X8", 2, 23374, None),
        ("MLU370-X8", 2),
    ),
}


@pytest.mark.parametrize("fixture", sorted(RECORDED))
def test_recorded_tool_outputs_become_labels_the_inventory_sizes_pools_from(fixture: str) -> None:
    parse, files, resource, (vendor, product, count, mib, link), (pool_product, devices) = RECORDED[fixture]
    found = parse(*((H100.parent / fixture / f).read_text() for f in files))
    assert found is not None
    expected = {
        "autoglm.io/accelerator.vendor": vendor,
        "autoglm.io/accelerator.product": product,
        "autoglm.io/accelerator.count": str(count),
        "autoglm.io/accelerator.memory-mib": str(mib),
    }
    if link:
        expected["autoglm.io/accelerator.interconnect"] = link
    assert found.labels() == expected
    (pool,) = build_inventory([_node("node-0", resource, found.labels())]).pools
    assert (pool.known, pool.product, pool.devices_per_node) == (True, pool_product, devices)
    assert pool.memory_bytes == mib * 2**20
    assert parse("the tool found no device\n") is None
