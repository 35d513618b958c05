"""Failed calls to an API server, said in one short line a person can act on.

Conditions, Events and the CLI's tables carry `short_reason(exc)` ("connection refused", "timed out",
"403 Forbidden: ..."); the raw exception, with urllib3's pool and URL text, goes to the log only.
"""

from __future__ import annotations

import json
import socket
import ssl

import urllib3
from kubernetes.client import ApiException

# What a call to a cluster that cannot be reached raises: the network's and TLS's errors as urllib3 and the
# socket layer raise them, and the API server's own answers. Anything else is a bug, never "unreachable".
UNREACHABLE: tuple[type[BaseException], ...] = (ApiException, urllib3.exceptions.HTTPError, OSError)
MAX_DETAIL = 120


def short_reason(exc: BaseException) -> str:
    """One line, at most a couple of hundred characters, that says what went wrong."""
    if isinstance(exc, ApiException):
        return _api_reason(exc)
    cause = _root(exc)
    if isinstance(cause, ConnectionRefusedError):
        return "connection refused"
    if isinstance(cause, ConnectionResetError | BrokenPipeError):
        return "connection reset"
    if isinstance(cause, urllib3.exceptions.NameResolutionError | socket.gaierror):
        return "host name not resolved"
    if isinstance(cause, urllib3.exceptions.ConnectTimeoutError):
        return "timed out connecting"
    if isinstance(cause, urllib3.exceptions.ReadTimeoutError | TimeoutError | socket.timeout):
        return "timed out waiting for an answer"
    if isinstance(cause, ssl.SSLError | urllib3.exceptions.SSLError):
        text = str(cause)
        if "CERTIFICATE_VERIFY_FAILED" in text:
            detail = text.split("certificate verify failed:", 1)[-1].split("(_ssl", 1)[0].strip(" .")
            return f"TLS certificate not trusted: {detail}"[:MAX_DETAIL] if detail else "TLS certificate not trusted"
        return "TLS handshake failed"
    if isinstance(cause, urllib3.exceptions.ProtocolError):
        return "connection dropped"
    text = str(cause).splitlines()[0] if str(cause) else ""
    return f"{type(cause).__name__}: {text}"[:MAX_DETAIL].rstrip(": ")


def _root(exc: BaseException) -> BaseException:
    """The error under urllib3's wrappers (a MaxRetryError's reason, a NewConnectionError's socket error)."""
    seen = 0
    while seen < 8:
        seen += 1
        if isinstance(exc, urllib3.exceptions.MaxRetryError) and exc.reason is not None:
            exc = exc.reason
        elif isinstance(exc, urllib3.exceptions.ProtocolError) and len(exc.args) > 1:
            inner = exc.args[1]
            if not isinstance(inner, BaseException):
                break
            exc = inner
        elif isinstance(exc, urllib3.exceptions.NewConnectionError | urllib3.exceptions.SSLError) and (
            exc.__cause__ is not None or exc.__context__ is not None
        ):
            inner = exc.__cause__ or exc.__context__
            assert inner is not None
            if isinstance(exc, urllib3.exceptions.SSLError) and not isinstance(inner, ssl.SSLError):
                break
            exc = inner
        else:
            break
    return exc


def _api_reason(exc: ApiException) -> str:
    """The API server's own words, as kubectl shows them: the status and the Status object's message."""
    try:
        message = json.loads(exc.body or "{}").get("message") or ""
    except (ValueError, AttributeError):
        message = ""
    head = f"{exc.status} {exc.reason}".strip() if exc.status else str(exc.reason or "API error")
    return f"{head}: {message}"[: MAX_DETAIL + len(head)] if message else head
