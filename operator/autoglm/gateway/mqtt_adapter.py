"""The gateway's MQTT adapter, for edge devices: a client of the broker (MQTT 5, QoS 1) that takes unified
requests from `autoglm/v1/MODEL/request` and publishes each answer (or the table's error) to the request's
response topic, echoing its correlation data.

- Topics: requests on `autoglm/v1/MODEL/request`; the answer goes to the request's MQTT 5 Response Topic, or
  to `autoglm/v1/MODEL/response` when it has none. A request whose key is missing, wrong or over its limit is
  answered on `autoglm/v1/MODEL/response` only: the gateway publishes to a topic a caller names only for a
  caller it has admitted. Several gateway replicas share the request subscription
  (`$share/autoglm-gateway/...`), so each request is answered once.
- Who may call: devices authenticate to the broker (its own password file holds the same keys), and each
  request carries its key in the user property `authorization: Bearer KEY`, checked against the gateway's
  keys and limits like every other protocol: a missing or wrong key gets the table's 401, a spent limit 429
  with a `retry-after` user property.
- The payload is the unified request's JSON; its model_name must be the topic's MODEL. The answer's payload is
  the unified response (result, status_code, message), errors with the table's `code` as well, which is also
  the user property `autoglm-code`."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import threading
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from autoglm.gateway.errors import ErrorCode, GatewayError
from autoglm.gateway.http_server import bearer
from autoglm.gateway.schema import parse_request
from autoglm.gateway.service import InferenceService

logger = logging.getLogger("autoglm.gateway")
PREFIX = "autoglm/v1"
SHARE_GROUP = "autoglm-gateway"
QOS = 1


def request_topic(model: str) -> str:
    return f"{PREFIX}/{model}/request"


def default_response_topic(model: str) -> str:
    return f"{PREFIX}/{model}/response"


def topic_model(topic: str) -> str | None:
    """MODEL of `autoglm/v1/MODEL/request`, else None."""
    parts = topic.split("/")
    if len(parts) == 4 and f"{parts[0]}/{parts[1]}" == PREFIX and parts[3] == "request" and parts[2]:
        return parts[2]
    return None


def mqtt_client(username: str | None, password: str | None, client_id: str = "") -> mqtt.Client:
    """An MQTT 5 client with paho's current callback API, logged in as `username` when one is given; it
    reconnects after the broker drops it. The gateway and the devices of the demo and tests use the same."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5, reconnect_on_failure=True
    )
    if username:
        client.username_pw_set(username, password)
    return client


class MqttGateway:
    def __init__(
        self,
        service: InferenceService,
        host: str,
        port: int,
        username: str | None = None,
        password: str | None = None,
        client_id: str = "",
    ) -> None:
        self.service = service
        self.host, self.port = host, port
        self.client = mqtt_client(username, password, client_id)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self._loop: asyncio.AbstractEventLoop | None = None
        self._subscribed = threading.Event()
        self._pending: set[concurrent.futures.Future[None]] = set()

    async def start(self, timeout: float = 10.0) -> None:
        """Connect and subscribe (the broker unreachable or refusing the gateway's credentials: OSError)."""
        self._loop = asyncio.get_running_loop()
        try:
            self.client.connect(self.host, self.port, keepalive=30)
        except OSError as exc:
            raise OSError(f"MQTT broker {self.host}:{self.port} unreachable: {exc}") from None
        self.client.loop_start()  # paho's network thread; messages are handed to this event loop
        if not await asyncio.to_thread(self._subscribed.wait, timeout):
            self.client.loop_stop()
            raise OSError(f"MQTT broker {self.host}:{self.port} did not accept the gateway within {timeout:.0f} s")

    async def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client: mqtt.Client, _: Any, __: Any, reason: Any, ___: Any) -> None:
        if reason.is_failure:
            logger.error("MQTT broker refused the gateway: %s", reason)
            return
        # On every (re)connect: a clean session forgets subscriptions.
        client.subscribe(f"$share/{SHARE_GROUP}/{PREFIX}/+/request", qos=QOS)
        self._subscribed.set()

    def _on_message(self, _: mqtt.Client, __: Any, message: mqtt.MQTTMessage) -> None:
        assert self._loop is not None
        pending = asyncio.run_coroutine_threadsafe(self._handle(message), self._loop)
        self._pending.add(pending)  # kept until done: the loop holds only a weak reference to its tasks
        pending.add_done_callback(self._pending.discard)

    async def _handle(self, message: mqtt.MQTTMessage) -> None:
        props = message.properties
        user = dict(getattr(props, "UserProperty", None) or [])
        model = topic_model(message.topic) or ""
        # Until the caller's key is admitted, answers go only to the model's fixed topic: a request that names any
        # response topic must not make the gateway publish there for someone it does not know.
        asked = getattr(props, "ResponseTopic", None) or default_response_topic(model)
        reply_to = default_response_topic(model)
        correlation = getattr(props, "CorrelationData", None)
        try:
            with self.service.begin("mqtt", user) as call:
                call.span.set_attribute("messaging.destination.name", message.topic)
                call.authenticate(bearer(user))
                reply_to = asked
                try:
                    body = json.loads(message.payload)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    raise GatewayError.of(ErrorCode.INVALID_REQUEST, detail="the payload is not valid JSON") from None
                request = parse_request(body)
                if request.model_name != model:
                    raise GatewayError.of(
                        ErrorCode.INVALID_REQUEST,
                        detail=f"model_name {request.model_name!r} differs from the topic's model {model!r}",
                    )
                if request.data.stream:
                    raise GatewayError.of(ErrorCode.INVALID_REQUEST, detail="data.stream: not over MQTT")
                answer = await self.service.infer(call, request)
            self._publish(reply_to, answer.model_dump(), correlation, [])
        except GatewayError as error:
            extra = [("autoglm-code", str(error.code))]
            if error.retry_after is not None:
                extra.append(("retry-after", error.retry_after))
            self._publish(reply_to, error.body(), correlation, extra)
        except Exception:
            logger.exception("MQTT request on %s failed", message.topic)
            self._publish(reply_to, GatewayError.of(ErrorCode.INTERNAL).body(), correlation, [])

    def _publish(
        self, topic: str, body: dict[str, Any], correlation: bytes | None, user: list[tuple[str, str]]
    ) -> None:
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        if correlation is not None:
            props.CorrelationData = correlation
        if user:
            props.UserProperty = user
        self.client.publish(topic, json.dumps(body), qos=QOS, properties=props)
