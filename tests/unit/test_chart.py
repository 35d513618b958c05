"""The Helm chart, offline: generated files without drift, lint, a schema that rejects bad values, every rendered
object valid for Kubernetes and the CRDs, a hardened operator pod, and only flags `autoglm run` has."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import typer.main
import yaml

from autoglm.face.cli import app, render_catalog, render_crds
from tests.chart import CHART, run, template
from tests.conftest import ROOT
from tests.crd_validation import schema_errors

# Several value sets a platform team would use; each must lint and render valid objects.
VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "namespaced": {"watchNamespaces": ["team-a", "team-b"], "memberSecretNames": ["gpu-kubeconfig"]},
    "karmada": {
        "propagation": {"mode": "karmada", "noLocal": True},
        "karmada": {"kubeconfigSecret": {"name": "karmada-kubeconfig", "key": "config"}},
        "prometheus": {"url": "http://prometheus.monitoring.svc:9090"},
        "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus"}}},
        "log": {"format": "text", "verbose": True},
    },
    "probe": {"nodeProbe": {"enabled": True, "ascendDriverPath": "/usr/local/Ascend/driver", "intervalSeconds": 300}},
    "gateway": {
        "gateway": {
            "enabled": True,
            "apiKeysSecret": "gateway-api-keys",
            "mqtt": {"broker": "mosquitto.edge.svc:1883", "credentialsSecret": "gateway-mqtt"},
            "otlpEndpoint": "http://otel-collector.observability.svc:4318",
            "service": {"type": "LoadBalancer"},
        }
    },
    "mirrored": {"images": {"helper": "tools/sh:1", "registry": "registry.corp.example:5000/ai"}},
    "minimal": {
        "leaderElection": {"enabled": False},
        "catalog": {"install": False},
        "metrics": {"service": {"enabled": False}},
    },
}


def _crds() -> dict[str, Any]:
    return {
        doc["spec"]["names"]["kind"]: doc for text in render_crds().values() for doc in yaml.safe_load_all(text) if doc
    }


def test_the_chart_installs_the_generated_crds_and_catalog_without_drift() -> None:
    for name, text in render_crds().items():
        assert (CHART / "crds" / name).read_text() == text, f"charts/open-autoglm/crds/{name}: run `autoglm crds`"
        assert (ROOT / "crds" / name).read_text() == text, f"crds/{name}: run `autoglm crds`"
    assert sorted(p.name for p in (CHART / "crds").iterdir()) == sorted(render_crds())
    catalog = (CHART / "files" / "backendruntimes.yaml").read_text()
    assert catalog.split("\n", 1)[1] == render_catalog(), "run `autoglm catalog --out charts/open-autoglm/files/...`"


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_every_value_set_lints_and_renders_valid_objects(name: str, tmp_path: Path) -> None:
    values = VALUE_SETS[name]
    from tests.chart import values_file

    run("helm", "lint", "--strict", str(CHART), "-f", str(values_file(tmp_path, values)))
    objects = template(tmp_path, values)
    crds = _crds()
    kinds = [o["kind"] for o in objects]
    assert kinds.count("CustomResourceDefinition") == len(crds)
    for obj in objects:
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        if obj["kind"] in crds:
            assert schema_errors(crds[obj["kind"]], obj) == [], where
        elif obj["apiVersion"].startswith("monitoring.coreos.com/"):
            # The Prometheus Operator's CRD is not ours to vendor: check the fields it requires.
            assert obj["kind"] == "ServiceMonitor" and obj["spec"]["selector"]["matchLabels"], where
            assert obj["spec"]["endpoints"][0]["port"] == "metrics", where
        else:
            kubernetes_validate.validate(obj, "1.34.0", strict=True)
    assert ("BackendRuntime" in kinds) == (name != "minimal")
    assert ("ServiceMonitor" in kinds) == (name == "karmada")


def _operator(objects: list[Any]) -> dict[str, Any]:
    (deployment,) = [o for o in objects if o["kind"] == "Deployment" and not o["metadata"]["name"].endswith("-gateway")]
    return deployment  # type: ignore[no-any-return]


def test_the_operator_pod_is_hardened_and_probed_on_healthz(tmp_path: Path) -> None:
    deployment = _operator(template(tmp_path, {}))
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    ctx = container["securityContext"]
    assert ctx["readOnlyRootFilesystem"] is True and ctx["allowPrivilegeEscalation"] is False
    assert ctx["capabilities"] == {"drop": ["ALL"]}
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "healthz"}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert f"--liveness=http://0.0.0.0:{ports['healthz']}/healthz" in container["args"]
    assert f"--metrics-port={ports['metrics']}" in container["args"]
    assert container["resources"]["limits"]["memory"]


def _lease_role(objects: list[Any]) -> dict[str, Any] | None:
    roles = [o for o in objects if o["kind"] == "Role" and o["metadata"]["name"].endswith("-leader-election")]
    return roles[0] if roles else None


def test_leader_election_is_on_by_default_with_a_rolling_hand_over_and_rights_to_exactly_its_lease(
    tmp_path: Path,
) -> None:
    objects = template(tmp_path, {})
    deployment = _operator(objects)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    args = container["args"]
    assert "--leader-elect" in args and "--leader-election-id=open-autoglm" in args
    assert {"--leader-election-lease-duration=15", "--leader-election-renew-deadline=10"} <= set(args)
    assert "--leader-election-retry-period=2" in args
    # The new pod starts as a standby beside the old one (Ready on /healthz) and takes over when it goes.
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in container["env"]}
    assert env == {"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace"}
    role = _lease_role(objects)
    assert role is not None and role["metadata"]["namespace"] == "autoglm-system"
    assert role["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": ["open-autoglm"],
            "verbs": ["get", "update"],
        },
    ]
    (binding,) = [o for o in objects if o["kind"] == "RoleBinding" and o["roleRef"]["name"] == role["metadata"]["name"]]
    assert binding["subjects"][0]["name"] == deployment["spec"]["template"]["spec"]["serviceAccountName"]


def test_without_leader_election_one_replica_is_recreated_and_more_replicas_turn_it_on(tmp_path: Path) -> None:
    off = template(tmp_path, {"leaderElection": {"enabled": False}})
    assert "--leader-elect" not in _operator(off)["spec"]["template"]["spec"]["containers"][0]["args"]
    assert _operator(off)["spec"]["strategy"] == {"type": "Recreate"} and _lease_role(off) is None
    forced = template(tmp_path, {"leaderElection": {"enabled": False}, "replicaCount": 2})
    assert "--leader-elect" in _operator(forced)["spec"]["template"]["spec"]["containers"][0]["args"]
    assert _lease_role(forced) is not None


def _options(name: str = "run") -> set[str]:
    command = typer.main.get_command(app).commands[name]  # type: ignore[attr-defined]
    return {opt for param in command.params for opt in param.opts if opt.startswith("--")}


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_every_rendered_flag_is_one_autoglm_run_takes(name: str, tmp_path: Path) -> None:
    objects = template(tmp_path, VALUE_SETS[name])
    args = _operator(objects)["spec"]["template"]["spec"]["containers"][0]["args"]
    flags = {a.split("=", 1)[0] for a in args}
    assert flags <= _options(), flags - _options()
    if name == "namespaced":
        assert "--namespace=team-a" in args and "--namespace=team-b" in args
        bindings = [o for o in objects if o["kind"] == "RoleBinding" and o["roleRef"]["name"].endswith("-workloads")]
        assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
        (secrets,) = [o for o in objects if o["kind"] == "Role" and o["metadata"]["name"].endswith("-member-secrets")]
        assert secrets["rules"] == [
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"], "resourceNames": ["gpu-kubeconfig"]}
        ]
    if name == "mirrored":
        assert "--image-registry=registry.corp.example:5000/ai" in args and "--helper-image=tools/sh:1" in args
    if name == "karmada":
        assert "--propagation=karmada" in args and "--kubeconfig=/etc/autoglm/karmada/config" in args
        assert "--prometheus-url=http://prometheus.monitoring.svc:9090" in args and "--json-logs" not in args


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"propagation": {"mode": "kamada"}}, "/propagation/mode"),
        ({"propagation": {"mode": "karmada"}}, "/karmada/kubeconfigSecret/name"),
        ({"replicaCount": -1}, "/replicaCount"),
        ({"watchNamespaces": ["Team_A"]}, "/watchNamespaces/0"),
        ({"log": {"format": "yaml"}}, "/log/format"),
        ({"prometheus": {"url": "prometheus:9090"}}, "/prometheus/url"),
        ({"metrics": {"port": 70000}}, "/metrics/port"),
        ({"imagee": {"tag": "x"}}, "imagee"),
        ({"images": {"registry": "https://harbor.example.com"}}, "/images/registry"),
        ({"gateway": {"mqtt": {"broker": "mosquitto"}}}, "/gateway/mqtt/broker"),
        # A gateway without keys serves anyone: only when the values say so.
        ({"gateway": {"enabled": True}}, "/gateway/allowAnonymous"),
    ],
)
def test_a_wrong_value_fails_at_install_naming_the_field(values: dict[str, Any], field: str, tmp_path: Path) -> None:
    from tests.chart import values_file

    done = run("helm", "template", "x", str(CHART), "-f", str(values_file(tmp_path, values)), check=False)
    assert done.returncode != 0 and field in done.stderr, done.stderr


def test_the_node_probe_daemonset_runs_autoglm_probe_on_its_own_node_with_only_node_rights(tmp_path: Path) -> None:
    objects = template(tmp_path, VALUE_SETS["probe"])
    (daemonset,) = [o for o in objects if o["kind"] == "DaemonSet"]
    pod = daemonset["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["autoglm", "probe"] and container["args"] == ["--interval=300"]
    assert {a.split("=", 1)[0] for a in container["args"]} <= _options("probe")
    env = {e["name"]: e for e in container["env"]}
    assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    assert env["PATH"]["value"].endswith(":/usr/local/Ascend/driver/tools")
    assert pod["volumes"][0]["hostPath"] == {"path": "/usr/local/Ascend/driver", "type": "Directory"}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True and pod["securityContext"]["runAsNonRoot"]
    (role,) = [o for o in objects if o["kind"] == "ClusterRole" and o["metadata"]["name"].endswith("-node-probe")]
    assert role["rules"] == [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "patch"]}]
    assert pod["serviceAccountName"] == role["metadata"]["name"]
    assert not [o for o in template(tmp_path, {}) if o["kind"] == "DaemonSet"], "off by default"


def test_the_gateway_runs_from_its_own_image_the_operators_carries_no_gateway(tmp_path: Path) -> None:
    objects = template(tmp_path, {"gateway": {"enabled": True, "allowAnonymous": True, "image": {"tag": "1.2.3"}}})
    images = {
        o["metadata"]["name"]: [c["image"] for c in o["spec"]["template"]["spec"]["containers"]]
        for o in objects
        if o["kind"] == "Deployment"
    }
    assert images == {
        "autoglm-open-autoglm": ["ghcr.io/open-autoglm/operator:0.1.0"],
        "autoglm-open-autoglm-gateway": ["ghcr.io/open-autoglm/gateway:1.2.3"],
    }


def test_the_gateway_serves_anonymous_callers_only_when_the_values_ask(tmp_path: Path) -> None:
    objects = template(tmp_path, {"gateway": {"enabled": True, "allowAnonymous": True}})
    (deployment,) = [o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("-gateway")]
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--allow-anonymous" in args and not any(a.startswith("--api-keys") for a in args)


def test_the_gateway_serves_http_and_grpc_with_the_keys_secret_and_may_only_list_what_it_routes_by(
    tmp_path: Path,
) -> None:
    objects = template(tmp_path, VALUE_SETS["gateway"])
    (deployment,) = [o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("-gateway")]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["autoglm", "gateway"]
    args = container["args"]
    assert {a.split("=", 1)[0] for a in args} <= _options("gateway"), args
    assert "--from-cluster" in args and "--api-keys=/etc/autoglm/api-keys/keys.yaml" in args
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"  # no traffic before its routes are known
    assert "--mqtt-broker=mosquitto.edge.svc:1883" in args and "--allow-anonymous" not in args
    assert pod["volumes"][0]["secret"]["secretName"] == "gateway-api-keys"
    env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"]}
    assert env["AUTOGLM_GATEWAY_MQTT_PASSWORD"] == {"name": "gateway-mqtt", "key": "password"}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True and pod["securityContext"]["runAsNonRoot"]
    (role,) = [o for o in objects if o["kind"] == "ClusterRole" and o["metadata"]["name"].endswith("-gateway")]
    rule = {"apiGroups": ["autoglm.io"], "resources": ["modeldeployments", "backendruntimes"], "verbs": ["list"]}
    assert role["rules"] == [rule]
    (service,) = [o for o in objects if o["kind"] == "Service" and o["metadata"]["name"].endswith("-gateway")]
    assert service["spec"]["type"] == "LoadBalancer"
    assert {p["name"]: p["port"] for p in service["spec"]["ports"]} == {"http": 8000, "grpc": 9000}
