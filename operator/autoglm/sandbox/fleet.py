"""Several sandbox clusters under one state folder: DIR/NAME/ for each cluster, DIR/karmada/ for Karmada."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from concurrent import futures
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autoglm.sandbox.build import CLUSTER_COMPONENTS, KARMADA, SandboxError, binaries
from autoglm.sandbox.cluster import (
    HPA_SYNC_SECONDS,
    NODE_LEASE_SECONDS,
    ClusterState,
    ComponentStatus,
    cluster_status,
    provide_storage,
    restart_cluster,
    start_cluster,
    stop_cluster,
    stop_clusters,
)
from autoglm.sandbox.karmada import NAME as KARMADA_NAME
from autoglm.sandbox.karmada import join, start_karmada
from autoglm.sandbox.nodes import register_nodes, wait_nodes_ready
from autoglm.sandbox.prometheus import NAME as PROMETHEUS_NAME
from autoglm.sandbox.prometheus import start_prometheus
from autoglm.sandbox.prometheus import url as prometheus_url

OUTAGE_GRACE_SECONDS = 2.0


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
    hpa_sync_seconds: float = HPA_SYNC_SECONDS,
    prometheus: bool = False,
    audit: bool = False,
    before_controllers: Callable[[ClusterState], None] | None = None,
) -> tuple[dict[str, ClusterState], list[ClusterTimings]]:
    """Start every cluster with its nodes, and with `karmada` a Karmada control plane that every cluster joins
    in Push mode (its state under the key "karmada"), with `prometheus` a Prometheus (key "prometheus"), with
    `audit` an audit log of ServiceAccounts' requests per cluster, `before_controllers` called on each cluster
    before its controllers start (start_cluster); on any failure, stop what was started and raise.

    The control planes start side by side (Karmada's too): each mostly waits for its own processes to answer,
    so a fleet of four is up in little more than the slowest one takes."""
    for extra, wanted in ((KARMADA_NAME, karmada), (PROMETHEUS_NAME, prometheus)):
        if wanted and extra in clusters:
            raise SandboxError(f"a cluster cannot be named {extra!r} beside the sandbox's {extra}")
    bins = binaries(components=(*CLUSTER_COMPONENTS, KARMADA) if karmada else CLUSTER_COMPONENTS)
    states: dict[str, ClusterState] = {}  # filled as each starts: what a failure has to stop
    timings: dict[str, ClusterTimings] = {}

    def one_cluster(name: str, nodes: Sequence[Mapping[str, Any]]) -> None:
        start = time.monotonic()
        state = start_cluster(
            name,
            state_dir / name,
            bins,
            cold_start_seconds,
            node_lease_seconds=node_lease_seconds,
            hpa_sync_seconds=hpa_sync_seconds,
            audit=audit,
            before_controllers=before_controllers,
        )
        states[name] = state
        control_plane = time.monotonic() - start
        provide_storage(state)
        register_nodes(state, nodes)
        ready = wait_nodes_ready(state, len(nodes), timeout=max(60.0, len(nodes) / 20))
        timings[name] = ClusterTimings(name, control_plane, len(nodes), ready)
        log(
            f"{name}: up in {control_plane:.1f} s, {len(nodes)} nodes Ready {ready:.1f} s later; "
            f"kubeconfig {state.kubeconfig}"
        )

    def karmada_plane() -> float:
        start = time.monotonic()
        states[KARMADA_NAME] = start_karmada(state_dir / KARMADA_NAME, bins)
        return time.monotonic() - start

    try:
        with ThreadPoolExecutor(len(clusters) + 1, thread_name_prefix="sandbox-up") as pool:
            started = [pool.submit(one_cluster, name, nodes) for name, nodes in clusters.items()]
            karmada_started = pool.submit(karmada_plane) if karmada else None
            futures.wait(started)
            control_plane = karmada_started.result() if karmada_started else 0.0
            for future in started:
                future.result()  # the first failure, once every start has ended
        if karmada:
            joined = time.monotonic()
            for name in clusters:
                join(states[KARMADA_NAME], states[name])
            log(
                f"karmada: up in {control_plane:.1f} s, {len(clusters)} clusters joined in Push mode "
                f"{time.monotonic() - joined:.1f} s later; kubeconfig {states[KARMADA_NAME].kubeconfig}"
            )
        if prometheus:
            states[PROMETHEUS_NAME] = start_prometheus(state_dir / PROMETHEUS_NAME)
            log(f"prometheus: up at {prometheus_url(states[PROMETHEUS_NAME])}")
    except BaseException:
        for name in states:
            stop_cluster(state_dir / name)
        raise
    return states, [timings[name] for name in clusters]


def cluster_dirs(state_dir: Path) -> list[Path]:
    return sorted(p.parent for p in state_dir.glob("*/state.json"))


def down(state_dir: Path) -> dict[str, list[str]]:
    return {d.name: stopped for d, stopped in stop_clusters(cluster_dirs(state_dir)).items()}


def _one(state_dir: Path, name: str) -> Path:
    directory = state_dir / name
    if ClusterState.load(directory) is None:
        known = ", ".join(d.name for d in cluster_dirs(state_dir)) or "none"
        raise SandboxError(f"no sandbox cluster {name!r} in {state_dir} (clusters: {known})")
    return directory


def stop(state_dir: Path, name: str) -> list[str]:
    """Stop one cluster's processes and keep its data: to its clients, an outage of the whole cluster. The
    API server refuses connections from the first signal; its graceful drain of open watches (which would take
    as long as the grace allows) is cut short, as an outage would (etcd recovers from its log on start)."""
    return stop_cluster(_one(state_dir, name), grace=OUTAGE_GRACE_SECONDS)


def start(state_dir: Path, name: str, timeout: float = 60.0) -> ClusterState:
    """Start a stopped cluster again, as it was (same ports, certificates, etcd data and nodes)."""
    return restart_cluster(_one(state_dir, name), timeout)


def status(state_dir: Path) -> list[ComponentStatus]:
    return [s for d in cluster_dirs(state_dir) for s in cluster_status(d)]
