"""`autoglm demo`: one fleet of three vendors' clusters, ModelDeployments applied once, placed and failed over.

On the sandbox (built on first use when Go is present) it starts member clusters gpu (NVIDIA), ascend (Huawei
Ascend) and edge (Sophgo, Kunlunxin, CPU) with fake accelerator nodes, and a control plane to apply to: a
Karmada control plane joined to the three (Karmada mode, when its binaries are built), or a small host
cluster they are joined to with `autoglm join` (direct mode). The operator places each ModelDeployment across
the members with each member's own plan, then one member is stopped and its replicas fail over, and it is
started again and gets them back. With --kubeconfig it runs in one real cluster, in its own namespace.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client
from kubernetes.client import ApiException
from rich.console import Console
from rich.table import Table

from autoglm import API_GROUP, API_VERSION
from autoglm.face.demo_fleet import DEPLOYMENTS, FAILOVER, MEMBERS, example_nodes, examples_root
from autoglm.face.demo_forecast import show_forecasting
from autoglm.face.demo_gateway import expose, front_door
from autoglm.sandbox import fleet as sandbox_fleet
from autoglm.sandbox.cluster import ClusterState, free_port
from autoglm.shell.clusters import ClusterClient, install_crds
from autoglm.shell.controllers import OperatorContext, operator_thread
from autoglm.shell.members import flatten_kubeconfig, join

DEMO_NAMESPACE = "autoglm-demo"
HOST = "hub"
OUTAGE = "ascend"
# After the failed-over deployment has settled, how long the rest of the fleet may take before the last table.
SETTLE_SECONDS = 10.0
# Served through the gateway: its members' Services get load-balancer addresses (see demo_gateway).
FRONT_DOOR = "glm-4-9b-chat"
QUIET_LOGGERS = ("kopf", "autoglm", "urllib3", "kubernetes")


def quiet_libraries() -> None:
    """The demo's output is for a person: library log lines (kopf's start-up warnings, retried 429s) only
    with --verbose."""
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.CRITICAL)


def _raw(response: Any) -> Any:
    return json.loads(response.data)


def apply_deployments(api: client.ApiClient, namespace: str, items: list[dict[str, Any]]) -> None:
    core = client.CoreV1Api(api)
    try:
        core.create_namespace({"metadata": {"name": namespace}})  # type: ignore[arg-type]
    except ApiException as exc:
        if exc.status != 409:
            raise
    custom = client.CustomObjectsApi(api)
    for item in items:
        body = {
            "apiVersion": f"{API_GROUP}/{API_VERSION}",
            "kind": "ModelDeployment",
            "metadata": {"name": item["name"]},
            "spec": item["spec"],
        }
        try:
            custom.create_namespaced_custom_object(API_GROUP, API_VERSION, namespace, "modeldeployments", body)
        except ApiException as exc:
            if exc.status != 409:
                raise


def deployments(api: client.ApiClient, namespace: str) -> list[dict[str, Any]]:
    raw: Any = client.CustomObjectsApi(api).list_namespaced_custom_object(
        API_GROUP, API_VERSION, namespace, "modeldeployments"
    )
    return list(raw["items"])


def _conditions(md: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in (md.get("status") or {}).get("conditions", [])}


def _settled(md: dict[str, Any]) -> bool:
    """Ready with every member running exactly its share (none still starting, none still draining after a
    rebalance), or a final answer (not placeable, invalid, conversion failed)."""
    conds = _conditions(md)
    if conds.get("Planned", {}).get("status") == "False":
        return True
    clusters = (md.get("status") or {}).get("clusters") or []
    return conds.get("Ready", {}).get("status") == "True" and all(
        c.get("ready", 0) == c.get("desired", 0) for c in clusters
    )


def settled(items: list[dict[str, Any]]) -> bool:
    """Every deployment settled (see _settled): what a table printed now shows stays so."""
    return bool(items) and all(_settled(md) for md in items)


def fleet_table(title: str, items: list[dict[str, Any]]) -> Table:
    """kubectl get modeldeployments, with where each one runs and how."""
    table = Table(title=title, title_justify="left")
    table.add_column("NAME", no_wrap=True)
    table.add_column("MODEL", no_wrap=True)
    table.add_column("READY", no_wrap=True)
    table.add_column("MEMBER: ready/desired runtime precision TP (PP)")
    table.add_column("WHY")
    for md in sorted(items, key=lambda m: m["metadata"]["name"]):
        status = md.get("status") or {}
        plans: dict[str, list[str]] = {}
        for entry in status.get("plan") or []:
            pp = f" PP={entry['pipelineParallel']}" if entry.get("pipelineParallel", 1) > 1 else ""
            plans.setdefault(entry["cluster"], []).append(
                f"{entry['backend']} {entry['precision']} TP={entry['tensorParallel']}{pp} on {entry['accelerator']}"
            )
        members = [
            f"{c['name']}: {c.get('ready', 0)}/{c.get('desired', 0)} " + " + ".join(plans.get(c["name"], ["-"]))
            for c in status.get("clusters") or []
        ]
        conds = _conditions(md)
        planned, degraded = conds.get("Planned", {}), conds.get("Degraded", {})
        why = planned.get("reason", "-")
        if planned.get("status") == "False":
            why += ": " + (planned.get("message") or "")
        elif degraded.get("status") == "True":
            why += ": " + (degraded.get("message") or "")
        table.add_row(
            md["metadata"]["name"],
            md["spec"]["model"]["name"],
            f"{status.get('readyReplicas', 0)}/{status.get('replicas', 0)}" + ("" if _settled(md) else " rebalancing"),
            "\n".join(members) or "-",
            why,
        )
    return table


def pod_table(member: str, api: client.ApiClient, namespace: str) -> Table:
    core = client.CoreV1Api(api)
    nodes = {n["metadata"]["name"]: n for n in _raw(core.list_node(_preload_content=False))["items"]}
    table = Table(title=f"member {member}: pods", title_justify="left")
    for col in ("POD", "NODE", "ACCELERATOR", "REQUEST", "PHASE"):
        table.add_column(col, no_wrap=True)
    keys = ("nvidia.com/gpu.product", "node.kubernetes.io/npu.chip.name", "autoglm.io/accelerator.product")
    try:
        pods = _raw(core.list_namespaced_pod(namespace, _preload_content=False))["items"]
    except ApiException:
        pods = []
    for pod in sorted(pods, key=lambda p: p["metadata"]["name"]):
        node_name = pod["spec"].get("nodeName") or ""
        labels = nodes[node_name]["metadata"].get("labels", {}) if node_name in nodes else {}
        product = next((labels[k] for k in keys if k in labels), "cpu" if node_name else "-")
        limits = pod["spec"]["containers"][0].get("resources", {}).get("limits", {})
        request = ", ".join(f"{k}={v}" for k, v in limits.items() if "/" in k) or "cpu/memory"
        table.add_row(pod["metadata"]["name"], node_name or "(pending)", product, request, pod["status"].get("phase"))
    return table


def wait(check: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(1)
    return False


def _clusters(md: dict[str, Any]) -> dict[str, int]:
    """Member -> desired replicas."""
    return {c["name"]: c.get("desired", 0) for c in (md.get("status") or {}).get("clusters") or []}


@dataclass
class Fleet:
    """A running demo fleet: where ModelDeployments are applied, the operator's context, the members."""

    host: client.ApiClient
    context: OperatorContext
    members: dict[str, ClusterState]
    mode: str
    kubeconfig: Path  # where ModelDeployments live (the gateway routes from their status)


