"""Direct propagation across member clusters: the real operator on a host sandbox cluster, with an NVIDIA, an
Ascend and an edge (Sophgo/Kunlunxin/CPU) sandbox cluster joined as members with `autoglm join`'s logic.

The host serves no replicas (--no-local), so every replica lands on a member with that member's own plan.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from autoglm.core.render import LABEL_DEPLOYMENT, LABEL_HOST, LABEL_OWNER_UID
from autoglm.sandbox import fleet, llama
from autoglm.sandbox.build import SandboxError
from autoglm.sandbox.cluster import ClusterState, free_port, http_ok, wait_until
from autoglm.sandbox.tiny_model import write_tiny_llama
from autoglm.shell.clusters import ClusterClient
from autoglm.shell.controllers import DEPLOYMENT, ObjectKey, OperatorContext, operator_thread
from autoglm.shell.members import MemberChange, MemberRegistry, flatten_kubeconfig, join, unjoin
from autoglm.shell.reconcile import PROPAGATION_FINALIZER
from tests.integration.conftest import Cluster, devices_withdrawn
from tests.integration.test_sandbox import crds_installed, eventually  # noqa: F401  (fixture)

GROUP, VERSION = "autoglm.io", "v1alpha1"
MEMBERS = ("gpu", "ascend", "edge")


def _host(sandbox: Cluster) -> ClusterClient:
    return ClusterClient("local", sandbox.api)


@pytest.fixture(scope="module")
def joined(sandbox: Cluster, sandbox_fleet: dict[str, Cluster], crds_installed: None) -> Iterator[dict[str, Cluster]]:  # noqa: F811
    host = _host(sandbox)
    for name in MEMBERS:
        path = sandbox_fleet[name].state.kubeconfig
        join(host, name, flatten_kubeconfig(yaml.safe_load(path.read_text()), path.parent), {"vendor": name})
    try:
        yield sandbox_fleet
    finally:
        for name in MEMBERS:
            unjoin(host, name)


@pytest.fixture(scope="module")
def operator(sandbox: Cluster, joined: dict[str, Cluster]) -> Iterator[OperatorContext]:
    # The session's sandbox is shared: an operator of another module (with the host as a member) may have
    # left the MemberCluster `local` behind.
    with contextlib.suppress(client.ApiException):
        client.CustomObjectsApi(sandbox.api).delete_cluster_custom_object(GROUP, VERSION, "memberclusters", "local")
    context = OperatorContext.from_kubeconfig(
        str(sandbox.state.kubeconfig), resync_seconds=2, include_local=False, heartbeat_seconds=1, failure_threshold=2
    )
    with operator_thread(context):
        yield context


def _member(sandbox: Cluster, name: str) -> dict[str, Any]:
    return dict(client.CustomObjectsApi(sandbox.api).get_cluster_custom_object(GROUP, VERSION, "memberclusters", name))


def _ready_condition(sandbox: Cluster, name: str) -> dict[str, Any] | None:
    conds = (_member(sandbox, name).get("status") or {}).get("conditions") or []
    return next((c for c in conds if c["type"] == "Ready"), None)


def _ready_reason(sandbox: Cluster, name: str) -> tuple[str, str, str] | None:
    ready = _ready_condition(sandbox, name)
    return (ready["status"], ready["reason"], ready["message"]) if ready else None


def _ready_since(sandbox: Cluster, name: str) -> float:
    """When the member's Ready condition last changed (epoch seconds, as precise as the operator wrote it)."""
    ready = _ready_condition(sandbox, name)
    assert ready is not None, f"member {name} has no Ready condition"
    return datetime.fromisoformat(ready["lastTransitionTime"].replace("Z", "+00:00")).timestamp()


def _create(sandbox: Cluster, namespace: str, name: str, **spec: Any) -> None:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {"model": {"name": "glm-4-9b-chat"}, "modelCache": {"enabled": False}, **spec},
    }
    client.CustomObjectsApi(sandbox.api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, "modeldeployments", body
    )


def _get(sandbox: Cluster, namespace: str, name: str) -> dict[str, Any]:
    return dict(
        client.CustomObjectsApi(sandbox.api).get_namespaced_custom_object(
            GROUP, VERSION, namespace, "modeldeployments", name
        )
    )


def _clusters(sandbox: Cluster, namespace: str, name: str) -> dict[str, tuple[int, int]]:
    status = _get(sandbox, namespace, name).get("status") or {}
    return {c["name"]: (c.get("desired", 0), c.get("ready", 0)) for c in status.get("clusters") or []}


def _condition(sandbox: Cluster, namespace: str, name: str, type_: str) -> dict[str, Any]:
    status = _get(sandbox, namespace, name).get("status") or {}
    return next((c for c in status.get("conditions") or [] if c["type"] == type_), {})


def _deployments(member: Cluster, namespace: str) -> list[Any]:
    """The member's Deployments in the namespace; an error (a member that is down) fails the caller, never reads
    as "nothing there"."""
    return list(client.AppsV1Api(member.api).list_namespaced_deployment(namespace).items)


def _ready_pods(member: Cluster, namespace: str) -> int:
    pods = client.CoreV1Api(member.api).list_namespaced_pod(namespace).items
    return sum(
        p.status.phase == "Running" and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
        for p in pods
    )


def test_members_report_ready_with_their_capacity(sandbox: Cluster, operator: OperatorContext) -> None:
    for name in MEMBERS:
        eventually(lambda n=name: (_ready_reason(sandbox, n) or ("",))[0] == "True", timeout=30)  # type: ignore[misc]
    status = _member(sandbox, "gpu")["status"]
    capacity = {c["accelerator"]: (c["free"], c["total"]) for c in status["capacity"]}
    assert capacity["H100-SXM5-80GB"] == (16, 16)
    assert status["lastHeartbeat"]
    assert _ready_reason(sandbox, "gpu")[1] == "MemberReady"  # type: ignore[index]
    # --no-local: the host is no member, so no MemberCluster local was made.
    names = [m["metadata"]["name"] for m in client.CustomObjectsApi(sandbox.api).list_cluster_custom_object(
        GROUP, VERSION, "memberclusters")["items"]]  # fmt: skip
    assert "local" not in names


