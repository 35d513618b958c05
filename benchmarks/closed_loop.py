"""The closed loop against the simulator, side by side, on a slice of a real trace.

    python benchmarks/closed_loop.py [--trace ../shared/traces/servegen_m_small.csv] [--start 3360] [--steps 60]
                                     [--compression 30]

A slice of the trace (default: day 3 from 08:00, the morning ramp) is replayed `--compression` times faster than
real time onto a ModelDeployment in a sandbox cluster: the real operator, the real HPA controller (reading each
Ready pod's load through a custom metrics API), KWOK's cold start (5 trace minutes) and, for the predictive
policy, a real Prometheus holding the two trace days before the slice. The simulator runs the same slice,
after the same history. Goal (issue 13 §4): unserved demand and replica-minutes within 10 % of each other.
"""

from __future__ import annotations

import argparse
import datetime
import subprocess
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from autoglm.core.forecast.series import parse_trace
from autoglm.core.hardware import nodes_from_document
from autoglm.face.closed_loop import LoopSettings, run

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trace", type=Path, default=ROOT.parent / "shared" / "traces" / "servegen_m_small.csv")
    parser.add_argument("--start", type=int, default=2 * 1440 + 480, help="First minute of the slice.")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--history-days", type=int, default=2)
    parser.add_argument("--compression", type=float, default=30.0)
    parser.add_argument("--peak-replicas", type=int, default=10)
    args = parser.parse_args()
    console = Console(width=150)
    series = parse_trace(args.trace.read_text(), str(args.trace), zero_gap_runs=10)
    demand = series.values[args.start : args.start + args.steps]
    if np.isnan(demand).any():
        raise SystemExit(f"the slice {args.start}..{args.start + args.steps} has collection gaps: pick another")
    history = series.values[args.start - args.history_days * 1440 : args.start]
    capacity = float(np.max(demand)) / args.peak_replicas
    nodes = nodes_from_document(
        __import__("yaml").safe_load((ROOT / "manifests/examples/nodes/nvidia-h100.yaml").read_text())
    )
    settings = LoopSettings(capacity=capacity, compression=args.compression, warmup_steps=20)
    table = Table(
        title=f"closed loop vs simulator: {args.trace.name} minutes {args.start}..{args.start + args.steps}, "
        f"{args.compression:g}x, capacity {capacity:,.0f} per replica, cold start 5 min"
    )
    for column in (
        "policy",
        "unserved (loop)",
        "unserved (sim)",
        "gap",
        "replica-min (loop)",
        "replica-min (sim)",
        "gap",
        "late ticks",
    ):
        table.add_column(column, justify="left" if column == "policy" else "right")
    for policy in ("reactive", "predictive"):
        result = run(
            demand.tolist(),
            nodes,
            settings,
            history=history.tolist() if policy == "predictive" else (),
            trace_start_minute=args.start,
            log=console.print,
        )
        loop, sim = result.loop, result.simulated
        table.add_row(
            policy,
            f"{loop.unserved_pct:.3f} %",
            f"{sim.unserved_pct:.3f} %",
            f"{100 * result.unserved_gap:.1f} %",
            f"{loop.replica_minutes:,.1f}",
            f"{sim.replica_minutes:,.1f}",
            f"{100 * result.replica_minutes_gap:.1f} %",
            str(loop.late_ticks),
        )
        console.print(f"{policy}: ready per step loop {loop.ready}")
        console.print(f"{policy}: ready per step sim  {sim.ready}")
    console.print(table)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout
    console.print(f"({datetime.date.today()}, commit {commit.strip()}, 2-core machine)")


if __name__ == "__main__":
    main()
