"""The reconciler against a real API server: plans, applies, converts, reports, and stays quiet when idle."""

from __future__ import annotations

import base64
import json
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from autoglm.core.backends import load_default_catalog
from autoglm.core.placement import MemberView
from autoglm.sandbox.cluster import free_port
from autoglm.sandbox.pki import CertificateAuthority
from autoglm.shell.clusters import ClusterClient
from autoglm.shell.controllers import DEPLOYMENT, ObjectKey, OperatorContext
from autoglm.shell.members import MemberChange, MemberRegistry, MembersNotListed
from autoglm.shell.metrics import OperatorMetrics
from autoglm.shell.reconcile import PROPAGATION_FINALIZER, Reconciler
from tests.integration.conftest import Cluster, extra_runtime, gpus_withdrawn
from tests.integration.test_sandbox import crds_installed, eventually  # noqa: F401  (fixture)

GROUP, VERSION, PLURAL = "autoglm.io", "v1alpha1", "modeldeployments"


@pytest.fixture
def reconciler(sandbox: Cluster, crds_installed: None) -> Reconciler:  # noqa: F811
    return Reconciler(ClusterClient("local", sandbox.api, snapshot_ttl=0), load_default_catalog())


def _create(sandbox: Cluster, namespace: str, name: str, **spec: Any) -> dict[str, Any]:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {"model": {"name": "glm-4-9b-chat"}, **spec},
    }
    return dict(
        client.CustomObjectsApi(sandbox.api).create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    )


def _get(sandbox: Cluster, namespace: str, name: str) -> dict[str, Any]:
    return dict(
        client.CustomObjectsApi(sandbox.api).get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    )