def _secret(sandbox: Cluster, name: str, data: dict[str, str]) -> None:
    body = {
        "metadata": {"name": name, "namespace": "autoglm-system"},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }
    core = client.CoreV1Api(sandbox.api)
    with contextlib.suppress(client.ApiException):
        core.delete_namespaced_secret(name, "autoglm-system")
    core.create_namespaced_secret("autoglm-system", body)


def test_bad_secrets_and_credentials_are_conditions_not_crashes(
    sandbox: Cluster, joined: dict[str, Cluster], operator: OperatorContext
) -> None:
    gpu = joined["gpu"].state
    good = flatten_kubeconfig(yaml.safe_load(gpu.kubeconfig.read_text()), gpu.kubeconfig.parent)
    insecure = yaml.safe_load(yaml.safe_dump(good))
    insecure["clusters"][0]["cluster"]["insecure-skip-tls-verify"] = True
    forged = yaml.safe_load(yaml.safe_dump(good))
    forged["users"][0]["user"] = {"token": "not-a-real-token"}
    gone = yaml.safe_load(yaml.safe_dump(good))
    gone["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:1"
    secrets = {
        "bad-key": {"other": "x"},
        "bad-yaml": {"kubeconfig": "clusters: ["},
        "bad-insecure": {"kubeconfig": yaml.safe_dump(insecure)},
        "bad-token": {"kubeconfig": yaml.safe_dump(forged)},
        "bad-gone": {"kubeconfig": yaml.safe_dump(gone)},
    }
    expected = {
        "bad-missing": "SecretNotFound",
        "bad-key": "SecretKeyMissing",
        "bad-yaml": "KubeconfigInvalid",
        "bad-insecure": "InsecureKubeconfig",
        "bad-token": "Unauthorized",
        "bad-gone": "Unreachable",
    }
    custom = client.CustomObjectsApi(sandbox.api)
    for name, data in secrets.items():
        _secret(sandbox, name, data)
    try:
        for name in expected:
            ref = {"name": name, "namespace": "autoglm-system", "key": "kubeconfig"}
            body = {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "MemberCluster",
                "metadata": {"name": name},
                "spec": {"kubeconfigSecretRef": ref},
            }
            custom.create_cluster_custom_object(GROUP, VERSION, "memberclusters", body)
        for name, reason in expected.items():
            eventually(lambda n=name, r=reason: (_ready_reason(sandbox, n) or ("", ""))[:2] == ("False", r), timeout=30)  # type: ignore[misc]
        assert "run autoglm join bad-token again" in _ready_reason(sandbox, "bad-token")[2]  # type: ignore[index]
        # The good members are untouched by their broken neighbours.
        assert all((_ready_reason(sandbox, n) or ("",))[0] == "True" for n in MEMBERS)
        # Events are posted in the background.
        eventually(
            lambda: any(
                e.involved_object.name == "bad-insecure" and e.reason == "InsecureKubeconfig"
                for e in client.CoreV1Api(sandbox.api).list_namespaced_event("default").items
            ),
            timeout=10,
        )
    finally:
        for name in expected:
            with contextlib.suppress(client.ApiException):
                custom.delete_cluster_custom_object(GROUP, VERSION, "memberclusters", name)


def test_divided_three_to_one_runs_each_members_own_runtime(
    sandbox: Cluster, namespace: str, joined: dict[str, Cluster], operator: OperatorContext
) -> None:
    placement = {
        "clusters": ["gpu", "ascend"],
        "weights": {"static": [{"cluster": "gpu", "weight": 3}, {"cluster": "ascend", "weight": 1}]},
    }
    _create(sandbox, namespace, "split", replicas={"min": 4, "max": 8}, placement=placement)
    eventually(lambda: _condition(sandbox, namespace, "split", "Ready").get("status") == "True", timeout=90)
    assert _clusters(sandbox, namespace, "split") == {"gpu": (3, 3), "ascend": (1, 1)}
    images = {
        name: [d.spec.template.spec.containers[0].image for d in _deployments(joined[name], namespace)]
        for name in ("gpu", "ascend", "edge")
    }
    assert images["gpu"] and images["gpu"][0].startswith("vllm/vllm-openai")
    assert images["ascend"] and "vllm-ascend" in images["ascend"][0]
    assert images["edge"] == []
    assert (_ready_pods(joined["gpu"], namespace), _ready_pods(joined["ascend"], namespace)) == (3, 1)
    md = _get(sandbox, namespace, "split")
    assert PROPAGATION_FINALIZER in md["metadata"]["finalizers"]
    status = md["status"]
    assert (status["replicas"], status["readyReplicas"], status["clusterCount"]) == (4, 4, 2)
    assert {e["cluster"]: e["backend"] for e in status["plan"]} == {"gpu": "vllm-cuda", "ascend": "vllm-ascend"}
    assert _condition(sandbox, namespace, "split", "Propagated")["reason"] == "Propagated"
    hpa = client.AutoscalingV2Api(joined["gpu"].api).list_namespaced_horizontal_pod_autoscaler(namespace).items[0]
    assert (hpa.spec.min_replicas, hpa.spec.max_replicas) == (3, 6)
    labels = _deployments(joined["gpu"], namespace)[0].metadata.labels
    assert labels["autoglm.io/owner-uid"] == md["metadata"]["uid"]


def _lb_address(member: Cluster, namespace: str, name: str, address: str) -> None:
    """Give a member's LoadBalancer Service its address, as that member's load-balancer controller would."""
    status = {"status": {"loadBalancer": {"ingress": [{"ip": address}]}}}
    client.CoreV1Api(member.api).patch_namespaced_service_status(name, namespace, status)


def test_the_gateway_routes_to_every_members_service_by_its_ready_replicas(
    sandbox: Cluster, namespace: str, joined: dict[str, Cluster], operator: OperatorContext, tmp_path: Path
) -> None:
    """`autoglm gateway --from-cluster` in front of a 3:1 deployment: each member's LoadBalancer Service gets an
    address (127.0.0.2 and .3, where a real llama.cpp server stands for that member's pods), the operator
    reports it as the member's endpoint, and the gateway splits requests over both by their ready replicas."""
    try:
        llama.build()
    except SandboxError as exc:
        pytest.fail(f"llama.cpp's server unavailable: {exc}", pytrace=False)
    port = free_port()
    placement = {
        "clusters": ["gpu", "ascend"],
        "weights": {"static": [{"cluster": "gpu", "weight": 3}, {"cluster": "ascend", "weight": 1}]},
    }
    expose = {"service": {"type": "LoadBalancer", "port": port}}
    _create(sandbox, namespace, "routed", replicas={"min": 4, "max": 8}, placement=placement, expose=expose)
    eventually(lambda: _condition(sandbox, namespace, "routed", "Ready").get("status") == "True", timeout=90)
    addresses = {"gpu": "127.0.0.2", "ascend": "127.0.0.3"}
    for member, address in addresses.items():
        service = client.CoreV1Api(joined[member].api).read_namespaced_service("routed", namespace)
        assert service.spec.type == "LoadBalancer" and service.spec.ports[0].port == port
        _lb_address(joined[member], namespace, "routed", address)

    def endpoints() -> dict[str, str]:
        clusters = _get(sandbox, namespace, "routed").get("status", {}).get("clusters") or []
        return {c["name"]: c.get("endpoint") for c in clusters}

    eventually(lambda: endpoints() == {m: f"http://{a}:{port}" for m, a in addresses.items()}, timeout=30)
    model = write_tiny_llama(tmp_path / "tiny.gguf")
    servers = [llama.serve(model, port, tmp_path / f"{m}.log", host=a) for m, a in addresses.items()]
    gateway_port = free_port()
    command = [sys.executable, "-c", "from autoglm.face.cli import main; main()", "gateway", "--from-cluster",
               "--kubeconfig", str(sandbox.state.kubeconfig), "-n", namespace, "--allow-anonymous",
               "--host", "127.0.0.1", "--port", str(gateway_port)]  # fmt: skip
    log = tmp_path / "gateway.log"
    gateway = subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{gateway_port}"
    try:
        # Ready only once the ModelDeployments were listed: its routes are there from the first request.
        wait_until("the gateway's /readyz", lambda: http_ok(url + "/readyz"), 30, log)
        with urllib.request.urlopen(url + "/v1/models", timeout=5) as response:
            assert [m["id"] for m in json.loads(response.read())["data"]] == ["routed@main"]
        upstreams = []
        for _ in range(40):
            body = {"model": "routed", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
            request = urllib.request.Request(
                url + "/v1/chat/completions", json.dumps(body).encode(), {"Content-Type": "application/json"}
            )
            with urllib.request.urlopen(request, timeout=60) as response:
                upstreams.append(response.headers["X-Autoglm-Upstream"].split("/")[0])
        gpu, ascend = upstreams.count("gpu"), upstreams.count("ascend")
        # weights 3:1 by ready replicas: both serve, the NVIDIA member most (P(ascend >= gpu) < 1e-3 at 40 draws)
        assert gpu + ascend == 40 and gpu > ascend > 0, upstreams
    finally:
        for proc in [gateway, *servers]:
            proc.terminate()
            proc.wait(10)


# The released InferencePool (inference.networking.k8s.io/v1) spec, as its CRD states it: what a member that runs
# a conformant gateway serves. Written here because the sandbox has no way to fetch the project's CRD.
INFERENCE_POOL_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {
        "name": "inferencepools.inference.networking.k8s.io",
        # k8s.io groups are protected: their CRDs name the approved API review.
        "annotations": {"api-approved.kubernetes.io": "https://github.com/kubernetes-sigs/gateway-api-inference-extension"},
    },
    "spec": {
        "group": "inference.networking.k8s.io",
        "names": {"kind": "InferencePool", "plural": "inferencepools", "singular": "inferencepool"},
        "scope": "Namespaced",
        "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
            "type": "object",
            "properties": {"spec": {
                "type": "object",
                "required": ["selector", "targetPorts", "endpointPickerRef"],
                "properties": {
                    "selector": {"type": "object", "required": ["matchLabels"], "properties": {
                        "matchLabels": {"type": "object", "additionalProperties": {"type": "string"}}}},
                    "targetPorts": {"type": "array", "minItems": 1, "maxItems": 1, "items": {
                        "type": "object", "required": ["number"], "properties": {"number": {"type": "integer"}}}},
                    "endpointPickerRef": {"type": "object", "required": ["name"], "properties": {
                        "name": {"type": "string"}, "kind": {"type": "string"}, "group": {"type": "string"},
                        "port": {"type": "object", "properties": {"number": {"type": "integer"}}},
                        "failureMode": {"type": "string", "enum": ["FailOpen", "FailClose"]}}},
                },
            }},
        }}}],
    },
}  # fmt: skip


