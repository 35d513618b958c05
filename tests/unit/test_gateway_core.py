"""The gateway's pure core: the error table, the unified schema, routing by weight and outlier ejection."""

from __future__ import annotations

import pytest

from autoglm.gateway.errors import TABLE, ErrorCode, GatewayError, from_backend
from autoglm.gateway.routing import Backend, Router, deployment_backends, static_backends
from autoglm.gateway.schema import from_openai, parse_request, to_openai


def test_every_error_has_an_http_and_a_grpc_status_and_a_message_that_fills() -> None:
    grpc_names = {"INVALID_ARGUMENT", "UNAUTHENTICATED", "NOT_FOUND", "RESOURCE_EXHAUSTED", "UNAVAILABLE",
                  "DEADLINE_EXCEEDED", "INTERNAL"}  # fmt: skip
    details = {"detail": "x", "version": "v9", "supported": "v1", "model": "m", "retry_after": 1}
    assert set(TABLE) == set(ErrorCode)
    for code, spec in TABLE.items():
        assert 400 <= spec.http_status < 600 and spec.grpc_status in grpc_names, code
        error = GatewayError.of(code, **details)
        assert "{" not in error.message and error.body()["status_code"] == spec.http_status
        assert error.body()["result"] is None and error.openai_body()["error"]["type"] == str(code)  # type: ignore[index]
    assert TABLE[ErrorCode.UNAUTHENTICATED].http_status == 401 and TABLE[ErrorCode.RATE_LIMITED].http_status == 429


@pytest.mark.parametrize(
    ("status", "text", "code"),
    [
        (400, '{"error": "the request exceeds the available context size"}', ErrorCode.CONTEXT_LENGTH_EXCEEDED),
        (400, "bad temperature", ErrorCode.INVALID_REQUEST),
        (422, "unprocessable", ErrorCode.INVALID_REQUEST),
        (404, "Not Found", ErrorCode.BACKEND_ERROR),
        (429, "slow down", ErrorCode.BACKEND_ERROR),
        (500, "Traceback (most recent call last): ...", ErrorCode.BACKEND_ERROR),
        (503, "loading model", ErrorCode.BACKEND_ERROR),
    ],
)
def test_backend_errors_map_onto_the_table_and_never_pass_through_raw(status: int, text: str, code: ErrorCode) -> None:
    error = from_backend(status, text + "\n" + "x" * 1000)
    assert error.code is code
    assert len(error.message) < 300 and "\n" not in error.message


def test_the_unified_request_is_checked_field_by_field_and_a_bad_schema_version_comes_first() -> None:
    good = {"model_name": "glm", "data": {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}}
    request = parse_request(good)
    assert (request.schema_version, request.version) == ("v1", "latest")
    path, body = to_openai(request, "glm-served")
    assert path == "/v1/chat/completions" and body["model"] == "glm-served" and body["max_tokens"] == 8
    assert to_openai(parse_request({"model_name": "glm", "data": {"prompt": "x"}}), "g")[0] == "/v1/completions"
    cases = {
        "schema": ({**good, "schema_version": "v9"}, ErrorCode.UNSUPPORTED_SCHEMA_VERSION, "'v9'"),
        "missing model": ({"data": good["data"]}, ErrorCode.INVALID_REQUEST, "model_name: Field required"),
        "both inputs": (
            {"model_name": "glm", "data": {"prompt": "x", "messages": [{"role": "user", "content": "y"}]}},
            ErrorCode.INVALID_REQUEST,
            "exactly one of data.messages and data.prompt",
        ),
        "bad role": (
            {"model_name": "glm", "data": {"messages": [{"role": "robot", "content": "y"}]}},
            ErrorCode.INVALID_REQUEST,
            "data.messages.0.role",
        ),
        "not an object": ([1, 2], ErrorCode.INVALID_REQUEST, "JSON object"),
        "unknown field": ({**good, "modle": "x"}, ErrorCode.INVALID_REQUEST, "modle"),
    }
    for name, (body, code, words) in cases.items():
        with pytest.raises(GatewayError) as caught:
            parse_request(body)
        assert caught.value.code is code and words in caught.value.message, (name, caught.value.message)


def test_an_openai_answer_becomes_the_unified_response() -> None:
    chat = {"choices": [{"message": {"content": "hello"}, "finish_reason": "stop"}], "usage": {"total_tokens": 5}}
    response = from_openai(chat)
    assert response.status_code == 200 and response.result == {
        "text": "hello",
        "finish_reason": "stop",
        "usage": {"total_tokens": 5},
    }
    assert from_openai({"choices": [{"text": "t", "finish_reason": "length"}]}).result["text"] == "t"  # type: ignore[index]