def _condition(body: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(c for c in body["status"]["conditions"] if c["type"] == type_)


def _events(sandbox: Cluster, namespace: str, name: str) -> list[Any]:
    return [e for e in sandbox.core.list_namespaced_event(namespace).items if e.involved_object.name == name]


def test_create_plans_applies_and_becomes_ready(sandbox: Cluster, namespace: str, reconciler: Reconciler) -> None:
    _create(sandbox, namespace, "glm", replicas={"min": 2, "max": 4})
    outcome = reconciler.reconcile(_get(sandbox, namespace, "glm"))
    assert outcome.plan is not None and outcome.plan.feasible
    assert any(a.startswith("Deployment/") for a in outcome.applied)
    body = _get(sandbox, namespace, "glm")
    assert _condition(body, "Planned")["status"] == "True"
    assert body["status"]["backend"] == "vllm-cuda" and body["status"]["precision"] == "fp8"
    assert body["status"]["observedGeneration"] == body["metadata"]["generation"]
    deploy = client.AppsV1Api(sandbox.api).list_namespaced_deployment(namespace).items[0]
    assert deploy.metadata.owner_references[0].uid == body["metadata"]["uid"]
    assert deploy.metadata.managed_fields[0].manager == "autoglm"

    def ready() -> bool:
        reconciler.reconcile(_get(sandbox, namespace, "glm"))
        return _condition(_get(sandbox, namespace, "glm"), "Ready")["status"] == "True"

    eventually(ready, timeout=60, interval=1)
    assert _get(sandbox, namespace, "glm")["status"]["readyReplicas"] == 2
    reconciler.cluster.flush_events()
    assert {"Planned", "ReplicasReady"} <= {e.reason for e in _events(sandbox, namespace, "glm")}


def test_second_reconcile_with_nothing_changed_writes_nothing(
    sandbox: Cluster, namespace: str, reconciler: Reconciler
) -> None:
    _create(sandbox, namespace, "idle")
    eventually(
        lambda: (
            reconciler.reconcile(_get(sandbox, namespace, "idle"))
            and _condition(_get(sandbox, namespace, "idle"), "Ready")["status"] == "True"
        ),
        timeout=60,
        interval=1,
    )
    reconciler.reconcile(_get(sandbox, namespace, "idle"))
    before = _get(sandbox, namespace, "idle")["metadata"]["resourceVersion"]
    deploy_rv = client.AppsV1Api(sandbox.api).list_namespaced_deployment(namespace).items[0].metadata.resource_version
    outcome = reconciler.reconcile(_get(sandbox, namespace, "idle"))
    assert not outcome.status_written and outcome.applied == [] and outcome.events == []
    assert _get(sandbox, namespace, "idle")["metadata"]["resourceVersion"] == before
    assert (
        client.AppsV1Api(sandbox.api).list_namespaced_deployment(namespace).items[0].metadata.resource_version
        == deploy_rv
    )


def test_invalid_spec_gets_a_condition_and_a_warning_event(
    sandbox: Cluster, namespace: str, reconciler: Reconciler
) -> None:
    _create(sandbox, namespace, "unknown", model={"name": "my-private-model"})
    outcome = reconciler.reconcile(_get(sandbox, namespace, "unknown"))
    assert outcome.invalid and "not in the built-in catalog" in outcome.invalid
    planned = _condition(_get(sandbox, namespace, "unknown"), "Planned")
    assert (planned["status"], planned["reason"]) == ("False", "InvalidSpec")
    reconciler.cluster.flush_events()  # Events are posted in the background
    warnings = [e for e in _events(sandbox, namespace, "unknown") if e.type == "Warning"]
    assert any(e.reason == "InvalidSpec" and "architecture" in e.message for e in warnings)
    assert not client.AppsV1Api(sandbox.api).list_namespaced_deployment(namespace).items


def test_unplaceable_model_explains_why(sandbox: Cluster, namespace: str, reconciler: Reconciler) -> None:
    _create(
        sandbox,
        namespace,
        "huge",
        model={"name": "GLM-4.5"},
        precision="bf16",
        fallbackPolicy="none",
        resources={"contextLength": 131072, "maxConcurrentSequences": 64},
    )
    reconciler.reconcile(_get(sandbox, namespace, "huge"))
    planned = _condition(_get(sandbox, namespace, "huge"), "Planned")
    assert planned["reason"] == "Unplaceable" and "GiB" in planned["message"]
    assert _condition(_get(sandbox, namespace, "huge"), "Degraded")["status"] == "True"


def test_catalog_change_replans(sandbox: Cluster, namespace: str, reconciler: Reconciler) -> None:
    _create(sandbox, namespace, "switch")
    reconciler.reconcile(_get(sandbox, namespace, "switch"))
    assert _get(sandbox, namespace, "switch")["status"]["backend"] == "vllm-cuda"
    with extra_runtime(sandbox, "sglang-cuda", priority=500) as runtime:
        outcome = reconciler.reconcile(_get(sandbox, namespace, "switch"))
        assert outcome.plan is not None and outcome.plan.primary is not None
        assert outcome.plan.primary.backend == "sglang-cuda"
        images = [
            d.spec.template.spec.containers[0].image
            for d in client.AppsV1Api(sandbox.api).list_namespaced_deployment(namespace).items
        ]
        assert images == [runtime["spec"]["image"]]


def test_conversion_job_runs_before_serving_and_is_reused(
    sandbox: Cluster, namespace: str, reconciler: Reconciler
) -> None:
    _create(sandbox, namespace, "trt", model={"name": "chatglm3-6b"}, backend="tensorrt-llm", precision="bf16")
    reconciler.reconcile(_get(sandbox, namespace, "trt"))
    converted = _condition(_get(sandbox, namespace, "trt"), "Converted")
    assert converted["status"] == "False" and converted["reason"] == "Converting"
    assert not client.AppsV1Api(sandbox.api).list_namespaced_deployment(namespace).items
    jobs = client.BatchV1Api(sandbox.api).list_namespaced_job(namespace).items
    assert len(jobs) == 1 and jobs[0].metadata.name.startswith("autoglm-convert-")

    def converted_now() -> bool:
        reconciler.reconcile(_get(sandbox, namespace, "trt"))
        return _condition(_get(sandbox, namespace, "trt"), "Converted")["status"] == "True"

    eventually(converted_now, timeout=90, interval=1)
    assert client.AppsV1Api(sandbox.api).list_namespaced_deployment(namespace).items
    # A second deployment of the same model, precision and chip reuses the artifact: no new Job.
    _create(sandbox, namespace, "trt-again", model={"name": "chatglm3-6b"}, backend="tensorrt-llm", precision="bf16")
    reconciler.reconcile(_get(sandbox, namespace, "trt-again"))
    assert len(client.BatchV1Api(sandbox.api).list_namespaced_job(namespace).items) == 1
    assert _condition(_get(sandbox, namespace, "trt-again"), "Converted")["status"] == "True"


def test_failed_conversion_falls_back_to_another_runtime(
    sandbox: Cluster, namespace: str, reconciler: Reconciler
) -> None:
    # The member's own pull secret (placement.memberOverrides) must survive the re-plan without the broken runtime.
    overrides = [{"cluster": "local", "template": {"imagePullSecrets": ["local-registry"]}}]
    body = _create(
        sandbox,
        namespace,
        "trt-fail",
        model={"name": "chatglm3-6b"},
        precision="bf16",
        placement={"memberOverrides": overrides},
    )
    md_plan = reconciler.reconcile(_get(sandbox, namespace, "trt-fail")).plan  # vllm-cuda, no conversion
    assert md_plan is not None
    # Make TensorRT-LLM the preferred runtime, and its conversion fail.
    from autoglm.api import ModelDeployment
    from autoglm.core.render import conversion_job

    trt = next(b for b in load_default_catalog() if b.metadata.name == "tensorrt-llm")
    trt.spec.priority = 1000
    failing = Reconciler(ClusterClient("local", sandbox.api, snapshot_ttl=0), [*load_default_catalog(), trt])
    plan_trt = failing.reconcile(_get(sandbox, namespace, "trt-fail")).plan
    assert plan_trt is not None
    job_name = conversion_job(ModelDeployment.model_validate(body), plan_trt.assignments[0].option)["metadata"]["name"]
    batch = client.BatchV1Api(sandbox.api)
    batch.delete_namespaced_job(job_name, namespace, propagation_policy="Background")
    eventually(lambda: not batch.list_namespaced_job(namespace).items)
    job = conversion_job(ModelDeployment.model_validate(body), plan_trt.assignments[0].option)
    job["spec"]["backoffLimit"] = 0
    job["spec"]["template"]["metadata"]["annotations"] = {"autoglm.io/simulate": "fail"}
    batch.create_namespaced_job(namespace, job)
    eventually(lambda: (batch.read_namespaced_job(job_name, namespace).status.failed or 0) >= 1, timeout=60)

    def fell_back() -> bool:
        failing.reconcile(_get(sandbox, namespace, "trt-fail"))
        status = _get(sandbox, namespace, "trt-fail")["status"]
        return (
            _condition(_get(sandbox, namespace, "trt-fail"), "Converted")["reason"] == "ConversionFailed"
            and status["backend"] == "vllm-cuda"
        )

    eventually(fell_back, timeout=60, interval=1)
    assert _condition(_get(sandbox, namespace, "trt-fail"), "Degraded")["status"] == "True"
    (deployment,) = client.AppsV1Api(sandbox.api).list_namespaced_deployment(namespace).items
    assert deployment.spec.template.spec.containers[0].image.startswith("vllm/")
    assert [s.name for s in deployment.spec.template.spec.image_pull_secrets or []] == ["local-registry"]


def test_node_capacity_change_replans(sandbox: Cluster, namespace: str, reconciler: Reconciler) -> None:
    _create(
        sandbox,
        namespace,
        "moves",
        model={"name": "GLM-4.5-Air"},
        resources={"contextLength": 4096, "maxConcurrentSequences": 2},
    )
    first = reconciler.reconcile(_get(sandbox, namespace, "moves")).plan
    assert first is not None and not first.primary.is_cpu
    with gpus_withdrawn(sandbox):
        second = reconciler.reconcile(_get(sandbox, namespace, "moves")).plan
        assert second is not None and second.primary is not None and second.primary.is_cpu
        assert _get(sandbox, namespace, "moves")["status"]["backend"] == "llama-cpp-cpu"


def test_a_model_outside_the_catalog_is_planned_from_its_config_json_in_a_configmap(
    sandbox: Cluster, namespace: str, reconciler: Reconciler
) -> None:
    """Qwen2-7B-Instruct's published config.json in a ConfigMap: without the ConfigMap the deployment says which
    one it lacks; with it the operator plans the model's real shape (7.6B parameters) on vLLM."""
    from pathlib import Path

    config = (Path(__file__).resolve().parents[1] / "fixtures" / "model-configs" / "qwen2-7b-instruct.json").read_text()
    model = {"name": "qwen2-7b-instruct", "source": "hf://Qwen/Qwen2-7B-Instruct", "configMap": {"name": "qwen2"}}
    _create(sandbox, namespace, "qwen", model=model)
    reconciler.reconcile(_get(sandbox, namespace, "qwen"))
    planned = _condition(_get(sandbox, namespace, "qwen"), "Planned")
    assert planned["status"] == "False"
    assert f"spec.model.configMap {namespace}/qwen2 key config.json: no such ConfigMap" in planned["message"]
    sandbox.core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="qwen2"), data={"config.json": config})
    )
    outcome = reconciler.reconcile(_get(sandbox, namespace, "qwen"))
    assert outcome.plan is not None and outcome.plan.feasible, outcome.plan
    assert outcome.plan.parameters == 7_615_616_512 and outcome.plan.primary is not None
    assert outcome.plan.primary.backend == "vllm-cuda"