def test_an_inference_pool_goes_to_the_members_that_serve_the_kind_and_leaves_with_the_deployment(
    sandbox: Cluster,
    namespace: str,
    joined: dict[str, Cluster],
    operator: OperatorContext,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The CRD comes after the operator found the kind unserved there: it must look again (60 s; 1 s here).
    monkeypatch.setattr(ClusterClient, "UNSERVED_RECHECK_SECONDS", 1.0)
    extensions = client.ApiextensionsV1Api(joined["gpu"].api)
    extensions.create_custom_resource_definition(INFERENCE_POOL_CRD)
    pools = client.CustomObjectsApi(joined["gpu"].api)
    try:
        eventually(lambda: _served(joined["gpu"]), timeout=30)
        placement = {"clusters": ["gpu", "ascend"]}
        expose = {"inferencePool": {"endpointPicker": "pool-epp"}}
        _create(sandbox, namespace, "pooled", replicas={"min": 2, "max": 2}, placement=placement, expose=expose)
        eventually(lambda: _condition(sandbox, namespace, "pooled", "Ready").get("status") == "True", timeout=90)

        def listed() -> list[Any]:
            return list(pools.list_namespaced_custom_object(
                "inference.networking.k8s.io", "v1", namespace, "inferencepools")["items"])  # fmt: skip

        eventually(lambda: len(listed()) == 1, timeout=30)
        (pool,) = listed()
        assert pool["spec"]["endpointPickerRef"] == {"name": "pool-epp", "port": {"number": 9002},
                                                      "failureMode": "FailClose"}  # fmt: skip
        (deployment,) = _deployments(joined["gpu"], namespace)
        assert pool["spec"]["selector"]["matchLabels"].items() <= deployment.spec.template.metadata.labels.items()
        assert (
            pool["metadata"]["labels"]["autoglm.io/owner-uid"] == _get(sandbox, namespace, "pooled")["metadata"]["uid"]
        )
        # The Ascend member does not serve the kind: it gets the deployment without a pool, and is Ready.
        assert _clusters(sandbox, namespace, "pooled") == {"gpu": (1, 1), "ascend": (1, 1)}
        client.CustomObjectsApi(sandbox.api).delete_namespaced_custom_object(
            GROUP, VERSION, namespace, "modeldeployments", "pooled"
        )
        eventually(lambda: listed() == [], timeout=60)
    finally:
        extensions.delete_custom_resource_definition(INFERENCE_POOL_CRD["metadata"]["name"])


def _served(member: Cluster) -> bool:
    groups = client.ApisApi(member.api).get_api_versions().groups
    return any(g.name == "inference.networking.k8s.io" for g in groups)


def test_duplicated_runs_the_full_count_on_every_member(
    sandbox: Cluster, namespace: str, joined: dict[str, Cluster], operator: OperatorContext
) -> None:
    _create(sandbox, namespace, "dup", replicas={"min": 2, "max": 2}, placement={"replicaScheduling": "Duplicated"})
    eventually(lambda: _condition(sandbox, namespace, "dup", "Ready").get("status") == "True", timeout=90)
    assert _clusters(sandbox, namespace, "dup") == {"gpu": (2, 2), "ascend": (2, 2), "edge": (2, 2)}
    backends = {e["cluster"]: e["backend"] for e in _get(sandbox, namespace, "dup")["status"]["plan"]}
    assert backends == {"gpu": "vllm-cuda", "ascend": "vllm-ascend", "edge": "llm-tpu-bmodel"}


def test_dynamic_weights_follow_free_capacity(
    sandbox: Cluster, namespace: str, joined: dict[str, Cluster], operator: OperatorContext
) -> None:
    placement = {"clusters": ["gpu", "ascend"], "weights": {"dynamic": "FreeAccelerators"}}
    _create(sandbox, namespace, "dyn", replicas={"min": 6, "max": 6}, placement=placement)
    eventually(lambda: sum(d for d, _ in _clusters(sandbox, namespace, "dyn").values()) == 6, timeout=60)
    before = _clusters(sandbox, namespace, "dyn")
    assert before["gpu"][0] > 0 and before["ascend"][0] > 0  # both have room: both get a share
    # The Ascend member loses every NPU (a failed device plugin): no room there, so no weight.
    with devices_withdrawn(joined["ascend"], ("huawei.com/Ascend910", "huawei.com/Ascend310P")):
        eventually(lambda: _clusters(sandbox, namespace, "dyn").get("gpu", (0, 0))[0] == 6, timeout=60)
        eventually(lambda: not _deployments(joined["ascend"], namespace), timeout=30)
        assert "ascend" not in _clusters(sandbox, namespace, "dyn")
    # Room again: the weights follow it back.
    eventually(lambda: _clusters(sandbox, namespace, "dyn").get("ascend", (0, 0))[0] > 0, timeout=60)


def test_member_regions_and_taints_steer_placement_and_a_change_of_either_replaces(
    sandbox: Cluster, namespace: str, joined: dict[str, Cluster], operator: OperatorContext
) -> None:
    custom = client.CustomObjectsApi(sandbox.api)

    def member_spec(name: str, **spec: Any) -> None:
        custom.patch_cluster_custom_object(GROUP, VERSION, "memberclusters", name, {"spec": spec})

    def placed(placement: dict[str, Any]) -> None:
        custom.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, "modeldeployments", "steer", {"spec": {"placement": placement}}
        )

    # A registry of the test's own tells what one heartbeat reports, apart from the operator's member loop.
    registry = MemberRegistry(_host(sandbox), include_local=False)
    registry.heartbeat()
    taint = {"key": "maintenance", "value": "true", "effect": "NoSchedule"}
    member_spec("gpu", region="cn-north")
    member_spec("ascend", region="cn-east", taints=[taint])
    try:
        # A member's region or taints changing is news for every deployment's placement, as its readiness is.
        assert registry.heartbeat() is MemberChange.FLEET
        assert registry.heartbeat() is MemberChange.NONE
        both = {"clusters": ["gpu", "ascend"], "replicaScheduling": "Duplicated"}
        _create(sandbox, namespace, "steer", replicas={"min": 1, "max": 1}, placement=both)
        eventually(lambda: _clusters(sandbox, namespace, "steer") == {"gpu": (1, 1)}, timeout=60)
        assert not _deployments(joined["ascend"], namespace)
        placed(both | {"clusterTolerations": [{"key": "maintenance", "operator": "Exists"}]})
        eventually(lambda: _clusters(sandbox, namespace, "steer") == {"gpu": (1, 1), "ascend": (1, 1)}, timeout=60)
        placed({"regions": ["cn-east"]})
        eventually(lambda: _clusters(sandbox, namespace, "steer") == {"ascend": (1, 1)}, timeout=60)
        eventually(lambda: not _deployments(joined["gpu"], namespace), timeout=30)
    finally:
        member_spec("gpu", region=None)
        member_spec("ascend", region=None, taints=None)
        # The next test's placement must not meet the taint: the operator has seen it go before this one ends.
        eventually(
            lambda: all(not v.taints and v.region is None for v in operator.members.views() if v.name in MEMBERS),
            timeout=30,
        )
    assert registry.heartbeat() is MemberChange.FLEET


