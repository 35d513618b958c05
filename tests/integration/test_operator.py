"""The real operator process logic (kopf + the Kubernetes client) against a sandbox cluster."""

from __future__ import annotations

import logging
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from autoglm.sandbox.cluster import free_port
from autoglm.shell.controllers import OperatorContext, operator_thread
from tests.integration.conftest import Cluster, extra_runtime, gpus_withdrawn, storage_class
from tests.integration.test_sandbox import crds_installed, eventually  # noqa: F401  (fixture)

GROUP, VERSION, PLURAL = "autoglm.io", "v1alpha1", "modeldeployments"


@contextmanager
def running_operator(cluster: Cluster, resync: float = 2.0, heartbeat: float = 10.0) -> Iterator[OperatorContext]:
    context = OperatorContext.from_kubeconfig(
        str(cluster.state.kubeconfig), resync_seconds=resync, heartbeat_seconds=heartbeat
    )
    with operator_thread(context):
        yield context


def _create(cluster: Cluster, namespace: str, name: str, **spec: Any) -> None:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {"model": {"name": "glm-4-9b-chat"}, **spec},
    }
    client.CustomObjectsApi(cluster.api).create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)


def _get(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    return dict(
        client.CustomObjectsApi(cluster.api).get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    )


def _condition(cluster: Cluster, namespace: str, name: str, type_: str) -> dict[str, Any] | None:
    status = _get(cluster, namespace, name).get("status") or {}
    return next((c for c in status.get("conditions") or [] if c["type"] == type_), None)


def _is(cluster: Cluster, namespace: str, name: str, type_: str, status: str) -> bool:
    cond = _condition(cluster, namespace, name, type_)
    return cond is not None and cond["status"] == status


@pytest.fixture
def operator(sandbox: Cluster, crds_installed: None) -> Iterator[OperatorContext]:  # noqa: F811
    with running_operator(sandbox) as context:
        yield context


def test_create_update_delete(sandbox: Cluster, namespace: str, operator: OperatorContext) -> None:
    _create(sandbox, namespace, "life", replicas={"min": 1, "max": 4})
    eventually(lambda: _is(sandbox, namespace, "life", "Ready", "True"), timeout=60)
    apps = client.AppsV1Api(sandbox.api)
    (deploy,) = apps.list_namespaced_deployment(namespace).items
    assert deploy.spec.replicas == 1

    patch = {"spec": {"replicas": {"min": 3, "max": 4}}}
    client.CustomObjectsApi(sandbox.api).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "life", patch
    )
    eventually(lambda: apps.list_namespaced_deployment(namespace).items[0].spec.replicas == 3, timeout=30)
    eventually(lambda: _get(sandbox, namespace, "life")["status"].get("readyReplicas") == 3, timeout=60)
    body = _get(sandbox, namespace, "life")
    assert body["status"]["observedGeneration"] == body["metadata"]["generation"]

    client.CustomObjectsApi(sandbox.api).delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "life")
    eventually(lambda: not apps.list_namespaced_deployment(namespace).items, timeout=60)
    assert operator.metrics.reconciles.labels("placed")._value.get() > 0


def test_a_service_the_api_server_refuses_does_not_hold_back_the_status_and_is_retried(
    sandbox: Cluster, namespace: str, operator: OperatorContext
) -> None:
    core, apps = client.CoreV1Api(sandbox.api), client.AppsV1Api(sandbox.api)
    quota = {"metadata": {"name": "no-services"}, "spec": {"hard": {"services": "0"}}}
    core.create_namespaced_resource_quota(namespace, quota)
    eventually(
        lambda: (
            (core.read_namespaced_resource_quota("no-services", namespace).status.hard or {}).get("services") == "0"
        ),
        timeout=30,
    )
    _create(sandbox, namespace, "refused")
    # The status comes from the workloads: it does not wait for the Service the quota refuses.
    eventually(lambda: _is(sandbox, namespace, "refused", "Planned", "True"), timeout=30)
    assert apps.list_namespaced_deployment(namespace).items
    assert not core.list_namespaced_service(namespace).items
    events = lambda: core.list_namespaced_event(namespace).items  # noqa: E731
    eventually(lambda: any(e.reason == "ApplyFailed" and "quota" in e.message for e in events()), timeout=30)
    # The failed reconcile is retried: the Service comes once the quota allows it.
    core.delete_namespaced_resource_quota("no-services", namespace)
    eventually(lambda: bool(core.list_namespaced_service(namespace).items), timeout=60)