def test_ensure_trusts_what_it_found_for_a_while_then_looks_again(sandbox: Cluster, namespace: str) -> None:
    """Every create in a namespace ensures the same model-cache claim: within ensure_ttl a second ensure costs
    no request (an object deleted meanwhile is not seen), after it the object is looked up and made again."""
    cluster = ClusterClient("one", sandbox.api)
    cluster.ensure_ttl = 1.0
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "claimlike", "namespace": namespace}}
    assert cluster.ensure(config) is True
    sandbox.core.delete_namespaced_config_map("claimlike", namespace)
    assert cluster.ensure(config) is False  # trusted: no GET, so the deletion is not seen yet
    assert cluster.get("v1", "ConfigMap", "claimlike", namespace) is None
    eventually(lambda: cluster.ensure(config), timeout=5, interval=0.2)  # looked up again, created again
    assert cluster.get("v1", "ConfigMap", "claimlike", namespace) is not None
    cluster.delete(config)  # what the client deletes itself it forgets at once
    assert cluster.ensure(config) is True


class _HostAndADownMember:
    """Members as placement sees them: the host, and `down`, NotReady since `since` (never connected)."""

    def __init__(self, host: ClusterClient, since: datetime):
        self.host, self.since = host, since

    def heartbeat(self) -> MemberChange:
        return MemberChange.NONE

    def views(self) -> list[MemberView]:
        down = MemberView(name="down", ready=False, since=self.since, reason="connection refused")
        return [MemberView(name="local"), down]

    def client(self, name: str) -> ClusterClient | None:
        return self.host if name == "local" else None

    def get(self, name: str) -> object | None:
        return None

    def names(self) -> list[str]:
        return ["down", "local"]

    def synced(self) -> bool:
        return True


