"""The gateway's gRPC adapter (grpc.aio): schema v1's `Infer`, `InferStream` and `ListModels` (v1/inference.proto)
over the protocol-independent service. Errors are the table's gRPC status and message, with the table's code
and any retry hint in trailing metadata; the key comes in `authorization: Bearer KEY` metadata."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import grpc
from google.protobuf import json_format

from autoglm.gateway.errors import ErrorCode, GatewayError
from autoglm.gateway.http_server import bearer
from autoglm.gateway.schema import parse_request
from autoglm.gateway.service import Call, InferenceService
from autoglm.gateway.v1 import inference_pb2, inference_pb2_grpc

logger = logging.getLogger("autoglm.gateway")


def request_dict(message: inference_pb2.InferRequest) -> dict[str, Any]:
    """The gRPC request as the unified schema's JSON, so both protocols are validated by the same model."""
    body: dict[str, Any] = json_format.MessageToDict(message, preserving_proto_field_name=True)
    data = body.get("data", {})
    for name in ("messages", "stop"):
        if not data.get(name):  # proto3 has no absent repeated field: empty means not given
            data.pop(name, None)
    return body


async def _abort(context: grpc.aio.ServicerContext, error: GatewayError) -> None:
    trailers: list[tuple[str, str]] = [("autoglm-code", str(error.code))]
    if error.retry_after is not None:
        trailers.append(("retry-after", error.retry_after))
    context.set_trailing_metadata(trailers)
    await context.abort(getattr(grpc.StatusCode, error.spec.grpc_status), error.message)


class InferenceServicer(inference_pb2_grpc.InferenceServicer):  # type: ignore[misc,unused-ignore]
    def __init__(self, service: InferenceService) -> None:
        self.service = service

    @asynccontextmanager
    async def _call(self, context: grpc.aio.ServicerContext, method: str) -> AsyncIterator[Call]:
        """One authenticated call; its errors end the RPC with the table's status (abort raises)."""
        metadata = _metadata(context)
        try:
            with self.service.begin("grpc", metadata) as call:
                call.authenticate(bearer(metadata))
                yield call
        except GatewayError as error:
            await _abort(context, error)
        except Exception:
            logger.exception("gRPC %s failed", method)
            await _abort(context, GatewayError.of(ErrorCode.INTERNAL))

    async def Infer(
        self, request: inference_pb2.InferRequest, context: grpc.aio.ServicerContext
    ) -> inference_pb2.InferResponse:
        async with self._call(context, "Infer") as call:
            answer = await self.service.infer(call, parse_request(request_dict(request)))
            response = inference_pb2.InferResponse(status_code=answer.status_code, message=answer.message)
            json_format.ParseDict(answer.result or {}, response.result, ignore_unknown_fields=True)
            return response
        raise AssertionError("unreachable: a failed call aborts")

    async def InferStream(
        self, request: inference_pb2.InferRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[inference_pb2.InferChunk]:
        async with self._call(context, "InferStream") as call:
            async for piece in self.service.infer_stream(call, parse_request(request_dict(request))):
                yield inference_pb2.InferChunk(text=piece.text, finish_reason=piece.finish_reason or "")

    async def ListModels(
        self, request: inference_pb2.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> inference_pb2.ListModelsResponse:
        async with self._call(context, "ListModels"):
            models = [inference_pb2.Model(name=m, version=v) for m, v in self.service.models()]
            return inference_pb2.ListModelsResponse(models=models)
        raise AssertionError("unreachable: a failed call aborts")


def _metadata(context: grpc.aio.ServicerContext) -> dict[str, str]:
    return {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}


async def serve(service: InferenceService, address: str, credentials: Any = None) -> grpc.aio.Server:
    """A started gRPC server on `address` (host:port), over TLS with `credentials` (grpc.ssl_server_credentials)."""
    server = grpc.aio.server()
    inference_pb2_grpc.add_InferenceServicer_to_server(InferenceServicer(service), server)  # type: ignore[no-untyped-call,unused-ignore]
    bound = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
    if bound == 0:
        raise OSError(f"cannot listen for gRPC on {address}")
    await server.start()
    return server
