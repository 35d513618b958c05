"""Inventories of member clusters, kept across reconciles: the pools are built once per nodes snapshot, and
then only for the nodes that changed (a watch cache keeps an unchanged node's object as it was); each pods
snapshot takes its devices from them in O(pods). Shared by the reconciler and the member heartbeat.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from autoglm.core.hardware import AcceleratorTable, Inventory, NodeDevices, build_inventory, node_devices, with_used

Manifest = dict[str, Any]


class InventoryCache:
    def __init__(self, table: AcceleratorTable):
        self.table = table
        self._lock = threading.Lock()  # one thread builds what the others then share
        # member -> id(node) -> (node, its devices): what the last build saw
        self._devices: dict[str, dict[int, tuple[Manifest, NodeDevices]]] = {}
        self._pools: dict[str, tuple[Sequence[Manifest], Inventory]] = {}
        self._full: dict[str, tuple[Sequence[Manifest], Sequence[Manifest], Inventory]] = {}

    def pools(self, member: str, nodes: Sequence[Manifest]) -> Inventory:
        """The member's pools with no pod counted."""
        with self._lock:
            return self._pools_locked(member, nodes)

    def inventory(self, member: str, nodes: Sequence[Manifest], pods: Sequence[Manifest]) -> Inventory:
        """The member's pools with every pod's devices taken."""
        with self._lock:
            hit = self._full.get(member)
            if hit is not None and hit[0] is nodes and hit[1] is pods:
                return hit[2]
            full = with_used(self._pools_locked(member, nodes), pods)
            self._full[member] = (nodes, pods, full)
            return full

    def _pools_locked(self, member: str, nodes: Sequence[Manifest]) -> Inventory:
        hit = self._pools.get(member)
        if hit is not None and hit[0] is nodes:
            return hit[1]
        known = self._devices.get(member, {})
        devices = {}
        for node in nodes:
            seen = known.get(id(node))
            devices[id(node)] = seen if seen is not None and seen[0] is node else (node, node_devices(node, self.table))
        self._devices[member] = devices
        pools = build_inventory(nodes, self.table, known=devices)
        self._pools[member] = (nodes, pools)
        return pools