def start_fleet(state_dir: Path, karmada: bool, console: Console, cold_start: float = 2.0) -> tuple[Fleet, Any]:
    """Sandbox members, and Karmada (joined) or a host cluster (members joined with `autoglm join`)."""
    root = examples_root()
    nodes: dict[str, Any] = {name: example_nodes(files, root) for name, (files, _) in MEMBERS.items()}
    if not karmada:
        nodes[HOST] = []
    states, _ = sandbox_fleet.up(
        state_dir, nodes, cold_start_seconds=cold_start, karmada=karmada, log=lambda line: console.print(line)
    )
    members = {name: states[name] for name in MEMBERS}
    if karmada:
        host_state = states["karmada"]
        host = host_state.api_client()
        custom = client.CustomObjectsApi(host)
        for name, (_, labels) in MEMBERS.items():
            custom.patch_cluster_custom_object(
                "cluster.karmada.io", "v1alpha1", "clusters", name, {"metadata": {"labels": labels}}
            )
        install_crds(host)
        context = OperatorContext.from_kubeconfig(
            str(host_state.kubeconfig), resync_seconds=2, heartbeat_seconds=2, karmada=True
        )
    else:
        host_state = states[HOST]
        host = host_state.api_client()
        install_crds(host)
        hub = ClusterClient("local", host)
        for name, (_, labels) in MEMBERS.items():
            path = members[name].kubeconfig
            join(hub, name, flatten_kubeconfig(yaml.safe_load(path.read_text()), path.parent), labels)
        context = OperatorContext.from_kubeconfig(
            str(host_state.kubeconfig), resync_seconds=2, include_local=False, heartbeat_seconds=2, failure_threshold=2
        )
    mode = "karmada" if karmada else "direct"
    return Fleet(host, context, members, mode, host_state.kubeconfig), host_state


