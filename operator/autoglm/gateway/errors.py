"""One error table for every backend and protocol (seed §2.2: error codes aligned across services).

Each entry has the HTTP status, the gRPC status code name and the message every protocol returns; a backend's
own error is mapped onto an entry (`from_backend`), never passed through raw. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class ErrorCode(StrEnum):
    INVALID_REQUEST = "invalid_request"
    UNSUPPORTED_SCHEMA_VERSION = "unsupported_schema_version"
    UNAUTHENTICATED = "unauthenticated"
    MODEL_NOT_FOUND = "model_not_found"
    CONTEXT_LENGTH_EXCEEDED = "context_length_exceeded"
    RATE_LIMITED = "rate_limited"
    CONCURRENCY_LIMITED = "concurrency_limited"
    BACKEND_ERROR = "backend_error"
    NO_BACKEND_AVAILABLE = "no_backend_available"
    BACKEND_TIMEOUT = "backend_timeout"
    INTERNAL = "internal"


@dataclass(frozen=True)
class ErrorSpec:
    http_status: int
    grpc_status: str  # grpc.StatusCode name
    message: str  # str.format template over the error's details
    retryable: bool = False


TABLE: dict[ErrorCode, ErrorSpec] = {
    ErrorCode.INVALID_REQUEST: ErrorSpec(400, "INVALID_ARGUMENT", "invalid request: {detail}"),
    ErrorCode.UNSUPPORTED_SCHEMA_VERSION: ErrorSpec(
        400, "INVALID_ARGUMENT", "schema version {version!r} is not supported (supported: {supported})"
    ),
    ErrorCode.UNAUTHENTICATED: ErrorSpec(401, "UNAUTHENTICATED", "a valid API key is required"),
    ErrorCode.MODEL_NOT_FOUND: ErrorSpec(404, "NOT_FOUND", "model {model!r} version {version!r} is not served here"),
    ErrorCode.CONTEXT_LENGTH_EXCEEDED: ErrorSpec(
        400, "INVALID_ARGUMENT", "the request does not fit the model's context: {detail}"
    ),
    ErrorCode.RATE_LIMITED: ErrorSpec(
        429, "RESOURCE_EXHAUSTED", "rate limit of this API key reached; retry after {retry_after} s", True
    ),
    ErrorCode.CONCURRENCY_LIMITED: ErrorSpec(
        429, "RESOURCE_EXHAUSTED", "too many requests in flight for this API key; retry after {retry_after} s", True
    ),
    ErrorCode.BACKEND_ERROR: ErrorSpec(502, "UNAVAILABLE", "the backend failed to answer: {detail}", True),
    ErrorCode.NO_BACKEND_AVAILABLE: ErrorSpec(503, "UNAVAILABLE", "no ready backend serves {model!r} now", True),
    ErrorCode.BACKEND_TIMEOUT: ErrorSpec(
        504, "DEADLINE_EXCEEDED", "the backend did not answer in time: {detail}", True
    ),
    ErrorCode.INTERNAL: ErrorSpec(500, "INTERNAL", "internal error in the gateway"),
}


@dataclass  # not frozen: raising sets __traceback__ (and tracing records it on the way out of a span)
class GatewayError(Exception):
    """An error from the table with its details; `message` fills the table's template."""

    code: ErrorCode
    details: tuple[tuple[str, object], ...] = ()

    @classmethod
    def of(cls, code: ErrorCode, **details: object) -> GatewayError:
        return cls(code, tuple(sorted(details.items())))

    @property
    def spec(self) -> ErrorSpec:
        return TABLE[self.code]

    @property
    def message(self) -> str:
        return self.spec.message.format(**dict(self.details))

    @property
    def retry_after(self) -> str | None:
        """Seconds after which a retry may succeed (the limits' errors carry it; every protocol sends it)."""
        value = dict(self.details).get("retry_after")
        return None if value is None else str(value)

    def body(self) -> dict[str, object]:
        """The unified response of a failed request (seed: result, status_code, message) with the code."""
        return {"result": None, "status_code": self.spec.http_status, "message": self.message, "code": str(self.code)}

    def openai_body(self) -> dict[str, object]:
        """The same error as OpenAI-compatible clients expect it."""
        return {"error": {"message": self.message, "type": str(self.code), "code": self.spec.http_status}}


def from_backend(status: int, text: str) -> GatewayError:
    """A backend's HTTP error onto the table. Its text is kept only as a short detail (never the raw body):
    a 400 that speaks of the context window is the context error, other 4xx are the caller's request, 5xx
    and anything else the backend's failure."""
    detail = " ".join(text.split())[:200] or f"HTTP {status}"
    lowered = detail.lower()
    if status == 400 and ("context" in lowered or "too long" in lowered or "maximum" in lowered):
        return GatewayError.of(ErrorCode.CONTEXT_LENGTH_EXCEEDED, detail=detail)
    if status == 404:
        return GatewayError.of(ErrorCode.BACKEND_ERROR, detail=f"the backend does not serve this path ({detail})")
    if 400 <= status < 500 and status not in (401, 403, 408, 429):
        return GatewayError.of(ErrorCode.INVALID_REQUEST, detail=detail)
    if status == 408:
        return GatewayError.of(ErrorCode.BACKEND_TIMEOUT, detail=detail)
    return GatewayError.of(ErrorCode.BACKEND_ERROR, detail=f"HTTP {status}: {detail}")
