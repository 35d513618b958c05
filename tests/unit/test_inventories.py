"""The shell's inventory cache gives what building from scratch gives, paying only for nodes that changed."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from autoglm.core.hardware import build_inventory, load_accelerator_table
from autoglm.shell import inventories
from autoglm.shell.inventories import InventoryCache
from tests.conftest import load_nodes


def _pod(node: str, gpus: int) -> dict[str, Any]:
    containers = [{"resources": {"limits": {"nvidia.com/gpu": str(gpus)}}}]
    return {"metadata": {"name": f"p-{node}"}, "spec": {"nodeName": node, "containers": containers}}


def test_only_changed_nodes_are_described_again(monkeypatch: pytest.MonkeyPatch) -> None:
    table = load_accelerator_table()
    nodes = load_nodes("nvidia-h100.yaml") + load_nodes("huawei-ascend.yaml") + load_nodes("cpu.yaml")
    described: list[str] = []
    real = inventories.node_devices
    monkeypatch.setattr(
        inventories, "node_devices", lambda node, t: described.append(node["metadata"]["name"]) or real(node, t)
    )
    cache = InventoryCache(table)
    pods = [_pod("h100-0", 3)]
    first = cache.inventory("m", nodes, pods)
    assert first == build_inventory(nodes, table, pods)
    assert len(described) == len(nodes)
    assert cache.inventory("m", nodes, pods) is first  # same snapshots: the same answer, nothing rebuilt
    # A new snapshot in which one node changed (a watch cache keeps the others' objects as they were).
    changed = copy.deepcopy(nodes[1])
    changed["spec"]["unschedulable"] = True
    second_nodes = [nodes[0], changed, *nodes[2:]]
    described.clear()
    second = cache.inventory("m", second_nodes, pods)
    assert described == [changed["metadata"]["name"]]
    assert second == build_inventory(second_nodes, table, pods)
    # New pods alone: no node described again.
    described.clear()
    more = [*pods, _pod("h100-1", 8)]
    assert cache.inventory("m", second_nodes, more) == build_inventory(second_nodes, table, more)
    assert described == []
    # Members are kept apart.
    assert cache.pools("other", nodes[:1]) == build_inventory(nodes[:1], table)
