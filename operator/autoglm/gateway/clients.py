"""Clients of the front door's protocols, as an application or an edge device would write them: an MQTT 5
device that sends unified requests and waits for their answers, and a gRPC call. Used by the demo and tests."""

from __future__ import annotations

import json
import os
import threading
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from autoglm.gateway.mqtt_adapter import QOS, default_response_topic, mqtt_client, request_topic


class MqttDevice:
    """Connected to the broker with its own credentials, subscribed to its own answer topic."""

    def __init__(self, host: str, port: int, username: str, password: str, timeout: float = 10.0) -> None:
        self.topic = f"devices/{username}-{os.getpid()}-{id(self):x}/answers"
        self.client = mqtt_client(username, password)
        self.answers: dict[bytes, tuple[dict[str, Any], dict[str, str]]] = {}
        self.arrived_on: dict[bytes, str] = {}  # correlation data -> the topic its answer came on
        self.last_topic = ""
        self._arrived = threading.Condition()
        subscribed = threading.Event()
        refused: list[str] = []

        def on_connect(client: mqtt.Client, _: Any, __: Any, reason: Any, ___: Any) -> None:
            if reason.is_failure:
                refused.append(str(reason))
                subscribed.set()
            else:
                # Its own topic, and the models' fixed answer topics: a request the gateway could not authenticate
                # is answered there, never on a topic the request named.
                client.subscribe([(self.topic, QOS), (default_response_topic("+"), QOS)])

        self.client.on_connect = on_connect
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(host, port)
        self.client.loop_start()
        if not subscribed.wait(timeout) or refused:
            self.close()
            raise ConnectionError(f"MQTT broker {host}:{port}: {refused[0] if refused else 'no answer'}")

    def _on_message(self, _: mqtt.Client, __: Any, message: mqtt.MQTTMessage) -> None:
        props = message.properties
        user = dict(getattr(props, "UserProperty", None) or [])
        with self._arrived:
            correlation = getattr(props, "CorrelationData", b"")
            self.answers[correlation] = (json.loads(message.payload), user)
            self.arrived_on[correlation] = message.topic
            self._arrived.notify_all()

    def ask(
        self, model: str, body: dict[str, Any] | bytes, key: str | None, timeout: float = 60.0
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """Publish a request to the model's topic and wait for the answer with its correlation data:
        (the unified response, the answer's user properties); `last_topic` is the topic it came on."""
        correlation = os.urandom(8)
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.ResponseTopic = self.topic
        props.CorrelationData = correlation
        if key is not None:
            props.UserProperty = [("authorization", f"Bearer {key}")]
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.client.publish(request_topic(model), payload, qos=QOS, properties=props).wait_for_publish(timeout)
        with self._arrived:
            if not self._arrived.wait_for(lambda: correlation in self.answers, timeout):
                raise TimeoutError(f"no answer on {self.topic} within {timeout:.0f} s")
            self.last_topic = self.arrived_on.pop(correlation)
            return self.answers.pop(correlation)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def grpc_infer(address: str, request: dict[str, Any], key: str | None, timeout: float = 60.0) -> Any:
    """One unified request (its JSON shape) over gRPC; the InferResponse, or grpc.RpcError with the table's
    status."""
    import grpc
    from google.protobuf import json_format

    from autoglm.gateway.v1 import inference_pb2, inference_pb2_grpc

    message = json_format.ParseDict(request, inference_pb2.InferRequest())
    with grpc.insecure_channel(address) as channel:
        stub = inference_pb2_grpc.InferenceStub(channel)  # type: ignore[no-untyped-call,unused-ignore]
        metadata = [("authorization", f"Bearer {key}")] if key else None
        return stub.Infer(message, metadata=metadata, timeout=timeout)
