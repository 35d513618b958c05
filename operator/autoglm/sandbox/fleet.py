"""Several sandbox clusters under one state folder: DIR/NAME/ for each cluster."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autoglm.sandbox.build import SandboxError, binaries
from autoglm.sandbox.cluster import (
    NODE_LEASE_SECONDS,
    ClusterState,
    ComponentStatus,
    cluster_status,
    provide_storage,
    start_cluster,
    stop_cluster,
)
from autoglm.sandbox.nodes import register_nodes, wait_nodes_ready

KARMADA_UNAVAILABLE = (
    "--karmada is not available on this machine: the Go module proxy refuses github.com/karmada-io/karmada "
    "(403 'This module version is not available'), so karmada-controller-manager and karmada-scheduler "
    "cannot be built here"
)


@dataclass(frozen=True)
class ClusterTimings:
    name: str
    control_plane_seconds: float
    nodes: int
    nodes_ready_seconds: float


def up(
    state_dir: Path,
    clusters: Mapping[str, Sequence[Mapping[str, Any]]],
    cold_start_seconds: float = 0.0,
    karmada: bool = False,
    log: Callable[[str], None] = lambda _: None,
    node_lease_seconds: int = NODE_LEASE_SECONDS,
) -> tuple[dict[str, ClusterState], list[ClusterTimings]]:
    """Start every cluster with its nodes; on any failure, stop what was started and raise."""
    if karmada:
        raise SandboxError(KARMADA_UNAVAILABLE)
    bins = binaries()
    states: dict[str, ClusterState] = {}
    timings = []
    try:
        for name, nodes in clusters.items():
            start = time.monotonic()
            state = start_cluster(
                name, state_dir / name, bins, cold_start_seconds, node_lease_seconds=node_lease_seconds
            )
            states[name] = state
            control_plane = time.monotonic() - start
            provide_storage(state)
            register_nodes(state, nodes)
            ready = wait_nodes_ready(state, len(nodes), timeout=max(60.0, len(nodes) / 20))
            timings.append(ClusterTimings(name, control_plane, len(nodes), ready))
            log(
                f"{name}: up in {control_plane:.1f} s, {len(nodes)} nodes Ready {ready:.1f} s later; "
                f"kubeconfig {state.kubeconfig}"
            )
    except BaseException:
        for name in states:
            stop_cluster(state_dir / name)
        raise
    return states, timings


def cluster_dirs(state_dir: Path) -> list[Path]:
    return sorted(p.parent for p in state_dir.glob("*/state.json"))


def down(state_dir: Path) -> dict[str, list[str]]:
    return {d.name: stop_cluster(d) for d in cluster_dirs(state_dir)}


def status(state_dir: Path) -> list[ComponentStatus]:
    return [s for d in cluster_dirs(state_dir) for s in cluster_status(d)]