def tell_the_story(demo: Fleet, state_dir: Path, console: Console, timeout: float) -> bool:
    """Apply once, show placements and pods, stop a member and show the failover, start it and show the return."""
    ns = DEMO_NAMESPACE
    port = free_port()  # the front door's deployment's Services (a loopback port on this machine)
    items = [{**d, "spec": expose(d["spec"], port)} if d["name"] == FRONT_DOOR else d for d in DEPLOYMENTS]
    apply_deployments(demo.host, ns, items)
    console.print(
        f"applied {len(DEPLOYMENTS)} ModelDeployments once, to the {demo.mode} host; waiting for the operator ..."
    )
    done = wait(lambda: settled(deployments(demo.host, ns)), timeout)
    console.print(
        fleet_table(f"placed across members gpu, ascend, edge ({demo.mode} mode)", deployments(demo.host, ns))
    )
    for name, state in demo.members.items():
        console.print(pod_table(name, state.api_client(), ns))
    answered = front_door(demo.host, demo.kubeconfig, demo.members, ns, FRONT_DOOR, port, console, timeout)
    console.print(f"stopping member {OUTAGE} (its API server, controllers and nodes) ...")
    sandbox_fleet.stop(state_dir, OUTAGE)
    started = time.monotonic()

    def moved() -> bool:
        glm = next(md for md in deployments(demo.host, ns) if md["metadata"]["name"] == "glm-4-9b-chat")
        return _clusters(glm).get(OUTAGE, 0) == 0 and (glm.get("status") or {}).get("readyReplicas", 0) >= 3

    failed_over = wait(moved, timeout)
    console.print(
        fleet_table(
            f"{OUTAGE} stopped: after {time.monotonic() - started:.0f} s its replicas moved where there is room "
            f"(toleration {FAILOVER['tolerationSeconds']} s)",
            deployments(demo.host, ns),
        )
    )
    console.print(f"starting member {OUTAGE} again ...")
    sandbox_fleet.start(state_dir, OUTAGE)
    started = time.monotonic()

    def back() -> bool:
        glm = next(md for md in deployments(demo.host, ns) if md["metadata"]["name"] == "glm-4-9b-chat")
        ready: dict[str, int] = {c["name"]: c.get("ready", 0) for c in (glm.get("status") or {}).get("clusters") or []}
        return ready.get(OUTAGE, 0) > 0 and sum(ready.values()) >= 3 and settled([glm])

    returned = wait(back, timeout)
    # The rest of the fleet a little longer (a member's own controllers catch up after its return); a row still
    # moving is printed as rebalancing rather than as a count that looks final.
    wait(lambda: settled(deployments(demo.host, ns)), min(SETTLE_SECONDS, timeout))
    console.print(
        fleet_table(
            f"{OUTAGE} back: replicas returned after {time.monotonic() - started:.0f} s "
            f"(rebalance window {FAILOVER['rebalanceSeconds']} s)",
            deployments(demo.host, ns),
        )
    )
    show_forecasting(console)
    return done and answered and failed_over and returned


def run_demo_fleet(state_dir: Path, karmada: bool, console: Console, timeout: float, keep: bool) -> bool:
    demo, host_state = start_fleet(state_dir, karmada, console)
    try:
        with operator_thread(demo.context):
            ok = tell_the_story(demo, state_dir, console, timeout)
        console.print("inspect with:")
        console.print(f"  KUBECONFIG={host_state.kubeconfig} kubectl get md -n {DEMO_NAMESPACE}")
        for name, state in demo.members.items():
            console.print(f"  KUBECONFIG={state.kubeconfig} kubectl get deploy,pods -n {DEMO_NAMESPACE}   # {name}")
    finally:
        if not keep:
            sandbox_fleet.down(state_dir)
            console.print(f"stopped the sandbox clusters ({state_dir}); --keep leaves them running")
    return ok


def run_demo_in_cluster(kubeconfig: str, console: Console, timeout: float, keep: bool) -> bool:
    """One real cluster (member local), in its own namespace: placement has one member, plans are real."""
    from kubernetes import config

    api = config.new_client_from_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
    install_crds(api)
    local = [{**d, "spec": {k: v for k, v in d["spec"].items() if k != "placement"}} for d in DEPLOYMENTS]
    context = OperatorContext.from_kubeconfig(kubeconfig, resync_seconds=2, heartbeat_seconds=2)
    console.print(f"running the demo in namespace {DEMO_NAMESPACE} of {kubeconfig}")
    try:
        with operator_thread(context, DEMO_NAMESPACE):
            apply_deployments(api, DEMO_NAMESPACE, local)
            ok = wait(lambda: settled(deployments(api, DEMO_NAMESPACE)), timeout)
            console.print(fleet_table("placed on the cluster (member local)", deployments(api, DEMO_NAMESPACE)))
            console.print(pod_table("local", api, DEMO_NAMESPACE))
    finally:
        if not keep:
            client.CoreV1Api(api).delete_namespace(DEMO_NAMESPACE)
            console.print(f"deleted namespace {DEMO_NAMESPACE}")
    return ok