def test_routes_come_from_static_specs_and_from_a_deployments_ready_members() -> None:
    assert static_backends(["glm=http://a:8080/", "glm@v2=https://b"]) == [
        Backend("glm", "latest", "http://a:8080"),
        Backend("glm", "v2", "https://b"),
    ]
    with pytest.raises(ValueError, match="expected MODEL=URL"):
        static_backends(["glm:http://a"])
    md = {
        "metadata": {"name": "chat", "namespace": "serving"},
        "spec": {"model": {"name": "glm-4-9b-chat"}},
        "status": {
            "clusters": [{"name": "gpu", "ready": 3}, {"name": "ascend", "ready": 1}, {"name": "edge", "ready": 0}]
        },
    }
    endpoints = {"gpu": "http://gpu:8000", "ascend": "http://ascend:8000", "edge": "http://edge:8000"}
    assert [(b.member, b.weight, b.model, b.served_name) for b in deployment_backends(md, endpoints)] == [
        ("gpu", 3, "chat", "chat"),
        ("ascend", 1, "chat", "chat"),
    ]


def test_picks_follow_the_weights_and_a_failing_backend_is_ejected_then_returns_for_longer_each_time() -> None:
    gpu, ascend = (
        Backend("chat", "latest", "http://gpu", "gpu", 3),
        Backend("chat", "latest", "http://asc", "ascend", 1),
    )
    router = Router([gpu, ascend], failures=2, ejection_seconds=10)
    picks = [router.pick("chat", "latest", 0.0, i / 100).member for i in range(100)]
    assert (picks.count("gpu"), picks.count("ascend")) == (75, 25)
    assert router.pick("chat", "latest", 0.0, 0.0, exclude={gpu.key}) is ascend
    with pytest.raises(GatewayError) as missing:
        router.pick("other", "latest", 0.0, 0.5)
    assert missing.value.code is ErrorCode.MODEL_NOT_FOUND
    with pytest.raises(GatewayError):
        router.pick("chat", "v7", 0.0, 0.5)  # no such version; latest matches any, a named one does not
    assert router.failed(gpu, 1.0) is False and router.failed(gpu, 2.0) is True
    assert {router.pick("chat", "latest", 5.0, d / 10).member for d in range(10)} == {"ascend"}
    assert router.pick("chat", "latest", 12.0, 0.0) is gpu  # back after 10 s
    router.failed(gpu, 13.0)
    router.failed(gpu, 14.0)  # ejected again: 20 s this time
    assert router.candidates("chat", "latest", 30.0) == [ascend]
    assert gpu in router.candidates("chat", "latest", 34.0)
    router.failed(ascend, 40.0)
    router.succeeded(ascend)  # a success resets the count
    assert router.failed(ascend, 41.0) is False
    router.failed(gpu, 50.0)
    router.failed(gpu, 51.0)
    router.failed(ascend, 52.0)
    with pytest.raises(GatewayError) as none_left:
        router.pick("chat", "latest", 53.0, 0.5)
    assert none_left.value.code is ErrorCode.NO_BACKEND_AVAILABLE


def test_discovered_routes_are_the_static_ones_and_each_deployments_members_with_an_endpoint() -> None:
    from autoglm.gateway.discovery import routes

    static = [Backend("tiny", "latest", "http://edge-box:8080")]
    md = {
        "metadata": {"name": "chat"},
        "spec": {"model": {"name": "glm-4-9b-chat", "revision": "v2"}},
        "status": {
            "clusters": [
                {"name": "gpu", "ready": 3, "endpoint": "http://10.0.0.7:8000"},
                {"name": "ascend", "ready": 1},  # its load balancer has no address yet
            ]
        },
    }
    found = routes([md, {"metadata": {"name": "new"}}], static, {})
    assert [(b.model, b.version, b.member, b.url, b.weight) for b in found] == [
        ("tiny", "latest", "static", "http://edge-box:8080", 1),
        ("chat", "v2", "gpu", "http://10.0.0.7:8000", 3),
    ]


def test_a_members_endpoint_is_its_load_balancers_address_or_on_the_host_its_dns_name() -> None:
    from autoglm.shell.clusters import service_endpoint

    def service(kind: str = "LoadBalancer", ingress: list[dict[str, str]] | None = None) -> dict[str, object]:
        return {
            "kind": "Service",
            "metadata": {"name": "chat", "namespace": "serving"},
            "spec": {"type": kind, "ports": [{"name": "http", "port": 8000}, {"name": "grpc", "port": 9000}]},
            "status": {"loadBalancer": {"ingress": ingress or []}},
        }

    headless = {"kind": "Service", "spec": {"clusterIP": "None", "ports": [{"name": "http", "port": 1}]}}
    assert service_endpoint([headless, service(ingress=[{"ip": "203.0.113.9"}])], False) == "http://203.0.113.9:8000"
    assert service_endpoint([service(ingress=[{"hostname": "lb.example"}])], False) == "http://lb.example:8000"
    assert service_endpoint([service(ingress=[{"ip": "2001:db8::1"}])], False) == "http://[2001:db8::1]:8000"
    assert service_endpoint([service()], False) is None  # no address yet
    assert service_endpoint([service("ClusterIP")], False) is None  # not reachable from outside its member
    assert service_endpoint([service("ClusterIP")], True) == "http://chat.serving.svc:8000"
    assert service_endpoint([headless], True) is None


