"""Direct vs Karmada propagation, and Karmada's own round trip with no operator, side by side on one sandbox.

    python benchmarks/propagation.py [--counts 1 50 200] [--rate 5] [--nodes 40] [--rounds 2]

One sandbox: members gpu (H100 nodes), ascend (910B3 nodes) and rocm (MI300X nodes), a host cluster the members
are joined to (direct mode), and a Karmada control plane joined to the same members (Karmada mode). For each
count and mode, ModelDeployments are created at a steady rate, each divided 1:1:1 over the three members, and the
time from a create call until all three of its pods run Ready in the members is measured; p50/p99 are printed
with the operator's resident memory, and the time until a Deployment of it is in every member (applied: the
propagation's part; the rest is the members' scheduler and nodes). Our operator's reconcile and queue-wait
histograms (its /metrics) are printed after each of its runs. Modes:

- direct: `autoglm run --no-local` on the host, applying to each member itself;
- karmada: `autoglm run --propagation karmada` on the Karmada API server;
- peer: no operator. The same Deployments, Services, PropagationPolicies and OverridePolicies the operator's
  Karmada mode renders (the same pure functions, from plans over the same node sets) are applied straight to the
  Karmada API server at the same rate: what is left is Karmada's own round trip (template -> binding ->
  scheduling -> Work per member -> member pods).

Every count runs `--rounds` times, the order of the modes reversed each round (the sandbox warms as it goes).
Goals: direct <= Karmada mode; Karmada mode <= 1.5x the peer's p50 and p99 (issue 25: the operator adds little
to Karmada's own round trip).
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client
from rich.console import Console
from rich.table import Table

from autoglm.api import ModelDeployment
from autoglm.core.backends import load_default_catalog
from autoglm.core.hardware import build_inventory
from autoglm.core.karmada import MemberPart, propagation_objects
from autoglm.core.models import load_model_catalog, profile_for
from autoglm.core.placement import fleet_plan
from autoglm.sandbox import fleet
from autoglm.sandbox.cluster import ClusterState, free_port
from autoglm.shell.clusters import ClusterClient, install_crds
from autoglm.shell.members import flatten_kubeconfig, join

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reconcile_scale import bucket_quantile, operator_histograms, percentile, rss_mib

ROOT = Path(__file__).resolve().parents[1]
NODE_SETS = ROOT / "manifests" / "examples" / "nodes"
# Three vendors with their own runtime and no conversion step: vLLM CUDA, vllm-ascend, vLLM ROCm.
MEMBERS = {
    "gpu": ("nvidia-h100.yaml", "h100-0"),
    "ascend": ("huawei-ascend.yaml", "ascend-910b3-0"),
    "rocm": ("amd.yaml", "mi300x-0"),
}
LABEL = "autoglm.io/modeldeployment"


def member_nodes(file: str, template: str, count: int) -> list[dict[str, Any]]:
    """`count` copies of one example node (same labels and devices), named apart."""
    doc = yaml.safe_load((NODE_SETS / file).read_text())
    base = next(n for n in doc["items"] if n["metadata"]["name"] == template)
    nodes = []
    for i in range(count):
        node = yaml.safe_load(yaml.safe_dump(base))
        name = f"{template.rsplit('-', 1)[0]}-{i}"
        node["metadata"]["name"] = name
        node["metadata"]["labels"]["kubernetes.io/hostname"] = name
        nodes.append(node)
    return nodes


@dataclass
class Run:
    latencies: list[float]
    missing: int
    rss: float
    applied: list[float]  # create -> a Deployment of it in every member (the propagation; the rest is the members')


def running_ready(pod: Any) -> bool:
    return pod.status.phase == "Running" and any(
        c.type == "Ready" and c.status == "True" for c in pod.status.conditions or []
    )


def body_of(name: str, members: list[str]) -> dict[str, Any]:
    """A ModelDeployment divided 1:1 over the members."""
    placement = {"clusters": members, "weights": {"static": [{"cluster": m, "weight": 1} for m in members]}}
    return {
        "apiVersion": "autoglm.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {
            "model": {"name": "glm-4-9b-chat"},
            "modelCache": {"enabled": False},
            "replicas": {"min": len(members), "max": len(members)},
            "placement": placement,
        },
    }


class PeerObjects:
    """What the operator's Karmada mode applies for one ModelDeployment, rendered by the same pure functions from
    plans over the members' node sets, without the ownerReference (there is no ModelDeployment on the Karmada
    API server to own them, and its garbage collector would delete them)."""

    def __init__(self, nodes: dict[str, list[dict[str, Any]]]):
        self.inventories = {name: build_inventory(member) for name, member in nodes.items()}
        self.catalog = load_default_catalog()
        self.models = load_model_catalog()

    def objects(self, namespace: str, name: str) -> list[dict[str, Any]]:
        md = ModelDeployment.model_validate(
            body_of(name, list(self.inventories)) | {"metadata": {"name": name, "namespace": namespace}}
        )
        profile = profile_for(md.spec.model, self.models)
        placed = fleet_plan(self.inventories, {}, profile, self.catalog, md.spec, name, datetime.now(UTC))
        parts = [MemberPart(s.name, s.plan) for s in placed.shares if s.replicas > 0 and s.plan and s.plan.feasible]
        rendered = propagation_objects(md, parts, {b.metadata.name: b for b in self.catalog})
        for obj in rendered:
            obj["metadata"].pop("ownerReferences", None)
        return rendered


def cleanup(
    custom: client.CustomObjectsApi,
    karmada: ClusterClient | None,
    member_core: dict[str, client.CoreV1Api],
    namespace: str,
    names: list[str],
) -> None:
    """Delete the run's ModelDeployments while the operator still runs (or the peer's objects), and wait until
    the members hold none of their pods, so the next run starts with the same free devices."""
    if karmada is None:
        custom.delete_collection_namespaced_custom_object("autoglm.io", "v1alpha1", namespace, "modeldeployments")
    else:
        for name in names:
            for obj in karmada.owned(namespace, name):
                karmada.delete(obj)
    deadline = time.monotonic() + 900
    left = -1
    while time.monotonic() < deadline:
        left = sum(len(core.list_namespaced_pod(namespace).items) for core in member_core.values())
        if left == 0:
            return
        time.sleep(2)
    print(f"  cleanup of {namespace}: {left} pods still on the members", flush=True)


def measure(
    mode: str,
    host: ClusterState,
    members: dict[str, ClusterState],
    count: int,
    rate: float,
    timeout: float,
    namespace: str,
    peer: PeerObjects,
) -> Run:
    api = host.api_client()
    client.CoreV1Api(api).create_namespace({"metadata": {"name": namespace}})
    operator = None
    karmada = None
    metrics_port = free_port()
    if mode == "peer":
        karmada = ClusterClient("karmada", api)
        rendered = {f"md-{i:04d}": peer.objects(namespace, f"md-{i:04d}") for i in range(count)}
    else:
        command = ["autoglm", "run", "--kubeconfig", str(host.kubeconfig), "-n", namespace,
                   "--metrics-port", str(metrics_port), "--liveness", "", "--resync", "30",
                   "--member-heartbeat", "2"]  # fmt: skip
        command += ["--propagation", "karmada"] if mode == "karmada" else ["--no-local"]
        operator = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    member_core = {name: client.CoreV1Api(state.api_client()) for name, state in members.items()}
    member_apps = {name: client.AppsV1Api(state.api_client()) for name, state in members.items()}
    created: dict[str, float] = {}
    done: dict[str, float] = {}
    applied: dict[str, float] = {}
    try:
        time.sleep(4)  # operator start-up and first heartbeat (the peer waits the same)
        custom = client.CustomObjectsApi(api)
        next_create = time.monotonic()
        index = 0
        deadline = None
        while True:
            now = time.monotonic()
            while index < count and now >= next_create:
                name = f"md-{index:04d}"
                created[name] = time.monotonic()
                if karmada is not None:
                    for obj in rendered[name]:
                        karmada.apply(obj)
                else:
                    custom.create_namespaced_custom_object(
                        "autoglm.io", "v1alpha1", namespace, "modeldeployments", body_of(name, list(members))
                    )
                index += 1
                next_create += 1 / rate
            if index == count and deadline is None:
                deadline = time.monotonic() + timeout
            per_member = []
            held = []
            for member, core in member_core.items():
                try:
                    pods = core.list_namespaced_pod(namespace).items
                    deployments = member_apps[member].list_namespaced_deployment(namespace).items
                except client.ApiException:
                    pods, deployments = [], []
                per_member.append({p.metadata.labels.get(LABEL) for p in pods if running_ready(p)})
                held.append({(d.metadata.labels or {}).get(LABEL) for d in deployments})
            seen = time.monotonic()
            for name in created:
                if name not in applied and all(name in names for names in held):
                    applied[name] = seen
                if name not in done and all(name in ready for ready in per_member):
                    done[name] = seen
            if len(done) == count or (deadline is not None and time.monotonic() > deadline):
                break
            time.sleep(0.25)
        rss = rss_mib(operator.pid) if operator is not None else 0.0
        if operator is not None:
            # The operator's own view of where a create's time went: reconciling, or waiting for a worker.
            for family, buckets in sorted(operator_histograms(metrics_port).items()):
                if family.startswith(("autoglm_reconcile_duration", "autoglm_workqueue_queue_duration")):
                    print(
                        f"  {mode} {count}: {family} {buckets[-1][1]:.0f} observed, "
                        f"p50 <= {bucket_quantile(buckets, 0.5)} s, p99 <= {bucket_quantile(buckets, 0.99)} s",
                        flush=True,
                    )
        if len(done) < count and operator is not None:
            for md in custom.list_namespaced_custom_object("autoglm.io", "v1alpha1", namespace, "modeldeployments")[
                "items"
            ]:
                if md["metadata"]["name"] not in done and not md["metadata"].get("deletionTimestamp"):
                    conds = {
                        c["type"]: (c["status"], c.get("message", "")[:160])
                        for c in (md.get("status") or {}).get("conditions", [])
                    }
                    print(f"  {mode} not done: {md['metadata']['name']} {conds}", flush=True)
                    break
        cleanup(custom, karmada, member_core, namespace, list(created))
    finally:
        if operator is not None:
            operator.terminate()
            try:
                operator.wait(30)
            except subprocess.TimeoutExpired:
                operator.kill()
                operator.wait()
    return Run(
        [done[n] - created[n] for n in created if n in done],
        count - len(done),
        rss,
        [applied[n] - created[n] for n in created if n in applied],
    )


def main() -> None:
    # A timeout's SIGTERM unwinds like Ctrl-C, so the sandbox is stopped on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    parser = argparse.ArgumentParser()
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 50, 200])
    parser.add_argument("--rate", type=float, default=5.0, help="Creates per second.")
    parser.add_argument("--nodes", type=int, default=40, help="Nodes per member (8 devices each).")
    parser.add_argument("--timeout", type=float, default=240.0, help="Seconds to wait after the last create.")
    parser.add_argument("--modes", nargs="+", default=["direct", "karmada", "peer"])
    parser.add_argument("--rounds", type=int, default=2, help="Runs of every count; the modes' order reversed each.")
    parser.add_argument("--out", type=Path, help="Also write the table here.")
    args = parser.parse_args()
    clusters: dict[str, list[dict[str, Any]]] = {
        name: member_nodes(file, template, args.nodes) for name, (file, template) in MEMBERS.items()
    }
    peer = PeerObjects({name: clusters[name] for name in MEMBERS})
    clusters["hub"] = []
    results: dict[tuple[int, str, int], Run] = {}
    with tempfile.TemporaryDirectory(prefix="propagation-") as tmp:
        state_dir = Path(tmp)
        try:
            states, _ = fleet.up(state_dir, clusters, karmada=True)
            members = {name: states[name] for name in MEMBERS}
            hub = ClusterClient("local", states["hub"].api_client())
            install_crds(hub.api)
            for name, state in members.items():
                kubeconfig = flatten_kubeconfig(yaml.safe_load(state.kubeconfig.read_text()), state.kubeconfig.parent)
                join(hub, name, kubeconfig)
            install_crds(states["karmada"].api_client())
            hosts = {"direct": states["hub"], "karmada": states["karmada"], "peer": states["karmada"]}
            for count in args.counts:
                for round_ in range(1, args.rounds + 1):
                    order = args.modes if round_ % 2 else list(reversed(args.modes))
                    for mode in order:
                        namespace = f"bench-{mode}-{count}-r{round_}"
                        results[round_, mode, count] = measure(
                            mode, hosts[mode], members, count, args.rate, args.timeout, namespace, peer
                        )
                        print(f"{mode} {count} round {round_}: done", flush=True)
        finally:
            fleet.down(state_dir)
    table = Table(
        title=f"propagation: create -> all 3 member pods Running and Ready, {args.rate:.0f} creates/s, "
        f"{args.nodes} nodes per member (2-core machine)"
    )
    for col in (
        "ModelDeployments",
        "round",
        "mode",
        "p50",
        "p99",
        "applied p50 | p99",
        "not done",
        "operator RSS",
        "karmada/peer p50 | p99",
    ):
        table.add_column(col)
    for count in args.counts:
        for round_ in range(1, args.rounds + 1):
            order = args.modes if round_ % 2 else list(reversed(args.modes))
            for mode in order:
                run = results[round_, mode, count]
                ratio = ""
                other = results.get((round_, "peer", count))
                if mode == "karmada" and run.latencies and other is not None and other.latencies:
                    ratio = (
                        f"{percentile(run.latencies, 0.5) / percentile(other.latencies, 0.5):.2f} | "
                        f"{percentile(run.latencies, 0.99) / percentile(other.latencies, 0.99):.2f}"
                    )
                table.add_row(
                    str(count),
                    str(round_),
                    mode,
                    f"{percentile(run.latencies, 0.5):.2f} s",
                    f"{percentile(run.latencies, 0.99):.2f} s",
                    f"{percentile(run.applied, 0.5):.2f} | {percentile(run.applied, 0.99):.2f} s",
                    str(run.missing),
                    f"{run.rss:.0f} MiB" if mode != "peer" else "-",
                    ratio,
                )
    console = Console(width=160, record=True)
    console.print(table)
    if args.out:
        args.out.write_text(console.export_text())


if __name__ == "__main__":
    main()