def test_a_member_inside_its_toleration_has_the_deployment_reconciled_again_when_the_toleration_ends(
    sandbox: Cluster,
    namespace: str,
    crds_installed: None,  # noqa: F811
) -> None:
    host = ClusterClient("local", sandbox.api, snapshot_ttl=0)
    now = datetime.now(UTC)
    members = _HostAndADownMember(host, now - timedelta(seconds=2))
    reconciler = Reconciler(host, load_default_catalog(), members=members, clock=lambda: now)
    _create(sandbox, namespace, "fo", replicas={"min": 2, "max": 2}, placement={"failover": {"tolerationSeconds": 30}})
    # No event will say when the 30 s run out: the reconcile asks to be run again then.
    outcome = reconciler.reconcile(_get(sandbox, namespace, "fo"))
    assert outcome.requeue_after == 28.0
    # The controller holds the key back for that long (not a retry: nothing failed).
    context = OperatorContext(reconciler, OperatorMetrics(), client.Configuration())
    context.store.put(_get(sandbox, namespace, "fo"))
    key = ObjectKey(DEPLOYMENT, namespace, "fo")
    context.handle(key)
    assert context.queue.waiting() == 1 and context.queue.depth() == 0 and context.queue.failures(key) == 0
    # Past the toleration the member is no candidate: nothing more falls due.
    members.since = now - timedelta(seconds=31)
    assert reconciler.reconcile(_get(sandbox, namespace, "fo")).requeue_after is None