def test_malformed_deployments_get_conditions_and_good_ones_still_serve(
    sandbox: Cluster, namespace: str, operator: OperatorContext
) -> None:
    for i in range(100):
        if i % 2:
            _create(sandbox, namespace, f"bad-{i}", model={"name": f"no-such-model-{i}"})
        else:
            _create(sandbox, namespace, f"bad-{i}", placement={"weights": {"static": [{"cluster": "a", "weight": 0}]}})
    _create(sandbox, namespace, "good")

    def all_explained() -> bool:
        items = client.CustomObjectsApi(sandbox.api).list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)[
            "items"
        ]
        bad = [i for i in items if i["metadata"]["name"].startswith("bad-")]
        return len(bad) == 100 and all(
            any(
                c["type"] == "Planned" and c["reason"] == "InvalidSpec"
                for c in (i.get("status") or {}).get("conditions", [])
            )
            for i in bad
        )

    eventually(all_explained, timeout=120, interval=1)
    eventually(lambda: _is(sandbox, namespace, "good", "Ready", "True"), timeout=60)
    message = _condition(sandbox, namespace, "bad-1", "Planned")["message"]
    assert "no-such-model-1" in message and "architecture" in message
    assert "weights must sum" in _condition(sandbox, namespace, "bad-0", "Planned")["message"]


def test_restart_in_the_middle_loses_nothing(sandbox: Cluster, namespace: str, crds_installed: None) -> None:  # noqa: F811
    with running_operator(sandbox):
        _create(sandbox, namespace, "restart", model={"name": "chatglm3-6b"}, backend="tensorrt-llm", precision="bf16")
        eventually(lambda: _is(sandbox, namespace, "restart", "Planned", "True"), timeout=30)
    # Stopped while the conversion was pending; work created while nobody watches is picked up on start.
    _create(sandbox, namespace, "while-down")
    with running_operator(sandbox):
        eventually(lambda: _is(sandbox, namespace, "restart", "Ready", "True"), timeout=90)
        eventually(lambda: _is(sandbox, namespace, "while-down", "Ready", "True"), timeout=60)
    assert _is(sandbox, namespace, "restart", "Converted", "True")


def test_node_capacity_change_replans_without_touching_the_spec(
    sandbox: Cluster,
    namespace: str,
    crds_installed: None,  # noqa: F811
) -> None:
    # The periodic pass is 10 minutes away: only the capacity watch can make this re-plan in time.
    with running_operator(sandbox, resync=600):
        _node_change_scenario(sandbox, namespace)


def _gpu_pod(sandbox: Cluster, namespace: str, name: str, gpus: int) -> None:
    """Someone else's pod holding GPUs (not the operator's)."""
    amount = {"nvidia.com/gpu": str(gpus)}
    container = {"name": "c", "image": "busybox", "resources": {"limits": amount, "requests": amount}}
    tolerate = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    pod = {"metadata": {"name": name}, "spec": {"containers": [container], "tolerations": tolerate}}
    sandbox.core.create_namespaced_pod(namespace, pod)
    eventually(lambda: sandbox.core.read_namespaced_pod(name, namespace).spec.node_name, timeout=30)


