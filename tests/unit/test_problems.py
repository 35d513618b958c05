"""Failed calls said in one line: what a person reads in conditions, Events and tables."""

from __future__ import annotations

import json
import socket

import urllib3
from kubernetes.client import ApiException

from autoglm.shell.problems import UNREACHABLE, short_reason


def _refused() -> BaseException:
    """What the Kubernetes client raises for a port nobody listens on (a real connection attempt)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()
    pool = urllib3.HTTPConnectionPool("127.0.0.1", port, retries=0)
    try:
        pool.request("GET", "/version")
    except urllib3.exceptions.HTTPError as exc:
        return exc
    raise AssertionError("a closed port answered")


def test_a_refused_connection_is_two_words_not_urllib3s_paragraph() -> None:
    exc = _refused()
    assert "HTTPConnectionPool" in str(exc)  # what the raw text looks like
    assert short_reason(exc) == "connection refused"
    assert isinstance(exc, UNREACHABLE)


def test_a_timeout_says_so() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()  # accepts, never answers: a hung API server
    pool = urllib3.HTTPConnectionPool("127.0.0.1", listener.getsockname()[1], retries=0, timeout=0.2)
    try:
        pool.request("GET", "/version")
    except urllib3.exceptions.HTTPError as exc:
        assert short_reason(exc) == "timed out waiting for an answer"
    else:
        raise AssertionError("a silent server answered")
    finally:
        listener.close()


def test_an_api_servers_refusal_is_its_code_and_its_own_message() -> None:
    exc = ApiException(status=403, reason="Forbidden")
    exc.body = json.dumps({"kind": "Status", "message": 'deployments.apps is forbidden: User "x" cannot create'})
    assert short_reason(exc) == '403 Forbidden: deployments.apps is forbidden: User "x" cannot create'
    assert short_reason(ApiException(status=500, reason="Internal Server Error")) == "500 Internal Server Error"


def test_anything_else_is_its_type_and_first_line_and_is_not_unreachable() -> None:
    exc = KeyError("spec")
    assert short_reason(exc) == "KeyError: 'spec'"
    assert not isinstance(exc, UNREACHABLE)
