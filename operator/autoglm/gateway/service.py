"""What every protocol of the front door shares (HTTP, gRPC and MQTT are adapters over it): who is calling,
which backend serves the request, the call to it, and the same metrics and trace spans for every backend.

Retries: a request is sent to another backend only when the first could not be reached (it never started);
once a backend answered, its answer (or its error, mapped onto the table) is the answer. Failures count
towards the backend's ejection.

Tracing: one span per request (`infer`, a server span that continues the caller's W3C trace context) with the
route taken, and child spans for the front door's own hot spots: `route` (the pick), `translate` (unified to
OpenAI shape and back) and one client span per backend attempt, whose context is passed on in `traceparent`.
Without a configured tracer provider these are OpenTelemetry's no-op spans."""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import aiohttp
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace

from autoglm.gateway import translate
from autoglm.gateway.admission import Admission, ApiKey
from autoglm.gateway.errors import ErrorCode, GatewayError, from_backend
from autoglm.gateway.metrics import GatewayMetrics
from autoglm.gateway.routing import Backend, Router
from autoglm.gateway.schema import UnifiedRequest, UnifiedResponse, from_openai, to_openai

MAX_ATTEMPTS = 3
# A streamed event's text: "content" (chat) or "text" (completions) with a string value; a role-only first
# event or the closing one with an empty delta carries none.
TEXT_PIECE = re.compile(rb'"(?:content|text)":\s*"')
tracer = trace.get_tracer("autoglm.gateway")
# (path, body) of a backend request: a JSON document, or a caller's body passed on as it came (bytes).
Build = Callable[[Backend], tuple[str, dict[str, Any] | bytes]]
JSON_HEADERS = {"Content-Type": "application/json"}


def route_labels(backend: Backend) -> tuple[str, str, str, str]:
    """The metrics' route labels (model, version, member, backend) of a backend."""
    return backend.model, backend.version, backend.member, backend.url


@dataclass
class Piece:
    """One streamed piece of a unified answer: text, and why generation stopped on the last one."""

    text: str
    finish_reason: str | None = None


class Call:
    """One request through the front door: its span, the caller's key, its route once picked. Use as a context
    manager from `InferenceService.begin`; it releases the key and ends the span, recording the outcome."""

    def __init__(self, service: InferenceService, protocol: str, carrier: Mapping[str, str]) -> None:
        self.service = service
        self.protocol = protocol
        self.key: ApiKey | None = None
        self.model = self.version = ""
        self.backend: Backend | None = None
        self.started = service.clock()
        # Without a tracer provider (no --otlp-endpoint) spans are no-ops: skip reading the caller's trace
        # context and every span's bookkeeping, which would cost each request CPU and add to its latency.
        self.span: trace.Span = trace.INVALID_SPAN
        if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
            parent = propagate.extract(dict(carrier))
            self.span = tracer.start_span("infer", context=parent, kind=trace.SpanKind.SERVER)
            self.span.set_attribute("autoglm.protocol", protocol)
        self.context = trace.set_span_in_context(self.span)
        self.recording = self.span.is_recording()
        self.retries = 0
        self.asked_path = ""  # the OpenAI path asked for: what a translated answer is shaped as
        self._counted = False
        self._token: object | None = None

    def __enter__(self) -> Call:
        if self.recording:
            self._token = otel_context.attach(self.context)
        return self

    def child(self, name: str, kind: trace.SpanKind = trace.SpanKind.INTERNAL) -> AbstractContextManager[trace.Span]:
        """A child span of this request, current while the block runs (a no-op span when not tracing)."""
        if not self.recording:
            return nullcontext(trace.INVALID_SPAN)
        return tracer.start_as_current_span(name, kind=kind)

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, _: object) -> None:
        if isinstance(error, GatewayError):
            self.count(str(error.code))
            self.span.set_status(trace.StatusCode.ERROR, error.message)
            self.span.set_attribute("autoglm.code", str(error.code))
        elif error is not None:
            self.span.record_exception(error)
            self.span.set_status(trace.StatusCode.ERROR, type(error).__name__)
        self.span.set_attribute("autoglm.retries", self.retries)
        if self.key is not None and self.service.admission is not None:
            self.service.admission.release(self.key)
        if self.model:
            self.service.metrics.in_flight.labels(self.model).dec()
        if self._token is not None:
            otel_context.detach(self._token)  # type: ignore[arg-type]
        self.span.end()

    def authenticate(self, presented: str | None) -> None:
        """The caller's key (a bearer token, gRPC metadata or an MQTT user property), admitted against its
        limits; anonymous when the gateway runs without keys."""
        admission = self.service.admission
        if admission is None:
            return
        key = admission.identify(presented)
        admission.admit(key, self.service.clock())
        self.key = key
        self.span.set_attribute("autoglm.api_key", key.name)  # the key's name, never the key

    def route(self, model: str, version: str) -> None:
        self.model, self.version = model, version or "latest"
        self.span.update_name(f"infer {self.model}")
        self.span.set_attribute("autoglm.model", self.model)
        self.span.set_attribute("autoglm.version", self.version)
        self.service.metrics.in_flight.labels(self.model).inc()

    def answered(self, backend: Backend) -> None:
        self.backend = backend
        self.span.set_attribute("autoglm.member", backend.member)
        self.span.set_attribute("autoglm.backend", backend.url)

    def count(self, code: str) -> None:
        if self._counted:
            return
        self._counted = True
        route = route_labels(self.backend) if self.backend else (self.model, self.version, "", "")
        self.service.metrics.requests.labels(*route, self.protocol, code).inc()