class _TheHostAsARemoteMember:
    """One member, `far`, reached through the host's own API server: what lands there is applied as on any
    remote member (side by side, nothing deferred, the propagation finalizer held)."""

    def __init__(self, far: ClusterClient):
        self.far = far

    def heartbeat(self) -> MemberChange:
        return MemberChange.NONE

    def views(self) -> list[MemberView]:
        return [MemberView(name="far")]

    def client(self, name: str) -> ClusterClient | None:
        return self.far if name == "far" else None

    def get(self, name: str) -> object | None:
        return self.far if name == "far" else None

    def names(self) -> list[str]:
        return ["far"]

    def synced(self) -> bool:
        return True


@contextmanager
def _admission(sandbox: Cluster, namespace: str, tmp: Path, decide: Callable[[dict[str, Any]], bool]) -> Iterator[None]:
    """A validating admission webhook for the namespace's Deployments and Services, served on 127.0.0.1:
    `decide(request)` is called for each (it may take its time) and says whether the object is allowed."""
    ca = CertificateAuthority(tmp / "webhook-ca", "autoglm-test-webhook-ca")
    cert = ca.issue("webhook", "127.0.0.1", ips=("127.0.0.1",), server=True)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            request = review["request"]
            allowed = decide(request)
            answer: dict[str, Any] = {"uid": request["uid"], "allowed": allowed}
            if not allowed:
                answer["status"] = {"code": 403, "message": "refused by the test's webhook"}
            data = json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": answer})
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data.encode())

        def log_message(self, *_: Any) -> None:
            return None

    port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert.cert, cert.key)
    server.socket = tls.wrap_socket(server.socket, server_side=True)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="test-webhook", daemon=True).start()
    name = f"autoglm-test-{namespace}"
    webhook = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [
            {
                "name": "test.autoglm.io",
                "clientConfig": {
                    "url": f"https://127.0.0.1:{port}/validate",
                    "caBundle": base64.b64encode(ca.cert_path.read_bytes()).decode(),
                },
                "rules": [
                    {
                        "apiGroups": ["apps"],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE"],
                        "resources": ["deployments"],
                    },
                    {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["services"]},
                ],
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
                "sideEffects": "None",
                "admissionReviewVersions": ["v1"],
                "failurePolicy": "Fail",
                "timeoutSeconds": 10,
            }
        ],
    }
    admission = client.AdmissionregistrationV1Api(sandbox.api)
    admission.create_validating_webhook_configuration(webhook)
    try:
        yield
    finally:
        admission.delete_validating_webhook_configuration(name)
        server.shutdown()
        server.server_close()


def test_a_reconcile_whose_apply_failed_returns_only_after_its_other_applies_ended_so_deletion_leaves_nothing(
    sandbox: Cluster,
    namespace: str,
    tmp_path: Path,
    crds_installed: None,  # noqa: F811
) -> None:
    """A member refuses the Deployment at once while its Service takes 3 s to be admitted. The reconcile must not
    return (and the next one, a deletion, must not look) while the Service's apply is still on its way: the
    deletion would find nothing, let go of the finalizer, and the Service would land afterwards, owned by nothing
    (the soak's leftover on a member: an apply that outlived its reconcile)."""
    host = ClusterClient("local", sandbox.api, snapshot_ttl=0)
    far = ClusterClient("far", sandbox.api, snapshot_ttl=0)
    reconciler = Reconciler(host, load_default_catalog(), members=_TheHostAsARemoteMember(far))
    selector = "autoglm.io/modeldeployment=late"
    admitted = threading.Event()

    def decide(request: dict[str, Any]) -> bool:
        if request["kind"]["kind"] == "Deployment":
            return False
        time.sleep(3)
        admitted.set()
        return True

    _create(sandbox, namespace, "late", replicas={"min": 1, "max": 1})
    with _admission(sandbox, namespace, tmp_path, decide):
        outcome = reconciler.reconcile(_get(sandbox, namespace, "late"))
        assert outcome.fleet is not None
        far_outcome = next(o for o in outcome.fleet.members if o.cluster == "far")
        assert far_outcome.error is not None and "refused by the test's webhook" in far_outcome.error
        assert admitted.is_set(), "the reconcile returned while its Service's apply was still being admitted"
        services = sandbox.core.list_namespaced_service(namespace, label_selector=selector).items
        assert [s.metadata.name for s in services] == ["late"]
        client.CustomObjectsApi(sandbox.api).delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "late")
        body = _get(sandbox, namespace, "late")
        assert body["metadata"].get("deletionTimestamp")
        done = reconciler.reconcile(body)
        assert done.waiting is None and done.deleted == ["far:Service/late"]
    eventually(lambda: not sandbox.core.list_namespaced_service(namespace, label_selector=selector).items, timeout=10)
    time.sleep(1)  # nothing lands later either
    assert not sandbox.core.list_namespaced_service(namespace, label_selector=selector).items