def test_drift_on_a_member_is_repaired_and_delete_cleans_every_member(
    sandbox: Cluster, namespace: str, joined: dict[str, Cluster], operator: OperatorContext
) -> None:
    _create(sandbox, namespace, "drift", replicas={"min": 2, "max": 2}, placement={"clusters": ["gpu", "ascend"]})
    eventually(lambda: _condition(sandbox, namespace, "drift", "Ready").get("status") == "True", timeout=90)
    apps = client.AppsV1Api(joined["gpu"].api)
    (deployment,) = _deployments(joined["gpu"], namespace)
    image = deployment.spec.template.spec.containers[0].image
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "server", "image": "someone/else:1"}]}}}}
    apps.patch_namespaced_deployment(deployment.metadata.name, namespace, patch)
    eventually(
        lambda: _deployments(joined["gpu"], namespace)[0].spec.template.spec.containers[0].image == image, timeout=30
    )
    client.AppsV1Api(joined["ascend"].api).delete_namespaced_deployment(
        _deployments(joined["ascend"], namespace)[0].metadata.name, namespace
    )
    eventually(lambda: len(_deployments(joined["ascend"], namespace)) == 1, timeout=30)

    client.CustomObjectsApi(sandbox.api).delete_namespaced_custom_object(
        GROUP, VERSION, namespace, "modeldeployments", "drift"
    )

    def gone() -> bool:
        try:
            _get(sandbox, namespace, "drift")
        except client.ApiException as exc:
            return exc.status == 404
        return False

    eventually(gone, timeout=30)
    for name in ("gpu", "ascend"):
        services = client.CoreV1Api(joined[name].api).list_namespaced_service(namespace).items
        assert not _deployments(joined[name], namespace) and not services, name


