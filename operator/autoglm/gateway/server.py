"""The gateway process: the service and every protocol adapter configured (HTTP always, gRPC and MQTT when
asked for) on one event loop, tracing set up when an OTLP endpoint is given, until a signal stops it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import ssl
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from autoglm.gateway.service import InferenceService

logger = logging.getLogger("autoglm.gateway")


@dataclass(frozen=True)
class MqttSettings:
    host: str
    port: int
    username: str | None = None
    password: str | None = None


@dataclass(frozen=True)
class TlsFiles:
    """The gateway's serving certificate and key; with `client_ca`, callers must present a certificate it
    signed (mutual TLS), on HTTP and gRPC alike."""

    cert: Path
    key: Path
    client_ca: Path | None = None

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        if self.client_ca is not None:
            context.load_verify_locations(cafile=self.client_ca)
            context.verify_mode = ssl.CERT_REQUIRED
        return context

    def grpc_credentials(self) -> Any:
        import grpc

        ca = self.client_ca.read_bytes() if self.client_ca is not None else None
        pair = [(self.key.read_bytes(), self.cert.read_bytes())]
        return grpc.ssl_server_credentials(pair, root_certificates=ca, require_client_auth=ca is not None)


@dataclass(frozen=True)
class Listen:
    host: str = "0.0.0.0"
    port: int = 8000
    grpc_port: int | None = None
    mqtt: MqttSettings | None = None
    tls: TlsFiles | None = None


def setup_tracing(endpoint: str, service_name: str = "autoglm-gateway") -> None:
    """Spans exported in batches over OTLP/HTTP to `endpoint` (its /v1/traces)."""
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    exporter = OTLPSpanExporter(endpoint=endpoint.rstrip("/") + "/v1/traces", timeout=5)
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=500))
    trace.set_tracer_provider(provider)


async def serve(
    service: InferenceService, listen: Listen, background: Callable[[], Coroutine[Any, Any, None]] | None = None
) -> None:
    """Serve until SIGTERM or SIGINT; `background` (route discovery) runs beside the adapters."""
    from autoglm.gateway.http_server import HttpGateway

    await service.open()
    runner = web.AppRunner(HttpGateway(service).app(), access_log=None)
    await runner.setup()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    grpc_server: Any = None
    mqtt: Any = None
    task: asyncio.Task[None] | None = None
    try:
        tls = listen.tls
        await web.TCPSite(runner, listen.host, listen.port, ssl_context=tls.ssl_context() if tls else None).start()
        if listen.grpc_port is not None:
            from autoglm.gateway import grpc_server as grpc_adapter

            address = f"{listen.host}:{listen.grpc_port}"
            grpc_server = await grpc_adapter.serve(service, address, tls.grpc_credentials() if tls else None)
        if listen.mqtt is not None:
            from autoglm.gateway.mqtt_adapter import MqttGateway

            m = listen.mqtt
            mqtt = MqttGateway(service, m.host, m.port, m.username, m.password)
            await mqtt.start()
        if background is not None:
            task = asyncio.create_task(background())
        logger.info("gateway serving")
        await stopping.wait()
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if mqtt is not None:
            await mqtt.stop()
        if grpc_server is not None:
            await grpc_server.stop(grace=5)
        await runner.cleanup()
        await service.close()
