"""The gateway's HTTP adapter (aiohttp): the OpenAI-compatible API (`/v1/models`, `/v1/chat/completions`,
`/v1/completions`, streaming passed through chunk by chunk) and the unified schema (`POST /v1/infer`), over the
protocol-independent service. Every error is the table's, on every path."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from autoglm.gateway.errors import ErrorCode, GatewayError
from autoglm.gateway.schema import parse_request
from autoglm.gateway.service import Call, InferenceService

logger = logging.getLogger("autoglm.gateway")
# Which backend answered (member/URL), as Envoy's x-envoy-upstream-host: for people debugging a route.
UPSTREAM = "X-Autoglm-Upstream"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def bearer(headers: Any) -> str | None:
    """The API key of `Authorization: Bearer KEY` (or `X-API-Key: KEY`)."""
    header = str(headers.get("Authorization", "") or headers.get("authorization", ""))
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    key = headers.get("X-API-Key") or headers.get("x-api-key")
    return str(key) if key else None


class HttpGateway:
    def __init__(self, service: InferenceService) -> None:
        self.service = service

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._errors])
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/chat/completions", self._openai)
        app.router.add_post("/v1/completions", self._openai)
        app.router.add_post("/v1/infer", self._infer)
        return app

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except GatewayError as error:
            return self._error(request, error)
        except web.HTTPException:
            raise
        except Exception:
            logger.exception("%s %s failed", request.method, request.path)
            return self._error(request, GatewayError.of(ErrorCode.INTERNAL))

    def _error(self, request: web.Request, error: GatewayError) -> web.Response:
        body = error.body() if request.path == "/v1/infer" else error.openai_body()
        headers = {}
        if error.retry_after is not None:
            headers["Retry-After"] = error.retry_after
        return web.json_response(body, status=error.spec.http_status, headers=headers)

    def _begin(self, request: web.Request, protocol: str) -> Call:
        call = self.service.begin(protocol, request.headers)
        call.span.set_attribute("http.route", request.path)
        return call

    async def _healthz(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _readyz(self, _: web.Request) -> web.Response:
        """200 once the routes are known; before, 503, so no traffic arrives to be told model_not_found."""
        if self.service.ready:
            return web.json_response({"status": "ready"})
        return web.json_response({"status": "waiting for the first list of ModelDeployments"}, status=503)

    async def _metrics(self, _: web.Request) -> web.Response:
        body = generate_latest(self.service.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _models(self, request: web.Request) -> web.Response:
        with self._begin(request, "openai") as call:
            call.authenticate(bearer(request.headers))
        data = [{"id": m if v == "latest" else f"{m}@{v}", "object": "model", "owned_by": "autoglm"}
                for m, v in self.service.models()]  # fmt: skip
        return web.json_response({"object": "list", "data": data})

    async def _json(self, request: web.Request) -> Any:
        try:
            return json.loads(await request.read())
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise GatewayError.of(ErrorCode.INVALID_REQUEST, detail="the body is not valid JSON") from None

    async def _openai(self, request: web.Request) -> web.StreamResponse:
        with self._begin(request, "openai") as call:
            call.authenticate(bearer(request.headers))
            body = await self._json(request)
            if not isinstance(body, dict) or not isinstance(body.get("model"), str):
                raise GatewayError.of(ErrorCode.INVALID_REQUEST, detail="model: a string is required")
            model, _, version = body["model"].partition("@")
            call.route(model, version)

            raw = await request.read()  # read once by _json; aiohttp keeps it

            def build(backend: Any) -> tuple[str, dict[str, Any] | bytes]:
                served = backend.served
                # The caller's bytes as they came when the backend knows the model by the name asked for.
                return request.path, raw if served == body["model"] else {**body, "model": served}

            if not body.get("stream"):
                answer = await self.service.call_json(call, build)
                answer["model"] = body["model"]
                return web.json_response(answer, headers={UPSTREAM: call.backend.key if call.backend else ""})
            response = await self.service.connect(call, build)
            assert call.backend is not None
            headers = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache", UPSTREAM: call.backend.key}
            out = web.StreamResponse(status=200, headers=headers)
            await out.prepare(request)
            async for chunk in self.service.passthrough(call, response):  # as the backend sends them
                await out.write(chunk)
            await out.write_eof()
            return out

    async def _infer(self, request: web.Request) -> web.Response:
        with self._begin(request, "unified") as call:
            call.authenticate(bearer(request.headers))
            unified = parse_request(await self._json(request))
            if unified.data.stream:
                raise GatewayError.of(
                    ErrorCode.INVALID_REQUEST, detail="data.stream: stream with gRPC InferStream or the OpenAI API"
                )
            answer = await self.service.infer(call, unified)
            upstream = call.backend.key if call.backend else ""
            return web.json_response(answer.model_dump(), headers={UPSTREAM: upstream})