def test_objects_on_a_member_whose_deployment_is_gone_are_collected_and_nothing_else(
    sandbox: Cluster, namespace: str, joined: dict[str, Cluster], operator: OperatorContext
) -> None:
    """An apply a member carried out after the deletion had cleaned it (its client had given up on the call) leaves
    an object that no finalizer will remove: the collector does. What a live deployment owns, what another host made
    and what a person made stay."""
    _create(sandbox, namespace, "alive", replicas={"min": 1, "max": 1}, placement={"clusters": ["gpu"]})
    eventually(lambda: len(_deployments(joined["gpu"], namespace)) == 1, timeout=60)
    (alive,) = _deployments(joined["gpu"], namespace)
    host = operator.reconciler.cluster.identity()
    assert alive.metadata.labels[LABEL_HOST] == host
    labels = dict(alive.metadata.labels)

    def deployment(name: str, **changed: str) -> dict[str, Any]:
        pod = {"containers": [{"name": "server", "image": "registry.k8s.io/pause:3.10"}]}
        return {
            "metadata": {"name": name, "labels": {**labels, **changed}},
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": {"orphan-test": name}},
                "template": {"metadata": {"labels": {"orphan-test": name}}, "spec": pod},
            },
        }

    apps = client.AppsV1Api(joined["gpu"].api)
    gone = {LABEL_OWNER_UID: "00000000-0000-0000-0000-000000000000", LABEL_DEPLOYMENT: "deleted-long-ago"}
    apps.create_namespaced_deployment(namespace, deployment("landed-late", **gone))
    apps.create_namespaced_deployment(namespace, deployment("another-hosts", **gone, **{LABEL_HOST: "another-host"}))
    apps.create_namespaced_deployment(namespace, {**deployment("by-hand"), "metadata": {"name": "by-hand"}})
    removed = operator.collect_orphans()
    assert removed == [f"gpu:Deployment/{namespace}/landed-late"]
    names = sorted(d.metadata.name for d in _deployments(joined["gpu"], namespace))
    assert names == sorted(["another-hosts", "by-hand", alive.metadata.name])
    assert operator.collect_orphans() == []  # nothing more: a second pass finds what the first left, and leaves it
    assert operator.metrics.orphans.labels("gpu")._value.get() >= 1


def test_objects_on_a_member_a_live_deployments_status_does_not_name_are_withdrawn_after_the_collector_finds_them(
    sandbox: Cluster, namespace: str, joined: dict[str, Cluster], operator: OperatorContext
) -> None:
    """Objects of a live deployment on a member its status does not name (applied there, then the status write
    failed and the operator restarted: its memory of where it applied is gone) are removed by the deployment's own
    next reconcile once the collector has pointed at them, but not while a worker holds its key (a reconcile in
    flight has applied to members its status does not name yet); another deployment's objects that its status
    does name stay."""
    _create(sandbox, namespace, "placed", replicas={"min": 1, "max": 1}, placement={"clusters": ["gpu"]})
    _create(sandbox, namespace, "named", replicas={"min": 1, "max": 1}, placement={"clusters": ["ascend"]})
    eventually(lambda: len(_deployments(joined["gpu"], namespace)) == 1, timeout=60)
    eventually(lambda: len(_deployments(joined["ascend"], namespace)) == 1, timeout=60)
    (placed,) = _deployments(joined["gpu"], namespace)
    (named,) = _deployments(joined["ascend"], namespace)
    stray = {
        "metadata": {"name": placed.metadata.name, "labels": dict(placed.metadata.labels)},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"stray-test": "placed"}},
            "template": {
                "metadata": {"labels": {"stray-test": "placed"}},
                "spec": {"containers": [{"name": "server", "image": "registry.k8s.io/pause:3.10"}]},
            },
        },
    }
    client.AppsV1Api(joined["ascend"].api).create_namespaced_deployment(namespace, stray)
    # A reconcile in flight applies to members before its status names them: while a worker holds the key, the
    # collector leaves it alone. A second operator context with no workers, whose queue the test holds.
    idle = OperatorContext.from_kubeconfig(str(sandbox.state.kubeconfig), include_local=False)
    idle.members.heartbeat()
    key = ObjectKey(DEPLOYMENT, namespace, "placed")
    idle.queue.add(key)
    assert idle.queue.get(0) == key
    assert idle.collect_orphans() == []
    assert idle.reconciler.strays.get((namespace, "placed")) == set() and idle.queue.depth() == 0
    idle.queue.done(key)
    assert idle.queue.get(0) is None
    assert idle.collect_orphans() == []
    assert idle.reconciler.strays.get((namespace, "placed")) == {"ascend"} and idle.queue.get(0) == key

    # The live operator's own collector points at the stray too, but a pass that meets the 2 s resync reconciling
    # "placed" leaves it to the next pass (as above): passes run here at the test's cadence, not the loop's 300 s.
    def withdrawn() -> bool:
        assert operator.collect_orphans() == []  # its owner lives: not an orphan
        return [d.metadata.name for d in _deployments(joined["ascend"], namespace)] == [named.metadata.name]

    eventually(withdrawn, timeout=30, interval=1)
    assert [d.metadata.name for d in _deployments(joined["gpu"], namespace)] == [placed.metadata.name]
    assert _condition(sandbox, namespace, "placed", "Ready").get("status") == "True"


