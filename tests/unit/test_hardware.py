"""Node labels and resources -> accelerator pools, for every vendor the operator knows."""

from __future__ import annotations

import copy
from typing import Any

from autoglm.api.common import Precision
from autoglm.core.hardware import GIB, MIB, build_inventory, load_accelerator_table
from tests.conftest import ROOT, inventory_of, load_nodes


def _pool(inv, product):
    matches = [p for p in inv.pools if p.product == product]
    assert len(matches) == 1, [p.product for p in inv.pools]
    return matches[0]


def test_nvidia_gfd_labels_give_memory_capability_and_fp8() -> None:
    pool = _pool(inventory_of("nvidia-h100.yaml"), "H100-SXM5-80GB")
    assert pool.vendor == "nvidia"
    assert pool.resource_name == "nvidia.com/gpu"
    assert pool.memory_bytes == 81559 * MIB
    assert pool.memory_source == "label nvidia.com/gpu.memory"
    assert pool.compute_capability == "9.0"
    assert (pool.devices_per_node, pool.total_devices, pool.free_devices) == (8, 16, 16)
    assert pool.preferred_precisions[0] is Precision.FP8
    assert pool.interconnect == "nvlink" and pool.rdma
    assert pool.node_selector == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert pool.taints == [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]
    assert pool.peak_tflops_bf16 == 989 and pool.watts == 700


def test_h100_fixture_measured_on_the_device_machine() -> None:
    inv = build_inventory(load_nodes(str(ROOT / "tests/fixtures/nodes/h100-measured.yaml")))
    pool = _pool(inv, "H100-SXM5-80GB")
    assert pool.memory_bytes == 81559 * MIB
    assert pool.compute_capability == "9.0"
    assert pool.precisions[0] is Precision.FP8


def test_ampere_turing_and_ada_precisions() -> None:
    inv = inventory_of("nvidia-mixed.yaml")
    assert _pool(inv, "A10-24GB").preferred_precisions[0] is Precision.BF16
    assert _pool(inv, "T4-16GB").preferred_precisions[0] is Precision.FP16
    assert Precision.BF16 not in _pool(inv, "T4-16GB").precisions
    assert _pool(inv, "L4-24GB").preferred_precisions[0] is Precision.FP8


def test_mig_mixed_strategy_makes_one_pool_per_profile() -> None:
    inv = inventory_of("nvidia-mixed.yaml")
    big = _pool(inv, "A100-SXM4-40GB-MIG-3g.20gb")
    small = _pool(inv, "A100-SXM4-40GB-MIG-1g.5gb")
    assert big.resource_name == "nvidia.com/mig-3g.20gb" and big.devices_per_node == 8
    assert big.memory_bytes == 20 * 10**9 and small.memory_bytes == 5 * 10**9
    assert big.mig and big.max_tensor_parallel == 1


def test_ascend_chip_label_distinguishes_910a_910b_and_310p() -> None:
    inv = inventory_of("huawei-ascend.yaml")
    b3 = _pool(inv, "Ascend910B3")
    assert b3.resource_name == "huawei.com/Ascend910" and b3.memory_bytes == 64 * GIB
    assert b3.preferred_precisions[0] is Precision.BF16 and b3.soc_version == "Ascend910B3"
    a = _pool(inv, "Ascend910A")
    assert a.preferred_precisions[0] is Precision.FP16 and Precision.BF16 not in a.precisions
    assert a.peak_tflops_fp16 == 256 and a.watts == 310  # the seed's figures
    assert _pool(inv, "Ascend310P3").resource_name == "huawei.com/Ascend310P"


def test_other_vendors() -> None:
    inv = inventory_of("cambricon.yaml", "kunlunxin.yaml", "sophgo.yaml", "amd.yaml", "intel-gaudi.yaml")
    assert _pool(inv, "MLU370-X8").memory_bytes == 48 * GIB
    assert _pool(inv, "MLU590").memory_source == "label autoglm.io/accelerator.memory-mib"
    assert _pool(inv, "P800").resource_name == "kunlunxin.com/xpu"
    assert _pool(inv, "R200").memory_bytes == 32 * GIB
    assert _pool(inv, "BM1684X").memory_bytes == 16 * GIB
    mi300 = _pool(inv, "MI300X-192GB")
    assert mi300.memory_bytes == 192 * GIB and mi300.memory_source == "label amd.com/gpu.vram"
    assert _pool(inv, "Gaudi2-96GB").resource_name == "habana.ai/gaudi"


def test_unknown_product_keeps_raw_labels_and_is_not_guessed() -> None:
    inv = inventory_of("kunlunxin.yaml")
    unknown = [p for p in inv.pools if not p.known]
    assert len(unknown) == 1
    pool = unknown[0]
    assert pool.vendor == "kunlunxin" and pool.memory_bytes == 0 and pool.precisions == []
    assert "unknown kunlunxin accelerator" in (pool.unknown_reason or "")
    assert "node probe" in (pool.unknown_reason or "")