def test_pods_coming_and_going_reconcile_only_the_deployments_waiting_for_room(
    sandbox: Cluster,
    namespace: str,
    crds_installed: None,  # noqa: F811
) -> None:
    def gpus_held_elsewhere() -> int:
        pods = sandbox.core.list_pod_for_all_namespaces().items
        return sum(
            int((c.resources.requests or {}).get("nvidia.com/gpu", 0))
            for p in pods
            if p.spec.node_name and p.metadata.namespace != namespace
            for c in p.spec.containers
        )

    # The two nodes' 16 GPUs are this test's to share out: earlier tests' namespaces are gone with their pods.
    eventually(lambda: gpus_held_elsewhere() == 0, timeout=120)
    # The periodic pass is 10 minutes away: what is reconciled here is what the heartbeat's news asked for.
    with running_operator(sandbox, resync=600, heartbeat=1) as context:
        reconciled: list[str] = []
        reconcile = context.reconciler.reconcile

        def counted(body: Any) -> Any:
            reconciled.append(body["metadata"]["name"])
            return reconcile(body)

        context.reconciler.reconcile = counted  # type: ignore[method-assign]
        small = {"contextLength": 4096, "maxConcurrentSequences": 2}
        _create(sandbox, namespace, "bystander", resources=small)
        eventually(lambda: _is(sandbox, namespace, "bystander", "Planned", "True"), timeout=30)
        # Others' pods take every other GPU of the two 8-GPU nodes: GLM-4.5-Air falls back to CPU.
        _gpu_pod(sandbox, namespace, "leaver", 8)
        _gpu_pod(sandbox, namespace, "stayer", 7)

        def free_gpus() -> int:
            member = context.members.get("local")
            return sum(c.free for c in member.status.capacity) if member is not None else -1

        eventually(lambda: free_gpus() == 0, timeout=30)  # the heartbeat has seen them
        _create(sandbox, namespace, "air", model={"name": "GLM-4.5-Air"}, resources=small)

        def backend() -> str | None:
            return (_get(sandbox, namespace, "air").get("status") or {}).get("backend")

        eventually(lambda: backend() == "llama-cpp-cpu", timeout=30)
        assert (_condition(sandbox, namespace, "air", "Planned") or {}).get("reason") == "CPUFallback"
        time.sleep(3)  # a few heartbeats: the pods above are no news any more
        reconciled.clear()
        # Eight GPUs come free: the deployment on CPU moves to them; the one placed in full is left alone.
        sandbox.core.delete_namespaced_pod("leaver", namespace, grace_period_seconds=0)
        eventually(lambda: backend() == "vllm-cuda", timeout=30)
        assert "air" in reconciled and "bystander" not in reconciled, reconciled


def test_backend_runtime_change_replans_deployments(
    sandbox: Cluster,
    namespace: str,
    crds_installed: None,  # noqa: F811
) -> None:
    with running_operator(sandbox, resync=600):
        _create(sandbox, namespace, "rt")
        eventually(
            lambda: (_get(sandbox, namespace, "rt").get("status") or {}).get("backend") == "vllm-cuda", timeout=30
        )
        with extra_runtime(sandbox, "sglang-op", priority=900):
            eventually(lambda: _get(sandbox, namespace, "rt")["status"].get("backend") == "sglang-op", timeout=30)


def _node_change_scenario(sandbox: Cluster, namespace: str) -> None:
    _create(
        sandbox,
        namespace,
        "follow",
        model={"name": "GLM-4.5-Air"},
        resources={"contextLength": 4096, "maxConcurrentSequences": 2},
    )
    eventually(
        lambda: (_get(sandbox, namespace, "follow").get("status") or {}).get("backend") == "vllm-cuda", timeout=30
    )
    with gpus_withdrawn(sandbox):
        eventually(lambda: _get(sandbox, namespace, "follow")["status"].get("backend") == "llama-cpp-cpu", timeout=30)


def test_deleting_the_last_user_of_an_artifact_cleans_it(
    sandbox: Cluster, namespace: str, operator: OperatorContext
) -> None:
    spec = {"model": {"name": "chatglm3-6b"}, "backend": "tensorrt-llm", "precision": "bf16"}
    _create(sandbox, namespace, "first", **spec)
    _create(sandbox, namespace, "second", **spec)
    for name in ("first", "second"):
        eventually(lambda n=name: _is(sandbox, namespace, n, "Converted", "True"), timeout=90)
    artifacts = _get(sandbox, namespace, "first")["status"]["artifacts"]
    assert len(artifacts) == 1 and artifacts == _get(sandbox, namespace, "second")["status"]["artifacts"]
    assert "autoglm.io" in " ".join(_get(sandbox, namespace, "first")["metadata"].get("finalizers", []))
    batch, custom = client.BatchV1Api(sandbox.api), client.CustomObjectsApi(sandbox.api)

    def jobs() -> list[str]:
        return sorted(j.metadata.name for j in batch.list_namespaced_job(namespace).items)

    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "first")
    eventually(
        lambda: (
            "first"
            not in [
                i["metadata"]["name"]
                for i in custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"]
            ]
        ),
        timeout=30,
    )
    assert [j for j in jobs() if j.startswith("autoglm-convert-")], "still used by 'second'"
    assert not [j for j in jobs() if j.startswith("autoglm-clean-")]

    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "second")
    eventually(lambda: [j for j in jobs() if j.startswith("autoglm-clean-")], timeout=30)
    eventually(lambda: not [j for j in jobs() if j.startswith("autoglm-convert-")], timeout=30)