def test_a_member_applied_to_whose_status_write_failed_is_withdrawn_when_the_placement_leaves_it(
    sandbox: Cluster,
    namespace: str,
    crds_installed: None,  # noqa: F811
) -> None:
    """A reconcile applies to member `far`, then its status write conflicts (the object changed meanwhile): no
    status names `far`. The placement then leaves `far` out. Withdrawal goes by what the status names, so without
    the reconciler remembering where it applied, `far` would keep the objects for good, counted by nobody."""
    host = ClusterClient("local", sandbox.api, snapshot_ttl=0)
    far = ClusterClient("far", sandbox.api, snapshot_ttl=0)
    reconciler = Reconciler(host, load_default_catalog(), members=_TheHostAsARemoteMember(far))
    selector = "autoglm.io/modeldeployment=unsaid"
    custom = client.CustomObjectsApi(sandbox.api)
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelDeployment",
        # Held as the first reconcile would hold it: this reconcile's only write to the object is its status.
        "metadata": {"name": "unsaid", "finalizers": [PROPAGATION_FINALIZER]},
        "spec": {
            "model": {"name": "glm-4-9b-chat"},
            "replicas": {"min": 1, "max": 1},
            "placement": {"clusters": ["far"]},
        },
    }
    read = dict(custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body))
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "unsaid", {"metadata": {"labels": {"edited": "meanwhile"}}}
    )
    with pytest.raises(client.ApiException) as conflict:
        reconciler.reconcile(read)
    assert conflict.value.status == 409
    assert (
        client.AppsV1Api(sandbox.api).list_namespaced_deployment(namespace, label_selector=selector).items
    )  # landed on far
    assert not (_get(sandbox, namespace, "unsaid").get("status") or {}).get("clusters")  # named nowhere
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "unsaid", {"spec": {"placement": {"clusters": ["elsewhere"]}}}
    )
    outcome = reconciler.reconcile(_get(sandbox, namespace, "unsaid"))
    assert any(ref.startswith("far:Deployment/") for ref in outcome.deleted), outcome.deleted
    assert not client.AppsV1Api(sandbox.api).list_namespaced_deployment(namespace, label_selector=selector).items
    assert len(reconciler.strays) == 0  # its status landed: nothing more to look for
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "unsaid", {"metadata": {"finalizers": None}}
    )


def test_nothing_is_reconciled_before_the_member_clusters_were_listed_so_a_deletion_waits(
    sandbox: Cluster,
    namespace: str,
    crds_installed: None,  # noqa: F811
) -> None:
    """Before a heartbeat has listed the MemberClusters (the host did not answer the first one), every member would
    look unjoined: a deletion would let go with its objects still on them. It waits for the list instead."""
    host = ClusterClient("local", sandbox.api, snapshot_ttl=0)
    registry = MemberRegistry(host, include_local=False)
    reconciler = Reconciler(host, load_default_catalog(), members=registry)
    custom = client.CustomObjectsApi(sandbox.api)
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelDeployment",
        "metadata": {"name": "early", "finalizers": [PROPAGATION_FINALIZER]},
        "spec": {"model": {"name": "glm-4-9b-chat"}},
    }
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "early")
    with pytest.raises(MembersNotListed):
        reconciler.reconcile(_get(sandbox, namespace, "early"))
    assert _get(sandbox, namespace, "early")["metadata"]["finalizers"] == [PROPAGATION_FINALIZER]
    registry.heartbeat()
    done = reconciler.reconcile(_get(sandbox, namespace, "early"))
    assert done.deleting and done.waiting is None
    with pytest.raises(client.ApiException) as gone:
        _get(sandbox, namespace, "early")
    assert gone.value.status == 404
