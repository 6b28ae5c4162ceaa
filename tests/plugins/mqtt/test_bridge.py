"""The plugin end to end: real gateways (tests/helpers.running_gateway) on a real Mosquitto, watched by a plain
paho client. States retained, commands allowlisted and answered, garbage survived, the ACL between two
gateways, reconnect with republish, Home Assistant discovery and its clean-up."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import voluptuous as vol

from gateway.context import Role
from gateway.core import Gateway
from gateway.services import ServiceCall
from plugins.mqtt.const import DROPPED_ENTITY, ERROR_REPLY_BURST
from tests.helpers import running_gateway
from tests.peers.mqtt_client import MqttPeer, Received

from .conftest import Broker

pytestmark = pytest.mark.peer

GATEWAY = """
gateway:
  name: {name}
{core}
mqtt:
  enabled: true
  host: 127.0.0.1
  port: {port}
  username: {user}
  password: !secret mqtt_password
  prefix: {prefix}
  min_interval: {min_interval}
{tls}
  commands:
    enabled: true
{allow}
{extra}
"""
ALLOW = "    allow: [test.echo, test.slow]"
PLAIN = "  tls:\n    enabled: false"


def config(broker: Broker, *, name: str = "site-a", user: str = "gw_a", prefix: str = "siteA/gw",
           min_interval: float = 0, tls: str = PLAIN, extra: str = "", port: int | None = None, core: str = "",
           allow: str = ALLOW) -> tuple[str, str]:
    text = GATEWAY.format(name=name, port=port or broker.port, user=user, prefix=prefix, min_interval=min_interval,
                          tls=tls, extra=extra, core=core, allow=allow)
    return text, f"mqtt_password: {broker.passwords[user]}\n"


@contextlib.asynccontextmanager
async def gateway(tmp_path: Path, broker: Broker, *, online: bool = True, **kw: Any) -> AsyncIterator[Gateway]:
    """A running gateway; with ``online``, only once the broker holds its retained ``online`` status."""
    name = kw.get("name", "site-a")
    directory = tmp_path / name
    directory.mkdir()
    text, secrets = config(broker, **kw)
    async with running_gateway(directory, text, secrets) as gw:
        if online:
            status = f"{kw.get('prefix', 'siteA/gw')}/status"
            with MqttPeer(broker.port, "watcher", broker.passwords["watcher"], client_id=f"probe-{name}") as probe:
                probe.subscribe(status)
                await probe.wait_for(lambda m: m.topic == status and m.payload == b"online")
        yield gw


def watcher(broker: Broker, client_id: str = "watcher") -> MqttPeer:
    return MqttPeer(broker.port, "watcher", broker.passwords["watcher"], client_id=client_id)


async def until(predicate: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


def reply(message: Received) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(message.payload)
    return value


class Calls:
    """A test service that records its calls (and the caller's context)."""

    def __init__(self) -> None:
        self.calls: list[ServiceCall] = []

    def __call__(self, call: ServiceCall) -> dict[str, Any]:
        self.calls.append(call)
        return {"echo": call.data}


def register(gw: Gateway) -> dict[str, Calls]:
    services = {name: Calls() for name in ("echo", "forbidden")}
    gw.services.register("test", "echo", services["echo"], schema={vol.Required("value"): int}, owner="test")
    gw.services.register("test", "forbidden", services["forbidden"], owner="test")
    return services


# -- states out ----------------------------------------------------------------------------------------------


async def test_states_arrive_retained_for_a_late_subscriber(tmp_path: Path, broker: Broker) -> None:
    async with gateway(tmp_path, broker) as gw:
        with watcher(broker, "first") as first:
            first.subscribe("siteA/gw/#")
            gw.states.set("sensor.cp01_power", 7200, "W", {"friendly_name": "CP01 power"}, owner="test")
            gw.states.set("sensor.cp01_status", "Charging", owner="test")
            gw.states.set("sensor.cp01_phases", [1, 2, 3], owner="test")
            await first.wait_topic("siteA/gw/sensor.cp01_phases/state")
        # Connects after publication: everything comes from the broker's retained store.
        with watcher(broker, "late") as late:
            late.subscribe("siteA/gw/#")
            power = await late.wait_topic("siteA/gw/sensor.cp01_power/state")
            attrs = await late.wait_topic("siteA/gw/sensor.cp01_power/attributes")
            status = await late.wait_topic("siteA/gw/status")
            text = await late.wait_topic("siteA/gw/sensor.cp01_status/state")
            phases = await late.wait_topic("siteA/gw/sensor.cp01_phases/state")
    assert (power.payload, power.retain) == (b"7200", True)
    assert json.loads(attrs.payload) == {"unit": "W", "attributes": {"friendly_name": "CP01 power"}}
    assert (status.payload, status.retain) == (b"online", True)
    assert text.payload == b"Charging" and json.loads(phases.payload) == [1, 2, 3]
    # After stop: the gateway said goodbye itself ("offline", retained), the will was not needed.
    with watcher(broker, "after") as after:
        after.subscribe("siteA/gw/status")
        assert (await after.wait_topic("siteA/gw/status")).payload == b"offline"


async def test_bursts_are_coalesced_latest_value_wins(tmp_path: Path, broker: Broker) -> None:
    async with gateway(tmp_path, broker, min_interval=0.5) as gw:
        with watcher(broker) as peer:
            peer.subscribe("siteA/gw/sensor.meter_power/state")
            gw.states.set("sensor.meter_power", 0, "W", owner="test")
            first = await peer.wait_for(lambda m: m.payload == b"0")
            for value in range(1, 50):
                gw.states.set("sensor.meter_power", value, "W", owner="test")
                await asyncio.sleep(0.002)  # changes spread over ~100 ms, all inside one min_interval
            last = await peer.wait_for(lambda m: m.payload == b"49", within=3)
            await asyncio.sleep(0.6)
            live = [m.payload for m in peer.received("siteA/gw/sensor.meter_power/state")]
    # The first change goes out at once; the 49 that follow within min_interval collapse into one message,
    # carrying the latest value, sent when the interval is over.
    assert live == [b"0", b"49"], live
    assert 0.4 <= last_time(last) - last_time(first) <= 1.5


def last_time(message: Received) -> float:
    return message.at


async def test_removed_entity_clears_its_retained_topics(tmp_path: Path, broker: Broker) -> None:
    async with gateway(tmp_path, broker) as gw:
        with watcher(broker) as peer:
            peer.subscribe("siteA/gw/sensor.gone/#")
            gw.states.set("sensor.gone", 1, "W", owner="test")
            await peer.wait_topic("siteA/gw/sensor.gone/attributes")
            gw.states.remove("sensor.gone", owner="test")
            cleared = await peer.wait_for(lambda m: m.topic.endswith("/state") and m.payload == b"")
    assert cleared.payload == b""
    with watcher(broker, "late") as late:
        late.subscribe("siteA/gw/sensor.gone/#")
        await asyncio.sleep(0.3)
        assert late.received() == []  # nothing retained any more


# -- commands in ---------------------------------------------------------------------------------------------


async def test_command_outside_the_allowlist_is_refused_and_not_called(tmp_path: Path, broker: Broker) -> None:
    async with gateway(tmp_path, broker) as gw:
        services = register(gw)
        with watcher(broker) as peer:
            peer.subscribe("siteA/gw/cmd/+/+/result")
            peer.subscribe("siteA/gw/reply/#")
            await asyncio.sleep(0.2)  # the gateway's own subscription is in place once it is online
            peer.publish("siteA/gw/cmd/test/forbidden", b"{}")
            on_result = await peer.wait_topic("siteA/gw/cmd/test/forbidden/result")
            peer.publish("siteA/gw/cmd/test/forbidden", b"{}", response_topic="siteA/gw/reply/1", correlation_data=b"c1")
            on_response = await peer.wait_topic("siteA/gw/reply/1")
        records = await gw.audit.list(event_prefix="security.event")
    assert reply(on_result) == {"ok": False, "code": "not_allowed",
                                "error": "test.forbidden is not in mqtt.commands.allow"}
    assert reply(on_response)["code"] == "not_allowed" and on_response.correlation_data == b"c1"
    assert services["forbidden"].calls == []
    assert any(r.data.get("event") == "command_refused" and r.data.get("service") == "test.forbidden"
               for r in records)


async def test_allowed_command_calls_the_service_and_replies_on_the_v5_response_topic(
        tmp_path: Path, broker: Broker) -> None:
    async with gateway(tmp_path, broker) as gw:
        services = register(gw)
        with watcher(broker) as peer:
            peer.subscribe("siteA/gw/reply/#")
            await asyncio.sleep(0.2)
            peer.publish("siteA/gw/cmd/test/echo", b'{"value": 16}', response_topic="siteA/gw/reply/watcher/7",
                         correlation_data=b"\x00corr\xff", user_properties=[("user", "alice")])
            answer = await peer.wait_topic("siteA/gw/reply/watcher/7")
            peer.publish("siteA/gw/cmd/test/echo", b'{"value": "sixteen"}', response_topic="siteA/gw/reply/watcher/8")
            invalid = await peer.wait_topic("siteA/gw/reply/watcher/8")
    assert reply(answer) == {"ok": True, "result": {"echo": {"value": 16}}}
    assert answer.correlation_data == b"\x00corr\xff" and not answer.retain
    assert reply(invalid)["ok"] is False and reply(invalid)["code"] == "invalid"
    assert "value" in reply(invalid)["error"]
    [call] = services["echo"].calls
    assert call.data == {"value": 16}
    assert call.context.origin == "mqtt" and call.context.role is Role.OPERATOR
    # Who we are on the broker, plus what the sender claims (never taken as its identity).
    assert call.context.principal == "gw_a (claims alice)"


async def test_response_topic_into_our_own_tree_is_refused(tmp_path: Path, broker: Broker) -> None:
    async with gateway(tmp_path, broker) as gw:
        services = register(gw)
        with watcher(broker) as peer:
            peer.subscribe("siteA/gw/#")
            await asyncio.sleep(0.2)
            # A reply there would overwrite a state other subscribers trust.
            peer.publish("siteA/gw/cmd/test/echo", b'{"value": 1}', response_topic="siteA/gw/sensor.x/state")
            refused = await peer.wait_topic("siteA/gw/cmd/test/echo/result")
    assert reply(refused)["code"] == "bad_topic"
    assert services["echo"].calls == []
    assert not [m for m in peer.received() if m.topic == "siteA/gw/sensor.x/state"]


async def test_a_flood_of_garbage_leaves_the_gateway_serving(tmp_path: Path, broker: Broker,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    garbage = [b"not json", b"\xff\xfe\x00", b"[1, 2, 3]", b'"text"', b"42", b"null", b'{"value": NaN}',
               b"[" * 3000 + b"]" * 3000, b'{"a":' * 50 + b"1" + b"}" * 50, b"x" * 10_000, b'{"value": {}}']
    async with gateway(tmp_path, broker) as gw:
        services = register(gw)
        with watcher(broker) as peer:
            peer.subscribe("siteA/gw/cmd/+/+/result")
            await asyncio.sleep(0.2)
            for _ in range(30):
                for payload in garbage:
                    peer.publish("siteA/gw/cmd/test/echo", payload, qos=0)
                peer.publish("siteA/gw/cmd/test/echo", b'{"value": 1}', qos=0, retain=True)
            peer.publish("siteA/gw/cmd/test/echo", b"y" * 200_000, qos=0)  # above MaximumPacketSize: never sent
            await until(lambda: len(peer.received()) >= ERROR_REPLY_BURST)
            await asyncio.sleep(1.0)  # the flood is over; let the command budget refill a little
            peer.subscribe("siteA/gw/reply/#")
            peer.publish("siteA/gw/cmd/test/echo", b'{"value": 6}', response_topic="siteA/gw/reply/after-flood")
            ok = await peer.wait_for(lambda m: m.topic == "siteA/gw/reply/after-flood")
            errors = [reply(m) for m in peer.received("siteA/gw/cmd/test/echo/result")]
    # The counters are a state (updated every few seconds, and at stop): sensor.mqtt_dropped, owned by mqtt.
    dropped = gw.states.get(DROPPED_ENTITY)
    assert dropped is not None and gw.states.owner(DROPPED_ENTITY) == "mqtt"
    assert dropped.attributes["refused_commands"] >= 30 * len(garbage)
    assert reply(ok) == {"ok": True, "result": {"echo": {"value": 6}}}
    # Nothing of the flood reached the service: garbage failed decoding or the schema, retained was refused.
    assert [c.data for c in services["echo"].calls] == [{"value": 6}]
    # Error replies are rate limited: a burst, then a trickle; never one per garbage message.
    assert ERROR_REPLY_BURST <= len(errors) <= ERROR_REPLY_BURST + 15, len(errors)
    codes = {e["code"] for e in errors}
    assert codes <= {"not_json", "not_object", "too_deep", "too_large", "invalid", "retained", "rate_limited"}
    assert {"not_json", "not_object"} <= codes
    refusals = [r for r in caplog.records if "refused a command" in r.getMessage()]
    assert len(refusals) == 1  # one log line a minute, not one per message


async def test_retained_command_is_refused_and_cleared(tmp_path: Path, broker: Broker) -> None:
    with watcher(broker) as peer:
        # Left on the broker before the gateway starts: it would be replayed at every subscribe.
        peer.publish("siteA/gw/cmd/test/echo", b'{"value": 9}', retain=True)
        peer.subscribe("siteA/gw/cmd/+/+/result")
        async with gateway(tmp_path, broker) as gw:
            services = register(gw)
            refused = await peer.wait_topic("siteA/gw/cmd/test/echo/result")
    assert reply(refused)["code"] == "retained"
    assert services["echo"].calls == []
    with watcher(broker, "late") as late:
        late.subscribe("siteA/gw/cmd/#")
        await asyncio.sleep(0.3)
        assert not [m for m in late.received() if m.retain]  # the gateway cleared it


# -- fleet: two gateways, one broker, an ACL -----------------------------------------------------------------


async def test_acl_keeps_gateway_a_out_of_gateway_b_prefix(tmp_path: Path, broker: Broker,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    async with gateway(tmp_path, broker, name="site-a", user="gw_a", prefix="siteA") as gw_a, \
            gateway(tmp_path, broker, name="site-b", user="gw_b", prefix="siteB") as gw_b:
        b_services = register(gw_b)
        with watcher(broker, "fleet") as fleet:
            fleet.subscribe("siteB/#")
            gw_a.states.set("sensor.a_power", 1000, "W", owner="test")
            gw_b.states.set("sensor.b_power", 2000, "W", owner="test")
            await fleet.wait_topic("siteB/sensor.b_power/state")
            # Gateway A's own account, used directly: the broker refuses it anything under siteB/.
            with MqttPeer(broker.port, "gw_a", broker.passwords["gw_a"], client_id="intruder-with-a-creds") as a:
                state = a.publish("siteB/sensor.b_power/state", b"666", retain=True)
                command = a.publish("siteB/cmd/test/echo", b'{"value": 666}')
            # A misconfigured third gateway with A's credentials but B's prefix.
            async with gateway(tmp_path, broker, name="site-a2", user="gw_a", prefix="siteB", online=False) as gw_a2:
                gw_a2.states.set("sensor.b_power", 777, "W", owner="test")
                await until(lambda: any("refused our publish to siteB/" in r.getMessage() for r in caplog.records))
            await asyncio.sleep(0.3)
            seen = fleet.received()
    assert str(state) == "Not authorized" and str(command) == "Not authorized"  # MQTT 5 PUBACK 0x87
    assert b_services["echo"].calls == []
    assert not [m for m in seen if m.payload in (b"666", b"777")]
    assert not [m for m in seen if "a_power" in m.topic]
    assert {m.topic for m in seen} >= {"siteB/sensor.b_power/state", "siteB/status"}


# -- reconnect -----------------------------------------------------------------------------------------------


async def test_broker_restart_leads_to_reconnect_and_full_republish(tmp_path: Path, broker: Broker) -> None:
    async with gateway(tmp_path, broker) as gw:
        for index in range(20):
            gw.states.set(f"sensor.meter_{index}", index, "W", owner="test")
        with watcher(broker) as first:
            first.subscribe("siteA/gw/sensor.meter_19/state")
            await first.wait_topic("siteA/gw/sensor.meter_19/state")
        # Mosquitto runs without persistence: after the restart its retained store is empty, so whatever a
        # subscriber then finds was published again by the gateway.
        await asyncio.to_thread(broker.restart)
        with watcher(broker, "after-restart") as peer:
            peer.subscribe("siteA/gw/#")
            await peer.wait_for(lambda m: m.topic == "siteA/gw/status" and m.payload == b"online", within=10)
            await until(lambda: {m.topic for m in peer.received()} >= {f"siteA/gw/sensor.meter_{i}/state"
                                                                        for i in range(20)})
            values = {m.topic: m.payload for m in peer.received() if m.topic.endswith("/state")}
    assert values["siteA/gw/sensor.meter_7/state"] == b"7"


# -- TLS through the gateway's configuration -----------------------------------------------------------------


async def test_tls_with_a_relative_ca_path(tmp_path: Path, broker: Broker) -> None:
    (tmp_path / "site-a").mkdir()
    (tmp_path / "site-a" / "broker-ca.pem").write_bytes(broker.files.ca.read_bytes())
    tls = "  tls:\n    ca: broker-ca.pem"
    text, secrets = config(broker, tls=tls, port=broker.tls_port)
    async with running_gateway(tmp_path / "site-a", text, secrets) as gw:
        with watcher(broker) as peer:
            peer.subscribe("siteA/gw/status")
            status = await peer.wait_for(lambda m: m.payload == b"online", within=10)
            gw.states.set("sensor.over_tls", 1, owner="test")
            peer.subscribe("siteA/gw/sensor.over_tls/state")
            await peer.wait_topic("siteA/gw/sensor.over_tls/state")
    assert status.retain


async def test_wrong_ca_from_the_gateway_config_logs_the_verify_error(tmp_path: Path, broker: Broker,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    tls = f"  tls:\n    ca: {broker.files.other_ca}"
    async with gateway(tmp_path, broker, tls=tls, port=broker.tls_port, online=False):
        await until(lambda: any("certificate verify failed" in r.getMessage() for r in caplog.records))
    [line] = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR and "mqtt" in r.getMessage()]
    assert line.startswith(f"mqtt: cannot connect to broker 127.0.0.1:{broker.tls_port}: TLS certificate verify "
                           "failed")


async def test_wrong_password_from_the_gateway_config_logs_the_connack_reason(
        tmp_path: Path, broker: Broker, caplog: pytest.LogCaptureFixture) -> None:
    text, _ = config(broker)
    async with running_gateway(tmp_path, text, "mqtt_password: Wrong-but-long-enough-0123\n") as gw:
        await until(lambda: any("refused the connection" in r.getMessage() for r in caplog.records))
        await asyncio.sleep(0.2)  # the audit record is written by a task of its own
        records = await gw.audit.list(event_prefix="security.event")
    [line] = [r.getMessage() for r in caplog.records if "refused the connection" in r.getMessage()]
    [event] = [r for r in records if r.data.get("event") == "broker_refused"]
    assert event.data["reason"] == "Not authorized (CONNACK reason code 0x87)" and "gw_a" in event.actor
    assert f"mqtt: broker 127.0.0.1:{broker.port} refused the connection: Not authorized" in line
    assert "Wrong-but-long-enough-0123" not in caplog.text


# -- Home Assistant discovery --------------------------------------------------------------------------------


DISCOVERY = """  discovery:
    enabled: true
    node_id: site_a
"""


async def test_discovery_configs_and_their_removal(tmp_path: Path, broker: Broker) -> None:
    async with gateway(tmp_path, broker, extra=DISCOVERY) as gw:
        with watcher(broker) as ha:
            ha.subscribe("homeassistant/#")
            gw.states.set("sensor.cp01_power", 7200, "W", {"friendly_name": "CP01 power"}, owner="test")
            gw.states.set("sensor.cp01_energy", 12.5, "kWh", owner="test")
            gw.states.set("sensor.battery_soc", 80, "%", owner="test")
            gw.states.set("binary_sensor.cp01_plugged", True, owner="test")
            power = await ha.wait_topic("homeassistant/sensor/site_a/sensor_cp01_power/config")
            energy = await ha.wait_topic("homeassistant/sensor/site_a/sensor_cp01_energy/config")
            soc = await ha.wait_topic("homeassistant/sensor/site_a/sensor_battery_soc/config")
            plugged = await ha.wait_topic("homeassistant/binary_sensor/site_a/binary_sensor_cp01_plugged/config")
            gw.states.remove("sensor.cp01_power", owner="test")
            removed = await ha.wait_for(lambda m: m.topic == power.topic and m.payload == b"")
            # Home Assistant restarted: its birth message makes us send every config again.
            ha.clear()
            ha.publish("homeassistant/status", b"online")
            again = await ha.wait_topic("homeassistant/sensor/site_a/sensor_cp01_energy/config")
    config_ = json.loads(power.payload)
    assert power.retain and removed.payload == b""
    assert config_["unique_id"] == "ampgate_site_a_sensor_cp01_power"
    assert config_["name"] == "CP01 power"
    assert config_["state_topic"] == "siteA/gw/sensor.cp01_power/state"
    assert config_["json_attributes_topic"] == "siteA/gw/sensor.cp01_power/attributes"
    assert config_["availability_topic"] == "siteA/gw/status"
    assert (config_["unit_of_measurement"], config_["device_class"], config_["state_class"]) == \
        ("W", "power", "measurement")
    assert config_["device"]["identifiers"] == ["ampgate_site_a"]
    assert config_["device"]["manufacturer"] == "Ampgate" and config_["device"]["name"] == "site-a"
    assert config_["device"]["sw_version"]
    energy_ = json.loads(energy.payload)
    assert (energy_["device_class"], energy_["state_class"]) == ("energy", "total_increasing")
    assert json.loads(soc.payload)["device_class"] == "battery"
    assert json.loads(plugged.payload)["payload_on"] == "true"
    assert json.loads(again.payload) == energy_


# -- variants ------------------------------------------------------------------------------------------------


async def test_mqtt311_states_and_commands(tmp_path: Path, broker: Broker) -> None:
    async with gateway(tmp_path, broker, extra='  protocol: "3.1.1"') as gw:
        services = register(gw)
        with watcher(broker) as peer:
            peer.subscribe("siteA/gw/#")
            gw.states.set("sensor.v3_power", 11, "W", owner="test")
            state = await peer.wait_topic("siteA/gw/sensor.v3_power/state")
            peer.publish("siteA/gw/cmd/test/echo", b'{"value": 3}')
            result = await peer.wait_topic("siteA/gw/cmd/test/echo/result")
    assert state.payload == b"11" and state.retain
    assert reply(result) == {"ok": True, "result": {"echo": {"value": 3}}}
    assert services["echo"].calls[0].context.principal == "gw_a"


async def test_mqtt002_accepted_opens_every_service(tmp_path: Path, broker: Broker) -> None:
    """The accepted variant of MQTT-002 really means "every service": the risk the installer accepted."""
    core = '  accept_risk:\n    - rule: MQTT-002\n      reason: "lab gateway; the broker ACL restricts commands"'
    async with gateway(tmp_path, broker, core=core, allow="") as gw:
        services = register(gw)
        with watcher(broker) as peer:
            peer.subscribe("siteA/gw/cmd/+/+/result")
            peer.publish("siteA/gw/cmd/test/forbidden", b"{}")
            result = await peer.wait_topic("siteA/gw/cmd/test/forbidden/result")
    assert reply(result)["ok"] is True and len(services["forbidden"].calls) == 1
