"""Planner at fleet scale: 10,000 nodes of mixed vendors, 100 ModelDeployments.

    python benchmarks/plan_scale.py [--nodes 10000] [--deployments 100]

Prints the inventory build time and the plan latency distribution. Targets on the 2-core CI machine:
inventory <= 300 ms, plan p99 <= 2 ms.
"""

from __future__ import annotations

import argparse
import copy
import random
import statistics
import time
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

from autoglm.api import ModelDeploymentSpec
from autoglm.core.backends import load_default_catalog
from autoglm.core.hardware import build_inventory, nodes_from_document
from autoglm.core.models import load_model_catalog, profile_for
from autoglm.core.planner import plan

ROOT = Path(__file__).resolve().parent.parent
NODE_SETS = ROOT / "manifests/examples/nodes"


def fleet(count: int, seed: int = 1) -> list[dict[str, Any]]:
    """`count` nodes cloned from every vendor's example nodes, with some devices already in use."""
    templates = [
        n
        for f in sorted(NODE_SETS.glob("*.yaml"))
        if f.name != "fleet.yaml"
        for n in nodes_from_document(yaml.safe_load(f.read_text()))
    ]
    rng = random.Random(seed)
    nodes = []
    for i in range(count):
        node = copy.deepcopy(templates[i % len(templates)])
        node["metadata"]["name"] = f"{node['metadata']['name']}-{i}"
        alloc = node["status"]["allocatable"]
        for key, value in list(alloc.items()):
            if "/" in key and rng.random() < 0.3:  # a third of accelerator nodes partly busy
                alloc[key] = str(rng.randint(0, int(value)))
        nodes.append(node)
    return nodes


def deployments(count: int, seed: int = 2) -> list[ModelDeploymentSpec]:
    rng = random.Random(seed)
    names = [m.name for m in load_model_catalog().models]
    specs = []
    for _ in range(count):
        specs.append(
            ModelDeploymentSpec.model_validate(
                {
                    "model": {"name": rng.choice(names)},
                    "precision": rng.choice(["auto", "auto", "bf16", "fp8", "int8"]),
                    "resources": {
                        "contextLength": rng.choice([4096, 8192, 32768]),
                        "maxConcurrentSequences": rng.choice([1, 8, 32]),
                    },
                    "replicas": {"min": rng.randint(1, 4), "max": 8},
                }
            )
        )
    return specs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--deployments", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5, help="Plans per deployment (latency samples).")
    args = parser.parse_args()

    nodes = fleet(args.nodes)
    build_inventory(nodes[:100])  # load tables, warm imports
    timings = []
    for _ in range(3):
        start = time.perf_counter()
        inventory = build_inventory(nodes)
        timings.append(time.perf_counter() - start)
    inventory_ms = min(timings) * 1000

    catalog = load_default_catalog()
    specs = deployments(args.deployments)
    profiles = [profile_for(s.model) for s in specs]
    latencies = []
    feasible = 0
    for _ in range(args.rounds):
        for s, profile in zip(specs, profiles, strict=True):
            start = time.perf_counter()
            result = plan(inventory, profile, catalog, s)
            latencies.append((time.perf_counter() - start) * 1000)
            feasible += result.feasible
    latencies.sort()
    p50 = statistics.median(latencies)
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]

    table = Table(title=f"plan_scale: {args.nodes} nodes, {len(inventory.pools)} pools, {args.deployments} deployments")
    for col in ("measure", "value", "target", "ok"):
        table.add_column(col)
    table.add_row("inventory build (best of 3)", f"{inventory_ms:.0f} ms", "<= 300 ms", str(inventory_ms <= 300))
    table.add_row("plan latency p50", f"{p50:.2f} ms", "", "")
    table.add_row("plan latency p99", f"{p99:.2f} ms", "<= 2 ms", str(p99 <= 2))
    table.add_row("plans feasible", f"{feasible}/{len(latencies)}", "", "")
    Console(width=120).print(table)


if __name__ == "__main__":
    main()
