"""The Helm chart on a real sandbox cluster: install, the operator run with only the chart's ServiceAccount token
through the operator's scenarios (the API server's RBAC and audit log are the judge), helm test, upgrade and
uninstall.

The chart's operator Pod lands on a KWOK node and runs no container; the operator itself runs here as a process
on 127.0.0.1 with the token the chart's ServiceAccount gets, which is what the Pod would run with.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, watch

from autoglm.core.backends import load_default_catalog
from autoglm.sandbox import fleet
from autoglm.sandbox.cluster import free_port
from autoglm.shell.clusters import LABEL_DEPLOYMENT, ClusterClient
from autoglm.shell.members import flatten_kubeconfig, join
from tests.argocd import health
from tests.chart import CHART, run
from tests.conftest import EXAMPLES, load_nodes
from tests.integration.conftest import Cluster, _start, token_kubeconfig
from tests.integration.test_sandbox import eventually

RELEASE, NAMESPACE = "autoglm", "autoglm-system"
SERVICE_ACCOUNT = f"system:serviceaccount:{NAMESPACE}:{RELEASE}-open-autoglm"
GROUP, VERSION = "autoglm.io", "v1alpha1"
SERVING = "serving"

# Rules the scenarios here do not reach, each with why it is in the chart anyway. Anything else in the chart's
# roles that the operator never asked for fails the audit test.
NOT_EXERCISED = {
    ("apps", "statefulsets", "create"): "pipeline parallelism over nodes only (GLM-4.5 on Ascend: test_members)",
    ("apps", "statefulsets", "patch"): "pipeline parallelism over nodes only",
    ("apps", "statefulsets", "delete"): "pipeline parallelism over nodes only",
    ("monitoring.coreos.com", "podmonitors", "list"): "the sandbox does not serve the Prometheus Operator's CRDs",
    ("monitoring.coreos.com", "podmonitors", "create"): "the sandbox does not serve the Prometheus Operator's CRDs",
    ("monitoring.coreos.com", "podmonitors", "patch"): "the sandbox does not serve the Prometheus Operator's CRDs",
    ("monitoring.coreos.com", "podmonitors", "delete"): "the sandbox does not serve the Prometheus Operator's CRDs",
    **{
        ("inference.networking.k8s.io", "inferencepools", verb): "no deployment of the scenario asks for a pool"
        for verb in ("list", "create", "patch", "delete")
    },
}


@pytest.fixture(scope="module")
def install_fleet(sandbox_binaries: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A host with H100 and CPU nodes, and an Ascend member, for the chart alone (its CRDs must land fresh)."""
    clusters = {
        "host": load_nodes("nvidia-h100.yaml") + load_nodes("cpu.yaml"),
        "member": load_nodes("huawei-ascend.yaml"),
    }
    yield from _start(tmp_path_factory, clusters, audit=True, crds=False)