def test_deployments_without_artifacts_get_no_finalizer(
    sandbox: Cluster, namespace: str, operator: OperatorContext
) -> None:
    _create(sandbox, namespace, "plain")
    eventually(lambda: _is(sandbox, namespace, "plain", "Planned", "True"), timeout=30)
    time.sleep(1)
    assert not _get(sandbox, namespace, "plain")["metadata"].get("finalizers")


@contextmanager
def operator_process(cluster: Cluster, namespace: str, *flags: str) -> Iterator[Path]:
    """`autoglm run` as its own process, scoped to one namespace; yields its log file; stopped afterwards."""
    command = ["autoglm", "run", "--kubeconfig", str(cluster.state.kubeconfig), "-n", namespace, "--resync", "5"]
    log = Path(cluster.state.directory) / "logs" / f"operator-{namespace}.log"
    with log.open("w") as out:
        proc = subprocess.Popen([*command, *flags], stdout=out, stderr=subprocess.STDOUT)
        try:
            yield log
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_autoglm_run_process_serves_healthz_and_metrics(
    sandbox: Cluster,
    namespace: str,
    crds_installed: None,  # noqa: F811
) -> None:
    health, metrics = free_port(), free_port()
    flags = ("--json-logs", "--liveness", f"http://127.0.0.1:{health}/healthz", "--metrics-port", str(metrics))
    with operator_process(sandbox, namespace, *flags) as log:
        _create(sandbox, namespace, "proc")
        eventually(lambda: _is(sandbox, namespace, "proc", "Planned", "True"), timeout=60)

        def get(url: str) -> str:
            with urllib.request.urlopen(url, timeout=5) as response:
                return str(response.read().decode())

        eventually(lambda: get(f"http://127.0.0.1:{health}/healthz") is not None, timeout=30)
        # The status is written inside the reconcile and the counters after it returns: wait for them.
        placed = 'autoglm_reconciles_total{result="placed"}'

        def counted() -> str | None:
            text = get(f"http://127.0.0.1:{metrics}/metrics")
            return text if placed in text else None

        text = eventually(counted, timeout=10)
        assert "autoglm_reconcile_duration_seconds_bucket" in text
        assert 'autoglm_plans_total{backend="vllm-cuda",precision="fp8"}' in text
    assert log.read_text().lstrip().startswith("{")  # JSON log lines


def _valid(custom: client.CustomObjectsApi, name: str) -> dict[str, Any] | None:
    found = custom.get_cluster_custom_object(GROUP, VERSION, "backendruntimes", name)
    conditions = (found.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == "Valid"), None)


def test_an_invalid_backend_runtime_gets_a_condition_and_an_event_naming_the_field(
    sandbox: Cluster, operator: OperatorContext
) -> None:
    custom = client.CustomObjectsApi(sandbox.api)
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "BackendRuntime",
        "metadata": {"name": "untranslated"},
        # The CRD schema admits it; the API's own rule does not: a runtime that is not OpenAI-shaped needs a
        # translator for the gateway.
        "spec": {
            "image": "example.com/odd-server:1",
            "accelerator": {"vendor": "nvidia"},
            "precisions": ["bf16"],
            "openaiCompatible": False,
        },
    }
    custom.create_cluster_custom_object(GROUP, VERSION, "backendruntimes", body)
    try:
        condition = eventually(lambda: _valid(custom, "untranslated"), timeout=30)
        assert (condition["status"], condition["reason"]) == ("False", "InvalidSpec")
        assert "translator" in condition["message"], condition
        events = lambda: sandbox.core.list_namespaced_event("default").items  # noqa: E731
        eventually(
            lambda: any(
                e.reason == "InvalidSpec" and e.involved_object.name == "untranslated" and "translator" in e.message
                for e in events()
            ),
            timeout=30,
        )
        with extra_runtime(sandbox, "sglang-accepted", priority=1):
            accepted = eventually(lambda: _valid(custom, "sglang-accepted"), timeout=30)
            assert (accepted["status"], accepted["reason"]) == ("True", "Accepted")
    finally:
        custom.delete_cluster_custom_object(GROUP, VERSION, "backendruntimes", "untranslated")


