"""The gateway's HTTP front door (aiohttp): the OpenAI-compatible API (`/v1/models`, `/v1/chat/completions`,
`/v1/completions`, streaming passed through chunk by chunk) and the unified schema (`POST /v1/infer`), in front
of the backends the router knows. Every error is the table's, on every path.

Retries: a request is sent to another backend only when the first could not be reached (it never started);
once a backend answered, its answer (or its error, mapped onto the table) is the answer. Failures count
towards the backend's ejection."""

from __future__ import annotations

import json
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from autoglm.gateway.admission import Admission, ApiKey
from autoglm.gateway.errors import ErrorCode, GatewayError, from_backend
from autoglm.gateway.metrics import GatewayMetrics
from autoglm.gateway.routing import Backend, Router
from autoglm.gateway.schema import from_openai, parse_request, to_openai

logger = logging.getLogger("autoglm.gateway")
MAX_ATTEMPTS = 3
# A streamed event's text: "content" (chat) or "text" (completions) with a string value; a role-only first
# event or the closing one with an empty delta carries none.
_TEXT_PIECE = re.compile(rb'"(?:content|text)":\s*"')
# Which backend answered (member/URL), as Envoy's x-envoy-upstream-host: for people debugging a route.
UPSTREAM = "X-Autoglm-Upstream"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _route(backend: Backend) -> tuple[str, str, str, str]:
    """The metrics' route labels (model, version, member, backend) of a backend."""
    return backend.model, backend.version, backend.member, backend.url


