"""Sandbox at scale: one cluster with 1,000 and with 5,000 fake accelerator nodes.

    python benchmarks/sandbox_scale.py [--sizes 1000 5000]

Prints the control plane's start-up time, the time to create the Nodes and until all are Ready, and each
component's resident memory once the nodes are in. Needs `autoglm sandbox build` first.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from autoglm.sandbox import fleet
from autoglm.sandbox.cluster import COMPONENTS, ClusterState

sys.path.insert(0, str(Path(__file__).resolve().parent))
from plan_scale import fleet as mixed_nodes


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def run(size: int) -> tuple[float, float, float, dict[str, float]]:
    nodes = mixed_nodes(size)
    with tempfile.TemporaryDirectory(prefix="sandbox-scale-") as tmp:
        state_dir = Path(tmp)
        start = time.monotonic()
        try:
            states, timings = fleet.up(state_dir, {"scale": nodes})
            total = time.monotonic() - start
            state: ClusterState = states["scale"]
            time.sleep(5)  # let heartbeats settle before reading memory
            rss = {c: rss_mib(state.pids[c]) for c in COMPONENTS}
        finally:
            fleet.down(state_dir)
    t = timings[0]
    registration = total - t.control_plane_seconds
    return t.control_plane_seconds, registration, t.nodes_ready_seconds, rss


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000])
    args = parser.parse_args()
    table = Table(title="sandbox_scale: one cluster, mixed-vendor fake nodes (2-core machine)")
    for col in (
        "nodes",
        "control plane up",
        "nodes created + Ready",
        "of which waiting Ready",
        *(f"{c} RSS" for c in COMPONENTS),
    ):
        table.add_column(col)
    for size in args.sizes:
        up, registration, ready, rss = run(size)
        table.add_row(
            str(size),
            f"{up:.1f} s",
            f"{registration:.1f} s",
            f"{ready:.1f} s",
            *(f"{rss[c]:.0f} MiB" for c in COMPONENTS),
        )
    Console(width=200).print(table)


if __name__ == "__main__":
    main()