def test_a_deployment_whose_stored_spec_no_longer_validates_is_still_deleted_and_releases_its_artifacts(
    sandbox: Cluster, namespace: str, operator: OperatorContext
) -> None:
    _create(sandbox, namespace, "broken", model={"name": "chatglm3-6b"}, backend="tensorrt-llm", precision="bf16")
    eventually(lambda: _is(sandbox, namespace, "broken", "Converted", "True"), timeout=90)
    assert "autoglm.io/release-artifacts" in _get(sandbox, namespace, "broken")["metadata"]["finalizers"]
    custom = client.CustomObjectsApi(sandbox.api)
    # Valid for the CRD schema, not for the API's own rules (a static weight of 0 for every member).
    patch = {"spec": {"placement": {"weights": {"static": [{"cluster": "a", "weight": 0}]}}}}
    custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "broken", patch)
    eventually(lambda: (_condition(sandbox, namespace, "broken", "Planned") or {}).get("reason") == "InvalidSpec")
    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "broken")
    batch = client.BatchV1Api(sandbox.api)
    eventually(
        lambda: any(j.metadata.name.startswith("autoglm-clean-") for j in batch.list_namespaced_job(namespace).items),
        timeout=30,
    )

    def gone() -> bool:
        return not custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"]

    eventually(gone, timeout=30)


def test_finalizer_edits_retry_through_conflicting_writes_and_keep_what_the_server_returned(
    sandbox: Cluster,
    namespace: str,
    crds_installed: None,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    from autoglm.shell.clusters import ClusterClient

    _create(sandbox, namespace, "contested")
    custom = client.CustomObjectsApi(sandbox.api)

    class Contested(ClusterClient):
        """Another writer changes the object between each of the first two reads and the write that follows
        (a real write, on the real API server, at the one moment that makes the write conflict)."""

        reads = 0

        def model_deployment(self, namespace: str, name: str) -> Any:
            body = super().model_deployment(namespace, name)
            self.reads += 1
            if self.reads <= 2:
                labels = {"metadata": {"labels": {"other-writer": str(self.reads)}}}
                custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, labels)
            return body

    contested = Contested("local", sandbox.api)
    with caplog.at_level(logging.DEBUG, logger="autoglm.shell.clusters"):
        written = contested.add_finalizer(namespace, "contested", "example.com/held")
    conflicts = [r for r in caplog.records if "changed meanwhile" in r.getMessage()]
    assert len(conflicts) == 2 and contested.reads == 3, [r.getMessage() for r in conflicts]
    # What the server returned, with the other writer's change kept.
    assert written is not None and "example.com/held" in written["metadata"]["finalizers"]
    assert written["metadata"]["labels"]["other-writer"] == "2"
    assert "example.com/held" in _get(sandbox, namespace, "contested")["metadata"]["finalizers"]
    ClusterClient("local", sandbox.api).remove_finalizer(namespace, "contested", "example.com/held")
    assert not _get(sandbox, namespace, "contested")["metadata"].get("finalizers")


def test_deleting_a_namespace_with_artifact_users_is_not_held_by_the_finalizer(
    sandbox: Cluster, operator: OperatorContext
) -> None:
    ns = "t-gone-" + str(int(time.time()))
    sandbox.core.create_namespace({"metadata": {"name": ns}})
    _create(sandbox, ns, "trt", model={"name": "chatglm3-6b"}, backend="tensorrt-llm", precision="bf16")
    eventually(lambda: _is(sandbox, ns, "trt", "Converted", "True"), timeout=90)
    sandbox.core.delete_namespace(ns)

    def namespace_gone() -> bool:
        return ns not in [n.metadata.name for n in sandbox.core.list_namespace().items]

    eventually(namespace_gone, timeout=90, interval=1)


