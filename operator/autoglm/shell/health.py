"""The operator's probes: `/healthz` (the process is alive: a standby is healthy too) and `/readyz` (this process
is the one reconciling: the leader, or the only operator when leader election is off; a standby answers 503 and
names the holder of the Lease)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

# () -> (ready, what to say)
Readiness = Callable[[], tuple[bool, str]]


class HealthServer:
    def __init__(self, url: str, readiness: Readiness):
        """Serve on the host and port of `url` (e.g. http://0.0.0.0:8080/healthz): its path answers liveness,
        /readyz readiness."""
        parts = urlsplit(url)
        self.liveness_path = parts.path or "/healthz"
        self._readiness = readiness
        self._server = ThreadingHTTPServer((parts.hostname or "0.0.0.0", parts.port or 8080), self._handler())
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="autoglm-health", daemon=True).start()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _answer(self, path: str) -> tuple[int, str]:
        if path == self.liveness_path:
            return 200, "ok\n"
        if path == "/readyz":
            ready, message = self._readiness()
            return (200 if ready else 503), message + "\n"
        return 404, "not found\n"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        answer = self._answer

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                code, text = answer(self.path.split("?", 1)[0])
                data = text.encode()
                self.send_response(code)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_: object) -> None:  # probes every few seconds are not news
                pass

        return Handler