def test_deleting_many_at_once_leaves_nothing_behind_while_resyncs_run(
    sandbox: Cluster, namespace: str, joined: dict[str, Cluster], operator: OperatorContext
) -> None:
    # The operator fixture resyncs every 2 s: passes run while the deployments are deleted. A resync that
    # reconciled one from its stale list after its deletion cleaned the members put its objects back there.
    names = [f"many-{i}" for i in range(8)]
    for name in names:
        _create(sandbox, namespace, name, replicas={"min": 2, "max": 2}, placement={"clusters": ["gpu", "ascend"]})
    eventually(
        lambda: all(_condition(sandbox, namespace, n, "Planned").get("status") == "True" for n in names), timeout=90
    )
    eventually(lambda: all(len(_deployments(joined[m], namespace)) == 8 for m in ("gpu", "ascend")), timeout=60)
    client.CustomObjectsApi(sandbox.api).delete_collection_namespaced_custom_object(
        GROUP, VERSION, namespace, "modeldeployments"
    )
    eventually(lambda: not any(_deployments(joined[m], namespace) for m in ("gpu", "ascend")), timeout=60)
    time.sleep(6)  # three more resync passes
    assert not any(_deployments(joined[m], namespace) for m in ("gpu", "ascend"))


def test_a_stopped_member_fails_over_and_replicas_return_without_flapping(
    sandbox: Cluster, namespace: str, joined: dict[str, Cluster], operator: OperatorContext
) -> None:
    placement = {
        "clusters": ["gpu", "ascend"],
        "weights": {"static": [{"cluster": "gpu", "weight": 1}, {"cluster": "ascend", "weight": 1}]},
        "failover": {"tolerationSeconds": 5, "rebalanceSeconds": 10},
    }
    _create(sandbox, namespace, "fo", replicas={"min": 2, "max": 2}, placement=placement)
    eventually(lambda: _condition(sandbox, namespace, "fo", "Ready").get("status") == "True", timeout=90)
    assert _clusters(sandbox, namespace, "fo") == {"gpu": (1, 1), "ascend": (1, 1)}
    history: list[tuple[float, dict[str, tuple[int, int]]]] = []

    def record() -> dict[str, tuple[int, int]]:
        seen = _clusters(sandbox, namespace, "fo")
        if not history or history[-1][1] != seen:
            history.append((time.monotonic(), seen))
        return seen

    state_dir = Path(joined["ascend"].state.directory).parent
    record()  # 1:1 before the outage
    fleet.stop(state_dir, "ascend")
    try:
        eventually(lambda: (_ready_reason(sandbox, "ascend") or ("",))[0] == "False", timeout=30)
        failed = _ready_since(sandbox, "ascend")
        # Both replicas on gpu; ascend stays listed (desired 0) until its objects can be removed.
        eventually(lambda: record().get("gpu") == (2, 2), timeout=60)
        assert time.time() - failed >= 5  # not before the toleration
        assert record().get("ascend", (0, 0))[0] == 0
        assert "ascend" in _condition(sandbox, namespace, "fo", "Degraded").get("message", "")
    finally:
        fleet.start(state_dir, "ascend")
    eventually(lambda: (_ready_reason(sandbox, "ascend") or ("", ""))[:2] == ("True", "MemberRecovered"), timeout=30)
    # The window runs from when the operator saw the member answer again, which can be before `fleet.start` returns
    # (that waits for every component of the member, its API server answers first): read that moment from the
    # member's Ready condition, written with the operator's own clock.
    recovered = _ready_since(sandbox, "ascend")
    eventually(lambda: record() == {"gpu": (1, 1), "ascend": (1, 1)}, timeout=60)
    assert time.time() - recovered >= 10  # not before the rebalance window
    desired = [(seen.get("gpu", (0, 0))[0], seen.get("ascend", (0, 0))[0]) for _, seen in history]
    # 1:1 -> 2:0 -> 1:1, each step once: no flapping.
    steps = [d for i, d in enumerate(desired) if i == 0 or d != desired[i - 1]]
    assert steps == [(1, 1), (2, 0), (1, 1)], history


def test_deletions_wait_for_a_stopped_member_with_events_and_finish_soon_after_it_returns(
    sandbox: Cluster, namespace: str, joined: dict[str, Cluster], operator: OperatorContext
) -> None:
    names = [f"gone-{i}" for i in range(20)]
    # A short toleration, which the outage outlasts: a joined member holds its deletions however long it is gone
    # (its objects cannot be owned across clusters; a deletion that let go would leave them there for good).
    placement = {"clusters": ["gpu", "ascend"], "failover": {"tolerationSeconds": 5, "rebalanceSeconds": 0}}
    for name in names:
        _create(sandbox, namespace, name, replicas={"min": 2, "max": 2}, placement=placement)
    eventually(lambda: all(len(_deployments(joined[m], namespace)) == 20 for m in ("gpu", "ascend")), timeout=120)
    state_dir = Path(joined["ascend"].state.directory).parent
    custom = client.CustomObjectsApi(sandbox.api)

    def left() -> set[str]:
        listed = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, "modeldeployments")["items"]
        return {i["metadata"]["name"] for i in listed}

    def waiting() -> set[str]:
        events = client.CoreV1Api(sandbox.api).list_namespaced_event(namespace).items
        return {e.involved_object.name for e in events if e.reason == "DeletionWaiting"}

    fleet.stop(state_dir, "ascend")
    try:
        custom.delete_collection_namespaced_custom_object(GROUP, VERSION, namespace, "modeldeployments")
        # Every deletion waits, each with an Event saying for what; the reachable member is cleaned meanwhile.
        eventually(lambda: waiting() >= set(names), timeout=60)
        assert left() == set(names)
        eventually(lambda: not _deployments(joined["gpu"], namespace), timeout=30)
        # One short line a person can act on (the first, while the server shut down, may say "connection reset").
        messages = eventually(
            lambda: [
                e.message
                for e in client.CoreV1Api(sandbox.api).list_namespaced_event(namespace).items
                if e.reason == "DeletionWaiting" and "ascend unreachable" in e.message and "refused" in e.message
            ],
            timeout=30,
        )
        assert all("HTTPSConnectionPool" not in m and len(m) < 200 for m in messages), messages
        time.sleep(20)  # long enough for the retries to back off past several seconds, and past the toleration
        assert left() == set(names), "a deletion let go of a member that still holds its objects"
    finally:
        fleet.start(state_dir, "ascend")
    back = time.monotonic()
    eventually(lambda: not left(), timeout=60, interval=0.5)
    assert time.monotonic() - back <= 30, "deletions finished long after the member returned"
    for member in ("gpu", "ascend"):
        assert not _deployments(joined[member], namespace), member
        assert not client.CoreV1Api(joined[member].api).list_namespaced_service(namespace).items, member


