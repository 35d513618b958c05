"""The operator at scale on a sandbox cluster, beside a peer run in the same sandbox.

    python benchmarks/reconcile_scale.py [--nodes 1000] [--deployments 500] [--rate 20] [--fleet h100|mixed]
                                         [--no-peer] [--ready] [--node-lease-seconds 40] [--rounds 2]

Starts one sandbox cluster and, one after the other in their own namespaces, two operators as their own
processes: the peer (benchmarks/peer_operator.py, a bare kopf operator that creates one Deployment per object
and patches its status: the least a hand-written operator does) and ours (`autoglm run`). Each gets the same
ModelDeployments created at the same steady rate; per object, the time from its create call until its
status says Planned=True and its Deployment exists is measured, with p50/p99 and the process's resident
memory. Goal: ours <= 3x the peer's p50 and p99, none left behind, RSS <= 2x the peer's.

Timing starts once KWOK has listed the pods of every node it took on (one list per node, one node at a time:
minutes of the API server's time at 5,000 nodes, which neither operator must share), and each run once its
operator has handled a first object (start-up, such as listing 5,000 nodes, is not the per-create cost). Each
run ends by deleting its namespace and waiting until it is gone, so the next run meets the cluster as this one
did. With --rounds N each operator runs N times, the rounds alternating which
goes first; the latencies of its runs are pooled.

With --ready it also waits for Ready=True (ours only) and, after a hold longer than the node lifecycle
controller's grace period, checks every Ready claim against the pods (a deployment counts as Ready only when
its status says so and as many of its pods as its status counts are Running with Ready=True).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config, watch
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from rich.table import Table

from autoglm.core.render import LABEL_DEPLOYMENT
from autoglm.sandbox import fleet
from autoglm.sandbox.cluster import free_port
from autoglm.sandbox.nodes import wait_pods_synced
from autoglm.shell.clusters import install_crds

sys.path.insert(0, str(Path(__file__).resolve().parent))
from plan_scale import fleet as mixed_nodes

HERE = Path(__file__).resolve().parent
NODE_SETS = HERE.parent / "manifests" / "examples" / "nodes"
MIXED_MODELS = ["glm-4-9b-chat", "chatglm3-6b", "GLM-4-32B-0414", "GLM-4.5-Air"]
# Longer than the node lifecycle controller's grace period (50 s): nodes that stop heartbeating show by then.
HOLD_SECONDS = 70.0
WARM_UP = "warm-up"


def rss_mib(pid: int) -> float:
    """The operator's resident memory: the process itself, or under py-spy (--profile) its child."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    if children:
        return max(rss_mib(int(child)) for child in children)
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def bucket_quantile(buckets: list[tuple[float, float]], q: float) -> float:
    """The upper bound of the histogram bucket that holds quantile q (buckets: (le, cumulative count))."""
    total = buckets[-1][1] if buckets else 0.0
    return next((le for le, count in buckets if total and count >= q * total), float("nan"))


def operator_histograms(port: int) -> dict[str, list[tuple[float, float]]]:
    """Our operator's histograms from its /metrics: name -> [(le, cumulative count)]."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    found: dict[str, list[tuple[float, float]]] = {}
    for family in text_string_to_metric_families(text):
        if family.type != "histogram":
            continue
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                found.setdefault(family.name, []).append((float(sample.labels["le"]), sample.value))
    return {name: sorted(buckets) for name, buckets in found.items()}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else float("nan")


def h100_nodes(count: int) -> list[dict[str, Any]]:
    """`count` identical 8x H100 nodes (the example node, named apart)."""
    base = yaml.safe_load((NODE_SETS / "nvidia-h100.yaml").read_text())["items"][0]
    nodes = []
    for i in range(count):
        node = yaml.safe_load(yaml.safe_dump(base))
        node["metadata"]["name"] = f"h100-{i}"
        node["metadata"]["labels"]["kubernetes.io/hostname"] = f"h100-{i}"
        nodes.append(node)
    return nodes


@dataclass(frozen=True)
class Readiness:
    ready: int  # status Ready=True and its pods Ready
    claimed_not_ready: int  # status Ready=True, but fewer pods Ready than status.readyReplicas


def check_readiness(core: client.CoreV1Api, custom: client.CustomObjectsApi, namespace: str) -> Readiness:
    """Each deployment's Ready condition against its own pods."""
    pods_ready: dict[str, int] = {}
    for pod in core.list_namespaced_pod(namespace).items:
        owner = (pod.metadata.labels or {}).get(LABEL_DEPLOYMENT)
        ready = pod.status.phase == "Running" and any(
            c.type == "Ready" and c.status == "True" for c in pod.status.conditions or []
        )
        if owner and ready:
            pods_ready[owner] = pods_ready.get(owner, 0) + 1
    ready = claimed = 0
    for md in custom.list_namespaced_custom_object("autoglm.io", "v1alpha1", namespace, "modeldeployments")["items"]:
        status = md.get("status") or {}
        if not any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", [])):
            continue
        if pods_ready.get(md["metadata"]["name"], 0) >= status.get("readyReplicas", 1):
            ready += 1
        else:
            claimed += 1
    return Readiness(ready, claimed)