class InferenceService:
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
        # False until the routes are known (routes from ModelDeployments: their first list); /readyz says so.
        self.ready = True
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        # No connection cap: the per-key in-flight limits bound what the gateway sends.
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=30)
        # No cookie jar: backends set none worth keeping, and one is consulted on every request.
        jar = aiohttp.DummyCookieJar()
        self._session = aiohttp.ClientSession(timeout=self.timeout, connector=connector, cookie_jar=jar)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def begin(self, protocol: str, carrier: Mapping[str, str] | None = None) -> Call:
        return Call(self, protocol, carrier or {})

    def models(self) -> list[tuple[str, str]]:
        return self.router.models()

    # --- to the backends --------------------------------------------------------------------------------

    async def connect(self, call: Call, build: Build) -> aiohttp.ClientResponse:
        """The first backend that answers (a connection refused or reset before an answer is retried on the
        next one); its error status is mapped onto the table."""
        tried: set[str] = set()
        last: GatewayError | None = None
        for attempt in range(MAX_ATTEMPTS):
            with call.child("route") as span:
                try:
                    backend = self.router.pick(call.model, call.version, self.clock(), self.draw(), exclude=tried)
                except GatewayError:
                    if last is not None:
                        raise last from None
                    raise
                span.set_attribute("autoglm.member", backend.member)
            call.retries = attempt
            tried.add(backend.key)
            with call.child("translate"):
                path, body = build(backend)
                call.asked_path = path
                if backend.translator:
                    asked = json.loads(body) if isinstance(body, bytes) else body
                    path, body = translate.request(backend.translator, path, asked)
            assert self._session is not None
            with call.child("backend", trace.SpanKind.CLIENT) as span:
                span.set_attribute("autoglm.member", backend.member)
                span.set_attribute("server.address", backend.url)
                headers = dict(JSON_HEADERS)
                if call.recording:
                    propagate.inject(headers)  # W3C traceparent: the backend's spans join this trace
                try:
                    data = body if isinstance(body, bytes) else json.dumps(body).encode()
                    response = await self._session.post(backend.url + path, data=data, headers=headers)
                except (aiohttp.ClientConnectionError, TimeoutError) as exc:
                    span.set_status(trace.StatusCode.ERROR, type(exc).__name__)
                    self.router.failed(backend, self.clock())
                    last = GatewayError.of(
                        ErrorCode.BACKEND_ERROR, detail=f"{backend.member} unreachable ({type(exc).__name__})"
                    )
                    continue
                span.set_attribute("http.response.status_code", response.status)
            call.answered(backend)
            if response.status >= 400:
                text = await response.text()
                response.release()
                if response.status >= 500:
                    self.router.failed(backend, self.clock())
                raise from_backend(response.status, text)
            return response
        assert last is not None
        raise last

    async def call_json(self, call: Call, build: Build) -> Any:
        """A whole (not streamed) answer, counted: its tokens as the backend reported them, and its duration."""
        response = await self.connect(call, build)
        assert call.backend is not None
        backend = call.backend
        try:
            with call.child("backend.read"):
                answer = await response.json(content_type=None)
        except (aiohttp.ClientError, json.JSONDecodeError) as exc:
            self.router.failed(backend, self.clock())
            raise GatewayError.of(ErrorCode.BACKEND_ERROR, detail=f"unreadable answer ({type(exc).__name__})") from None
        finally:
            response.release()
        if backend.translator:
            with call.child("translate"):
                answer = translate.answer(backend.translator, call.asked_path, backend.served, answer)
        self.router.succeeded(backend)
        call.count("ok")
        route = route_labels(backend)
        usage = answer.get("usage") if isinstance(answer, dict) else None
        if isinstance(usage, dict):
            self._count_usage(route, usage)
        self.metrics.duration.labels(*route).observe(self.clock() - call.started)
        return answer

    def _count_usage(self, route: tuple[str, ...], usage: dict[str, Any]) -> None:
        self.metrics.input_tokens.labels(*route).inc(usage.get("prompt_tokens") or 0)
        self.metrics.output_tokens.labels(*route, "usage").inc(usage.get("completion_tokens") or 0)

    async def passthrough(self, call: Call, response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
        """A streamed answer's bytes as the backend sends them (token by token), timing the first token and the
        gaps between them; its tokens are the usage its last event reports, else its events with text."""
        assert call.backend is not None
        backend, route = call.backend, route_labels(call.backend)
        # The route's series once per request, not per chunk.
        ttft, itl = self.metrics.ttft.labels(*route), self.metrics.itl.labels(*route)
        last: float | None = None
        events = 0
        usage: dict[str, Any] | None = None
        pending = b""  # the start of an event line the next chunk finishes
        chunks: AsyncIterator[bytes] = response.content.iter_any()
        if backend.translator:
            chunks = self._translated(backend.translator, call.asked_path, backend.served, chunks)
        try:
            async for chunk in chunks:
                tokens = len(TEXT_PIECE.findall(chunk))  # the events in this chunk that carry text
                if tokens:
                    now = self.clock()
                    if last is None:
                        ttft.observe(now - call.started)
                    else:
                        itl.observe(now - last)
                    last = now
                    events += tokens
                *lines, pending = (pending + chunk).split(b"\n")
                usage = _reported_usage(lines) or usage
                yield chunk
        except aiohttp.ClientError:
            self.router.failed(backend, self.clock())
            raise GatewayError.of(ErrorCode.BACKEND_ERROR, detail="the stream broke off") from None
        finally:
            response.release()
        if usage is not None:
            self._count_usage(route, usage)
        else:
            self.metrics.output_tokens.labels(*route, "events").inc(events)
        self.router.succeeded(backend)
        call.count("ok")

    @staticmethod
    async def _translated(translator: str, path: str, model: str, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """A translated backend's event stream as OpenAI's, event by event as they arrive."""
        async for lines in _complete_lines(chunks):
            out = b"".join(translate.stream_event(translator, path, model, line.strip()) for line in lines)
            if out:
                yield out

    # --- the unified schema -----------------------------------------------------------------------------

    async def infer(self, call: Call, request: UnifiedRequest) -> UnifiedResponse:
        call.route(request.model_name, request.version)
        answer = await self.call_json(call, lambda b: to_openai(request, b.served))
        with call.child("translate"):
            return from_openai(answer)

    async def infer_stream(self, call: Call, request: UnifiedRequest) -> AsyncIterator[Piece]:
        """The unified answer as it is generated: the backend's server-sent events read as text pieces."""
        call.route(request.model_name, request.version)
        streamed = request.model_copy(update={"data": request.data.model_copy(update={"stream": True})})
        response = await self.connect(call, lambda b: to_openai(streamed, b.served))
        async for lines in _complete_lines(self.passthrough(call, response)):
            for piece in _pieces(lines):
                yield piece


async def _complete_lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[list[bytes]]:
    """A stream's bytes as the complete lines each chunk finishes (an event may be split across chunks)."""
    buffer = b""
    async for chunk in chunks:
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        yield lines


def _reported_usage(lines: list[bytes]) -> dict[str, Any] | None:
    """The token usage a stream's event reports (OpenAI's last event with stream_options.include_usage, and
    backends that always send it), from these complete lines; None when none does."""
    found = None
    for line in lines:
        if line.startswith(b"data:") and b'"usage"' in line:
            try:
                usage = json.loads(line[5:]).get("usage")
            except (json.JSONDecodeError, AttributeError):
                continue
            if isinstance(usage, dict) and isinstance(usage.get("completion_tokens"), int):
                found = usage
    return found


def _pieces(lines: list[bytes]) -> Iterator[Piece]:
    for line in lines:
        if not line.startswith(b"data:"):
            continue
        data = line[5:].strip()
        if data == b"[DONE]" or not data:
            continue
        try:
            event = json.loads(data)
        except json.JSONDecodeError:
            raise GatewayError.of(ErrorCode.BACKEND_ERROR, detail="an unreadable streamed event") from None
        choice = (event.get("choices") or [{}])[0]
        text = (choice.get("delta") or {}).get("content") if "delta" in choice else choice.get("text")
        if text or choice.get("finish_reason"):
            yield Piece(text or "", choice.get("finish_reason"))
