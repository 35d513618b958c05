"""The operator at scale on a sandbox cluster: 500 ModelDeployments over 1,000 fake accelerator nodes.

    python benchmarks/reconcile_scale.py [--nodes 1000] [--deployments 500]

Starts a sandbox cluster, runs the operator as its own process, creates the deployments at a steady rate and
measures, per deployment, the time from its create call until its status says Planned=True and until it says
Ready=True; prints p50/p99 and the process's resident memory. Targets: p50 < 0.5 s, p99 < 2 s, RSS < 200 MB.
Readiness is checked against the pods themselves at the end: a deployment counts as Ready only when its
status says so and as many of its pods as its status counts are Running with Ready=True after a hold longer
than the node lifecycle controller's grace period (so a node that stopped heartbeating would show).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from kubernetes import client, config, watch
from rich.console import Console
from rich.table import Table

from autoglm.core.render import LABEL_DEPLOYMENT
from autoglm.sandbox import fleet
from autoglm.shell.clusters import install_crds

sys.path.insert(0, str(Path(__file__).resolve().parent))
from plan_scale import fleet as mixed_nodes

MODELS = ["glm-4-9b-chat", "chatglm3-6b", "GLM-4-32B-0414", "GLM-4.5-Air"]
# Longer than the node lifecycle controller's grace period (50 s): nodes that stop heartbeating show by then.
HOLD_SECONDS = 70.0


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--deployments", type=int, default=500)
    parser.add_argument("--rate", type=float, default=5.0, help="Creates per second.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="reconcile-scale-") as tmp:
        states, _ = fleet.up(Path(tmp), {"scale": mixed_nodes(args.nodes)})
        kubeconfig = str(states["scale"].kubeconfig)
        try:
            result = run(kubeconfig, args.deployments, args.rate)
        finally:
            fleet.down(Path(tmp))
    planned, ready, rss, readiness = result
    table = Table(
        title=f"reconcile_scale: {args.deployments} ModelDeployments, {args.nodes} nodes, "
        f"{args.rate:.0f} creates/s (2-core machine)"
    )
    for col in ("measure", "value", "target"):
        table.add_column(col)
    table.add_row("create -> Planned=True p50", f"{percentile(planned, 0.5):.2f} s", "< 0.5 s")
    table.add_row("create -> Planned=True p99", f"{percentile(planned, 0.99):.2f} s", "< 2 s")
    table.add_row("deployments never planned", str(args.deployments - len(planned)), "0")
    table.add_row("create -> Ready=True p50", f"{percentile(ready, 0.5):.2f} s", "")
    table.add_row("create -> Ready=True p99", f"{percentile(ready, 0.99):.2f} s", "")
    table.add_row(
        f"Ready after a {HOLD_SECONDS:.0f} s hold, pods checked",
        f"{readiness.ready}/{args.deployments}",
        f"{args.deployments}",
    )
    table.add_row("status Ready but its pods not", str(readiness.claimed_not_ready), "0")
    table.add_row("operator process RSS (autoglm run)", f"{rss:.0f} MiB", "< 200 MB")
    Console(width=120).print(table)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else float("nan")


@dataclass(frozen=True)
class Readiness:
    ready: int  # status Ready=True and its pods Ready
    claimed_not_ready: int  # status Ready=True, but fewer pods Ready than status.readyReplicas


def check_readiness(core: client.CoreV1Api, custom: client.CustomObjectsApi) -> Readiness:
    """Each deployment's Ready condition against its own pods."""
    pods_ready: dict[str, int] = {}
    for pod in core.list_namespaced_pod("scale").items:
        owner = (pod.metadata.labels or {}).get(LABEL_DEPLOYMENT)
        ready = pod.status.phase == "Running" and any(
            c.type == "Ready" and c.status == "True" for c in pod.status.conditions or []
        )
        if owner and ready:
            pods_ready[owner] = pods_ready.get(owner, 0) + 1
    ready = claimed = 0
    for md in custom.list_namespaced_custom_object("autoglm.io", "v1alpha1", "scale", "modeldeployments")["items"]:
        status = md.get("status") or {}
        if not any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", [])):
            continue
        if pods_ready.get(md["metadata"]["name"], 0) >= status.get("readyReplicas", 1):
            ready += 1
        else:
            claimed += 1
    return Readiness(ready, claimed)


def run(kubeconfig: str, count: int, rate: float) -> tuple[list[float], list[float], float, Readiness]:
    api = config.new_client_from_config(config_file=kubeconfig)
    install_crds(api)
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    core.create_namespace({"metadata": {"name": "scale"}})
    created: dict[str, float] = {}
    planned: dict[str, float] = {}
    ready: dict[str, float] = {}
    stop = threading.Event()

    def watch_status() -> None:
        stream = watch.Watch()
        for event in stream.stream(
            custom.list_namespaced_custom_object,
            "autoglm.io",
            "v1alpha1",
            "scale",
            "modeldeployments",
            timeout_seconds=600,
        ):
            md = event["object"]
            name = md["metadata"]["name"]
            conds = (md.get("status") or {}).get("conditions", [])
            if name not in planned and any(c["type"] == "Planned" and c["status"] == "True" for c in conds):
                planned[name] = time.monotonic()
            if name not in ready and any(c["type"] == "Ready" and c["status"] == "True" for c in conds):
                ready[name] = time.monotonic()
            if stop.is_set():
                stream.stop()

    # The operator runs as its own process, as in production, so its memory is measured alone.
    operator = subprocess.Popen(
        [
            "autoglm",
            "run",
            "--kubeconfig",
            kubeconfig,
            "-n",
            "scale",
            "--metrics-port",
            "0",
            "--liveness",
            "",
            "--resync",
            "60",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        watcher = threading.Thread(target=watch_status, daemon=True)
        watcher.start()
        time.sleep(3)  # operator start-up
        for i in range(count):
            name = f"md-{i:04d}"
            body = {
                "apiVersion": "autoglm.io/v1alpha1",
                "kind": "ModelDeployment",
                "metadata": {"name": name},
                "spec": {
                    "model": {"name": MODELS[i % len(MODELS)]},
                    "modelCache": {"enabled": False},
                    "resources": {"contextLength": 4096, "maxConcurrentSequences": 4},
                },
            }
            created[name] = time.monotonic()
            custom.create_namespaced_custom_object("autoglm.io", "v1alpha1", "scale", "modeldeployments", body)
            time.sleep(max(0.0, created[name] + 1 / rate - time.monotonic()))
        deadline = time.monotonic() + 120
        while len(ready) < count and time.monotonic() < deadline:
            time.sleep(0.5)
        rss = rss_mib(operator.pid)
        time.sleep(HOLD_SECONDS)
        readiness = check_readiness(core, custom)
    finally:
        stop.set()
        operator.terminate()
        try:
            operator.wait(30)
        except subprocess.TimeoutExpired:
            operator.kill()
            operator.wait()
    return (
        [planned[n] - created[n] for n in created if n in planned],
        [ready[n] - created[n] for n in created if n in ready],
        rss,
        readiness,
    )


if __name__ == "__main__":
    main()