@dataclass
class Result:
    done: list[float] = field(default_factory=list)  # create -> Planned=True and Deployment applied
    complete: list[float] = field(default_factory=list)  # create -> every object of the kinds it renders applied
    ready: list[float] = field(default_factory=list)
    missing: int = 0
    rss: float = 0.0
    readiness: Readiness | None = None
    # Our operator's own view (its /metrics): where a create's time went, reconciling or waiting for a worker.
    histograms: dict[str, list[tuple[float, float]]] = field(default_factory=dict)

    def add(self, run: Result) -> None:
        """Another round's run of the same operator: latencies pooled, the largest RSS kept."""
        self.done += run.done
        self.complete += run.complete
        self.ready += run.ready
        self.missing += run.missing
        self.rss = max(self.rss, run.rss)
        self.readiness = run.readiness or self.readiness


def _watch(stop: threading.Event, list_call: Any, args: tuple[Any, ...], seen: Any) -> None:
    stream = watch.Watch()
    try:
        for event in stream.stream(list_call, *args, timeout_seconds=900):
            seen(event["object"])
            if stop.is_set():
                stream.stop()
    except Exception:
        if not stop.is_set():  # after the run, the sandbox going down ends the watch: not news
            raise


def run_operator(
    name: str,
    command: list[str],
    kubeconfig: str,
    namespace: str,
    models: list[str],
    count: int,
    rate: float,
    wait_ready: bool,
    metrics_port: int | None = None,
) -> Result:
    api = config.new_client_from_config(config_file=kubeconfig)
    core, custom, apps = client.CoreV1Api(api), client.CustomObjectsApi(api), client.AppsV1Api(api)
    core.create_namespace({"metadata": {"name": namespace}})
    created: dict[str, float] = {}
    planned: dict[str, float] = {}
    applied: dict[str, float] = {}
    # owner -> kind -> when its first object of that kind was seen (Deployment, Service, HPA)
    objects: dict[str, dict[str, float]] = {}
    ready: dict[str, float] = {}
    stop = threading.Event()

    def on_md(md: dict[str, Any]) -> None:
        md_name = md["metadata"]["name"]
        conds = (md.get("status") or {}).get("conditions", [])
        if md_name not in planned and any(c["type"] == "Planned" and c["status"] == "True" for c in conds):
            planned[md_name] = time.monotonic()
        if md_name not in ready and any(c["type"] == "Ready" and c["status"] == "True" for c in conds):
            ready[md_name] = time.monotonic()

    def on_object(kind: str) -> Any:
        def seen(obj: Any) -> None:
            owner = (obj.metadata.labels or {}).get(LABEL_DEPLOYMENT)
            if owner:
                objects.setdefault(owner, {}).setdefault(kind, time.monotonic())
                if kind == "Deployment" and owner not in applied:
                    applied[owner] = objects[owner][kind]

        return seen

    watchers = [
        threading.Thread(
            target=_watch,
            args=(
                stop,
                custom.list_namespaced_custom_object,
                ("autoglm.io", "v1alpha1", namespace, "modeldeployments"),
                on_md,
            ),
            daemon=True,
        ),
        *(
            threading.Thread(target=_watch, args=(stop, list_call, (namespace,), on_object(kind)), daemon=True)
            for kind, list_call in (
                ("Deployment", apps.list_namespaced_deployment),
                ("Service", core.list_namespaced_service),
                ("HorizontalPodAutoscaler", client.AutoscalingV2Api(api).list_namespaced_horizontal_pod_autoscaler),
            )
        ),
    ]
    for watcher in watchers:
        watcher.start()
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "KUBECONFIG": kubeconfig}
    )
    result = Result()

    def create(md_name: str, model: str) -> None:
        body = {
            "apiVersion": "autoglm.io/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": md_name},
            "spec": {
                "model": {"name": model},
                "modelCache": {"enabled": False},
                "resources": {"contextLength": 4096, "maxConcurrentSequences": 4},
            },
        }
        created[md_name] = time.monotonic()
        custom.create_namespaced_custom_object("autoglm.io", "v1alpha1", namespace, "modeldeployments", body)

    try:
        # Start-up is not measured: the timed creates begin once the operator has handled a first object.
        create(WARM_UP, models[0])
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not (WARM_UP in planned and WARM_UP in applied):
            time.sleep(0.2)
        del created[WARM_UP]
        for i in range(count):
            create(f"md-{i:04d}", models[i % len(models)])
            time.sleep(max(0.0, created[f"md-{i:04d}"] + 1 / rate - time.monotonic()))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and (
            len(set(planned) & set(applied)) < count or (wait_ready and len(ready) < count)
        ):
            time.sleep(0.5)
        # Every deployment of a run renders the same kinds; the deferred ones (Service, HPA) may land later.
        kinds = {kind for seen in objects.values() for kind in seen}
        while time.monotonic() < deadline and sum(kinds <= set(objects.get(n, {})) for n in created) < count:
            time.sleep(0.5)
        result.rss = rss_mib(process.pid)
        if metrics_port is not None:
            result.histograms = operator_histograms(metrics_port)
        if wait_ready:
            time.sleep(HOLD_SECONDS)
            result.readiness = check_readiness(core, custom, namespace)
    finally:
        stop.set()
        # py-spy writes its profile on SIGINT; the operators stop on either.
        process.send_signal(signal.SIGINT if command[0] == "py-spy" else signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        # The next run starts from the same cluster: none of this run's objects left for the controllers.
        core.delete_namespace(namespace)
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and any(
            (n.metadata and n.metadata.name) == namespace for n in core.list_namespace().items
        ):
            time.sleep(1)
    result.done = [max(planned[n], applied[n]) - created[n] for n in created if n in planned and n in applied]
    result.complete = [
        max(planned[n], *objects[n].values()) - created[n]
        for n in created
        if n in planned and set(objects.get(n, {})) == kinds
    ]
    result.ready = [ready[n] - created[n] for n in created if n in ready]
    result.missing = count - len(result.done)
    print(
        f"{name}: {len(result.done)}/{count} done, p50 {percentile(result.done, 0.5):.3f} s; every object "
        f"({', '.join(sorted(kinds))}) p50 {percentile(result.complete, 0.5):.3f} s",
        flush=True,
    )
    for family, buckets in sorted(result.histograms.items()):
        if family.startswith(("autoglm_reconcile_duration", "autoglm_workqueue_queue_duration")):
            print(
                f"  {family}: {buckets[-1][1]:.0f} observed, p50 <= {bucket_quantile(buckets, 0.5)} s, "
                f"p99 <= {bucket_quantile(buckets, 0.99)} s",
                flush=True,
            )
    return result


def main() -> None:
    # A timeout's SIGTERM unwinds like Ctrl-C, so the sandbox is stopped on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--deployments", type=int, default=500)
    parser.add_argument("--rate", type=float, default=5.0, help="Creates per second.")
    parser.add_argument("--fleet", choices=["h100", "mixed"], default="h100")
    parser.add_argument("--no-peer", action="store_true", help="Only our operator.")
    parser.add_argument("--ready", action="store_true", help="Also measure Ready and check it against the pods.")
    parser.add_argument("--node-lease-seconds", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=2, help="Runs of each operator, alternating who goes first.")
    parser.add_argument(
        "--profile", type=Path, help="Sample our operator with py-spy into this file (collapsed stacks)."
    )
    args = parser.parse_args()
    nodes = h100_nodes(args.nodes) if args.fleet == "h100" else mixed_nodes(args.nodes)
    models = ["glm-4-9b-chat"] if args.fleet == "h100" else MIXED_MODELS
    results: dict[str, Result] = {}
    with tempfile.TemporaryDirectory(prefix="reconcile-scale-") as tmp:
        states, _ = fleet.up(Path(tmp), {"scale": nodes}, node_lease_seconds=args.node_lease_seconds)
        kubeconfig = str(states["scale"].kubeconfig)
        synced = wait_pods_synced(states["scale"])
        print(f"KWOK's per-node pod lists done {synced:.0f} s after the nodes were Ready", flush=True)
        try:
            install_crds(config.new_client_from_config(config_file=kubeconfig))
            common = (models, args.deployments, args.rate)
            for round_ in range(args.rounds):
                # Rounds alternate who goes first, so neither always meets the machine as the other left it.
                order = ["peer", "ours"] if round_ % 2 == 0 else ["ours", "peer"]
                for who in order:
                    namespace = f"{who}-{round_}"
                    if who == "peer" and not args.no_peer:
                        peer = ["kopf", "run", str(HERE / "peer_operator.py"), "--standalone", "-n", namespace]
                        one = run_operator("peer", [*peer, "--quiet"], kubeconfig, namespace, *common, wait_ready=False)
                        results.setdefault("peer (bare kopf)", Result()).add(one)
                    elif who == "ours":
                        port = free_port()
                        ours = ["autoglm", "run", "-n", namespace, "--metrics-port", str(port), "--liveness", ""]
                        ours += ["--resync", "60"]
                        if args.profile:
                            profile = str(args.profile.with_suffix(f".{round_}{args.profile.suffix}"))
                            ours = ["py-spy", "record", "--format", "raw", "--rate", "50", "-o", profile, "--", *ours]
                        one = run_operator(
                            "autoglm", ours, kubeconfig, namespace, *common, wait_ready=args.ready, metrics_port=port
                        )
                        results.setdefault("autoglm", Result()).add(one)
        finally:
            fleet.down(Path(tmp))
    table = Table(
        title=f"reconcile_scale: {args.deployments} ModelDeployments ({', '.join(models)}), {args.nodes} "
        f"{'identical 8x H100' if args.fleet == 'h100' else 'mixed-vendor'} nodes, {args.rate:.0f} creates/s, "
        f"{args.rounds} rounds (2-core machine); create -> Planned=True and Deployment applied, and -> every "
        "object it renders applied (ours: Deployment and Service, the HPA where it scales; the peer: its Deployment)"
    )
    columns = ("operator", "p50", "p99", "left behind", "RSS", "p50 / peer", "p99 / peer", "RSS / peer")
    for col in (*columns, "all objects p50", "all objects p99", "all p50 / peer", "all p99 / peer"):
        table.add_column(col)
    peer_result = results.get("peer (bare kopf)")
    for name, r in results.items():
        ratios = ["", "", ""]
        complete_ratios = ["", ""]
        if peer_result is not None and r is not peer_result and peer_result.done and r.done:
            ratios = [
                f"{percentile(r.done, 0.5) / percentile(peer_result.done, 0.5):.1f}x",
                f"{percentile(r.done, 0.99) / percentile(peer_result.done, 0.99):.1f}x",
                f"{r.rss / peer_result.rss:.1f}x",
            ]
            if r.complete and peer_result.complete:
                complete_ratios = [
                    f"{percentile(r.complete, 0.5) / percentile(peer_result.complete, 0.5):.1f}x",
                    f"{percentile(r.complete, 0.99) / percentile(peer_result.complete, 0.99):.1f}x",
                ]
        table.add_row(
            name,
            f"{percentile(r.done, 0.5):.3f} s",
            f"{percentile(r.done, 0.99):.3f} s",
            str(r.missing),
            f"{r.rss:.0f} MiB",
            *ratios,
            f"{percentile(r.complete, 0.5):.3f} s",
            f"{percentile(r.complete, 0.99):.3f} s",
            *complete_ratios,
        )
    console = Console(width=230)
    console.print(table)
    ours_result = results["autoglm"]
    if args.ready and ours_result.readiness is not None:
        readiness = ours_result.readiness
        console.print(
            f"autoglm: create -> Ready=True p50 {percentile(ours_result.ready, 0.5):.2f} s, "
            f"p99 {percentile(ours_result.ready, 0.99):.2f} s; Ready after a {HOLD_SECONDS:.0f} s hold, pods "
            f"checked: {readiness.ready}/{args.deployments}; status Ready but its pods not: "
            f"{readiness.claimed_not_ready}"
        )


if __name__ == "__main__":
    main()
