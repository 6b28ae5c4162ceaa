"""The paho adapter (plugins/mqtt/client.py) against a real Mosquitto: TLS, credentials, will, ACL, reconnect.

Each refusal is proved from what the broker did (CONNACK, PUBACK, what a second client received) and from
the one log line an installer reads."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from gateway.security.tls import client_context
from plugins.mqtt.client import LinkSettings, MqttLink
from plugins.mqtt.codec import InboundMessage
from plugins.mqtt.limits import Backoff
from tests.helpers import free_port
from tests.peers.mqtt_client import MqttPeer

from .conftest import Broker

pytestmark = pytest.mark.peer

FAST = dict(initial=0.05, factor=2.0, maximum=0.2, jitter=0.5)


@dataclass
class Recorder:
    connected: int = 0
    lost: int = 0
    messages: list[InboundMessage] = field(default_factory=list)
    published: dict[int, str | None] = field(default_factory=dict)
    drained: int = 0
    refused: list[str] = field(default_factory=list)

    def link_connected(self) -> None:
        self.connected += 1

    def link_lost(self) -> None:
        self.lost += 1

    def link_message(self, message: InboundMessage) -> None:
        self.messages.append(message)

    def link_published(self, mid: int, failure: str | None) -> None:
        self.published[mid] = failure

    def link_writable(self) -> None:
        self.drained += 1

    def link_refused(self, reason: str) -> None:
        self.refused.append(reason)


async def until(predicate: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


def settings(broker: Broker, user: str = "gw_a", *, password: str | None = None, tls: bool = False,
             ca: object = None, port: int | None = None, protocol: str = "5") -> LinkSettings:
    context = client_context(ca=ca or broker.files.ca) if tls else None
    return LinkSettings(host="127.0.0.1", port=port or (broker.tls_port if tls else broker.port),
                        client_id=f"test-{user}", protocol=protocol, username=user,
                        password=password if password is not None else broker.passwords[user],
                        ssl_context=context, will_topic="siteA/t/status", will_payload=b"offline")


def watcher(broker: Broker) -> MqttPeer:
    return MqttPeer(broker.port, "watcher", broker.passwords["watcher"], client_id="watcher")


def errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR and r.name.startswith("plugins.mqtt")]


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_connects_with_password_and_publishes_retained(broker: Broker, protocol: str) -> None:
    rec = Recorder()
    link = MqttLink(settings(broker, protocol=protocol), rec)
    link.start()
    try:
        await until(lambda: link.connected)
        mid = link.publish("siteA/t/sensor.x/state", b"42", qos=1, retain=True)
        assert mid is not None
        await until(lambda: mid in rec.published)
        assert rec.published[mid] is None
    finally:
        await link.stop(final=[("siteA/t/status", b"offline")])
    # A client connecting afterwards gets both retained values.
    with watcher(broker) as peer:
        peer.subscribe("siteA/t/#")
        state = await peer.wait_topic("siteA/t/sensor.x/state")
        status = await peer.wait_topic("siteA/t/status")
    assert (state.payload, state.retain) == (b"42", True)
    assert (status.payload, status.retain) == (b"offline", True)


async def test_tls_with_the_brokers_ca(broker: Broker) -> None:
    rec = Recorder()
    link = MqttLink(settings(broker, tls=True), rec)
    link.start()
    try:
        await until(lambda: link.connected)
        assert rec.connected == 1
    finally:
        await link.stop()


async def test_wrong_password_fails_with_one_clear_log_line(broker: Broker, caplog: pytest.LogCaptureFixture) -> None:
    wrong = "Wrong-password-0123456789"
    rec = Recorder()
    link = MqttLink(settings(broker, password=wrong), rec)
    link.start()
    try:
        await until(lambda: link.failures >= 1)
        await asyncio.sleep(0.1)
        assert not link.connected
    finally:
        await link.stop()
    lines = errors(caplog)
    assert len(lines) == 1, lines
    assert f"broker 127.0.0.1:{broker.port} refused the connection: Not authorized" in lines[0]
    assert "CONNACK reason code 0x87" in lines[0] and "gw_a" in lines[0]
    assert wrong not in caplog.text
    assert rec.refused == ["Not authorized (CONNACK reason code 0x87)"]


async def test_wrong_ca_fails_with_the_verify_error(broker: Broker, caplog: pytest.LogCaptureFixture) -> None:
    link = MqttLink(settings(broker, tls=True, ca=broker.files.other_ca), Recorder())
    link.start()
    try:
        await until(lambda: link.failures >= 1)
        assert not link.connected
    finally:
        await link.stop()
    lines = errors(caplog)
    assert len(lines) == 1, lines
    # OpenSSL's own words follow (Mosquitto sends its CA along, hence "self-signed certificate in chain").
    assert lines[0].startswith(f"mqtt: cannot connect to broker 127.0.0.1:{broker.tls_port}: TLS certificate verify "
                               "failed: "), lines
    assert "certificate" in lines[0].split("verify failed: ", 1)[1]


async def test_plaintext_to_the_tls_port_never_connects(broker: Broker, caplog: pytest.LogCaptureFixture) -> None:
    link = MqttLink(settings(broker, port=broker.tls_port), Recorder())
    link.start()
    try:
        await until(lambda: link.failures >= 1)
        assert not link.connected
    finally:
        await link.stop()
    assert errors(caplog) and f"broker 127.0.0.1:{broker.tls_port}" in errors(caplog)[0]


async def test_repeated_failures_are_logged_once(broker: Broker, caplog: pytest.LogCaptureFixture) -> None:
    link = MqttLink(settings(broker, port=free_port()), Recorder(), backoff=Backoff(**FAST))
    link.start()
    try:
        await until(lambda: link.failures >= 4)
    finally:
        await link.stop()
    lines = errors(caplog)
    assert len(lines) == 1 and "connection refused" in lines[0], lines


async def test_reconnects_after_the_broker_restarts(broker: Broker, caplog: pytest.LogCaptureFixture) -> None:
    rec = Recorder()
    link = MqttLink(settings(broker), rec, backoff=Backoff(**FAST))
    link.start()
    try:
        await until(lambda: link.connected)
        await asyncio.to_thread(broker.restart)
        await until(lambda: rec.lost == 1 and rec.connected == 2 and link.connected, within=10)
    finally:
        await link.stop()
    assert any("lost the connection to broker" in r.getMessage() for r in caplog.records)


async def test_will_is_published_when_the_connection_drops(broker: Broker) -> None:
    rec = Recorder()
    link = MqttLink(settings(broker), rec, backoff=Backoff(**FAST))
    with watcher(broker) as peer:
        peer.subscribe("siteA/t/status")
        link.start()
        try:
            await until(lambda: link.connected)
            sock = link._client.socket()
            assert sock is not None
            sock.shutdown(2)  # an unclean drop: no DISCONNECT reaches the broker
            will = await peer.wait_topic("siteA/t/status")
            await until(lambda: rec.connected == 2)
        finally:
            await link.stop()
    assert will.payload == b"offline"


async def test_acl_denial_is_visible_in_the_mqtt5_puback(broker: Broker) -> None:
    rec = Recorder()
    link = MqttLink(settings(broker, "gw_a"), rec)
    link.start()
    try:
        await until(lambda: link.connected)
        denied = link.publish("siteB/sensor.x/state", b"1", qos=1)
        allowed = link.publish("siteA/sensor.x/state", b"1", qos=1)
        await until(lambda: denied in rec.published and allowed in rec.published)
    finally:
        await link.stop()
    assert rec.published[denied] == "Not authorized"
    assert rec.published[allowed] is None


async def test_messages_arrive_with_v5_properties(broker: Broker) -> None:
    rec = Recorder()
    link = MqttLink(settings(broker), rec)
    link.start()
    try:
        await until(lambda: link.connected)
        link.subscribe(["siteA/t/cmd/+/+"])
        await asyncio.sleep(0.1)
        with watcher(broker) as peer:
            peer.publish("siteA/t/cmd/test/echo", b"{}", response_topic="replies/1", correlation_data=b"\x01\x02",
                         user_properties=[("user", "alice")])
        await until(lambda: bool(rec.messages))
    finally:
        await link.stop()
    msg = rec.messages[0]
    assert (msg.topic, msg.payload, msg.response_topic, msg.correlation_data) == \
        ("siteA/t/cmd/test/echo", b"{}", "replies/1", b"\x01\x02")
    assert msg.user_properties == (("user", "alice"),)