def test_unknown_nvidia_product_with_full_gfd_labels_is_described_by_its_labels() -> None:
    node = copy.deepcopy(load_nodes("nvidia-h100.yaml")[0])
    node["metadata"]["labels"]["nvidia.com/gpu.product"] = "NVIDIA-B300-SXM6-288GB"
    node["metadata"]["labels"]["nvidia.com/gpu.memory"] = "294912"
    node["metadata"]["labels"]["nvidia.com/gpu.compute.major"] = "10"
    pool = build_inventory([node]).pools[0]
    assert pool.known and pool.product == "NVIDIA-B300-SXM6-288GB"
    assert pool.memory_bytes == 294912 * MIB and pool.precisions[0] is Precision.FP8


def test_cpu_nodes_read_nfd_flags() -> None:
    inv = inventory_of("cpu.yaml")
    amx = next(p for p in inv.pools if "amx" in p.product)
    assert amx.is_cpu and len(amx.node_names) == 2
    assert Precision.BF16 in amx.precisions and amx.preferred_precisions[0] is Precision.INT8
    small = next(p for p in inv.pools if "avx2" in p.product)
    assert Precision.BF16 not in small.precisions
    assert small.memory_bytes == int(64 * 0.85) * GIB


def test_pods_and_unschedulable_nodes_reduce_free_devices() -> None:
    nodes = load_nodes("nvidia-h100.yaml")
    nodes[1]["spec"] = {"unschedulable": True}
    pods = [
        {
            "spec": {
                "nodeName": "h100-0",
                "containers": [{"resources": {"limits": {"nvidia.com/gpu": "3"}}}],
            },
            "status": {"phase": "Running"},
        },
        {
            "spec": {
                "nodeName": "h100-0",
                "containers": [{"resources": {"limits": {"nvidia.com/gpu": "4"}}}],
            },
            "status": {"phase": "Succeeded"},
        },
    ]
    pool = build_inventory(nodes, pods=pods).pools[0]
    assert pool.total_devices == 16
    assert pool.free_devices == 5 and pool.free_by_node == {"h100-0": 5}
    assert pool.free_histogram == {5: 1}


def test_not_ready_node_has_nothing_free() -> None:
    nodes = load_nodes("nvidia-h100.yaml")
    nodes[0]["status"]["conditions"] = [{"type": "Ready", "status": "False"}]
    assert build_inventory(nodes).pools[0].free_devices == 8


def test_table_is_data_a_new_product_needs_no_code() -> None:
    text = (ROOT / "operator/autoglm/data/accelerators.yaml").read_text() + (
        "  - {vendor: kunlunxin, product: P900, match: [P900], memoryGiB: 128, family: kunlun4, "
        "interconnect: xpulink, precisions: [bf16, int8]}\n"
    )
    node = {
        "kind": "Node",
        "metadata": {"name": "p900", "labels": {"autoglm.io/accelerator.product": "P900"}},
        "status": {"allocatable": {"kunlunxin.com/xpu": "8"}},
    }
    assert not build_inventory([node]).pools[0].known
    pool = build_inventory([node], table=load_accelerator_table(text)).pools[0]
    assert pool.known and pool.memory_bytes == 128 * GIB


def test_pools_are_sorted_and_deterministic() -> None:
    nodes = load_nodes("fleet.yaml")
    a = build_inventory(nodes)
    b = build_inventory(list(reversed(nodes)))
    assert [p.name for p in a.pools] == sorted(p.name for p in a.pools)
    assert [p.name for p in a.pools] == [p.name for p in b.pools]


def test_released_pods_free_their_devices_as_if_never_counted() -> None:
    from autoglm.core.hardware import with_released, with_used

    nodes = load_nodes("nvidia-h100.yaml") + load_nodes("huawei-ascend.yaml")

    def pod(name: str, node: str, resource: str, count: int, phase: str = "Running") -> dict[str, Any]:
        limits = {resource: str(count)}
        return {
            "metadata": {"name": name, "namespace": "ns"},
            "spec": {"nodeName": node, "containers": [{"resources": {"limits": limits}}]},
            "status": {"phase": phase},
        }

    own = [pod("own-a", "h100-0", "nvidia.com/gpu", 8), pod("own-b", "ascend-910b3-0", "huawei.com/Ascend910", 2)]
    others = [pod("other", "h100-0", "nvidia.com/gpu", 0), pod("other-2", "h100-1", "nvidia.com/gpu", 3)]
    everything = build_inventory(nodes, pods=own + others)
    released = with_released(everything, own)
    assert released == build_inventory(nodes, pods=others)
    # Taking pods' devices from a pod-free inventory is the same as counting them while building it, even
    # where a node is over-committed (9 GPUs asked of h100-1's 8).
    crowded = [*others, pod("more", "h100-1", "nvidia.com/gpu", 6), *own]
    assert with_used(build_inventory(nodes), crowded) == build_inventory(nodes, pods=crowded)
    assert with_used(build_inventory(nodes, pods=others), own) == everything
    assert with_released(everything, []) is everything
    untouched = [p for p in everything.pools if "ascend" not in p.name and "h100" not in p.name]
    assert all(any(q is p for q in released.pools) for p in untouched)  # shared, not rebuilt