def test_the_tgi_translator_turns_openai_requests_and_tgi_answers_and_events_around() -> None:
    """Shapes from Text Generation Inference's API (GenerateRequest/GenerateResponse, StreamResponse)."""
    import json

    from autoglm.gateway import translate

    chat = {"model": "m", "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
            "max_tokens": 8, "temperature": 0.5, "stop": "\n\n"}  # fmt: skip
    assert translate.request("tgi", "/v1/chat/completions", chat) == (
        "/generate",
        {"inputs": "system: be brief\nuser: hi\nassistant:",
         "parameters": {"details": True, "max_new_tokens": 8, "temperature": 0.5, "stop": ["\n\n"]}},
    )  # fmt: skip
    path, body = translate.request("tgi", "/v1/completions", {"model": "m", "prompt": "once", "stream": True})
    assert (path, body["inputs"]) == ("/generate_stream", "once")
    tgi = {"generated_text": " upon a time", "details": {"finish_reason": "length", "generated_tokens": 4,
                                                        "prefill": [{"id": 1}, {"id": 2}]}}  # fmt: skip
    answer = translate.answer("tgi", "/v1/chat/completions", "m", tgi)
    assert (
        answer["choices"][0]["message"]["content"] == " upon a time"
        and answer["choices"][0]["finish_reason"] == "length"
    )
    assert answer["usage"] == {"prompt_tokens": 2, "completion_tokens": 4, "total_tokens": 6}
    assert from_openai(answer).result == {"text": " upon a time", "finish_reason": "length", "usage": answer["usage"]}
    assert translate.answer("tgi", "/v1/completions", "m", tgi)["choices"][0]["text"] == " upon a time"
    with pytest.raises(GatewayError) as caught:
        translate.answer("tgi", "/v1/completions", "m", {"error": "overloaded"})
    assert caught.value.code is ErrorCode.BACKEND_ERROR
    token = b'data:{"token":{"id":5,"text":" up","logprob":-1.0,"special":false},"generated_text":null,"details":null}'
    event = translate.stream_event("tgi", "/v1/chat/completions", "m", token)
    assert event.startswith(b"data: ") and event.endswith(b"\n\n")
    assert json.loads(event[6:])["choices"][0] == {"index": 0, "finish_reason": None, "delta": {"content": " up"}}
    last = (b'data:{"token":{"id":2,"text":"</s>","special":true},"generated_text":" up",'
            b'"details":{"finish_reason":"eos_token","generated_tokens":2}}')  # fmt: skip
    closing = translate.stream_event("tgi", "/v1/completions", "m", last)
    first, done = closing.split(b"\n\n")[:2]
    assert json.loads(first[6:])["choices"][0] == {"index": 0, "finish_reason": "stop", "text": ""}
    assert done == b"data: [DONE]"
    assert translate.stream_event("tgi", "/v1/completions", "m", b": keep-alive") == b""


def test_static_and_discovered_routes_carry_the_translator_of_a_non_openai_runtime() -> None:
    from autoglm.gateway.discovery import routes

    assert static_backends(["glm=http://mindie:1025;translator=tgi"])[0].translator == "tgi"
    with pytest.raises(ValueError, match="translator=NAME"):
        static_backends(["glm=http://mindie:1025;translator=grpc"])
    md = {
        "metadata": {"name": "chat"},
        "spec": {"model": {"name": "glm-4-9b-chat"}},
        "status": {
            "plan": [{"cluster": "gpu", "backend": "vllm-cuda"}, {"cluster": "ascend", "backend": "mindie-tgi"}],
            "clusters": [
                {"name": "gpu", "ready": 1, "endpoint": "http://10.0.0.7:8000"},
                {"name": "ascend", "ready": 1, "endpoint": "http://10.1.0.9:8000"},
            ],
        },
    }
    found = routes([md], [], {"vllm-cuda": None, "mindie-tgi": "tgi"})
    assert {(b.member, b.translator) for b in found} == {("gpu", None), ("ascend", "tgi")}


def test_a_streams_usage_is_read_from_its_complete_event_lines_and_only_from_them() -> None:
    from autoglm.gateway.service import _reported_usage

    text = b'data: {"choices": [{"delta": {"content": "hi"}}]}'
    usage = b'data: {"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 12, "total_tokens": 19}}'
    assert _reported_usage([text, b"", b"data: [DONE]"]) is None
    assert _reported_usage([text, b"", usage, b"", b"data: [DONE]"]) == {
        "prompt_tokens": 7,
        "completion_tokens": 12,
        "total_tokens": 19,
    }
    # Continuous usage (vLLM's continuous_usage_stats): the last event's count is the stream's.
    earlier = usage.replace(b'"completion_tokens": 12', b'"completion_tokens": 3')
    assert _reported_usage([earlier, usage])["completion_tokens"] == 12  # type: ignore[index]
    # Text that only mentions usage, a broken line, or a usage without a token count: none reported.
    mention = b'data: {"choices": [{"delta": {"content": "\\"usage\\" is a word"}}]}'
    assert _reported_usage([mention, b'data: {"usage": ', b'data: {"usage": {"prompt_tokens": 3}}']) is None
