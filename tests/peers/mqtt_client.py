"""A real MQTT peer for tests: a plain paho-mqtt client in its own network thread (paho's ``loop_start``).

It is deliberately *not* built like the plugin's client (no asyncio socket callbacks, no shared code), so
that the two cannot agree on a mistake. Messages arrive in the paho thread and are appended under a lock;
tests wait for them with ``await peer.wait_for(...)``, which polls without blocking the event loop the
gateway under test runs on.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

WAIT_S = 5.0


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    retain: bool
    qos: int
    correlation_data: bytes | None = None
    user_properties: tuple[tuple[str, str], ...] = ()
    at: float = field(default_factory=time.monotonic)  # when it arrived


@dataclass
class MqttPeer:
    port: int
    username: str | None = None
    password: str | None = None
    client_id: str = "test-peer"
    host: str = "127.0.0.1"
    v5: bool = True
    ssl_context: ssl.SSLContext | None = None
    messages: list[Received] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _connected: threading.Event = field(default_factory=threading.Event)
    _subacks: dict[int, list[ReasonCode]] = field(default_factory=dict)
    _pubacks: dict[int, ReasonCode] = field(default_factory=dict)
    connack: ReasonCode | None = None

    def __post_init__(self) -> None:
        protocol = MQTTProtocolVersion.MQTTv5 if self.v5 else MQTTProtocolVersion.MQTTv311
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=protocol)
        if self.username is not None:
            self.client.username_pw_set(self.username, self.password)
        if self.ssl_context is not None:
            self.client.tls_set_context(self.ssl_context)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.client.on_publish = self._on_publish

    # paho thread
    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: ReasonCode, props: Any) -> None:
        self.connack = reason
        if not reason.is_failure:
            self._connected.set()

    def _on_message(self, client: Any, userdata: Any, msg: paho.MQTTMessage) -> None:
        props = getattr(msg, "properties", None)
        corr = getattr(props, "CorrelationData", None) if props is not None else None
        users = getattr(props, "UserProperty", None) if props is not None else None
        with self._lock:
            self.messages.append(Received(msg.topic, bytes(msg.payload), bool(msg.retain), msg.qos,
                                          bytes(corr) if corr is not None else None,
                                          tuple(users) if users else ()))

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, reasons: list[ReasonCode], props: Any) -> None:
        with self._lock:
            self._subacks[mid] = reasons

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason: ReasonCode, props: Any) -> None:
        with self._lock:
            self._pubacks[mid] = reason

    # test side
    def start(self) -> MqttPeer:
        # bind_address: paho otherwise binds the wildcard address, which tests/conftest.py forbids.
        self.client.connect(self.host, self.port, keepalive=30, bind_address="127.0.0.1")
        self.client.loop_start()
        if not self._connected.wait(WAIT_S):
            self.stop()
            raise AssertionError(f"test peer {self.client_id} could not connect: {self.connack}")
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> MqttPeer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _wait(self, table: dict[int, Any], mid: int) -> Any:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            with self._lock:
                if mid in table:
                    return table.pop(mid)
            time.sleep(0.005)
        raise AssertionError(f"no acknowledgement for mid {mid}")

    def subscribe(self, topic: str, qos: int = 1) -> list[ReasonCode]:
        """Subscribe and wait for the SUBACK. With MQTT 5, Retain As Published (§3.8.3.1) is set, so that
        ``Received.retain`` tells whether the publisher retained a message even when it arrives live."""
        if self.v5:
            result, mid = self.client.subscribe(topic, options=SubscribeOptions(qos=qos, retainAsPublished=True))
        else:
            result, mid = self.client.subscribe(topic, qos)
        assert result == 0 and mid is not None
        reasons: list[ReasonCode] = self._wait(self._subacks, mid)
        return reasons

    def publish(self, topic: str, payload: bytes | str, *, qos: int = 1, retain: bool = False,
                response_topic: str | None = None, correlation_data: bytes | None = None,
                user_properties: list[tuple[str, str]] | None = None) -> ReasonCode | None:
        """Publish; for QoS 1 wait for the PUBACK and return its reason code (MQTT 5 reports ACL denials)."""
        props = None
        if self.v5 and (response_topic or correlation_data or user_properties):
            props = Properties(PacketTypes.PUBLISH)
            if response_topic:
                props.ResponseTopic = response_topic
            if correlation_data is not None:
                props.CorrelationData = correlation_data
            if user_properties:
                props.UserProperty = user_properties
        info = self.client.publish(topic, payload, qos=qos, retain=retain, properties=props)
        assert info.rc == 0, info.rc
        if qos == 0:
            return None
        reason: ReasonCode = self._wait(self._pubacks, info.mid)
        return reason

    def received(self, topic: str | None = None) -> list[Received]:
        with self._lock:
            return [m for m in self.messages if topic is None or m.topic == topic]

    def clear(self) -> None:
        with self._lock:
            self.messages.clear()

    async def wait_for(self, predicate: Callable[[Received], bool], within: float = WAIT_S) -> Received:
        deadline = time.monotonic() + within
        seen = 0
        while True:
            with self._lock:
                batch = self.messages[seen:]
                seen = len(self.messages)
            for message in batch:
                if predicate(message):
                    return message
            if time.monotonic() > deadline:
                topics = sorted({m.topic for m in self.received()})
                raise AssertionError(f"no matching message within {within} s; topics seen: {topics[:20]}")
            await asyncio.sleep(0.01)

    async def wait_topic(self, topic: str, within: float = WAIT_S) -> Received:
        return await self.wait_for(lambda m: m.topic == topic, within)
