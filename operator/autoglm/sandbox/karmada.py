"""A Karmada control plane beside the sandbox clusters, and the Push-mode join of each cluster to it.

Plain processes on 127.0.0.1, as `autoglm sandbox up` runs Kubernetes: Karmada's own etcd and API server (a
kube-apiserver with the aggregation flags), Karmada's CRDs with their conversion webhook, the aggregated API
server behind an APIService (it serves cluster.karmada.io Clusters and the cluster proxy), the webhook, the
controller-manager and the scheduler. The CRDs and webhook configurations come from the same release's
source, copied into the build cache by `autoglm sandbox build`.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from autoglm.sandbox.cluster import (
    ClusterState,
    Launcher,
    admin_client,
    free_port,
    prepare_directory,
    server_side_apply,
    wait_until,
)
from autoglm.sandbox.local_http import register_api_service
from autoglm.sandbox.pki import CertificateAuthority, service_account_keys, write_kubeconfig

NAME = "karmada"
SYSTEM_NAMESPACE = "karmada-system"
CLUSTER_NAMESPACE = "karmada-cluster"
AGGREGATED_SERVICE = "karmada-aggregated-apiserver"
FEATURE_GATES = "--feature-gates=AllAlpha=true,AllBeta=true"
PORTS = (
    "etcd",
    "etcd-peer",
    "karmada-apiserver",
    "karmada-aggregated-apiserver",
    "karmada-webhook",
    "karmada-webhook-metrics",
    "karmada-webhook-health",
    "karmada-controller-manager",
    "karmada-controller-manager-metrics",
    "karmada-scheduler",
    "karmada-scheduler-metrics",
    "kube-controller-manager",
)


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def _certificates(pki: Path) -> dict[str, Any]:
    ca = CertificateAuthority(pki, "karmada-ca")
    front_proxy = CertificateAuthority(pki / "front-proxy", "front-proxy-ca")
    webhook = ca.issue(
        "webhook",
        "karmada-webhook",
        dns_names=("karmada-webhook.karmada-system.svc", "localhost"),
        ips=("127.0.0.1",),
        server=True,
    )
    # karmada-webhook reads tls.crt/tls.key from its --cert-dir.
    certs_dir = pki / "webhook-certs"
    certs_dir.mkdir(exist_ok=True)
    (certs_dir / "tls.crt").write_bytes(webhook.cert.read_bytes())
    (certs_dir / "tls.key").write_bytes(webhook.key.read_bytes())
    return {
        "ca": ca.cert_path,
        "front-proxy-ca": front_proxy.cert_path,
        "serving": ca.issue(
            "apiserver",
            "karmada-apiserver",
            dns_names=("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"),
            ips=("127.0.0.1",),
            server=True,
        ),
        "admin": ca.issue("admin", "karmada-admin", "system:masters"),
        "front-proxy-client": front_proxy.issue("front-proxy-client", "front-proxy-client"),
        "aggregated": ca.issue(
            "aggregated-apiserver",
            "karmada-aggregated-apiserver",
            dns_names=(
                f"{AGGREGATED_SERVICE}.{SYSTEM_NAMESPACE}.svc",
                f"{AGGREGATED_SERVICE}.{SYSTEM_NAMESPACE}.svc.cluster.local",
                "localhost",
            ),
            ips=("127.0.0.1",),
            server=True,
        ),
        "webhook-dir": certs_dir,
        "sa": service_account_keys(pki),
    }


def _crds(assets: Path, webhook_url: str, ca_bundle: str) -> list[dict[str, Any]]:
    """Karmada's CRDs as its kustomization lists them, with the conversion-webhook patches pointed here."""
    root = assets / "charts" / "karmada" / "_crds"
    kustomization = yaml.safe_load((root / "kustomization.yaml").read_text())
    crds = [yaml.safe_load((root / path).read_text()) for path in kustomization["resources"]]
    by_name = {crd["metadata"]["name"]: crd for crd in crds}
    for patch in kustomization.get("patches") or []:
        body = yaml.safe_load((root / patch["path"]).read_text())
        conversion = body["spec"]["conversion"]
        conversion["webhook"]["clientConfig"] = {"url": f"{webhook_url}/convert", "caBundle": ca_bundle}
        by_name[body["metadata"]["name"]]["spec"]["conversion"] = conversion
    return crds


def _webhook_configurations(assets: Path, webhook_url: str, ca_bundle: str) -> list[dict[str, Any]]:
    text = (assets / "artifacts" / "deploy" / "webhook-configuration.yaml").read_text()
    text = text.replace("https://karmada-webhook.karmada-system.svc:443", webhook_url).replace(
        "{{caBundle}}", ca_bundle
    )
    return [doc for doc in yaml.safe_load_all(text) if doc]


def _crds_established(api: Any, names: set[str]) -> bool:
    from kubernetes import client

    items: list[Any] = client.ApiextensionsV1Api(api).list_custom_resource_definition().items
    established = {
        crd.metadata.name
        for crd in items
        if any(c.type == "Established" and c.status == "True" for c in (crd.status.conditions or []))
    }
    return names <= established


