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
ASCEND = H100.parent / "ascend-910b3"
GAUDI = H100.parent / "gaudi2-hl225"
CAMBRICON = H100.parent / "cambricon-mlu370-x8"


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


def test_eight_ascend_910b3_on_hccs_as_npu_smi_prints_them_and_the_inventory_reads_them() -> None:
    found = ascend((ASCEND / "npu-smi-info.txt").read_text(), (ASCEND / "npu-smi-topo.txt").read_text())
    assert found is not None
    assert found.labels() == {
        "autoglm.io/accelerator.vendor": "huawei",
        "autoglm.io/accelerator.product": "Ascend910B3",
        "autoglm.io/accelerator.count": "8",
        "autoglm.io/accelerator.memory-mib": "65536",
        "autoglm.io/accelerator.interconnect": "hccs",
    }
    (pool,) = build_inventory([_node("npu-0", "huawei.com/Ascend910", found.labels())]).pools
    assert (pool.known, pool.product, pool.devices_per_node) == (True, "Ascend910B3", 8)
    assert pool.memory_bytes == 65536 * 2**20
    assert ascend("npu-smi: command found no device\n") is None


def test_eight_gaudi2_as_hl_smi_prints_them_and_the_inventory_sizes_them_from_the_catalog() -> None:
    found = gaudi((GAUDI / "hl-smi.txt").read_text())
    assert found is not None
    assert found.labels() == {
        "autoglm.io/accelerator.vendor": "intel-gaudi",
        "autoglm.io/accelerator.product": "HL-225",
        "autoglm.io/accelerator.count": "8",
        "autoglm.io/accelerator.memory-mib": "98304",
    }
    (pool,) = build_inventory([_node("hpu-0", "habana.ai/gaudi", found.labels())]).pools
    assert (pool.known, pool.product, pool.devices_per_node) == (True, "Gaudi2-96GB", 8)
    assert pool.memory_bytes == 98304 * 2**20
    # The compute-process table below the cards has no HL- name: it adds nothing.
    assert gaudi("hl-smi: no AIP found\n") is None


def test_two_mlu370_x8_as_cnmon_prints_them_sized_by_the_memory_it_measured_per_device() -> None:
    found = cambricon((CAMBRICON / "cnmon.txt").read_text())
    assert found is not None
    assert found.labels() == {
        "autoglm.io/accelerator.vendor": "cambricon",
        "autoglm.io/accelerator.product": "MLU370-X8",
        "autoglm.io/accelerator.count": "2",
        "autoglm.io/accelerator.memory-mib": "23374",
    }
    (pool,) = build_inventory([_node("mlu-0", "cambricon.com/mlu", found.labels())]).pools
    # The catalog's 48 GiB is the dual-chip board's; cnmon lists each device with its own 23374 MiB, and the
    # measured label is what the inventory sizes a replica by.
    assert (pool.known, pool.product, pool.devices_per_node) == (True, "MLU370-X8", 2)
    assert pool.memory_bytes == 23374 * 2**20
    assert cambricon("cnmon: no MLU device found\n") is None
