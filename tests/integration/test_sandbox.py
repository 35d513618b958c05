"""The sandbox behaves like a real cluster: each test fails against the embedded (emulated) API."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException
from kubernetes.dynamic import DynamicClient

from autoglm.sandbox import build, fleet
from autoglm.sandbox.build import SandboxError
from autoglm.sandbox.cluster import start_cluster
from autoglm.shell.clusters import install_crds
from tests.integration.conftest import Cluster


def eventually(check: Callable[[], Any], timeout: float = 60.0, interval: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s (last value {last!r})")


@pytest.fixture(scope="module")
def crds_installed(sandbox: Cluster) -> None:
    install_crds(sandbox.api)


def _md(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "autoglm.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {"model": {"name": "glm-4-9b-chat"}, **spec},
    }


def test_nodes_are_exactly_the_file_with_their_accelerators(sandbox: Cluster) -> None:
    nodes = eventually(
        lambda: (
            [
                n
                for n in sandbox.core.list_node().items
                if any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or [])
            ]
            if len(sandbox.core.list_node().items) == 5
            else None
        )
    )
    names = sorted(n.metadata.name for n in nodes)
    assert names == ["cpu-small-0", "cpu-spr-0", "cpu-spr-1", "h100-0", "h100-1"]
    h100 = next(n for n in nodes if n.metadata.name == "h100-0")
    assert h100.status.allocatable["nvidia.com/gpu"] == "8"
    assert h100.metadata.labels["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"
    assert h100.spec.taints[0].key == "nvidia.com/gpu"


def test_crd_schema_rejects_a_string_model_naming_the_field(
    sandbox: Cluster, namespace: str, crds_installed: None
) -> None:
    api = client.CustomObjectsApi(sandbox.api)
    bad = _md("bad", model="glm-4-9b-chat")
    with pytest.raises(ApiException) as exc:
        api.create_namespaced_custom_object("autoglm.io", "v1alpha1", namespace, "modeldeployments", bad)
    assert exc.value.status == 422
    assert "spec.model" in exc.value.body
    cel = _md("cel", replicas={"min": 3, "max": 1})
    with pytest.raises(ApiException) as exc:
        api.create_namespaced_custom_object("autoglm.io", "v1alpha1", namespace, "modeldeployments", cel)
    assert "replicas.min must not exceed replicas.max" in exc.value.body


def test_server_applies_schema_defaults(sandbox: Cluster, namespace: str, crds_installed: None) -> None:
    api = client.CustomObjectsApi(sandbox.api)
    created = api.create_namespaced_custom_object("autoglm.io", "v1alpha1", namespace, "modeldeployments", _md("d"))
    assert created["spec"]["precision"] == "auto" and created["spec"]["memoryAlignment"] == 64


def test_spec_written_through_the_status_subresource_is_ignored(
    sandbox: Cluster, namespace: str, crds_installed: None
) -> None:
    api = client.CustomObjectsApi(sandbox.api)
    api.create_namespaced_custom_object("autoglm.io", "v1alpha1", namespace, "modeldeployments", _md("s"))
    patch = {"spec": {"precision": "int4"}, "status": {"replicas": 2}}
    api.patch_namespaced_custom_object_status("autoglm.io", "v1alpha1", namespace, "modeldeployments", "s", patch)
    got = api.get_namespaced_custom_object("autoglm.io", "v1alpha1", namespace, "modeldeployments", "s")
    assert got["spec"]["precision"] == "auto"
    assert got["status"]["replicas"] == 2


def test_stale_resource_version_conflicts(sandbox: Cluster, namespace: str) -> None:
    core = sandbox.core
    cm = core.create_namespaced_config_map(namespace, {"metadata": {"name": "cm"}, "data": {"a": "1"}})
    stale = cm.metadata.resource_version
    core.replace_namespaced_config_map(
        "cm", namespace, {"metadata": {"name": "cm", "resourceVersion": stale}, "data": {"a": "2"}}
    )
    with pytest.raises(ApiException) as exc:
        core.replace_namespaced_config_map(
            "cm", namespace, {"metadata": {"name": "cm", "resourceVersion": stale}, "data": {"a": "3"}}
        )
    assert exc.value.status == 409


def test_server_side_apply_conflicts_between_field_managers(sandbox: Cluster, namespace: str) -> None:
    dyn = DynamicClient(sandbox.api)
    cms = dyn.resources.get(api_version="v1", kind="ConfigMap")
    body = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "ssa", "namespace": namespace},
        "data": {"owned": "by-autoglm"},
    }
    cms.server_side_apply(body=body, field_manager="autoglm")
    other = {**body, "data": {"owned": "by-someone-else"}}
    with pytest.raises(ApiException) as exc:
        cms.server_side_apply(body=other, field_manager="someone-else")
    assert exc.value.status == 409 and "conflict" in exc.value.body.lower()


def test_deleting_an_owner_garbage_collects_what_it_owns(sandbox: Cluster, namespace: str) -> None:
    core = sandbox.core
    owner = core.create_namespaced_config_map(namespace, {"metadata": {"name": "owner"}})
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid}
    core.create_namespaced_secret(namespace, {"metadata": {"name": "owned", "ownerReferences": [ref]}})
    core.delete_namespaced_config_map("owner", namespace)

    def gone() -> bool:
        try:
            core.read_namespaced_secret("owned", namespace)
        except ApiException as exc:
            return exc.status == 404
        return False

    eventually(gone)


def _deployment(name: str, gpus: int, replicas: int = 1, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}, "annotations": annotations or {}},
                "spec": {
                    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                    "containers": [
                        {
                            "name": "server",
                            "image": "vllm/vllm-openai:v0.11.0",
                            "resources": {"limits": {"nvidia.com/gpu": str(gpus)}},
                        }
                    ],
                },
            },
        },
    }


def _pods(core: client.CoreV1Api, namespace: str, app: str) -> list[Any]:
    return list(core.list_namespaced_pod(namespace, label_selector=f"app={app}").items)


def _ready(pod: Any) -> bool:
    return pod.status.phase == "Running" and any(
        c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or [])
    )


def test_gpu_pod_runs_on_a_fake_h100_and_an_oversized_one_stays_pending(sandbox: Cluster, namespace: str) -> None:
    apps = client.AppsV1Api(sandbox.api)
    apps.create_namespaced_deployment(namespace, _deployment("fits", gpus=1))
    pod = eventually(lambda: next((p for p in _pods(sandbox.core, namespace, "fits") if _ready(p)), None))
    assert pod.spec.node_name in ("h100-0", "h100-1")

    apps.create_namespaced_deployment(namespace, _deployment("too-big", gpus=9))

    def failed_scheduling() -> bool:
        events = sandbox.core.list_namespaced_event(namespace).items
        return any(e.reason == "FailedScheduling" and "nvidia.com/gpu" in (e.message or "") for e in events)

    eventually(failed_scheduling)
    pending = _pods(sandbox.core, namespace, "too-big")
    assert pending and all(p.status.phase == "Pending" and not p.spec.node_name for p in pending)


def test_hpa_raises_replicas_to_its_minimum(sandbox: Cluster, namespace: str) -> None:
    apps = client.AppsV1Api(sandbox.api)
    apps.create_namespaced_deployment(namespace, _deployment("scaled", gpus=1, replicas=1))
    hpa = {
        "metadata": {"name": "scaled"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "scaled"},
            "minReplicas": 3,
            "maxReplicas": 5,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}},
                }
            ],
        },
    }
    client.AutoscalingV2Api(sandbox.api).create_namespaced_horizontal_pod_autoscaler(namespace, hpa)
    eventually(lambda: (apps.read_namespaced_deployment("scaled", namespace).spec.replicas or 0) >= 3, timeout=90)
    eventually(lambda: sum(_ready(p) for p in _pods(sandbox.core, namespace, "scaled")) >= 3, timeout=60)


def test_cold_start_delay_from_the_pod_annotation(sandbox: Cluster, namespace: str) -> None:
    apps = client.AppsV1Api(sandbox.api)
    start = time.monotonic()
    apps.create_namespaced_deployment(
        namespace, _deployment("slow", gpus=1, annotations={"autoglm.io/cold-start": "4s"})
    )
    pod = eventually(lambda: next(iter(p for p in _pods(sandbox.core, namespace, "slow") if p.spec.node_name), None))
    assert not _ready(pod)
    eventually(lambda: any(_ready(p) for p in _pods(sandbox.core, namespace, "slow")), timeout=30)
    assert time.monotonic() - start >= 4.0


def test_up_refuses_a_folder_that_is_up(sandbox: Cluster, sandbox_binaries: dict[str, Path]) -> None:
    with pytest.raises(SandboxError, match="already up"):
        start_cluster("one", Path(sandbox.state.directory), sandbox_binaries)


def test_status_reports_every_component_healthy(sandbox: Cluster) -> None:
    rows = fleet.status(Path(sandbox.state.directory).parent)
    assert {r.component for r in rows} == {
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kwok",
    }
    assert all(r.running and r.healthy and r.pid for r in rows)


def test_second_build_does_nothing(sandbox_binaries: dict[str, Path]) -> None:
    assert not any(r.built for r in build.build())


def test_fleet_of_three_vendors(sandbox_fleet: dict[str, Cluster]) -> None:
    expected = {"gpu": "nvidia.com/gpu", "ascend": "huawei.com/Ascend910", "edge": "sophgo.com/tpu"}
    for name, resource in expected.items():
        nodes = sandbox_fleet[name].core.list_node().items
        assert any(resource in (n.status.allocatable or {}) for n in nodes), name


def test_down_stops_exactly_its_processes_and_frees_ports(sandbox_binaries: dict[str, Path], tmp_path: Path) -> None:
    from tests.conftest import load_nodes

    states, _ = fleet.up(tmp_path, {"solo": load_nodes("sophgo.yaml")})
    state = states["solo"]
    pids = dict(state.pids)
    stopped = fleet.down(tmp_path)
    assert set(stopped["solo"]) == set(pids)
    import socket

    for port in (state.ports["kube-apiserver"], state.ports["etcd"]):
        with socket.socket() as s:
            # As a restarted server would: TIME_WAIT connections from clients may linger, listeners may not.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))  # free again
    assert fleet.down(tmp_path) == {"solo": []}


def test_a_stopped_cluster_starts_again_with_its_objects_and_nodes(
    sandbox_binaries: dict[str, Path], tmp_path: Path
) -> None:
    from tests.conftest import load_nodes

    states, _ = fleet.up(tmp_path, {"solo": load_nodes("sophgo.yaml"), "other": load_nodes("cpu.yaml")})
    try:
        solo = Cluster(states["solo"], states["solo"].api_client())
        solo.core.create_namespace({"metadata": {"name": "kept"}})
        client.AppsV1Api(solo.api).create_namespaced_deployment("kept", _deployment("kept", gpus=0))
        eventually(lambda: any(_ready(p) for p in _pods(solo.core, "kept", "kept")))
        stopped = fleet.stop(tmp_path, "solo")
        assert set(stopped) == {"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"}
        with pytest.raises(Exception):  # noqa: B017  (connection refused, whatever the client makes of it)
            solo.core.list_namespace(_request_timeout=2)
        assert all(r.running for r in fleet.status(tmp_path) if r.cluster == "other")
        with pytest.raises(SandboxError, match="is running"):
            fleet.start(tmp_path, "other")
        fleet.start(tmp_path, "solo")
        assert all(r.running and r.healthy for r in fleet.status(tmp_path))
        again = Cluster(states["solo"], states["solo"].api_client())
        assert again.core.read_namespace("kept").metadata.name == "kept"
        eventually(lambda: any(_ready(p) for p in _pods(again.core, "kept", "kept")))
        assert len(again.core.list_node().items) == len(load_nodes("sophgo.yaml"))
        with pytest.raises(SandboxError, match="no sandbox cluster 'nope'"):
            fleet.stop(tmp_path, "nope")
    finally:
        fleet.down(tmp_path)


def test_karmada_control_plane_joins_the_clusters_and_divides_a_deployment(
    karmada_fleet: dict[str, Cluster],
) -> None:
    karmada = karmada_fleet["karmada"]
    custom = client.CustomObjectsApi(karmada.api)
    clusters = custom.list_cluster_custom_object("cluster.karmada.io", "v1alpha1", "clusters")["items"]
    assert sorted(c["metadata"]["name"] for c in clusters) == ["ascend", "gpu"]
    assert all(c["spec"]["syncMode"] == "Push" for c in clusters)
    assert {r.component for r in fleet.status(Path(karmada.state.directory).parent) if r.cluster == "karmada"} == {
        "etcd",
        "karmada-apiserver",
        "karmada-aggregated-apiserver",
        "karmada-webhook",
        "karmada-controller-manager",
        "karmada-scheduler",
        "kube-controller-manager",
    }
    # The aggregated API server's cluster proxy reaches a member's API with the caller's identity.
    request = karmada.api.param_serialize(
        "GET", "/apis/cluster.karmada.io/v1alpha1/clusters/ascend/proxy/api/v1/nodes", auth_settings=["BearerToken"]
    )
    response = karmada.api.call_api(*request)
    response.read()
    nodes = json.loads(response.data)
    assert any("huawei.com/Ascend910" in (n["status"].get("allocatable") or {}) for n in nodes["items"])

    client.CoreV1Api(karmada.api).create_namespace({"metadata": {"name": "divided"}})
    body = _deployment("web", gpus=0, replicas=2)
    body["spec"]["template"]["spec"]["tolerations"] = [{"operator": "Exists"}]
    client.AppsV1Api(karmada.api).create_namespaced_deployment("divided", body)
    policy = {
        "apiVersion": "policy.karmada.io/v1alpha1",
        "kind": "PropagationPolicy",
        "metadata": {"name": "web", "namespace": "divided"},
        "spec": {
            "resourceSelectors": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}],
            "placement": {
                "clusterAffinity": {"clusterNames": ["gpu", "ascend"]},
                "replicaScheduling": {
                    "replicaSchedulingType": "Divided",
                    "replicaDivisionPreference": "Weighted",
                    "weightPreference": {
                        "staticWeightList": [
                            {"targetCluster": {"clusterNames": ["gpu"]}, "weight": 1},
                            {"targetCluster": {"clusterNames": ["ascend"]}, "weight": 1},
                        ]
                    },
                },
            },
        },
    }
    custom.create_namespaced_custom_object("policy.karmada.io", "v1alpha1", "divided", "propagationpolicies", policy)
    for name in ("gpu", "ascend"):
        member = karmada_fleet[name]
        eventually(lambda m=member: sum(_ready(p) for p in _pods(m.core, "divided", "web")) == 1, timeout=60)  # type: ignore[misc]
