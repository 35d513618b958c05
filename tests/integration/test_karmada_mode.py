"""Karmada mode: the operator on a real Karmada control plane (v1.18.2) with an NVIDIA and an Ascend member.

ModelDeployments live on the Karmada API server; the operator reads each member's Nodes through Karmada's
cluster proxy, writes one template with a Divided PropagationPolicy and an OverridePolicy for the member whose
runtime differs, and reads readiness back from the ResourceBinding. Failover is the operator's: when a member
stays NotReady past the toleration it rewrites the policy, and Karmada moves the replicas.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from autoglm.sandbox import fleet
from autoglm.sandbox.karmada import cluster_ready
from autoglm.shell.clusters import install_crds
from autoglm.shell.controllers import OperatorContext, operator_thread
from tests.integration.conftest import Cluster
from tests.integration.test_members import INFERENCE_POOL_CRD
from tests.integration.test_sandbox import eventually

GROUP, VERSION = "autoglm.io", "v1alpha1"
POOL_GROUP = "inference.networking.k8s.io"


@pytest.fixture(scope="module")
def karmada_operator(karmada_fleet: dict[str, Cluster]) -> Iterator[OperatorContext]:
    karmada = karmada_fleet["karmada"]
    install_crds(karmada.api)
    # The InferencePool's CRD on the Karmada API server, which keeps the template, and on the gpu member only.
    # Here, before the module's first test: Karmada's detector looks for new kinds every 30 s.
    for cluster in (karmada, karmada_fleet["gpu"]):
        client.ApiextensionsV1Api(cluster.api).create_custom_resource_definition(INFERENCE_POOL_CRD)
    context = OperatorContext.from_kubeconfig(
        str(karmada.state.kubeconfig), resync_seconds=2, heartbeat_seconds=1, karmada=True
    )
    with operator_thread(context):
        yield context


@pytest.fixture
def karmada_namespace(karmada_fleet: dict[str, Cluster]) -> Iterator[str]:
    name = f"k-{int(time.time() * 1000) % 10**8}"
    client.CoreV1Api(karmada_fleet["karmada"].api).create_namespace({"metadata": {"name": name}})
    yield name
    client.CoreV1Api(karmada_fleet["karmada"].api).delete_namespace(name)


def _create(karmada: Cluster, namespace: str, name: str, **spec: Any) -> None:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {"model": {"name": "glm-4-9b-chat"}, "modelCache": {"enabled": False}, **spec},
    }
    custom = client.CustomObjectsApi(karmada.api)
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "modeldeployments", body)


def _status(karmada: Cluster, namespace: str, name: str) -> dict[str, Any]:
    md = client.CustomObjectsApi(karmada.api).get_namespaced_custom_object(
        GROUP, VERSION, namespace, "modeldeployments", name
    )
    return dict(md.get("status") or {})


def _clusters(karmada: Cluster, namespace: str, name: str) -> dict[str, tuple[int, int]]:
    return {c["name"]: (c["desired"], c["ready"]) for c in _status(karmada, namespace, name).get("clusters") or []}


def _running(member: Cluster, namespace: str) -> list[Any]:
    pods = client.CoreV1Api(member.api).list_namespaced_pod(namespace).items
    return [
        p
        for p in pods
        if p.status.phase == "Running"
        and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
    ]


def _weights(karmada_fleet: dict[str, Cluster], gpu: int, ascend: int) -> dict[str, Any]:
    return {
        "clusters": ["gpu", "ascend"],
        "weights": {"static": [{"cluster": "gpu", "weight": gpu}, {"cluster": "ascend", "weight": ascend}]},
        "failover": {"tolerationSeconds": 5, "rebalanceSeconds": 5},
    }


@pytest.mark.parametrize(("gpu", "ascend"), [(3, 1), (1, 1)])
def test_divided_split_runs_each_members_own_runtime(
    karmada_fleet: dict[str, Cluster], karmada_operator: OperatorContext, karmada_namespace: str, gpu: int, ascend: int
) -> None:
    karmada, ns = karmada_fleet["karmada"], karmada_namespace
    total = gpu + ascend
    _create(karmada, ns, "split", replicas={"min": total, "max": total}, placement=_weights(karmada_fleet, gpu, ascend))
    eventually(lambda: _clusters(karmada, ns, "split") == {"gpu": (gpu, gpu), "ascend": (ascend, ascend)}, timeout=90)
    images = {
        name: {p.spec.containers[0].image for p in _running(karmada_fleet[name], ns)} for name in ("gpu", "ascend")
    }
    assert len(_running(karmada_fleet["gpu"], ns)) == gpu and len(_running(karmada_fleet["ascend"], ns)) == ascend
    assert all(i.startswith("vllm/vllm-openai") for i in images["gpu"])
    assert all("vllm-ascend" in i for i in images["ascend"])
    ascend_pod = _running(karmada_fleet["ascend"], ns)[0]
    assert "huawei.com/Ascend910" in ascend_pod.spec.containers[0].resources.limits
    status = _status(karmada, ns, "split")
    assert {c["type"]: c["status"] for c in status["conditions"]}["Ready"] == "True"
    assert {e["cluster"]: e["backend"] for e in status["plan"]} == {"gpu": "vllm-cuda", "ascend": "vllm-ascend"}
    custom = client.CustomObjectsApi(karmada.api)
    policy = custom.get_namespaced_custom_object("policy.karmada.io", "v1alpha1", ns, "propagationpolicies", "split")
    weights = policy["spec"]["placement"]["replicaScheduling"]["weightPreference"]["staticWeightList"]
    assert {w["targetCluster"]["clusterNames"][0]: w["weight"] for w in weights} == {"gpu": gpu, "ascend": ascend}
    override = custom.get_namespaced_custom_object("policy.karmada.io", "v1alpha1", ns, "overridepolicies", "split")
    # The template carries the pod spec of the member serving the most replicas; the other one overrides it.
    (rule,) = override["spec"]["overrideRules"]
    assert rule["targetCluster"]["clusterNames"] == (
        ["ascend"] if gpu > ascend else rule["targetCluster"]["clusterNames"]
    )


def test_a_stopped_member_fails_over_through_the_policy(
    karmada_fleet: dict[str, Cluster], karmada_operator: OperatorContext, karmada_namespace: str
) -> None:
    karmada, ns = karmada_fleet["karmada"], karmada_namespace
    _create(karmada, ns, "fo", replicas={"min": 2, "max": 2}, placement=_weights(karmada_fleet, 1, 1))
    eventually(lambda: _clusters(karmada, ns, "fo") == {"gpu": (1, 1), "ascend": (1, 1)}, timeout=90)
    state_dir = Path(karmada.state.directory).parent
    fleet.stop(state_dir, "ascend")
    try:
        eventually(lambda: not cluster_ready(karmada.state, "ascend"), timeout=90)
        eventually(lambda: _clusters(karmada, ns, "fo") == {"gpu": (2, 2)}, timeout=90)
        assert len(_running(karmada_fleet["gpu"], ns)) == 2
    finally:
        fleet.start(state_dir, "ascend")
    eventually(lambda: cluster_ready(karmada.state, "ascend"), timeout=90)
    eventually(lambda: _clusters(karmada, ns, "fo") == {"gpu": (1, 1), "ascend": (1, 1)}, timeout=120)


def test_deleting_the_deployment_removes_it_from_every_member(
    karmada_fleet: dict[str, Cluster], karmada_operator: OperatorContext, karmada_namespace: str
) -> None:
    karmada, ns = karmada_fleet["karmada"], karmada_namespace
    _create(karmada, ns, "gone", replicas={"min": 2, "max": 2}, placement=_weights(karmada_fleet, 1, 1))
    eventually(lambda: _clusters(karmada, ns, "gone") == {"gpu": (1, 1), "ascend": (1, 1)}, timeout=90)
    client.CustomObjectsApi(karmada.api).delete_namespaced_custom_object(GROUP, VERSION, ns, "modeldeployments", "gone")
    for name in ("gpu", "ascend"):
        apps = client.AppsV1Api(karmada_fleet[name].api)
        eventually(lambda a=apps: not a.list_namespaced_deployment(ns).items, timeout=60)  # type: ignore[misc]


def test_each_members_hpa_holds_its_share_and_the_forecast_floor_reaches_them_in_proportion(
    karmada_fleet: dict[str, Cluster], karmada_operator: OperatorContext, karmada_namespace: str
) -> None:
    """The HPA goes to the members with the divided template, bounded by each member's share; the forecast's
    floor (held as the status has it: no Prometheus here) is divided as the minimum is, and each member's HPA
    raises its own Deployment, which Karmada keeps (the template carries retain-replicas)."""
    karmada, ns = karmada_fleet["karmada"], karmada_namespace
    autoscaling = {
        "metric": "vllm:num_requests_running",
        "targetPerReplica": 10,
        "forecast": {"enabled": True, "capacityPerReplica": 10},
    }
    placement = _weights(karmada_fleet, 1, 1)
    _create(karmada, ns, "scaled", replicas={"min": 2, "max": 8}, placement=placement, autoscaling=autoscaling)
    eventually(lambda: _clusters(karmada, ns, "scaled") == {"gpu": (1, 1), "ascend": (1, 1)}, timeout=90)

    def bounds(member: str) -> tuple[int, int] | None:
        hpas = client.AutoscalingV2Api(karmada_fleet[member].api).list_namespaced_horizontal_pod_autoscaler(ns).items
        return (hpas[0].spec.min_replicas, hpas[0].spec.max_replicas) if hpas else None

    eventually(lambda: bounds("gpu") == (1, 4) and bounds("ascend") == (1, 4), timeout=60)
    template = client.AppsV1Api(karmada.api).list_namespaced_deployment(ns).items[0]
    assert template.metadata.labels["resourcetemplate.karmada.io/retain-replicas"] == "true"
    custom = client.CustomObjectsApi(karmada.api)
    custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, ns, "modeldeployments", "scaled", {"status": {"forecast": {"floor": 6}}}
    )
    eventually(lambda: bounds("gpu") == (3, 4) and bounds("ascend") == (3, 4), timeout=60)
    eventually(lambda: _clusters(karmada, ns, "scaled") == {"gpu": (3, 3), "ascend": (3, 3)}, timeout=90)
    assert len(_running(karmada_fleet["gpu"], ns)) == 3 and len(_running(karmada_fleet["ascend"], ns)) == 3
    custom.delete_namespaced_custom_object(GROUP, VERSION, ns, "modeldeployments", "scaled")


def test_the_shared_cache_claim_grows_on_each_member_that_allows_it_and_a_member_that_refuses_is_held(
    karmada_fleet: dict[str, Cluster], karmada_operator: OperatorContext, karmada_namespace: str
) -> None:
    """Karmada mode's model cache: the first deployment sizes the namespace's claim on every member (each member's
    default StorageClass, as the demo's), a second that needs more raises the shared override, gpu (its default
    class expandable) grows its copy and serves it, ascend (its default class made fixed here) refuses, and the
    deployment is held there with Degraded naming the member, both sizes and the member's reason, while the first
    keeps serving on both."""
    from autoglm.core.render import CACHE_CLAIM
    from autoglm.sandbox.cluster import STORAGE_CLASS

    karmada, ns = karmada_fleet["karmada"], karmada_namespace
    # No rebalance window: ascend came back from the failover test above moments ago, and a member is otherwise
    # given the default 120 s after its return before new replicas go to it.
    placement = {"clusters": ["gpu", "ascend"], "replicaScheduling": "Duplicated", "failover": {"rebalanceSeconds": 0}}
    cores = {name: client.CoreV1Api(karmada_fleet[name].api) for name in ("gpu", "ascend")}
    ascend_classes = client.StorageV1Api(karmada_fleet["ascend"].api)

    def requested(member: str) -> str | None:
        try:
            claim = cores[member].read_namespaced_persistent_volume_claim(CACHE_CLAIM, ns)
        except client.ApiException:
            return None
        return str(claim.spec.resources.requests["storage"]) if claim.status.phase == "Bound" else None

    ascend_classes.patch_storage_class(STORAGE_CLASS, {"allowVolumeExpansion": False})
    try:
        cache = {"enabled": True}
        _create(karmada, ns, "small", replicas={"min": 1, "max": 1}, placement=placement, modelCache=cache)
        eventually(lambda: _clusters(karmada, ns, "small") == {"gpu": (1, 1), "ascend": (1, 1)}, timeout=90)
        first = eventually(lambda: requested("gpu") and requested("ascend"), timeout=60)
        assert first != "200Gi"
        large = {"enabled": True, "size": "200Gi"}
        _create(karmada, ns, "large", replicas={"min": 1, "max": 1}, placement=placement, modelCache=large)
        eventually(lambda: requested("gpu") == "200Gi", timeout=60)

        def degraded() -> str | None:
            conds = {c["type"]: c for c in _status(karmada, ns, "large").get("conditions") or []}
            held = conds.get("Degraded") or {}
            return str(held.get("message")) if held.get("status") == "True" else None

        message = eventually(degraded, timeout=60)
        assert f"holds {first} and this model needs 200Gi" in message and "member ascend would not grow it" in message
        assert "storageclass that provisions the pvc must support resize" in message, message
        # Held on ascend: Karmada withdraws what it placed there before the member's refusal came back.
        eventually(lambda: _clusters(karmada, ns, "large") == {"gpu": (1, 1), "ascend": (1, 0)}, timeout=60)
        assert requested("ascend") == first
        assert _clusters(karmada, ns, "small") == {"gpu": (1, 1), "ascend": (1, 1)}
        custom = client.CustomObjectsApi(karmada.api)
        for name in ("large", "small"):
            custom.delete_namespaced_custom_object(GROUP, VERSION, ns, "modeldeployments", name)
    finally:
        ascend_classes.patch_storage_class(STORAGE_CLASS, {"allowVolumeExpansion": True})


def test_an_inference_pool_goes_only_to_the_members_that_serve_the_kind(
    karmada_fleet: dict[str, Cluster], karmada_operator: OperatorContext, karmada_namespace: str
) -> None:
    """Last in the module, so that Karmada has found the kind (its CRD came with the operator's fixture)."""
    karmada, ns = karmada_fleet["karmada"], karmada_namespace
    expose = {"inferencePool": {"endpointPicker": "pool-epp"}}
    placement = _weights(karmada_fleet, 1, 1)
    _create(karmada, ns, "pooled", replicas={"min": 2, "max": 2}, placement=placement, expose=expose)
    eventually(lambda: _clusters(karmada, ns, "pooled") == {"gpu": (1, 1), "ascend": (1, 1)}, timeout=90)

    def pools(member: str) -> list[Any]:
        custom = client.CustomObjectsApi(karmada_fleet[member].api)
        return list(custom.list_namespaced_custom_object(POOL_GROUP, "v1", ns, "inferencepools")["items"])

    eventually(lambda: len(pools("gpu")) == 1, timeout=90)
    (pool,) = pools("gpu")
    assert pool["spec"]["targetPorts"] == [{"number": 8000}]  # vLLM's port, the gpu member's runtime
    assert pool["spec"]["endpointPickerRef"]["name"] == "pool-epp"
    (pod,) = _running(karmada_fleet["gpu"], ns)
    assert pool["spec"]["selector"]["matchLabels"].items() <= (pod.metadata.labels or {}).items()
    # The ascend member has no InferencePool CRD: it serves the deployment without a pool.
    groups = client.ApisApi(karmada_fleet["ascend"].api).get_api_versions().groups
    assert all(g.name != POOL_GROUP for g in groups)
    custom = client.CustomObjectsApi(karmada.api)
    custom.delete_namespaced_custom_object(GROUP, VERSION, ns, "modeldeployments", "pooled")
    eventually(lambda: pools("gpu") == [], timeout=60)
