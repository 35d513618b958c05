"""Small HTTP(S) servers on 127.0.0.1 that stand in for what fake pods cannot run (a metrics API, an exporter),
and the APIService that puts one behind a cluster's aggregation layer."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from autoglm.sandbox.cluster import server_side_apply

# path -> (status code, body, content type)
Answer = Callable[[str], tuple[int, bytes, str]]


class LocalServer:
    """Serves GETs with `answer` on 127.0.0.1:`port` in a background thread (TLS with `context`)."""

    def __init__(self, port: int, answer: Answer, name: str, context: ssl.SSLContext | None = None):
        self._server = ThreadingHTTPServer(("127.0.0.1", port), _handler(answer))
        if context is not None:
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name=name, daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler(answer: Answer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            code, data, content_type = answer(self.path)
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_: Any) -> None:
            return None

    return Handler


def register_api_service(
    api: Any,
    group: str,
    version: str,
    service: tuple[str, str],
    port: int,
    ca_bundle: str,
    group_priority: int,
    version_priority: int,
    labels: dict[str, str] | None = None,
) -> None:
    """An APIService for group/version served on 127.0.0.1:`port`: the aggregator dials the Service's
    externalName (localhost) at the APIService's port, loopback without Endpoints."""
    name, namespace = service
    server_side_apply(
        api,
        [
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {"type": "ExternalName", "externalName": "localhost"},
            },
            {
                "apiVersion": "apiregistration.k8s.io/v1",
                "kind": "APIService",
                "metadata": {"name": f"{version}.{group}", **({"labels": labels} if labels else {})},
                "spec": {
                    "caBundle": ca_bundle,
                    "group": group,
                    "groupPriorityMinimum": group_priority,
                    "service": {"name": name, "namespace": namespace, "port": port},
                    "version": version,
                    "versionPriority": version_priority,
                },
            },
        ],
    )
