"""Sandbox at scale: one cluster with 1,000 and with 5,000 fake accelerator nodes.

    python benchmarks/sandbox_scale.py [--sizes 1000 5000]

Prints the control plane's start-up time, the time to create the Nodes and until all are Ready, each
component's resident memory once the nodes are in, and what keeping the nodes alive costs: over a hold longer
than the node lifecycle controller's grace period, begun once KWOK has listed every new node's pods (every
node renews its Lease every 10 s, as kubelets do),
the CPU each component used, how many nodes are still Ready at the end and how many NodeNotReady events the
controller raised (0 when heartbeats keep up). Needs `autoglm sandbox build` first.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from kubernetes import client
from rich.console import Console
from rich.table import Table

from autoglm.sandbox import fleet
from autoglm.sandbox.cluster import COMPONENTS, NODE_LEASE_SECONDS, ClusterState
from autoglm.sandbox.nodes import node_ready, wait_pods_synced

sys.path.insert(0, str(Path(__file__).resolve().parent))
from plan_scale import fleet as mixed_nodes


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


@dataclass(frozen=True)
class Result:
    control_plane: float
    registration: float
    ready: float
    pods_synced: float
    rss: dict[str, float]
    cpu_share: dict[str, float]  # CPU seconds per second of the hold
    ready_after_hold: int
    not_ready_events: int


def run(size: int, hold: float, lease: int) -> Result:
    nodes = mixed_nodes(size)
    with tempfile.TemporaryDirectory(prefix="sandbox-scale-") as tmp:
        state_dir = Path(tmp)
        start = time.monotonic()
        try:
            states, timings = fleet.up(state_dir, {"scale": nodes}, node_lease_seconds=lease)
            total = time.monotonic() - start
            state: ClusterState = states["scale"]
            # KWOK lists each new node's pods once, one node at a time: the hold measures the nodes kept alive.
            synced = wait_pods_synced(state)
            time.sleep(5)  # let heartbeats settle before reading memory
            rss = {c: rss_mib(state.pids[c]) for c in COMPONENTS}
            before = {c: cpu_seconds(state.pids[c]) for c in COMPONENTS}
            time.sleep(hold)
            cpu = {c: (cpu_seconds(state.pids[c]) - before[c]) / hold for c in COMPONENTS}
            core = client.CoreV1Api(state.api_client())
            ready = sum(node_ready(n) for n in core.list_node().items)
            events = [e for e in core.list_event_for_all_namespaces().items if e.reason == "NodeNotReady"]
        finally:
            fleet.down(state_dir)
    t = timings[0]
    return Result(
        t.control_plane_seconds,
        total - t.control_plane_seconds,
        t.nodes_ready_seconds,
        synced,
        rss,
        cpu,
        ready,
        len(events),
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--hold", type=float, default=70.0, help="Seconds to keep the nodes up (grace is 50 s).")
    parser.add_argument("--node-lease-seconds", type=int, default=NODE_LEASE_SECONDS)
    args = parser.parse_args()
    table = Table(title="sandbox_scale: one cluster, mixed-vendor fake nodes (2-core machine)")
    for col in (
        "nodes",
        "control plane up",
        "nodes created + Ready",
        "of which waiting Ready",
        "then KWOK's per-node pod lists",
        *(f"{c} RSS" for c in COMPONENTS),
    ):
        table.add_column(col)
    health = Table(
        title=f"keeping the nodes alive: {args.node_lease_seconds} s Leases, {args.hold:.0f} s hold, "
        "CPU cores used per component"
    )
    for col in ("nodes", "Ready after hold", "NodeNotReady events", *COMPONENTS):
        health.add_column(col)
    for size in args.sizes:
        r = run(size, args.hold, args.node_lease_seconds)
        table.add_row(
            str(size),
            f"{r.control_plane:.1f} s",
            f"{r.registration:.1f} s",
            f"{r.ready:.1f} s",
            f"{r.pods_synced:.1f} s",
            *(f"{r.rss[c]:.0f} MiB" for c in COMPONENTS),
        )
        health.add_row(
            str(size), str(r.ready_after_hold), str(r.not_ready_events), *(f"{r.cpu_share[c]:.2f}" for c in COMPONENTS)
        )
    console = Console(width=200)
    console.print(table)
    console.print(health)


if __name__ == "__main__":
    main()