def _serves_clusters(api: Any) -> bool:
    from kubernetes import client
    from kubernetes.client import ApiException

    try:
        client.CustomObjectsApi(api).list_cluster_custom_object("cluster.karmada.io", "v1alpha1", "clusters")
    except ApiException:
        return False
    return True


def start_karmada(directory: Path, binaries: Mapping[str, Path], timeout: float = 60.0) -> ClusterState:
    """Start the Karmada control plane; returns once every component is healthy and Clusters are served."""
    state = prepare_directory(NAME, directory, kind="karmada")
    state.ports = {p: free_port() for p in PORTS}
    state.save()
    ports = state.ports
    certs = _certificates(directory / "pki")
    kubeconfig = write_kubeconfig(state.kubeconfig, NAME, state.server, certs["ca"], certs["admin"])
    launch = Launcher(state, binaries)
    sa_key, sa_pub = certs["sa"]
    ca_bundle = _b64(certs["ca"])
    assets = binaries["karmada-share"]

    launch.etcd(timeout)
    launch.start(
        "karmada-apiserver",
        [
            f"--etcd-servers=http://127.0.0.1:{ports['etcd']}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={ports['karmada-apiserver']}",
            f"--tls-cert-file={certs['serving'].cert}",
            f"--tls-private-key-file={certs['serving'].key}",
            f"--client-ca-file={certs['ca']}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={sa_pub}",
            f"--service-account-signing-key-file={sa_key}",
            "--service-cluster-ip-range=10.96.0.0/16",
            "--authorization-mode=RBAC",
            "--allow-privileged=true",
            # Karmada's API server runs no pods: the admission plugins that need them are off, as in Karmada's own.
            "--disable-admission-plugins=StorageObjectInUseProtection,ServiceAccount",
            "--endpoint-reconciler-type=none",
            f"--cert-dir={directory / 'pki' / 'apiserver'}",
            "--profiling=false",
            "--shutdown-send-retry-after=true",  # open watches cut after 2 s on stop (see cluster.py)
            # The aggregation layer: how the API server proves who is calling the aggregated API server.
            f"--proxy-client-cert-file={certs['front-proxy-client'].cert}",
            f"--proxy-client-key-file={certs['front-proxy-client'].key}",
            f"--requestheader-client-ca-file={certs['front-proxy-ca']}",
            "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-username-headers=X-Remote-User",
        ],
        health=f"{state.server}/readyz",
        binary="kube-apiserver",
    )
    launch.wait("karmada-apiserver", timeout)
    api = admin_client(state)
    namespaces = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}}
        for n in (SYSTEM_NAMESPACE, CLUSTER_NAMESPACE)
    ]
    server_side_apply(api, namespaces)
    webhook_url = f"https://127.0.0.1:{ports['karmada-webhook']}"
    crds = _crds(assets, webhook_url, ca_bundle)
    server_side_apply(api, crds)
    wait_until(
        "karmada: CRDs established",
        lambda: _crds_established(api, {c["metadata"]["name"] for c in crds}),
        timeout,
        launch.log("karmada-apiserver"),
    )

    common = [f"--kubeconfig={kubeconfig}", FEATURE_GATES]
    launch.start(
        "karmada-aggregated-apiserver",
        [
            *common,
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            f"--etcd-servers=http://127.0.0.1:{ports['etcd']}",
            "--bind-address=127.0.0.1",
            f"--secure-port={ports['karmada-aggregated-apiserver']}",
            f"--cert-dir={directory / 'pki' / 'aggregated'}",
            f"--tls-cert-file={certs['aggregated'].cert}",
            f"--tls-private-key-file={certs['aggregated'].key}",
            "--audit-log-path=-",
            "--audit-log-maxage=0",
            "--audit-log-maxbackup=0",
        ],
        health=f"https://127.0.0.1:{ports['karmada-aggregated-apiserver']}/healthz",
    )
    launch.wait("karmada-aggregated-apiserver", timeout)
    register_api_service(
        api,
        "cluster.karmada.io",
        "v1alpha1",
        (AGGREGATED_SERVICE, SYSTEM_NAMESPACE),
        ports["karmada-aggregated-apiserver"],
        ca_bundle,
        group_priority=2000,
        version_priority=10,
        labels={"app": AGGREGATED_SERVICE},
    )
    wait_until("karmada: Clusters served", lambda: _serves_clusters(api), timeout, launch.log("karmada-apiserver"))

    launch.start(
        "karmada-webhook",
        [
            *common,
            "--bind-address=127.0.0.1",
            f"--secure-port={ports['karmada-webhook']}",
            f"--cert-dir={certs['webhook-dir']}",
            f"--metrics-bind-address=127.0.0.1:{ports['karmada-webhook-metrics']}",
            f"--health-probe-bind-address=127.0.0.1:{ports['karmada-webhook-health']}",
            "--allow-no-execute-taint-policy=true",
        ],
        # Readiness is served on the webhook's TLS port; the probe port has no checks.
        health=f"{webhook_url}/readyz/",
    )
    launch.wait("karmada-webhook", timeout)
    server_side_apply(api, _webhook_configurations(assets, webhook_url, ca_bundle))

    launch.start(
        "karmada-controller-manager",
        [
            *common,
            # Karmada's defaults are 10 s and 30 s each: a sandbox outage shows (and clears) sooner, for tests and
            # demos (three small members: a health check every 3 s costs little).
            "--cluster-status-update-frequency=3s",
            "--cluster-failure-threshold=6s",
            "--cluster-success-threshold=6s",
            "--controllers=*,hpaScaleTargetMarker,deploymentReplicasSyncer",
            f"--metrics-bind-address=127.0.0.1:{ports['karmada-controller-manager-metrics']}",
            f"--health-probe-bind-address=127.0.0.1:{ports['karmada-controller-manager']}",
            "--enable-no-execute-taint-eviction=true",
            f"--leader-elect-resource-namespace={SYSTEM_NAMESPACE}",
        ],
        health=f"http://127.0.0.1:{ports['karmada-controller-manager']}/healthz",
    )
    launch.start(
        "karmada-scheduler",
        [
            *common,
            f"--metrics-bind-address=127.0.0.1:{ports['karmada-scheduler-metrics']}",
            f"--health-probe-bind-address=127.0.0.1:{ports['karmada-scheduler']}",
            f"--leader-elect-resource-namespace={SYSTEM_NAMESPACE}",
        ],
        health=f"http://127.0.0.1:{ports['karmada-scheduler']}/healthz",
    )
    # Karmada's API server has no garbage collector of its own: like Karmada's install, run a
    # kube-controller-manager with the controllers that act on its own objects (ownerReferences, namespaces).
    launch.start(
        "kube-controller-manager",
        [
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={ports['kube-controller-manager']}",
            f"--service-account-private-key-file={sa_key}",
            f"--root-ca-file={certs['ca']}",
            "--use-service-account-credentials=false",
            "--controllers=namespace,garbagecollector,serviceaccount-token,ttl-after-finished,clusterrole-aggregation",
            "--leader-elect=false",
            "--profiling=false",
        ],
        health=f"https://127.0.0.1:{ports['kube-controller-manager']}/healthz",
    )
    for component in ("karmada-controller-manager", "karmada-scheduler", "kube-controller-manager"):
        launch.wait(component, timeout)
    return state