def test_the_operator_pulls_every_image_it_renders_from_its_mirror_and_waits_with_its_helper(
    sandbox: Cluster,
    namespace: str,
    crds_installed: None,  # noqa: F811
) -> None:
    """`autoglm run --image-registry --helper-image`, as the chart's `images` values pass them: the conversion Job,
    the serving pod (its wait for the artifact included) and the cleanup Job all pull from the mirror."""
    mirror, helper = "registry.corp.example:5000/ai", "tools/sh:1"
    batch, apps = client.BatchV1Api(sandbox.api), client.AppsV1Api(sandbox.api)

    def images(kind: str, prefix: str) -> list[str]:
        found = batch.list_namespaced_job(namespace).items if kind == "Job" else []
        found += apps.list_namespaced_deployment(namespace).items if kind == "Deployment" else []
        pods = [o.spec.template.spec for o in found if o.metadata.name.startswith(prefix)]
        return [c.image for pod in pods for c in [*(pod.init_containers or []), *pod.containers]]

    with operator_process(sandbox, namespace, "--image-registry", mirror, "--helper-image", helper):
        spec = {"model": {"name": "chatglm3-6b"}, "backend": "tensorrt-llm", "precision": "bf16"}
        _create(sandbox, namespace, "mirrored", **spec)
        eventually(lambda: _is(sandbox, namespace, "mirrored", "Converted", "True"), timeout=90)
        (convert,) = images("Job", "autoglm-convert-")
        assert convert.startswith(f"{mirror}/"), convert
        wait, server = eventually(lambda: images("Deployment", "mirrored-") or None, timeout=30)
        assert wait == f"{mirror}/{helper}" and server.startswith(f"{mirror}/"), (wait, server)
        client.CustomObjectsApi(sandbox.api).delete_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, "mirrored"
        )
        assert eventually(lambda: images("Job", "autoglm-clean-") or None, timeout=30) == [f"{mirror}/{helper}"]


@pytest.mark.parametrize("expandable", [True, False], ids=["expandable", "fixed"])
def test_the_shared_model_cache_grows_for_a_larger_need_or_the_deployment_is_held_saying_why(
    sandbox: Cluster, namespace: str, operator: OperatorContext, expandable: bool
) -> None:
    """The first deployment sizes the namespace's cache claim; a second that needs more grows it where the
    StorageClass allows expansion, and is otherwise held (no pods on a cache its weights do not fit in) with
    Degraded and an Event naming both sizes and the cluster's reason, while the first keeps serving."""
    from autoglm.core.render import CACHE_CLAIM, LABEL_DEPLOYMENT

    core, apps = client.CoreV1Api(sandbox.api), client.AppsV1Api(sandbox.api)
    with storage_class(sandbox, f"{namespace}-cache", expandable):
        _create(sandbox, namespace, "small", modelCache={"storageClassName": f"{namespace}-cache"})
        eventually(lambda: _is(sandbox, namespace, "small", "Ready", "True"), timeout=60)
        claim = eventually(lambda: _bound(core, namespace, CACHE_CLAIM), timeout=30)
        first = claim.spec.resources.requests["storage"]
        assert first != "200Gi"
        _create(sandbox, namespace, "large", modelCache={"size": "200Gi"})

        def workloads(name: str) -> list[str]:
            selector = f"{LABEL_DEPLOYMENT}={name}"
            return [d.metadata.name for d in apps.list_namespaced_deployment(namespace, label_selector=selector).items]

        if expandable:
            eventually(
                lambda: (
                    core.read_namespaced_persistent_volume_claim(CACHE_CLAIM, namespace).spec.resources.requests[
                        "storage"
                    ]
                    == "200Gi"
                ),
                timeout=30,
            )
            eventually(lambda: workloads("large"), timeout=30)
            assert not _is(sandbox, namespace, "large", "Degraded", "True")
        else:
            degraded = eventually(lambda: _is(sandbox, namespace, "large", "Degraded", "True") or None, timeout=30)
            message = _condition(sandbox, namespace, "large", "Degraded")["message"]  # type: ignore[index]
            assert degraded and f"holds {first} and this model needs 200Gi" in message, message
            assert "would not grow it" in message and "StorageClass" in message, message
            events = core.list_namespaced_event(namespace, field_selector="involvedObject.name=large").items
            assert any(e.type == "Warning" and "would not grow it" in e.message for e in events)
            assert not workloads("large") and workloads("small")
            claim = core.read_namespaced_persistent_volume_claim(CACHE_CLAIM, namespace)
            assert claim.spec.resources.requests["storage"] == first
        custom = client.CustomObjectsApi(sandbox.api)
        for name in ("large", "small"):
            custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)


def _bound(core: client.CoreV1Api, namespace: str, name: str) -> Any:
    try:
        claim = core.read_namespaced_persistent_volume_claim(name, namespace)
    except client.ApiException:
        return None
    return claim if claim.status.phase == "Bound" else None