class Gateway:
    def __init__(
        self,
        router: Router,
        admission: Admission | None,
        timeout: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self.router = router
        self.admission = admission  # None: anonymous callers allowed (--allow-anonymous)
        self.timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=5)
        self.clock = clock
        self.draw = draw
        self.metrics = GatewayMetrics()
        self._session: aiohttp.ClientSession | None = None

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._errors])
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/chat/completions", self._openai)
        app.router.add_post("/v1/completions", self._openai)
        app.router.add_post("/v1/infer", self._infer)
        app.on_startup.append(self._open)
        app.on_cleanup.append(self._close)
        return app

    async def _open(self, _: web.Application) -> None:
        self._session = aiohttp.ClientSession(timeout=self.timeout)

    async def _close(self, _: web.Application) -> None:
        if self._session is not None:
            await self._session.close()

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except GatewayError as error:
            model, version = request.get("route", ("", ""))
            self._count(request, str(error.code), model=model, version=version)
            return self._error(request, error)
        except web.HTTPException:
            raise
        except Exception:
            logger.exception("%s %s failed", request.method, request.path)
            return self._error(request, GatewayError.of(ErrorCode.INTERNAL))

    def _error(self, request: web.Request, error: GatewayError) -> web.Response:
        body = error.body() if request.path == "/v1/infer" else error.openai_body()
        headers = {}
        if error.code in (ErrorCode.RATE_LIMITED, ErrorCode.CONCURRENCY_LIMITED):
            headers["Retry-After"] = str(dict(error.details).get("retry_after", 1))
        return web.json_response(body, status=error.spec.http_status, headers=headers)

    # --- who may call -----------------------------------------------------------------------------------

    def _caller(self, request: web.Request) -> ApiKey | None:
        if self.admission is None:
            return None
        header = request.headers.get("Authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else request.headers.get("X-API-Key")
        key = self.admission.identify(token)
        self.admission.admit(key, self.clock())
        return key

    def _done(self, key: ApiKey | None) -> None:
        if key is not None and self.admission is not None:
            self.admission.release(key)

    # --- handlers ---------------------------------------------------------------------------------------

    async def _healthz(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _metrics(self, _: web.Request) -> web.Response:
        body = generate_latest(self.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    def _count(
        self, request: web.Request, code: str, backend: Backend | None = None, model: str = "", version: str = ""
    ) -> None:
        route = _route(backend) if backend else (model, version, "", "")
        protocol = "unified" if request.path == "/v1/infer" else "openai"
        self.metrics.requests.labels(*route, protocol, code).inc()

    def _usage(self, backend: Backend, answer: Any) -> None:
        usage = answer.get("usage") if isinstance(answer, dict) else None
        route = _route(backend)
        if isinstance(usage, dict):
            self.metrics.input_tokens.labels(*route).inc(usage.get("prompt_tokens") or 0)
            self.metrics.output_tokens.labels(*route).inc(usage.get("completion_tokens") or 0)

    async def _models(self, request: web.Request) -> web.Response:
        key = self._caller(request)
        self._done(key)
        data = [{"id": m if v == "latest" else f"{m}@{v}", "object": "model", "owned_by": "autoglm"}
                for m, v in self.router.models()]  # fmt: skip
        return web.json_response({"object": "list", "data": data})

    async def _json(self, request: web.Request) -> Any:
        try:
            return await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise GatewayError.of(ErrorCode.INVALID_REQUEST, detail="the body is not valid JSON") from None

    async def _openai(self, request: web.Request) -> web.StreamResponse:
        key = self._caller(request)
        try:
            body = await self._json(request)
            if not isinstance(body, dict) or not isinstance(body.get("model"), str):
                raise GatewayError.of(ErrorCode.INVALID_REQUEST, detail="model: a string is required")
            model, _, version = body["model"].partition("@")
            request["route"] = (model, version or "latest")
            self.metrics.in_flight.labels(model).inc()
            try:
                return await self._forward(request, model, version or "latest", request.path, body)
            finally:
                self.metrics.in_flight.labels(model).dec()
        finally:
            self._done(key)

    async def _infer(self, request: web.Request) -> web.Response:
        key = self._caller(request)
        try:
            unified = parse_request(await self._json(request))
            request["route"] = (unified.model_name, unified.version)
            if unified.data.stream:
                raise GatewayError.of(ErrorCode.INVALID_REQUEST, detail="data.stream: use the OpenAI API to stream")
            started = self.clock()
            backend, answer = await self._call(
                unified.model_name, unified.version, lambda b: to_openai(unified, b.served_name or b.model)
            )
            self._answered(request, backend, answer, started)
            return web.json_response(from_openai(answer).model_dump(), headers={UPSTREAM: backend.key})
        finally:
            self._done(key)

    # --- to the backends --------------------------------------------------------------------------------

    async def _connect(
        self, model: str, version: str, build: Callable[[Backend], tuple[str, dict[str, Any]]]
    ) -> tuple[Backend, aiohttp.ClientResponse]:
        """The first backend that answers (a connection refused or reset before an answer is retried on the
        next one); its error status is mapped onto the table."""
        tried: set[str] = set()
        last: GatewayError | None = None
        for _ in range(MAX_ATTEMPTS):
            try:
                backend = self.router.pick(model, version, self.clock(), self.draw(), exclude=tried)
            except GatewayError:
                if last is not None:
                    raise last from None
                raise
            tried.add(backend.key)
            path, body = build(backend)
            assert self._session is not None
            try:
                response = await self._session.post(backend.url + path, json=body)
            except (aiohttp.ClientConnectionError, TimeoutError) as exc:
                self.router.failed(backend, self.clock())
                last = GatewayError.of(
                    ErrorCode.BACKEND_ERROR, detail=f"{backend.member} unreachable ({type(exc).__name__})"
                )
                continue
            if response.status >= 400:
                text = await response.text()
                response.release()
                if response.status >= 500:
                    self.router.failed(backend, self.clock())
                raise from_backend(response.status, text)
            return backend, response
        assert last is not None
        raise last

    async def _call(
        self, model: str, version: str, build: Callable[[Backend], tuple[str, dict[str, Any]]]
    ) -> tuple[Backend, Any]:
        backend, response = await self._connect(model, version, build)
        try:
            answer = await response.json(content_type=None)
        except (aiohttp.ClientError, json.JSONDecodeError) as exc:
            self.router.failed(backend, self.clock())
            raise GatewayError.of(ErrorCode.BACKEND_ERROR, detail=f"unreadable answer ({type(exc).__name__})") from None
        finally:
            response.release()
        self.router.succeeded(backend)
        return backend, answer

    async def _forward(
        self, request: web.Request, model: str, version: str, path: str, body: dict[str, Any]
    ) -> web.StreamResponse:
        def build(backend: Backend) -> tuple[str, dict[str, Any]]:
            return path, {**body, "model": backend.served_name or backend.model}

        started = self.clock()
        if not body.get("stream"):
            backend, answer = await self._call(model, version, build)
            self._answered(request, backend, answer, started)
            answer["model"] = body["model"]
            return web.json_response(answer, headers={UPSTREAM: backend.key})
        backend, response = await self._connect(model, version, build)
        headers = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache", UPSTREAM: backend.key}
        out = web.StreamResponse(status=200, headers=headers)
        await out.prepare(request)
        route = _route(backend)
        last: float | None = None
        try:
            async for chunk in response.content.iter_any():  # as the backend sends them: token by token
                await out.write(chunk)
                tokens = len(_TEXT_PIECE.findall(chunk))  # the events in this chunk that carry text
                if tokens:
                    now = self.clock()
                    if last is None:
                        self.metrics.ttft.labels(*route).observe(now - started)
                    else:
                        self.metrics.itl.labels(*route).observe(now - last)
                    last = now
                    self.metrics.output_tokens.labels(*route).inc(tokens)
        except aiohttp.ClientError:
            self.router.failed(backend, self.clock())
            raise
        finally:
            response.release()
        self.router.succeeded(backend)
        self._count(request, "ok", backend)
        await out.write_eof()
        return out

    def _answered(self, request: web.Request, backend: Backend, answer: Any, started: float) -> None:
        """A whole answer: its tokens, and the time to it as the time to first token (nothing came earlier)."""
        self._count(request, "ok", backend)
        self._usage(backend, answer)
        self.metrics.ttft.labels(*_route(backend)).observe(self.clock() - started)
