"""The sandbox's fake nodes: register them from a nodes file, wait for them, and take one down and back.

KWOK keeps the nodes alive the way kubelets do: each node holds a Lease in kube-node-lease that KWOK renews
every quarter of its duration, and the node lifecycle controller takes those renewals as the heartbeat.
An outage is made by taking the Lease away from KWOK, so it stops renewing it and stops reporting the node,
and by marking the node's pods with an annotation KWOK is told to disregard, so nothing answers for them (as
with a dead kubelet): the lifecycle controller marks the node Unknown after its grace period and the pods
NotReady. KWOK v0.7.0 should leave the pods of a node whose Lease it does not hold alone by itself, but its
pod controller takes that check as a value captured at start-up, before or after the Lease controller sets
it depending on map order, so about every other KWOK process ignores it; the annotation does not depend on
that. Giving the Lease back and clearing the marks makes KWOK manage the node again, which turns it and its
pods Ready. A pod scheduled onto the silent node during the outage (only one that tolerates every taint can
be, since the node is tainted unreachable) is not marked and may be started by KWOK.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from autoglm.sandbox.build import SandboxError
from autoglm.sandbox.cluster import FAKE_NODE_ANNOTATION, OUTAGE_ANNOTATION, ClusterState, wait_until

NODE_LEASE_NAMESPACE = "kube-node-lease"
# Who holds a node's Lease during an outage. KWOK renews only Leases it holds or that have expired, so a
# foreign holder with a long duration silences the node until the holder is cleared.
OUTAGE_HOLDER = "autoglm.io/sandbox-node-outage"
OUTAGE_LEASE_SECONDS = 10**6


def fake_node(node: Mapping[str, Any]) -> dict[str, Any]:
    """A Node from a `kubectl get nodes -o yaml` list, made ready for KWOK to manage."""
    meta = node.get("metadata") or {}
    status = node.get("status") or {}
    allocatable = dict(status.get("allocatable") or {})
    allocatable.setdefault("pods", "110")
    allocatable.setdefault("cpu", "32")
    allocatable.setdefault("memory", "256Gi")
    capacity = {**allocatable, **dict(status.get("capacity") or {})}
    labels = dict(meta.get("labels") or {})
    labels.setdefault("kubernetes.io/hostname", meta["name"])
    labels["type"] = "kwok"
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": meta["name"],
            "labels": labels,
            "annotations": {**(meta.get("annotations") or {}), FAKE_NODE_ANNOTATION: "fake"},
        },
        "spec": {k: v for k, v in (node.get("spec") or {}).items() if k in ("taints", "unschedulable")},
        "status": {"allocatable": allocatable, "capacity": capacity},
    }


def register_nodes(state: ClusterState, nodes: Iterable[Mapping[str, Any]], workers: int = 8) -> int:
    """Create the fake Nodes; KWOK then keeps them Ready."""
    from kubernetes import client

    api = client.CoreV1Api(state.api_client())
    bodies: list[Any] = [fake_node(n) for n in nodes]

    def create(body: Any) -> None:
        api.create_node(body)

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(create, bodies))
    state.nodes = len(bodies)
    state.save()
    return len(bodies)


def node_ready(node: Any) -> bool:
    """The node's Ready condition is True (a kubernetes client V1Node)."""
    conditions = (node.status.conditions or []) if node.status else []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


def wait_nodes_ready(state: ClusterState, count: int, timeout: float = 120.0) -> float:
    """Seconds until `count` Nodes report Ready."""
    from kubernetes import client

    api = client.CoreV1Api(state.api_client())
    start = time.monotonic()

    def ready() -> bool:
        return sum(node_ready(n) for n in api.list_node(label_selector="type=kwok").items) >= count

    wait_until(f"{state.name}: {count} nodes Ready", ready, timeout, Path(state.directory) / "logs" / "kwok.log")
    return time.monotonic() - start


def _pod_lists(api: Any) -> float:
    """How many times the API server has answered a list of pods (its own request counter)."""
    response = api.call_api("GET", f"{api.configuration.host}/metrics")
    response.read()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in response.data.decode().splitlines()
        if line.startswith("apiserver_request_total{") and 'resource="pods"' in line and 'verb="LIST"' in line
    )


def wait_pods_synced(state: ClusterState, timeout: float = 900.0, quiet: float = 10.0) -> float:
    """Seconds until KWOK has looked for pods on every node it took on. It lists each new node's pods once,
    one node at a time: at 5,000 nodes that is minutes of the API server's time after every node is Ready,
    which a measurement must not share. Done when no pods were listed for `quiet` seconds."""
    api = state.api_client()
    start = time.monotonic()
    last, since = _pod_lists(api), time.monotonic()
    while time.monotonic() - since < quiet:
        if time.monotonic() - start > timeout:
            raise SandboxError(f"{state.name}: KWOK still listing pods per node after {timeout:.0f} s")
        time.sleep(2.0)
        now = _pod_lists(api)
        if now != last:
            last, since = now, time.monotonic()
    return time.monotonic() - start


def _mark_pods(core: Any, node: str, down: bool) -> None:
    mark = {"metadata": {"annotations": {OUTAGE_ANNOTATION: "true" if down else None}}}
    pods: list[Any] = core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={node}").items
    for pod in pods:
        core.patch_namespaced_pod(pod.metadata.name, pod.metadata.namespace, mark)


def stop_heartbeat(state: ClusterState, node: str) -> None:
    """Silence one node as if its kubelet died: its Lease is no longer renewed and nothing reports its pods.

    The renew time is kept, so the node lifecycle controller counts its grace period from KWOK's last renewal.
    """
    from kubernetes import client

    api_client = state.api_client()
    silence = {"spec": {"holderIdentity": OUTAGE_HOLDER, "leaseDurationSeconds": OUTAGE_LEASE_SECONDS}}
    client.CoordinationV1Api(api_client).patch_namespaced_lease(node, NODE_LEASE_NAMESPACE, silence)
    _mark_pods(client.CoreV1Api(api_client), node, down=True)


def resume_heartbeat(state: ClusterState, node: str) -> None:
    """Bring a silenced node back as a returning kubelet does: KWOK takes its Lease again within a renew
    interval (waited for here), reports the node Ready, and then its pods Ready again."""
    from kubernetes import client

    api_client = state.api_client()
    leases = client.CoordinationV1Api(api_client)
    leases.patch_namespaced_lease(
        node, NODE_LEASE_NAMESPACE, {"spec": {"holderIdentity": None, "leaseDurationSeconds": None}}
    )

    def renewed() -> bool:
        lease: Any = leases.read_namespaced_lease(node, NODE_LEASE_NAMESPACE)
        return lease.spec.holder_identity not in (None, OUTAGE_HOLDER)

    log = Path(state.directory) / "logs" / "kwok.log"
    wait_until(f"{state.name}: KWOK renews the Lease of node {node}", renewed, state.node_lease_seconds, log)
    _mark_pods(client.CoreV1Api(api_client), node, down=False)


@contextmanager
def node_outage(state: ClusterState, node: str) -> Iterator[None]:
    """The node is silent inside the block and comes back after it, whatever happens inside."""
    stop_heartbeat(state, node)
    try:
        yield
    finally:
        resume_heartbeat(state, node)