def test_a_deletion_waits_for_a_joined_member_however_long_and_unjoining_it_releases_the_deletion(
    sandbox: Cluster, namespace: str, joined: dict[str, Cluster], operator: OperatorContext
) -> None:
    host = _host(sandbox)
    # A member that was joined and is gone for good: its API server's address answers nothing.
    path = joined["gpu"].state.kubeconfig
    ghost = flatten_kubeconfig(yaml.safe_load(path.read_text()), path.parent)
    for entry in ghost["clusters"]:
        entry["cluster"]["server"] = f"https://127.0.0.1:{free_port()}"
    join(host, "ghost", ghost, verify=False)
    custom = client.CustomObjectsApi(sandbox.api)
    try:
        # A 1 s toleration, which the ghost outlasts from the start: no toleration lets a deletion go.
        placement = {"clusters": ["gpu"], "failover": {"tolerationSeconds": 1, "rebalanceSeconds": 0}}
        _create(sandbox, namespace, "haunted", placement=placement)
        eventually(lambda: len(_deployments(joined["gpu"], namespace)) == 1, timeout=60)
        custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, "modeldeployments", "haunted")

        def waiting_for_ghost() -> list[str]:
            events = client.CoreV1Api(sandbox.api).list_namespaced_event(namespace).items
            return [
                e.message
                for e in events
                if e.reason == "DeletionWaiting" and e.involved_object.name == "haunted" and "ghost" in e.message
            ]

        eventually(waiting_for_ghost, timeout=60)
        # The reachable member is emptied meanwhile; the deletion holds on, well past the toleration.
        eventually(lambda: not _deployments(joined["gpu"], namespace), timeout=30)
        time.sleep(10)
        listed = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, "modeldeployments")["items"]
        assert "haunted" in {i["metadata"]["name"] for i in listed}
    finally:
        unjoin(host, "ghost")

    def gone() -> bool:
        listed = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, "modeldeployments")["items"]
        return "haunted" not in {i["metadata"]["name"] for i in listed}

    eventually(gone, timeout=60)


@contextlib.contextmanager
def _frozen_api_server(member: Cluster) -> Iterator[None]:
    """The member's kube-apiserver SIGSTOPped: it accepts connections and never answers (a hung server, which a
    refused connection does not show)."""
    state = ClusterState.load(Path(member.state.directory))
    assert state is not None
    pid = state.pids["kube-apiserver"]
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def test_a_hung_member_api_server_holds_no_reconcile_of_the_other_members(
    sandbox: Cluster, namespace: str, joined: dict[str, Cluster], operator: OperatorContext
) -> None:
    both = {"clusters": ["gpu", "ascend"], "failover": {"tolerationSeconds": 600, "rebalanceSeconds": 0}}
    _create(sandbox, namespace, "spans", replicas={"min": 2, "max": 2}, placement=both)
    eventually(lambda: _condition(sandbox, namespace, "spans", "Ready").get("status") == "True", timeout=90)
    with _frozen_api_server(joined["ascend"]):
        started = time.monotonic()
        _create(sandbox, namespace, "gpu-only", placement={"clusters": ["gpu"]})
        # Calls to the frozen member time out (5 s each): the other member's reconciles do not wait behind them.
        eventually(lambda: _condition(sandbox, namespace, "gpu-only", "Ready").get("status") == "True", timeout=60)
        assert time.monotonic() - started < 30
        # The spanning deployment says in one line which member does not answer, and why.
        eventually(
            lambda: "ascend" in _condition(sandbox, namespace, "spans", "Degraded").get("message", ""), timeout=60
        )
        message = _condition(sandbox, namespace, "spans", "Degraded")["message"]
        assert "timed out" in message and "HTTPSConnectionPool" not in message and len(message) < 300, message
    eventually(lambda: _condition(sandbox, namespace, "spans", "Ready").get("status") == "True", timeout=90)


def test_autoglm_join_and_unjoin_as_a_user_runs_them(sandbox: Cluster, joined: dict[str, Cluster]) -> None:
    from typer.testing import CliRunner

    from autoglm.face.cli import app

    runner = CliRunner()
    member, host = str(joined["edge"].state.kubeconfig), str(sandbox.state.kubeconfig)
    result = runner.invoke(
        app, ["join", "edge-two", "--kubeconfig", member, "--host-kubeconfig", host, "--label", "site=edge"]
    )
    assert result.exit_code == 0, result.output
    body = _member(sandbox, "edge-two")
    assert body["metadata"]["labels"] == {"site": "edge"}
    secret = client.CoreV1Api(sandbox.api).read_namespaced_secret("member-edge-two", "autoglm-system")
    stored = yaml.safe_load(base64.b64decode(secret.data["kubeconfig"]))
    assert len(stored["contexts"]) == 1 and "certificate-authority-data" in stored["clusters"][0]["cluster"]
    bad = runner.invoke(app, ["join", "Not_A_Name", "--kubeconfig", member, "--host-kubeconfig", host])
    assert bad.exit_code == 2 and "DNS label" in bad.output
    result = runner.invoke(app, ["unjoin", "edge-two", "--host-kubeconfig", host])
    assert result.exit_code == 0 and "MemberCluster/edge-two" in result.output
    assert runner.invoke(app, ["unjoin", "edge-two", "--host-kubeconfig", host]).exit_code == 1


