"""Direct vs Karmada propagation, side by side on one sandbox with three member clusters.

    python benchmarks/propagation.py [--counts 1 50 200] [--rate 5] [--nodes 30]

One sandbox: members gpu (8x H100 nodes), ascend (8x 910B3 nodes) and rocm (8x MI300X nodes), a host cluster the
members are joined to (direct mode), and a Karmada control plane joined to the same members (Karmada mode).
For each mode and count, the operator runs as its own process (`autoglm run`, `--propagation direct` on the
host or `karmada` on the Karmada API server), ModelDeployments are created at a steady rate, each divided
1:1:1 over the three members, and the time from a create call until all three of its pods run Ready in the
members is measured; p50/p99 are printed with the operator's resident memory. Goal: direct <= Karmada.
"""

from __future__ import annotations

import argparse
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client
from rich.console import Console
from rich.table import Table

from autoglm.sandbox import fleet
from autoglm.sandbox.cluster import ClusterState
from autoglm.shell.clusters import ClusterClient, install_crds
from autoglm.shell.members import flatten_kubeconfig, join

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reconcile_scale import percentile, rss_mib

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


def running_ready(pod: Any) -> bool:
    return pod.status.phase == "Running" and any(
        c.type == "Ready" and c.status == "True" for c in pod.status.conditions or []
    )


def cleanup(custom: client.CustomObjectsApi, member_core: dict[str, client.CoreV1Api], namespace: str) -> None:
    """Delete the run's ModelDeployments while the operator still runs, and wait until the members hold none
    of their pods, so the next run starts with the same free devices."""
    custom.delete_collection_namespaced_custom_object("autoglm.io", "v1alpha1", namespace, "modeldeployments")
    deadline = time.monotonic() + 900
    left = -1
    while time.monotonic() < deadline:
        left = sum(len(core.list_namespaced_pod(namespace).items) for core in member_core.values())
        if left == 0:
            return
        time.sleep(2)
    print(f"  cleanup of {namespace}: {left} pods still on the members", flush=True)


def measure(
    mode: str, host: ClusterState, members: dict[str, ClusterState], count: int, rate: float, timeout: float
) -> Run:
    api = host.api_client()
    namespace = f"bench-{mode}-{count}"
    client.CoreV1Api(api).create_namespace({"metadata": {"name": namespace}})
    command = ["autoglm", "run", "--kubeconfig", str(host.kubeconfig), "-n", namespace, "--metrics-port", "0",
               "--liveness", "", "--resync", "30", "--member-heartbeat", "2"]  # fmt: skip
    command += ["--propagation", "karmada"] if mode == "karmada" else ["--no-local"]
    operator = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    member_core = {name: client.CoreV1Api(state.api_client()) for name, state in members.items()}
    created: dict[str, float] = {}
    done: dict[str, float] = {}
    try:
        time.sleep(4)  # operator start-up and first heartbeat
        custom = client.CustomObjectsApi(api)
        placement = {
            "clusters": list(members),
            "weights": {"static": [{"cluster": name, "weight": 1} for name in members]},
        }
        next_create = time.monotonic()
        index = 0
        deadline = None
        while True:
            now = time.monotonic()
            while index < count and now >= next_create:
                name = f"md-{index:04d}"
                body = {
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
                created[name] = time.monotonic()
                custom.create_namespaced_custom_object("autoglm.io", "v1alpha1", namespace, "modeldeployments", body)
                index += 1
                next_create += 1 / rate
            if index == count and deadline is None:
                deadline = time.monotonic() + timeout
            per_member = []
            for core in member_core.values():
                try:
                    pods = core.list_namespaced_pod(namespace).items
                except client.ApiException:
                    pods = []
                per_member.append({p.metadata.labels.get(LABEL) for p in pods if running_ready(p)})
            seen = time.monotonic()
            for name in created:
                if name not in done and all(name in ready for ready in per_member):
                    done[name] = seen
            if len(done) == count or (deadline is not None and time.monotonic() > deadline):
                break
            time.sleep(0.25)
        rss = rss_mib(operator.pid)
        if len(done) < count:
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
        cleanup(custom, member_core, namespace)
    finally:
        operator.terminate()
        try:
            operator.wait(30)
        except subprocess.TimeoutExpired:
            operator.kill()
            operator.wait()
    return Run([done[n] - created[n] for n in created if n in done], count - len(done), rss)


def main() -> None:
    # A timeout's SIGTERM unwinds like Ctrl-C, so the sandbox is stopped on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    parser = argparse.ArgumentParser()
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 50, 200])
    parser.add_argument("--rate", type=float, default=5.0, help="Creates per second.")
    parser.add_argument("--nodes", type=int, default=40, help="Nodes per member (8 devices each).")
    parser.add_argument("--timeout", type=float, default=240.0, help="Seconds to wait after the last create.")
    parser.add_argument("--modes", nargs="+", default=["direct", "karmada"])
    args = parser.parse_args()
    clusters: dict[str, list[dict[str, Any]]] = {
        name: member_nodes(file, template, args.nodes) for name, (file, template) in MEMBERS.items()
    }
    clusters["hub"] = []
    results: dict[tuple[str, int], Run] = {}
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
            hosts = {"direct": states["hub"], "karmada": states["karmada"]}
            for count in args.counts:
                for mode in args.modes:
                    results[mode, count] = measure(mode, hosts[mode], members, count, args.rate, args.timeout)
                    print(f"{mode} {count}: done", flush=True)
        finally:
            fleet.down(state_dir)
    table = Table(
        title=f"propagation: create -> all 3 member pods Running and Ready, {args.rate:.0f} creates/s, "
        f"{args.nodes} nodes per member (2-core machine)"
    )
    for col in ("ModelDeployments", "mode", "p50", "p99", "not done", "operator RSS", "p50 direct/karmada"):
        table.add_column(col)
    for count in args.counts:
        for mode in args.modes:
            run = results[mode, count]
            ratio = ""
            if (
                mode == "karmada"
                and run.latencies
                and ("direct", count) in results
                and results["direct", count].latencies
            ):
                ratio = (
                    f"{statistics.median(results['direct', count].latencies) / statistics.median(run.latencies):.2f}"
                )
            table.add_row(
                str(count),
                mode,
                f"{percentile(run.latencies, 0.5):.2f} s",
                f"{percentile(run.latencies, 0.99):.2f} s",
                str(run.missing),
                f"{run.rss:.0f} MiB",
                ratio,
            )
    Console(width=160).print(table)


if __name__ == "__main__":
    main()
