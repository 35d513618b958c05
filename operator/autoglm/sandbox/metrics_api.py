"""A custom metrics API (custom.metrics.k8s.io/v1beta2) for a sandbox cluster, so its real HPA controller scales
on per-pod values the caller sets (the closed loop's replayer does, from the load it serves).

Fake pods run nothing to scrape; this stands where prometheus-adapter stands in a real cluster. It serves the
discovery document and `namespaces/NS/pods/NAME|*/METRIC` (label selectors honoured by pod name lists the caller
keeps), over TLS from its own CA, behind an APIService whose Service is an ExternalName for localhost."""

from __future__ import annotations

import base64
import json
import ssl
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from autoglm.sandbox.cluster import ClusterState, free_port
from autoglm.sandbox.local_http import LocalServer, register_api_service
from autoglm.sandbox.pki import CertificateAuthority

GROUP, VERSION = "custom.metrics.k8s.io", "v1beta2"
SERVICE, NAMESPACE = "autoglm-sandbox-metrics", "kube-system"


class CustomMetrics:
    """Per-pod metric values behind the cluster's custom metrics API. Use as a context manager."""

    def __init__(self, state: ClusterState, metric: str):
        self.state = state
        self.metric = metric
        self.port = free_port()
        self._values: dict[str, dict[str, float]] = {}  # namespace -> pod -> value
        self._lock = threading.Lock()
        self._server: LocalServer | None = None

    def set(self, namespace: str, values: Mapping[str, float]) -> None:
        """Replace the namespace's pods and values: a pod left out has no metric (as a pod not yet ready)."""
        with self._lock:
            self._values[namespace] = dict(values)

    def __enter__(self) -> CustomMetrics:
        folder = Path(self.state.directory) / "metrics-api"
        ca = CertificateAuthority(folder, "autoglm-sandbox-metrics-ca")
        # the aggregator checks the name of the APIService's Service
        names = ("localhost", f"{SERVICE}.{NAMESPACE}.svc", f"{SERVICE}.{NAMESPACE}.svc.cluster.local")
        serving = ca.issue("serving", f"{SERVICE}.{NAMESPACE}.svc", dns_names=names, ips=("127.0.0.1",), server=True)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(serving.cert), str(serving.key))
        self._server = LocalServer(self.port, self._respond, "sandbox-metrics-api", context)
        bundle = base64.b64encode(ca.cert_path.read_bytes()).decode()
        register_api_service(self.state.api_client(), GROUP, VERSION, (SERVICE, NAMESPACE), self.port, bundle, 100, 200)
        return self

    def __exit__(self, *_: object) -> None:
        from kubernetes import client

        try:
            client.ApiregistrationV1Api(self.state.api_client()).delete_api_service(f"{VERSION}.{GROUP}")
        except client.ApiException as exc:
            if exc.status != 404:
                raise
        if self._server is not None:
            self._server.stop()

    def _respond(self, path: str) -> tuple[int, bytes, str]:
        code, body = self.answer(path)
        return code, json.dumps(body).encode(), "application/json"

    def answer(self, path: str) -> tuple[int, dict[str, Any]]:
        """The response to a GET of `path` (discovery, or one metric of pods in a namespace)."""
        parts = [unquote(p) for p in urlparse(path).path.split("/") if p]
        base = ["apis", GROUP, VERSION]
        if parts == ["apis"]:
            version = {"groupVersion": f"{GROUP}/{VERSION}", "version": VERSION}
            group = {"name": GROUP, "versions": [version], "preferredVersion": version}
            return 200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": [group]}
        if parts == base:
            return 200, {
                "kind": "APIResourceList",
                "apiVersion": "v1",
                "groupVersion": f"{GROUP}/{VERSION}",
                "resources": [
                    {
                        "name": f"pods/{self.metric}",
                        "singularName": "",
                        "namespaced": True,
                        "kind": "MetricValueList",
                        "verbs": ["get"],
                    }
                ],
            }
        if len(parts) == 8 and parts[:3] == base and parts[3] == "namespaces" and parts[5] == "pods":
            namespace, pod, metric = parts[4], parts[6], parts[7]
            if metric != self.metric:
                return 404, _status(404, f"no metric {metric}")
            with self._lock:
                values = dict(self._values.get(namespace, {}))
            chosen = values if pod == "*" else {pod: values[pod]} if pod in values else {}
            if pod != "*" and not chosen:
                return 404, _status(404, f"no value of {metric} for pod {namespace}/{pod}")
            now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            return 200, {
                "kind": "MetricValueList",
                "apiVersion": f"{GROUP}/{VERSION}",
                "metadata": {},
                "items": [
                    {
                        "describedObject": {"kind": "Pod", "namespace": namespace, "name": name, "apiVersion": "/v1"},
                        "metric": {"name": metric},
                        "timestamp": now,
                        "windowSeconds": 15,
                        "value": f"{round(value * 1000)}m",
                    }
                    for name, value in sorted(chosen.items())
                ],
            }
        return 404, _status(404, f"not served: {path}")


def _status(code: int, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "message": message}