@contextlib.contextmanager
def _slow_ascend_runtime(sandbox: Cluster, cold_start: str, name: str = "vllm-ascend-slow") -> Iterator[None]:
    """The default vllm-ascend runtime, preferred, whose pods take `cold_start` to become ready."""
    from autoglm.core.backends import load_default_catalog

    body = next(b for b in load_default_catalog() if b.metadata.name == "vllm-ascend").to_manifest()
    body["metadata"] = {"name": name}
    body["spec"]["priority"] = 1000
    body["spec"]["podAnnotations"] = {"autoglm.io/cold-start": cold_start}
    custom = client.CustomObjectsApi(sandbox.api)
    custom.create_cluster_custom_object(GROUP, VERSION, "backendruntimes", body)
    try:
        yield
    finally:
        custom.delete_cluster_custom_object(GROUP, VERSION, "backendruntimes", name)


def _revisions(sandbox: Cluster, namespace: str, name: str) -> dict[str, str | None]:
    status = _get(sandbox, namespace, name).get("status") or {}
    return {c["name"]: c.get("revision") for c in status.get("clusters") or []}


def _service_revision(member: Cluster, namespace: str, name: str) -> str | None:
    service = client.CoreV1Api(member.api).read_namespaced_service(name, namespace)
    return (service.spec.selector or {}).get("autoglm.io/revision")


def _revisions_running(member: Cluster, namespace: str) -> set[str]:
    return {d.metadata.labels.get("autoglm.io/revision") for d in _deployments(member, namespace)}


def _new_spec(sandbox: Cluster, namespace: str, name: str) -> None:
    patch = {"spec": {"resources": {"maxConcurrentSequences": 8}}}  # vLLM's --max-num-seqs: every member's pods change
    client.CustomObjectsApi(sandbox.api).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "modeldeployments", name, patch
    )


def test_coordinated_rollout_switches_every_member_together(
    sandbox: Cluster, namespace: str, joined: dict[str, Cluster], operator: OperatorContext
) -> None:
    # rebalanceSeconds 0: ascend may have come back from the failover test a moment ago.
    placement = {"clusters": ["gpu", "ascend"], "failover": {"rebalanceSeconds": 0}}
    _create(sandbox, namespace, "roll", replicas={"min": 2, "max": 2}, placement=placement)
    eventually(lambda: _condition(sandbox, namespace, "roll", "Ready").get("status") == "True", timeout=90)
    before = _revisions(sandbox, namespace, "roll")
    assert set(before) == {"gpu", "ascend"} and all(before.values())
    assert _condition(sandbox, namespace, "roll", "Progressing")["reason"] == "RolledOut"
    with _slow_ascend_runtime(sandbox, "25s"):
        _new_spec(sandbox, namespace, "roll")
        # Broadcast: the new revision runs beside the old in both members...
        eventually(lambda: len(_revisions_running(joined["gpu"], namespace)) == 2, timeout=30)
        eventually(lambda: len(_revisions_running(joined["ascend"], namespace)) == 2, timeout=30)
        progressing = _condition(sandbox, namespace, "roll", "Progressing")
        assert progressing["reason"] == "RollingOut" and "ascend" in progressing["message"]
        # ...and gpu's new pods being ready is not enough: its Service keeps the old revision.
        eventually(lambda: _ready_pods(joined["gpu"], namespace) == 2, timeout=30)
        assert _service_revision(joined["gpu"], namespace, "roll") == before["gpu"]
        assert _service_revision(joined["ascend"], namespace, "roll") == before["ascend"]
        assert _revisions(sandbox, namespace, "roll") == before
        # All ready -> switch together, old revision gone everywhere.
        eventually(
            lambda: all(v not in before.values() for v in _revisions(sandbox, namespace, "roll").values()), timeout=90
        )
        after = _revisions(sandbox, namespace, "roll")
        for name in ("gpu", "ascend"):
            assert _service_revision(joined[name], namespace, "roll") == after[name]
            eventually(lambda n=name: _revisions_running(joined[n], namespace) == {after[n]}, timeout=30)  # type: ignore[misc]
        assert _condition(sandbox, namespace, "roll", "Progressing")["reason"] == "RolledOut"
        eventually(
            lambda: (
                {"RollingOut", "RolledOut"}
                <= {e.reason for e in client.CoreV1Api(sandbox.api).list_namespaced_event(namespace).items}
            ),
            timeout=10,
        )


def test_a_member_that_never_gets_ready_rolls_everyone_back(
    sandbox: Cluster, namespace: str, joined: dict[str, Cluster], operator: OperatorContext
) -> None:
    _create(
        sandbox,
        namespace,
        "back",
        replicas={"min": 2, "max": 2},
        placement={"clusters": ["gpu", "ascend"], "failover": {"rebalanceSeconds": 0}},
        rollout={"deadlineSeconds": 15},
    )
    eventually(lambda: _condition(sandbox, namespace, "back", "Ready").get("status") == "True", timeout=90)
    before = _revisions(sandbox, namespace, "back")
    with _slow_ascend_runtime(sandbox, "1h"):
        _new_spec(sandbox, namespace, "back")
        eventually(lambda: len(_revisions_running(joined["gpu"], namespace)) == 2, timeout=30)
        eventually(
            lambda: _condition(sandbox, namespace, "back", "Progressing").get("reason") == "RolledBack", timeout=60
        )
        rolled = _condition(sandbox, namespace, "back", "Progressing")["message"]
        assert "ascend: 0/1 replicas" in rolled and "after 15 s" in rolled
        degraded = _condition(sandbox, namespace, "back", "Degraded")
        assert degraded["status"] == "True" and "rolled back" in degraded["message"]
        # Every member is back on its old revision alone, and stays there (the failed target is held).
        for name in ("gpu", "ascend"):
            eventually(lambda n=name: _revisions_running(joined[n], namespace) == {before[n]}, timeout=30)  # type: ignore[misc]
            assert _service_revision(joined[name], namespace, "back") == before[name]
        assert _revisions(sandbox, namespace, "back") == before
        time.sleep(5)
        assert all(_revisions_running(joined[n], namespace) == {before[n]} for n in ("gpu", "ascend"))
        assert _condition(sandbox, namespace, "back", "Ready")["status"] == "True"
