"""MQTT: states out, allowlisted commands in, Home Assistant discovery; one broker link per gateway.

The gateway is a client of a broker (Mosquitto on the same box, or a cluster for a fleet: docs/scaling.md).
States go out retained under ``<prefix>/<entity_id>/...``, commands come in on ``<prefix>/cmd/<domain>/
<service>`` for the services listed in ``commands.allow`` only. Modules: ``topics``/``codec``/``discovery``/
``outbox``/``limits`` are pure; ``client`` is the paho adapter; ``bridge`` joins it to the gateway.
Policy: MQTT-001..003 here; AUTH-001 (password without TLS) and TLS-001 (verification off) apply to the
declared outbound link.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import voluptuous as vol

from gateway import __version__
from gateway.config import validation as cv
from gateway.plugin import Manifest
from gateway.security.exposure import Auth, Exposure, Outbound, TlsSpec
from gateway.security.netaddr import is_loopback
from gateway.security.policy import Finding, PolicyInput, Rule, Severity, rule_factory

from .const import (
    DEFAULT_DISCOVERY_PREFIX,
    DEFAULT_KEEPALIVE_S,
    DEFAULT_MIN_INTERVAL_S,
    DEFAULT_PORT,
    DEFAULT_TLS_PORT,
    DOMAIN,
    MAX_KEEPALIVE_S,
    MAX_MIN_INTERVAL_S,
    MIN_KEEPALIVE_S,
    PAYLOAD_OFFLINE,
    PROTOCOL_V5,
    PROTOCOL_V311,
)
from .topics import slug, validate_prefix

if TYPE_CHECKING:
    import ssl

    from gateway.core import Gateway

    from .bridge import MqttBridge

_LOGGER = logging.getLogger(__name__)

MANIFEST = Manifest(name=DOMAIN, title="MQTT (states, commands, Home Assistant discovery)")

_CLIENT_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_SERVICE = re.compile(r"^[a-z0-9_]+\.[a-z0-9_]+$")
_NODE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _protocol(value: Any) -> str:
    text = str(value).strip().lower().removeprefix("mqtt").removeprefix("v")
    if text in {"5", "5.0"}:
        return PROTOCOL_V5
    if text in {"3.1.1", "311", "4"}:
        return PROTOCOL_V311
    raise cv.invalid("expected MQTT protocol 5 or 3.1.1", value, 'write protocol: 5 (or "3.1.1" for old brokers)')


def _prefix(value: Any) -> str:
    try:
        return validate_prefix(str(value))
    except ValueError as err:
        raise cv.invalid(f"expected a topic prefix ({err})", value, "write for example ampgate/site1") from None


def _client_id(value: Any) -> str:
    text = str(value)
    if not _CLIENT_ID.match(text):
        raise cv.invalid("expected a client id of 1-64 letters, digits, '_', '-', '.'", value,
                         "write for example ampgate-site1")
    return text


def _service_name(value: Any) -> str:
    text = str(value)
    if not _SERVICE.match(text):
        raise cv.invalid("expected a service as domain.service", value,
                         "list each service by name, e.g. charger.set_current_limit (no wildcards)")
    return text


def _node_id(value: Any) -> str:
    text = str(value)
    if not _NODE_ID.match(text):
        raise cv.invalid("expected a node id of letters, digits, '_' and '-'", value, "write for example site1")
    return text


COMMANDS_SCHEMA = vol.Schema({
    vol.Optional("enabled", default=False): cv.boolean,
    # Absent means "every service": only possible with MQTT-002 accepted as a risk. [] means none.
    vol.Optional("allow"): vol.All(cv.ensure_list(_service_name), lambda v: sorted(set(v))),
})

DISCOVERY_SCHEMA = vol.Schema({
    vol.Optional("enabled", default=False): cv.boolean,
    vol.Optional("prefix", default=DEFAULT_DISCOVERY_PREFIX): _prefix,
    vol.Optional("node_id"): _node_id,
})


def _check(config: dict[str, Any]) -> dict[str, Any]:
    tls = config["tls"]
    config.setdefault("port", DEFAULT_TLS_PORT if tls.get("enabled", True) else DEFAULT_PORT)
    if config.get("password") is not None and not config.get("username"):
        raise vol.Invalid(f"password given without username{cv.FIX}set mqtt.username too", path=["password"])
    server_name = tls.get("server_name")
    if tls.get("enabled", True) and server_name and server_name != config["host"]:
        # paho checks the certificate against the host it dials (server_hostname = host); a different name
        # cannot be expressed without bypassing its TLS set-up.
        raise vol.Invalid(f"tls.server_name differs from host{cv.FIX}write the name on the broker's certificate "
                          "as mqtt.host, and remove tls.server_name", path=["tls", "server_name"])
    if tls.get("key") and not tls.get("cert"):
        raise vol.Invalid(f"tls.key without tls.cert{cv.FIX}give the client certificate as tls.cert",
                          path=["tls", "key"])
    return config


CONFIG_SCHEMA = vol.Schema(vol.All(
    cv.plugin_schema({
        vol.Optional("host", default="127.0.0.1"): cv.host,
        vol.Optional("port"): cv.port,
        vol.Optional("protocol", default=PROTOCOL_V5): _protocol,
        vol.Optional("client_id"): _client_id,
        vol.Optional("username"): vol.All(cv.string, vol.Length(min=1, max=256)),
        vol.Optional("password"): cv.secret,
        vol.Optional("prefix"): _prefix,
        vol.Optional("keepalive", default=DEFAULT_KEEPALIVE_S): cv.duration_between(MIN_KEEPALIVE_S, MAX_KEEPALIVE_S),
        vol.Optional("min_interval", default=DEFAULT_MIN_INTERVAL_S): cv.duration_between(0.0, MAX_MIN_INTERVAL_S),
        vol.Optional("qos", default=0): vol.All(vol.Coerce(int), vol.In([0, 1], msg="expected 0 or 1")),
        # TLS is on unless switched off: a loopback broker without TLS needs tls: {enabled: false}.
        vol.Optional("tls", default={}): cv.tls_schema(server=False),
        vol.Optional("commands", default={}): COMMANDS_SCHEMA,
        vol.Optional("discovery", default={}): DISCOVERY_SCHEMA,
    }),
    _check,
))


# -- exposures -----------------------------------------------------------------------------------------------


def _tls_on(config: dict[str, Any]) -> bool:
    tls = config.get("tls") or {}
    return bool(tls.get("enabled", True))


def exposures(config: dict[str, Any]) -> list[Exposure]:
    tls = TlsSpec.from_config(config.get("tls")) if _tls_on(config) else None
    password = config.get("password") is not None
    client_cert = bool(tls and tls.cert)
    commands = config.get("commands") or {}
    writes = bool(commands.get("enabled"))
    auth = Auth.PASSWORD if password else Auth.CLIENT_CERT if client_cert else Auth.NONE
    what = "states out" + (f", commands in ({len(commands['allow'])} allowed)" if writes and "allow" in commands
                           else ", commands in (every service)" if writes else "")
    return [Outbound(
        plugin=DOMAIN, protocol="mqtts" if tls else "mqtt", host=config["host"], port=config["port"], tls=tls,
        auth=auth, sends_credentials=password, writes=writes, config_path=(DOMAIN,),
        description=f"MQTT broker link: {what}",
    )]


# -- policy --------------------------------------------------------------------------------------------------


def _enabled_config(data: PolicyInput) -> dict[str, Any] | None:
    conf = data.config.plugins.get(DOMAIN)
    return conf if conf and conf.get("enabled") else None


def check_plaintext_broker(data: PolicyInput) -> Iterator[Finding]:
    conf = _enabled_config(data)
    if conf is None or _tls_on(conf) or is_loopback(conf["host"]):
        return
    yield Finding(rule_id="MQTT-001", plugin=DOMAIN, config_path=(DOMAIN, "tls"),
                  actual=f"plain MQTT to {conf['host']}:{conf['port']}",
                  message="states and commands travel in clear to a broker on the network",
                  fix="remove tls.enabled: false, use the broker's TLS port (8883) and give its CA as tls.ca")


def check_command_allowlist(data: PolicyInput) -> Iterator[Finding]:
    conf = _enabled_config(data)
    commands = (conf or {}).get("commands") or {}
    if not commands.get("enabled") or commands.get("allow") is not None:
        return
    yield Finding(rule_id="MQTT-002", plugin=DOMAIN, config_path=(DOMAIN, "commands"),
                  actual="commands enabled, no allow list: every service is reachable",
                  message="any client that may publish to the command topics can call every service",
                  fix="list the services MQTT may call: commands.allow: [charger.set_current_limit, ...]")


def check_anonymous(data: PolicyInput) -> Iterator[Finding]:
    conf = _enabled_config(data)
    if conf is None or is_loopback(conf["host"]) or conf.get("username"):
        return
    if _tls_on(conf) and (conf.get("tls") or {}).get("cert"):
        return  # a client certificate identifies us (Mosquitto use_identity_as_username)
    yield Finding(rule_id="MQTT-003", plugin=DOMAIN, config_path=(DOMAIN,),
                  actual=f"anonymous connection to {conf['host']}",
                  message="the broker cannot tell the gateway from any other anonymous client",
                  fix="give the gateway its own broker account (username + password: !secret), or a client "
                      "certificate (tls.cert, tls.key), and an ACL limiting it to its prefix")


def rules() -> list[Rule]:
    rule = rule_factory(DOMAIN)
    return [
        rule("MQTT-001", "Non-loopback MQTT broker without TLS", Severity.REFUSE, "TLS to every broker off this host",
             "states and commands travel in clear", check_plaintext_broker),
        rule("MQTT-002", "MQTT command topics without an allow list", Severity.REFUSE,
             "commands.allow lists the services MQTT may call",
             "a dashboard should not be able to call everything", check_command_allowlist),
        rule("MQTT-003", "Anonymous connection to a non-loopback broker", Severity.WARN,
             "a broker account (or client certificate) per gateway, with an ACL",
             "any client of that broker can then impersonate the gateway", check_anonymous),
    ]


# -- setup ---------------------------------------------------------------------------------------------------


@dataclass(eq=False)
class MqttPlugin:
    bridge: MqttBridge

    async def stop(self) -> None:
        await self.bridge.stop()


def _ssl_context(gw: Gateway, tls: dict[str, Any]) -> ssl.SSLContext:
    from gateway.security.tls import client_context

    base = Path(gw.config.path).parent

    def resolve(path: str | None) -> Path | None:
        if not path:
            return None
        candidate = Path(path)
        return candidate if candidate.is_absolute() else base / candidate

    return client_context(ca=resolve(tls.get("ca")), cert=resolve(tls.get("cert")), key=resolve(tls.get("key")),
                          verify=tls.get("verify", True), check_hostname=tls.get("check_hostname", True),
                          min_version=tls.get("min_version", "1.2"), ciphers=tls.get("ciphers"))


async def async_setup(gw: Gateway, config: dict[str, Any]) -> MqttPlugin:
    from .bridge import BridgeOptions, MqttBridge
    from .client import LinkHandler, LinkSettings, MqttLink
    from .discovery import DeviceInfo
    from .topics import Topics

    name = slug(gw.name)
    prefix = config.get("prefix") or f"ampgate/{name}"
    client_id = config.get("client_id") or f"ampgate-{name}"
    username = config.get("username")
    password = config.get("password")
    if config["protocol"] == PROTOCOL_V311:
        _LOGGER.warning(
            "mqtt: MQTT 3.1.1: the broker drops publishes its ACL denies without telling us, and cannot bound "
            "the size of what it sends us; use protocol: 5 when the broker supports it")
    settings = LinkSettings(
        host=config["host"], port=config["port"], client_id=client_id, protocol=config["protocol"],
        username=username, password=str(password) if password is not None else None,
        keepalive_s=config["keepalive"],
        ssl_context=_ssl_context(gw, config["tls"]) if _tls_on(config) else None,
        will_topic=Topics(prefix).status, will_payload=PAYLOAD_OFFLINE.encode(),
    )
    commands = config["commands"]
    discovery = config["discovery"]
    allow = commands.get("allow")
    options = BridgeOptions(
        prefix=prefix, qos=config["qos"], min_interval_s=config["min_interval"],
        commands_enabled=commands["enabled"], allow=frozenset(allow) if allow is not None else None,
        principal=username or client_id, discovery_enabled=discovery["enabled"],
        discovery_prefix=discovery["prefix"],
        device=DeviceInfo(node_id=discovery.get("node_id") or slug(prefix.replace("/", "_")), name=gw.name,
                          sw_version=__version__),
    )

    def make_link(handler: LinkHandler) -> MqttLink:
        return MqttLink(settings, handler)

    bridge = MqttBridge(gw, options, make_link)
    await bridge.start()
    return MqttPlugin(bridge)