def _member_token(member: ClusterState, account: str, timeout: float) -> str:
    """A long-lived token of a ServiceAccount bound to cluster-admin on the member (what karmadactl makes)."""
    from kubernetes import client

    api = admin_client(member)
    server_side_apply(
        api,
        [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": CLUSTER_NAMESPACE}},
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": account, "namespace": CLUSTER_NAMESPACE},
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": account},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
                "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": CLUSTER_NAMESPACE}],
            },
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "type": "kubernetes.io/service-account-token",
                "metadata": {
                    "name": account,
                    "namespace": CLUSTER_NAMESPACE,
                    "annotations": {"kubernetes.io/service-account.name": account},
                },
            },
        ],
    )
    core = client.CoreV1Api(api)
    found: list[str] = []

    def token() -> bool:
        data = core.read_namespaced_secret(account, CLUSTER_NAMESPACE).data or {}
        if data.get("token"):
            found.append(base64.b64decode(data["token"]).decode())
        return bool(found)

    wait_until(f"{member.name}: token of {account}", token, timeout)
    return found[0]


def join(karmada: ClusterState, member: ClusterState, timeout: float = 60.0) -> None:
    """Join one sandbox cluster in Push mode (the objects `karmadactl join` creates) and wait until Ready."""
    token = _member_token(member, f"karmada-{member.name}", timeout)
    api = admin_client(karmada)
    ca_bundle = (Path(member.directory) / "pki" / "ca.crt").read_bytes()
    server_side_apply(
        api,
        [
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": member.name, "namespace": CLUSTER_NAMESPACE},
                "stringData": {"token": token, "caBundle": ca_bundle.decode()},
            },
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": f"{member.name}-impersonator", "namespace": CLUSTER_NAMESPACE},
                "stringData": {"token": token},
            },
            {
                "apiVersion": "cluster.karmada.io/v1alpha1",
                "kind": "Cluster",
                "metadata": {"name": member.name},
                "spec": {
                    "syncMode": "Push",
                    "apiEndpoint": member.server,
                    "secretRef": {"namespace": CLUSTER_NAMESPACE, "name": member.name},
                    "impersonatorSecretRef": {"namespace": CLUSTER_NAMESPACE, "name": f"{member.name}-impersonator"},
                },
            },
        ],
    )
    wait_until(
        f"karmada: cluster {member.name} Ready",
        lambda: cluster_ready(karmada, member.name),
        timeout,
        Path(karmada.directory) / "logs" / "karmada-controller-manager.log",
    )


def cluster_ready(karmada: ClusterState, name: str) -> bool:
    """The Karmada Cluster object says Ready=True."""
    from kubernetes import client
    from kubernetes.client import ApiException

    try:
        found: Any = client.CustomObjectsApi(admin_client(karmada)).get_cluster_custom_object(
            "cluster.karmada.io", "v1alpha1", "clusters", name
        )
    except ApiException:
        return False
    conditions = (found.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
