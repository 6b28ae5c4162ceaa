"""MODBUS-001..004 (``shared/design/POLICY.md``): pure checks over the validated configuration."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from gateway.security.netaddr import is_loopback
from gateway.security.policy import Finding, PolicyInput, Rule, Severity, rule_factory

from .config import server_tls_on
from .const import DOMAIN


def _enabled_config(data: PolicyInput) -> dict[str, Any] | None:
    conf = data.config.plugins.get(DOMAIN)
    return conf if conf and conf.get("enabled") else None


def check_open_server(data: PolicyInput) -> Iterator[Finding]:
    conf = _enabled_config(data)
    server = (conf or {}).get("server") or {}
    if not server.get("enabled") or server_tls_on(server) or server.get("allow_from"):
        return
    if is_loopback(server["bind"]):
        return
    yield Finding(rule_id="MODBUS-001", plugin=DOMAIN, config_path=(DOMAIN, "server", "bind"),
                  actual=f"plain Modbus/TCP on {server['bind']}:{server['port']}, no allow_from",
                  message="anyone on the network can read the gateway's registers",
                  fix="list the energy managers' addresses in server.allow_from, or enable server.tls "
                      "(Modbus/TCP Security), or bind 127.0.0.1")


def check_plaintext_writes(data: PolicyInput) -> Iterator[Finding]:
    conf = _enabled_config(data)
    server = (conf or {}).get("server") or {}
    if not server.get("enabled") or server_tls_on(server):
        return
    for index, item in enumerate(server.get("holding_registers", [])):
        if item.get("writable"):
            yield Finding(rule_id="MODBUS-002", plugin=DOMAIN,
                          config_path=(DOMAIN, "server", "holding_registers", index, "writable"),
                          actual=f"writable register calling {item.get('service')} over plain TCP",
                          message="unauthenticated Modbus writes could steer charging power",
                          fix="enable server.tls (Modbus/TCP Security) with a role that may write, or set "
                              "writable: false")
            return


def check_meter_links(data: PolicyInput) -> Iterator[Finding]:
    conf = _enabled_config(data)
    for index, meter in enumerate((conf or {}).get("meters", [])):
        # "Routed" is decided from the configuration alone: any plain-TCP meter that is not on loopback.
        # Whether a router sits between us and a private address cannot be known from an address (VLANs,
        # site-to-site links, a /16 spanning floors); a warning too many costs a line in the report, a
        # spoofed grid meter can overload the connection.
        if meter["transport"] in ("tcp", "rtu_over_tcp") and meter.get("load_management", True) \
                and not is_loopback(meter["host"]):
            yield Finding(rule_id="MODBUS-003", plugin=DOMAIN, config_path=(DOMAIN, "meters", index),
                          actual=f"{meter['name']}: plain Modbus/TCP to {meter['host']}:{meter['port']}",
                          message=f"meter {meter['name']} feeds load management over unauthenticated TCP",
                          fix="use RTU on a private RS-485 bus or transport: tls (Modbus/TCP Security), or set "
                              "load_management: false if no load decision uses it")


def plugin_rules() -> list[Rule]:
    rule = rule_factory(DOMAIN)
    return [
        rule("MODBUS-001", "Plain Modbus/TCP server on the network without allowlist", Severity.REFUSE,
             "server.allow_from, Modbus/TCP Security, or bind 127.0.0.1",
             "Modbus has no authentication; anyone can read and spoof", check_open_server),
        rule("MODBUS-002", "Modbus server accepting writes over plain TCP", Severity.REFUSE,
             "writes only over Modbus/TCP Security with a role that may write",
             "unauthenticated control of charging power", check_plaintext_writes),
        rule("MODBUS-003", "Load-management meter polled over plain Modbus/TCP", Severity.WARN,
             "RTU on a private bus, or Modbus/TCP Security",
             "meter values can be spoofed; prefer RTU on a private bus or Modbus/TCP Security",
             check_meter_links),
        rule("MODBUS-004", "Modbus/TCP Security offered for meters and server", Severity.BEHAVIOUR,
             "transport: tls for meters, server.tls for the server (TLS 1.2+, mutual certificates, roles)",
             "the protocol's own secure variant"),
    ]
