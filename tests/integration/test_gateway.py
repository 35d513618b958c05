"""`autoglm gateway` as its own process in front of two real llama.cpp servers (a tiny random-weight GGUF on the
CPU) standing for two members, serving HTTP, gRPC and MQTT (through a real mosquitto broker): every protocol
round-trips, streaming arrives in pieces, errors and callers without keys or over their limits get the table's
codes on every protocol, a killed backend is ejected while traffic moves to the other, the metrics count what
was sent, and the spans of a request arrive at an OTLP collector with the right parents."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from autoglm.gateway.clients import MqttDevice
from autoglm.sandbox import llama, mosquitto
from autoglm.sandbox.build import SandboxError
from autoglm.sandbox.cluster import free_port, http_ok, wait_until
from autoglm.sandbox.tiny_model import write_tiny_llama
from tests.otlp_collector import Collector, collector

# One key with tight limits per protocol (a test spends its burst), and one for everything else.
LIMITED = {"ratePerSecond": 0.2, "burst": 4, "maxInFlight": 2}
KEYS = [
    {"name": "team-a", "key": "a-secret-key", **LIMITED},
    {"name": "team-b", "key": "b-secret-key", "ratePerSecond": 100, "burst": 200, "maxInFlight": 8},
    {"name": "team-grpc", "key": "grpc-limited-key", **LIMITED},
    {"name": "team-mqtt", "key": "mqtt-limited-key", **LIMITED},
]
GATEWAY_BROKER_PASSWORD = "gateway-broker-password"


@dataclass
class Front:
    url: str
    backends: list[subprocess.Popen[bytes]]
    log: Path
    grpc: str
    broker_port: int
    traces: Collector


@pytest.fixture(scope="module")
def front(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Front]:
    try:
        llama.build()
    except SandboxError as exc:
        pytest.fail(f"llama.cpp's server unavailable: {exc}", pytrace=False)
    if not mosquitto.available():
        pytest.fail(f"the MQTT tests need a broker: {mosquitto.INSTALL_HINT}", pytrace=False)
    tmp = tmp_path_factory.mktemp("gateway")
    model = write_tiny_llama(tmp / "tiny.gguf")
    ports = [free_port(), free_port()]
    servers = [llama.serve(model, port, tmp / f"llama-{port}.log") for port in ports]
    (tmp / "keys.yaml").write_text(yaml.safe_dump(KEYS))
    # The broker knows the gateway and the devices (name: API key), as its password file would in production.
    broker_port = free_port()
    users = {"gateway": GATEWAY_BROKER_PASSWORD} | {k["name"]: k["key"] for k in KEYS}
    broker = mosquitto.start(tmp / "mosquitto", broker_port, users)
    port, grpc_port = free_port(), free_port()
    with collector(free_port()) as traces:
        command = [sys.executable, "-c", "from autoglm.face.cli import main; main()", "gateway", "--port", str(port),
                   "--host", "127.0.0.1", "--api-keys", str(tmp / "keys.yaml"), "--grpc-port", str(grpc_port),
                   "--mqtt-broker", f"127.0.0.1:{broker_port}", "--mqtt-username", "gateway",
                   "--otlp-endpoint", traces.url,
                   *(f"--backend=tiny=http://127.0.0.1:{p}" for p in ports)]  # fmt: skip
        log = tmp / "gateway.log"
        env = {**os.environ, "AUTOGLM_GATEWAY_MQTT_PASSWORD": GATEWAY_BROKER_PASSWORD}
        gateway = subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env)
        url = f"http://127.0.0.1:{port}"
        wait_until("the gateway's /healthz", lambda: http_ok(url + "/healthz"), 30, log)
        try:
            yield Front(url, servers, log, f"127.0.0.1:{grpc_port}", broker_port, traces)
        finally:
            for proc in [gateway, *servers, broker]:
                proc.terminate()
                proc.wait(10)


def call(
    front: Front, path: str, body: Any, key: str | None = "b-secret-key", raw: bytes | None = None
) -> tuple[int, Any, dict[str, str]]:
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    data = raw if raw is not None else json.dumps(body).encode()
    request = urllib.request.Request(front.url + path, data=data if body is not None or raw else None, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read()), dict(error.headers)


CHAT = {"model": "tiny", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 8}


def test_openai_chat_completions_and_models_round_trip(front: Front) -> None:
    status, answer, _ = call(front, "/v1/chat/completions", CHAT)
    assert status == 200 and answer["model"] == "tiny"
    assert answer["choices"][0]["message"]["content"] and answer["usage"]["completion_tokens"] > 0
    status, answer, _ = call(front, "/v1/completions", {"model": "tiny", "prompt": "once upon", "max_tokens": 4})
    assert status == 200 and answer["choices"][0]["text"]
    status, listed, _ = call(front, "/v1/models", None)
    assert status == 200 and [m["id"] for m in listed["data"]] == ["tiny"]


def test_the_unified_schema_round_trips(front: Front) -> None:
    body = {"schema_version": "v1", "model_name": "tiny", "version": "latest",
            "data": {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 6}}  # fmt: skip
    status, answer, _ = call(front, "/v1/infer", body)
    assert status == 200 and answer["status_code"] == 200 and answer["message"] == "ok"
    assert answer["result"]["text"] and answer["result"]["usage"]["completion_tokens"] > 0


def test_streaming_arrives_event_by_event(front: Front) -> None:
    body = {**CHAT, "max_tokens": 24, "stream": True}
    request = urllib.request.Request(
        front.url + "/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": "Bearer b-secret-key"},
    )
    events = []
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        for line in response:
            if line.startswith(b"data: "):
                events.append((time.monotonic(), line[6:].strip()))
    assert events[-1][1] == b"[DONE]"
    chunks = [json.loads(e) for _, e in events[:-1]]
    assert len(chunks) >= 3 and all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert events[0][0] < events[-1][0]  # read while the backend was still generating, not all at once


@pytest.mark.parametrize(
    ("path", "body", "raw", "status", "code"),
    [
        ("/v1/chat/completions", {**CHAT, "model": "nope"}, None, 404, "model_not_found"),
        ("/v1/infer", {"model_name": "nope", "data": {"prompt": "x"}}, None, 404, "model_not_found"),
        (
            "/v1/infer",
            {"schema_version": "v9", "model_name": "tiny", "data": {"prompt": "x"}},
            None,
            400,
            "unsupported_schema_version",
        ),
        ("/v1/infer", None, b"{not json", 400, "invalid_request"),
        ("/v1/chat/completions", None, b"[1, 2", 400, "invalid_request"),
        ("/v1/infer", {"model_name": "tiny", "data": {}}, None, 400, "invalid_request"),
    ],
)
def test_bad_requests_get_the_tables_codes(
    front: Front, path: str, body: Any, raw: bytes | None, status: int, code: str
) -> None:
    got, answer, _ = call(front, path, body, raw=raw)
    assert got == status
    if path == "/v1/infer":
        assert answer["status_code"] == status and answer["code"] == code and answer["result"] is None
    else:
        assert answer["error"]["type"] == code


def test_no_key_a_wrong_key_and_a_key_over_its_limit_get_401_401_429(front: Front) -> None:
    assert call(front, "/v1/chat/completions", CHAT, key=None)[0] == 401
    status, answer, _ = call(front, "/v1/infer", {"model_name": "tiny", "data": {"prompt": "x"}}, key="a-secret-kez")
    assert status == 401 and answer["code"] == "unauthenticated"
    statuses = [call(front, "/v1/models", None, key="a-secret-key") for _ in range(6)]
    assert [s for s, _, _ in statuses][:4] == [200] * 4  # its burst
    limited = [(a, h) for s, a, h in statuses if s == 429]
    assert limited and limited[0][0]["error"]["type"] == "rate_limited" and int(limited[0][1]["Retry-After"]) >= 1
    assert "a-secret-key" not in front.log.read_text()  # keys are never logged


def test_a_killed_backend_is_ejected_and_traffic_moves(front: Front) -> None:
    before = [call(front, "/v1/chat/completions", CHAT) for _ in range(20)]
    upstreams = {h["X-Autoglm-Upstream"] for s, _, h in before if s == 200}
    assert len(upstreams) == 2  # weighted 1:1, both serve
    dead = front.backends[0].args[front.backends[0].args.index("--port") + 1]
    front.backends[0].terminate()
    front.backends[0].wait(10)
    after = [call(front, "/v1/chat/completions", CHAT) for _ in range(12)]
    # A backend that cannot be reached is retried on the other before answering, and ejected after 3 failures.
    assert [s for s, _, _ in after] == [200] * 12
    assert {h["X-Autoglm-Upstream"] for _, _, h in after} == {u for u in upstreams if not u.endswith(f":{dead}")}


def _samples(front: Front) -> dict[str, float]:
    with urllib.request.urlopen(front.url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        name: float(value)
        for line in text.splitlines()
        if line and not line.startswith("#")
        for name, _, value in [line.rpartition(" ")]
    }


def test_metrics_count_what_was_sent(front: Front) -> None:
    before = _samples(front)
    for _ in range(3):
        assert call(front, "/v1/chat/completions", CHAT)[0] == 200
    assert call(front, "/v1/infer", {"model_name": "nope", "data": {"prompt": "x"}})[0] == 404
    request = urllib.request.Request(
        front.url + "/v1/chat/completions",
        data=json.dumps({**CHAT, "max_tokens": 12, "stream": True}).encode(),
        headers={"Content-Type": "application/json", "Authorization": "Bearer b-secret-key"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        streamed = sum(1 for line in response if b'"content": "' in line)
    after = _samples(front)

    def delta(prefix: str, *words: str) -> float:
        keys = [k for k in after if k.startswith(prefix) and all(w in k for w in words)]
        return sum(after[k] - before.get(k, 0.0) for k in keys)

    ok = delta("autoglm_gateway_requests_total{", 'model="tiny"', 'code="ok"', 'protocol="openai"')
    assert ok == 4  # 3 whole answers and 1 stream
    assert delta("autoglm_gateway_requests_total{", 'model="nope"', 'code="model_not_found"', 'protocol="unified"') == 1
    # The whole answers' tokens are the backend's usage; llama.cpp's stream reports none, so its events count.
    assert delta("autoglm_gateway_output_tokens_total{", 'model="tiny"', 'counted_by="usage"') >= 3
    assert delta("autoglm_gateway_output_tokens_total{", 'model="tiny"', 'counted_by="events"') == streamed > 0
    assert delta("autoglm_gateway_input_tokens_total{", 'model="tiny"') > 0
    # Time to first token from the stream only; the whole answers' time is their duration, a metric of its own.
    assert delta("autoglm_gateway_time_to_first_token_seconds_count{", 'model="tiny"') == 1
    assert delta("autoglm_gateway_request_duration_seconds_count{", 'model="tiny"') == 3
    # One latency between every two pieces the backend sent (a piece may carry several events).
    assert 1 <= delta("autoglm_gateway_inter_token_latency_seconds_count{", 'model="tiny"') <= streamed - 1
    assert after['autoglm_gateway_in_flight_requests{model="tiny"}'] == 0


# --- gRPC --------------------------------------------------------------------------------------------------


def grpc_stub(front: Front) -> Any:
    import grpc

    from autoglm.gateway.v1 import inference_pb2_grpc

    return inference_pb2_grpc.InferenceStub(grpc.insecure_channel(front.grpc))


def infer_request(model: str = "tiny", schema: str = "v1", **data: Any) -> Any:
    from autoglm.gateway.v1 import inference_pb2 as pb

    data = data or {"messages": [pb.Message(role="user", content="hi")], "max_tokens": 6}
    return pb.InferRequest(schema_version=schema, model_name=model, data=pb.InferenceData(**data))


def bearer(key: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {key}")]


def test_grpc_infer_stream_and_models_round_trip(front: Front) -> None:
    from autoglm.gateway.v1 import inference_pb2 as pb

    stub = grpc_stub(front)
    answer = stub.Infer(infer_request(), metadata=bearer("b-secret-key"), timeout=60)
    assert answer.status_code == 200 and answer.message == "ok"
    assert answer.result.text and answer.result.usage.completion_tokens > 0
    prompt = stub.Infer(infer_request(prompt="once upon", max_tokens=4), metadata=bearer("b-secret-key"), timeout=60)
    assert prompt.result.text and prompt.result.finish_reason
    arrived = [(time.monotonic(), chunk) for chunk in stub.InferStream(
        infer_request(messages=[pb.Message(role="user", content="hi")], max_tokens=24),
        metadata=bearer("b-secret-key"), timeout=60)]  # fmt: skip
    assert len(arrived) >= 3 and all(c.text for _, c in arrived[:-1]) and arrived[-1][1].finish_reason
    assert arrived[0][0] < arrived[-1][0]  # streamed, not all at once
    listed = stub.ListModels(pb.ListModelsRequest(), metadata=bearer("b-secret-key"), timeout=10)
    assert [(m.name, m.version) for m in listed.models] == [("tiny", "latest")]


@pytest.mark.parametrize(
    ("request_args", "key", "status", "code"),
    [
        ({"model": "nope"}, "b-secret-key", "NOT_FOUND", "model_not_found"),
        ({"schema": "v9"}, "b-secret-key", "INVALID_ARGUMENT", "unsupported_schema_version"),
        ({"prompt": "x", "messages": []}, None, None, None),  # placeholder replaced below: both inputs
        ({}, "", "UNAUTHENTICATED", "unauthenticated"),
        ({}, "b-secret-kez", "UNAUTHENTICATED", "unauthenticated"),
    ],
)
def test_grpc_errors_are_the_tables(
    front: Front, request_args: dict[str, Any], key: str | None, status: str | None, code: str | None
) -> None:
    import grpc

    from autoglm.gateway.v1 import inference_pb2 as pb

    if key is None:  # neither messages nor a prompt: the schema's field error
        request, key, status, code = pb.InferRequest(model_name="tiny", data=pb.InferenceData()), "b-secret-key", \
            "INVALID_ARGUMENT", "invalid_request"  # fmt: skip
    else:
        request = infer_request(**request_args)
    with pytest.raises(grpc.RpcError) as caught:
        grpc_stub(front).Infer(request, metadata=bearer(key) if key else None, timeout=30)
    error = caught.value
    assert error.code().name == status
    assert dict(error.trailing_metadata())["autoglm-code"] == code
    assert "b-secret" not in error.details()


def test_grpc_key_over_its_limit_gets_resource_exhausted_with_a_retry_hint(front: Front) -> None:
    import grpc

    from autoglm.gateway.v1 import inference_pb2 as pb

    stub = grpc_stub(front)
    codes = []
    for _ in range(6):
        try:
            stub.ListModels(pb.ListModelsRequest(), metadata=bearer("grpc-limited-key"), timeout=10)
            codes.append(("OK", {}))
        except grpc.RpcError as error:
            codes.append((error.code().name, dict(error.trailing_metadata())))
    assert [c for c, _ in codes][:4] == ["OK"] * 4
    limited = [m for c, m in codes if c == "RESOURCE_EXHAUSTED"]
    assert limited and limited[0]["autoglm-code"] == "rate_limited" and int(limited[0]["retry-after"]) >= 1


# --- MQTT --------------------------------------------------------------------------------------------------


@pytest.fixture
def device(front: Front) -> Iterator[MqttDevice]:
    device = MqttDevice("127.0.0.1", front.broker_port, "team-b", "b-secret-key")  # the broker's own login
    yield device
    device.close()


def test_mqtt_round_trips_through_the_broker(device: MqttDevice) -> None:
    body = {"model_name": "tiny", "data": {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 6}}
    answer, _ = device.ask("tiny", body, "b-secret-key")
    assert answer["status_code"] == 200 and answer["message"] == "ok" and answer["result"]["text"]


@pytest.mark.parametrize(
    ("topic", "body", "key", "status", "code"),
    [
        ("nope", {"model_name": "nope", "data": {"prompt": "x"}}, "b-secret-key", 404, "model_not_found"),
        ("tiny", {"schema_version": "v9", "model_name": "tiny", "data": {"prompt": "x"}}, "b-secret-key", 400,
         "unsupported_schema_version"),
        ("tiny", b"{not json", "b-secret-key", 400, "invalid_request"),
        ("tiny", {"model_name": "other", "data": {"prompt": "x"}}, "b-secret-key", 400, "invalid_request"),
        ("tiny", {"model_name": "tiny", "data": {"prompt": "x"}}, None, 401, "unauthenticated"),
        ("tiny", {"model_name": "tiny", "data": {"prompt": "x"}}, "b-secret-kez", 401, "unauthenticated"),
    ],
)  # fmt: skip
def test_mqtt_errors_are_the_tables(
    device: MqttDevice, topic: str, body: Any, key: str | None, status: int, code: str
) -> None:
    answer, user = device.ask(topic, body, key)
    assert answer["status_code"] == status and answer["code"] == code and answer["result"] is None
    assert user["autoglm-code"] == code
    # A caller the gateway did not admit is answered on the model's fixed topic, never on the one it named.
    assert device.last_topic == (f"autoglm/v1/{topic}/response" if status == 401 else device.topic)


def test_mqtt_key_over_its_limit_gets_429_with_a_retry_hint(device: MqttDevice) -> None:
    body = {"model_name": "tiny", "data": {"prompt": "x"}, "schema_version": "v0"}  # refused after admission
    answers = [(*device.ask("tiny", body, "mqtt-limited-key"), device.last_topic) for _ in range(6)]
    assert [a["code"] for a, _, _ in answers][:4] == ["unsupported_schema_version"] * 4
    limited = [(a, u, t) for a, u, t in answers if a["status_code"] == 429]
    assert limited and limited[0][0]["code"] == "rate_limited" and int(limited[0][1]["retry-after"]) >= 1
    # Refused before admission: answered on the model's fixed topic, not on the one the request named.
    assert {t for _, _, t in limited} == {"autoglm/v1/tiny/response"}
    assert {t for a, _, t in answers if a["status_code"] != 429} == {device.topic}


def test_the_broker_refuses_a_device_without_its_credentials(front: Front) -> None:
    with pytest.raises(ConnectionError, match=r"(?i)not authorized|bad user"):
        MqttDevice("127.0.0.1", front.broker_port, "team-b", "wrong")


# --- tracing -----------------------------------------------------------------------------------------------


def test_a_request_s_spans_arrive_with_the_callers_trace_as_parent(front: Front) -> None:
    trace_id, caller_span = os.urandom(16).hex(), os.urandom(8).hex()
    request = urllib.request.Request(
        front.url + "/v1/infer",
        data=json.dumps({"model_name": "tiny", "data": {"prompt": "x", "max_tokens": 2}}).encode(),
        headers={"Content-Type": "application/json", "Authorization": "Bearer b-secret-key",
                 "traceparent": f"00-{trace_id}-{caller_span}-01"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.status == 200

    def arrived() -> bool:
        names = {s.name for s in front.traces.of_trace(trace_id)}
        return {"infer tiny", "route", "translate", "backend"} <= names

    wait_until("the request's spans at the collector", arrived, 15)
    spans = front.traces.of_trace(trace_id)
    root = next(s for s in spans if s.name == "infer tiny")
    assert root.parent_id == caller_span and root.service == "autoglm-gateway"
    assert root.attributes["autoglm.model"] == "tiny" and root.attributes["autoglm.protocol"] == "unified"
    assert root.attributes["autoglm.member"] == "static" and root.attributes["autoglm.backend"].startswith("http://")
    assert "autoglm.retries" in root.attributes and root.attributes["autoglm.api_key"] == "team-b"
    children = [s for s in spans if s.name in ("route", "translate", "backend")]
    assert children and all(s.parent_id == root.span_id for s in children)
    backend = next(s for s in children if s.name == "backend")
    assert backend.attributes["http.response.status_code"] == 200