def helm(host: Cluster, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run("helm", *args, "--kubeconfig", str(host.state.kubeconfig), "-n", NAMESPACE, check=check)


@pytest.fixture(scope="module")
def installed(install_fleet: dict[str, Cluster]) -> Cluster:
    host = install_fleet["host"]
    install = ("install", RELEASE, str(CHART), "--create-namespace", "--set", "nodeProbe.enabled=true")
    helm(host, *install, "--wait", "--timeout", "120s")
    return host


def _custom(host: Cluster) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(host.api)


def test_helm_install_lands_crds_rbac_catalog_and_a_hardened_operator(installed: Cluster) -> None:
    host = installed
    crds = client.ApiextensionsV1Api(host.api).list_custom_resource_definition().items
    established = {
        c.metadata.name
        for c in crds
        if any(x.type == "Established" and x.status == "True" for x in c.status.conditions or [])
    }
    expected = {p.name for p in (CHART / "crds").iterdir()}
    assert {f"{n.removesuffix('.yaml')}.{GROUP}" for n in expected} <= established
    runtimes = _custom(host).list_cluster_custom_object(GROUP, VERSION, "backendruntimes")["items"]
    assert sorted(r["metadata"]["name"] for r in runtimes) == sorted(
        b.to_manifest()["metadata"]["name"] for b in load_default_catalog()
    )
    rbac = client.RbacAuthorizationV1Api(host.api)
    roles = [
        r.metadata.name for r in rbac.list_cluster_role(label_selector=f"app.kubernetes.io/instance={RELEASE}").items
    ]
    names = ("cluster", "node-probe", "workloads")
    assert sorted(roles) == [f"{RELEASE}-open-autoglm-{n}" for n in names]
    deployment = client.AppsV1Api(host.api).read_namespaced_deployment(f"{RELEASE}-open-autoglm", NAMESPACE)
    assert deployment.status.ready_replicas == 1  # --wait: the (fake) Pod was admitted, scheduled and Ready
    assert deployment.spec.template.spec.containers[0].security_context.read_only_root_filesystem is True
    assert "--leader-elect" in deployment.spec.template.spec.containers[0].args


def _token_kubeconfig(host: Cluster, path: Path, account: str = SERVICE_ACCOUNT) -> Path:
    """A token of one of the chart's ServiceAccounts (system:serviceaccount:NAMESPACE:NAME)."""
    return token_kubeconfig(host, NAMESPACE, account.rsplit(":", 1)[1], path)


def _audit(host: Cluster, account: str = SERVICE_ACCOUNT) -> list[dict[str, Any]]:
    lines = host.state.audit_log.read_text().splitlines() if host.state.audit_log.exists() else []
    return [e for e in map(json.loads, lines) if e["user"]["username"] == account]


def _md(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelDeployment", "metadata": {"name": name}, "spec": spec}


def _status(host: Cluster, name: str) -> dict[str, Any]:
    body = _custom(host).get_namespaced_custom_object(GROUP, VERSION, SERVING, "modeldeployments", name)
    return dict(body.get("status") or {})


def _is(host: Cluster, name: str, type_: str) -> bool:
    return any(c["type"] == type_ and c["status"] == "True" for c in _status(host, name).get("conditions") or [])


def _clusters(host: Cluster, name: str) -> dict[str, int]:
    return {c["name"]: c.get("ready", 0) for c in _status(host, name).get("clusters") or []}


def _member_ready(host: Cluster) -> str:
    body = _custom(host).get_cluster_custom_object(GROUP, VERSION, "memberclusters", "member")
    ready = next((c for c in (body.get("status") or {}).get("conditions") or [] if c["type"] == "Ready"), {})
    return str(ready.get("status", ""))


@contextmanager
def operator_process(kubeconfig: Path, log: Path, *flags: str) -> Iterator[None]:
    """`autoglm run` as the chart's Pod runs it (leader election on the chart's Lease, no metrics port here), on
    127.0.0.1."""
    command = [
        sys.executable,
        "-c",
        "from autoglm.face.cli import main; main()",
        "run",
        "--kubeconfig",
        str(kubeconfig),
    ]
    with log.open("w") as out:
        proc = subprocess.Popen(
            [*command, "--leader-elect", "--leader-election-namespace", NAMESPACE, "--metrics-port", "0", *flags],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            yield
        finally:
            proc.terminate()
            proc.wait(30)


class StatusRecorder:
    """Every version of every ModelDeployment in a namespace, as a watch delivers them (for the Argo CD check)."""

    def __init__(self, host: Cluster, namespace: str) -> None:
        self.seen: list[dict[str, Any]] = []
        self.error: BaseException | None = None
        self._stopped = threading.Event()
        self._watch = watch.Watch()
        args = (GROUP, VERSION, namespace, "modeldeployments")
        self._stream = self._watch.stream(_custom(host).list_namespaced_custom_object, *args, timeout_seconds=600)
        self._thread = threading.Thread(target=self._record, daemon=True)
        self._thread.start()

    def _record(self) -> None:
        try:
            self.seen.extend(event["object"] for event in self._stream)
        except Exception as exc:  # the sandbox going away ends the watch; before stop() it is a failure
            if not self._stopped.is_set():
                self.error = exc

    def stop(self) -> None:
        self._stopped.set()
        self._watch.stop()

    def of(self, name: str) -> list[dict[str, Any]]:
        assert self.error is None, f"the status watch failed: {self.error}"
        return [o for o in self.seen if o["metadata"]["name"] == name]


RECORDED: dict[str, StatusRecorder] = {}


def test_the_operator_runs_its_scenarios_with_only_the_charts_rights(
    installed: Cluster, install_fleet: dict[str, Cluster], tmp_path: Path
) -> None:
    """create, conversion Job, member failover, delete with finalizer, Events, leader election: every request allowed by
    the chart's roles (no 403 in the audit log), and every rule of the roles used by some request."""
    host, member = installed, install_fleet["member"]
    kubeconfig = _token_kubeconfig(host, tmp_path / "operator.kubeconfig")
    member_config = flatten_kubeconfig(
        yaml.safe_load(member.state.kubeconfig.read_text()), member.state.kubeconfig.parent
    )
    join(ClusterClient("host", host.api), "member", member_config, {"vendor": "ascend"}, namespace=NAMESPACE)
    host.core.create_namespace({"metadata": {"name": SERVING}})
    RECORDED["serving"] = recorder = StatusRecorder(host, SERVING)
    health = free_port()
    log = tmp_path / "operator.log"
    state_dir = Path(member.state.directory).parent
    flags = ("--liveness", f"http://127.0.0.1:{health}/healthz", "--resync", "2", "--member-heartbeat", "1")
    with operator_process(kubeconfig, log, *flags):
        try:
            eventually(lambda: _member_ready(host) == "True", timeout=60)
            placement = {
                "clusters": ["local", "member"],
                "weights": {"static": [{"cluster": "local", "weight": 1}, {"cluster": "member", "weight": 1}]},
                "failover": {"tolerationSeconds": 2, "rebalanceSeconds": 2},
            }
            create = _custom(host).create_namespaced_custom_object
            spec = {"model": {"name": "glm-4-9b-chat"}, "modelCache": {"enabled": False}}
            create(
                GROUP,
                VERSION,
                SERVING,
                "modeldeployments",
                # A range, not a fixed size: its HPA is made, and deleted from the host when it moves away.
                _md("chat", **spec, replicas={"min": 2, "max": 4}, placement=placement),
            )
            eventually(lambda: _clusters(host, "chat") == {"local": 1, "member": 1}, timeout=90)
            trt = {"model": {"name": "chatglm3-6b"}, "backend": "tensorrt-llm", "precision": "bf16"}
            create(GROUP, VERSION, SERVING, "modeldeployments", _md("trt", **trt, placement={"clusters": ["local"]}))
            eventually(lambda: _is(host, "trt", "Converted"), timeout=90)

            # No runtime of this name serves an H100: Unplaceable.
            create(
                GROUP,
                VERSION,
                SERVING,
                "modeldeployments",
                _md("nowhere", **spec, backend="vllm-ascend", placement={"clusters": ["local"]}),
            )
            eventually(
                lambda: any(c["reason"] == "Unplaceable" for c in _status(host, "nowhere").get("conditions") or []),
                timeout=60,
            )

            fleet.stop(state_dir, "member")
            try:
                eventually(lambda: _member_ready(host) == "False", timeout=30)
                eventually(lambda: _clusters(host, "chat").get("local") == 2, timeout=60)
            finally:
                fleet.start(state_dir, "member")
            eventually(lambda: _member_ready(host) == "True", timeout=60)
            # Moved off the host altogether: its objects there are deleted.
            placement = {"clusters": ["member"], "failover": {"tolerationSeconds": 2, "rebalanceSeconds": 2}}
            patch = {"spec": {"placement": placement}}
            _custom(host).patch_namespaced_custom_object(GROUP, VERSION, SERVING, "modeldeployments", "chat", patch)
            eventually(lambda: _clusters(host, "chat").get("member") == 2, timeout=60)
            apps = client.AppsV1Api(host.api)
            eventually(
                lambda: not apps.list_namespaced_deployment(SERVING, label_selector=f"{LABEL_DEPLOYMENT}=chat").items,
                timeout=30,
            )

            # A model outside the catalog, planned from the config.json in its ConfigMap.
            config_map, qwen = yaml.safe_load_all((EXAMPLES / "model-config" / "qwen2-7b-instruct.yaml").read_text())
            host.core.create_namespaced_config_map(
                SERVING, {**config_map, "metadata": {"name": config_map["metadata"]["name"]}}
            )
            qwen["spec"]["placement"] = {"clusters": ["local"]}
            create(GROUP, VERSION, SERVING, "modeldeployments", {**qwen, "metadata": {"name": "qwen"}})
            eventually(lambda: _is(host, "qwen", "Planned"), timeout=60)

            _custom(host).delete_namespaced_custom_object(GROUP, VERSION, SERVING, "modeldeployments", "trt")
            jobs = client.BatchV1Api(host.api)
            eventually(
                lambda: [
                    j for j in jobs.list_namespaced_job(SERVING).items if j.metadata.name.startswith("autoglm-clean-")
                ],
                timeout=60,
            )

            def names() -> list[str]:
                listed = _custom(host).list_namespaced_custom_object(GROUP, VERSION, SERVING, "modeldeployments")
                return [i["metadata"]["name"] for i in listed["items"]]

            eventually(lambda: "trt" not in names(), timeout=60)

            events = host.core.list_namespaced_event(SERVING).items
            assert [e for e in events if e.involved_object.name == "chat" and e.source.component == "autoglm-operator"]
            lease = client.CoordinationV1Api(host.api).read_namespaced_lease("open-autoglm", NAMESPACE)
            assert lease.spec.holder_identity and lease.spec.renew_time, "the operator holds and renews the Lease"
            _helm_test_command_passes_against(host, f"http://127.0.0.1:{health}/healthz")
        finally:
            recorder.stop()
    audit = _audit(host)
    denied = sorted({(e["verb"], e["requestURI"]) for e in audit if e.get("responseStatus", {}).get("code") == 403})
    assert not denied, f"the chart's roles refused the operator: {denied}\n{log.read_text()[-3000:]}"
    assert "Traceback" not in log.read_text(), log.read_text()[-3000:]
    # Every authorized request used its rule, whatever it answered (a get of an object not there yet is a 404);
    # a server-side apply that created its object (201) was authorized for create as well.
    used = {
        (e["objectRef"].get("apiGroup", ""), _resource(e["objectRef"]), verb)
        for e in audit
        if "objectRef" in e and e.get("responseStatus", {}).get("code") != 403
        for verb in (
            (e["verb"], "create") if e["verb"] == "patch" and e["responseStatus"]["code"] == 201 else (e["verb"],)
        )
    }
    granted = _granted(host)
    unused = sorted(granted - used - set(NOT_EXERCISED))
    assert not unused, f"rules no request used (remove them, or say in NOT_EXERCISED why they stay): {unused}"
    stale = sorted(set(NOT_EXERCISED) - granted)
    assert not stale, f"NOT_EXERCISED names rules the chart no longer grants: {stale}"


def test_the_node_probe_labels_its_node_with_only_its_own_rights(installed: Cluster, tmp_path: Path) -> None:
    """`autoglm probe`, as the chart's DaemonSet runs it, with its ServiceAccount's token: this machine's CPU
    becomes autoglm.io/cpu.* labels on a sandbox Node (no accelerator tool here: none of those labels)."""
    host = installed
    account = f"{SERVICE_ACCOUNT}-node-probe"
    daemonset = client.AppsV1Api(host.api).read_namespaced_daemon_set(account.rsplit(":", 1)[1], NAMESPACE)
    assert daemonset.status.desired_number_scheduled == len(host.core.list_node().items)
    node = host.core.list_node().items[0].metadata.name
    kubeconfig = _token_kubeconfig(host, tmp_path / "probe.kubeconfig", account)
    command = [sys.executable, "-c", "from autoglm.face.cli import main; main()", "probe", "--once"]
    done = subprocess.run(
        [*command, "--node", node, "--kubeconfig", str(kubeconfig)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    labels = host.core.read_node(node).metadata.labels
    assert [k for k in labels if k.startswith("autoglm.io/cpu.")] and "labelled" in done.stderr, done.stderr
    verbs = {(e["objectRef"]["resource"], e["verb"], e["responseStatus"]["code"]) for e in _audit(host, account)}
    assert verbs == {("nodes", "get", 200), ("nodes", "patch", 200)}


def test_the_argo_cd_health_check_reads_the_statuses_the_operator_wrote() -> None:
    """manifests/argocd's Lua, run as Argo CD runs it, on every version of every ModelDeployment the scenario above
    saw: Progressing before a plan and while converting, Healthy when ready, Degraded when unplaceable or a member
    is down, each with the condition's message."""
    recorder = RECORDED["serving"]
    verdicts = {name: [(health(o), o) for o in recorder.of(name)] for name in ("chat", "trt", "nowhere")}
    assert all(versions for versions in verdicts.values()), {n: len(v) for n, v in verdicts.items()}
    for versions in verdicts.values():
        assert {status for (status, _), _ in versions} <= {"Healthy", "Progressing", "Degraded"}
    (first, _), *_ = verdicts["chat"]
    assert first == ("Progressing", "Waiting for the operator to plan the deployment")
    healthy = [m for (s, m), o in verdicts["chat"] if s == "Healthy"]
    assert healthy and all(m.endswith("replicas ready") for m in healthy)
    converting = [m for (s, m), o in verdicts["trt"] if _reason(o, "Converted") == "Converting"]
    assert converting == [m for (s, m), o in verdicts["trt"] if s == "Progressing" and "Job" in m] and converting
    member_down = [m for (s, m), o in verdicts["chat"] if s == "Degraded" and "member unreachable" in m]
    assert member_down, "\n".join(f"{s}: {m[:160]}" for (s, m), _ in verdicts["chat"])
    status, message = verdicts["nowhere"][-1][0]
    assert status == "Degraded" and message.startswith("Unplaceable: ")


def _reason(obj: dict[str, Any], type_: str) -> str | None:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return next((c["reason"] for c in conditions if c["type"] == type_), None)


def _resource(ref: dict[str, Any]) -> str:
    return f"{ref['resource']}/{ref['subresource']}" if ref.get("subresource") else str(ref["resource"])


def _granted(host: Cluster) -> set[tuple[str, str, str]]:
    rbac = client.RbacAuthorizationV1Api(host.api)
    selector = f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component=operator"
    roles = [
        *rbac.list_cluster_role(label_selector=selector).items,
        *rbac.list_role_for_all_namespaces(label_selector=selector).items,
    ]
    return {
        (group, resource, verb)
        for role in roles
        for rule in role.rules
        for group in rule.api_groups
        for resource in rule.resources
        for verb in rule.verbs
    }


def _helm_test_command_passes_against(host: Cluster, url: str) -> None:
    """Run the chart's `helm test` container command here, against the real operator's /healthz (the hook's own
    Pod on the sandbox is a fake that runs nothing)."""
    manifest = helm(host, "get", "hooks", RELEASE).stdout
    (job,) = [d for d in yaml.safe_load_all(manifest) if d and d["kind"] == "Job"]
    command = job["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[0] == "python" and command[-1].endswith("/healthz")
    done = subprocess.run([sys.executable, *command[1:-1], url], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and "200" in done.stdout, done.stderr


def test_helm_test_then_an_upgrade_to_one_watched_namespace_runs_with_only_that_namespaces_rights(
    installed: Cluster, tmp_path: Path
) -> None:
    """`helm test`; `helm upgrade` to watchNamespaces=[serving]: the workload rules become a RoleBinding there
    (the Lease stays in the release namespace); the operator run with `-n serving` under the token still gets no
    403."""
    host = installed
    helm(host, "test", RELEASE, "--timeout", "60s")
    upgrade = ("upgrade", RELEASE, str(CHART), "--reuse-values", "--set", "resyncSeconds=15")
    mirror = ("--set", "images.registry=registry.corp.example:5000/ai", "--set", "images.helper=tools/sh:1")
    helm(host, *upgrade, *mirror, "--set", f"watchNamespaces[0]={SERVING}", "--wait", "--timeout", "120s")
    status = json.loads(helm(host, "status", RELEASE, "-o", "json").stdout)
    assert status["version"] == 2 and status["info"]["status"] == "deployed"
    apps = client.AppsV1Api(host.api)
    args = apps.read_namespaced_deployment(f"{RELEASE}-open-autoglm", NAMESPACE).spec.template.spec.containers[0].args
    assert "--resync=15" in args and f"--namespace={SERVING}" in args
    assert "--image-registry=registry.corp.example:5000/ai" in args and "--helper-image=tools/sh:1" in args
    rbac = client.RbacAuthorizationV1Api(host.api)
    workloads = f"{RELEASE}-open-autoglm-workloads"
    assert [
        b.metadata.namespace for b in rbac.list_role_binding_for_all_namespaces().items if b.metadata.name == workloads
    ] == [SERVING]
    assert workloads not in [b.metadata.name for b in rbac.list_cluster_role_binding().items]

    seen = len(_audit(host))
    kubeconfig = _token_kubeconfig(host, tmp_path / "operator.kubeconfig")
    spec = {"model": {"name": "glm-4-9b-chat"}, "modelCache": {"enabled": False}, "placement": {"clusters": ["local"]}}
    with operator_process(kubeconfig, tmp_path / "operator.log", "--namespace", SERVING, "--liveness", ""):
        _custom(host).create_namespaced_custom_object(
            GROUP, VERSION, SERVING, "modeldeployments", _md("scoped", **spec)
        )
        eventually(lambda: _is(host, "scoped", "Ready"), timeout=60)
    audit = _audit(host)[seen:]
    denied = sorted({(e["verb"], e["requestURI"]) for e in audit if e.get("responseStatus", {}).get("code") == 403})
    assert audit and not denied, denied


def test_helm_uninstall_keeps_crds_and_running_deployments(installed: Cluster) -> None:
    host = installed
    apps = client.AppsV1Api(host.api)

    helm(host, "uninstall", RELEASE, "--wait", "--timeout", "60s")
    rbac = client.RbacAuthorizationV1Api(host.api)
    assert not rbac.list_cluster_role(label_selector=f"app.kubernetes.io/instance={RELEASE}").items
    assert not apps.list_namespaced_deployment(NAMESPACE).items
    assert not _custom(host).list_cluster_custom_object(GROUP, VERSION, "backendruntimes")["items"]
    # Helm never deletes a chart's CRDs: the ModelDeployments, and what they run, stay (README "Uninstall").
    served = _custom(host).get_namespaced_custom_object(GROUP, VERSION, SERVING, "modeldeployments", "chat")
    assert served["metadata"]["name"] == "chat"
    assert [d.metadata.name for d in apps.list_namespaced_deployment(SERVING).items]
