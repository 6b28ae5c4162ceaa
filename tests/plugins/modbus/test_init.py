"""Config schema, exposures and the MODBUS policy rules: insecure variants refused or warned, secure ones pass,
accepted variants pass where the rule may be accepted."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.errors import ConfigError
from gateway.security.exposure import Auth, Listener, Outbound, Transport
from gateway.security.policy import Status
from tests.helpers import plan_for

TCP_METER = """
modbus:
  enabled: true
  meters:
    - name: grid
      model: eastron_sdm630
      host: {host}
{extra}
"""

SERVER = """
modbus:
  enabled: true
  server:
    enabled: true
    bind: {bind}
{extra}
    input_registers:
      - {{address: 0, entity: sensor.grid_power}}
{holding}
"""

ACCEPT = """
gateway:
  accept_risk:
    - rule: {rule}
      reason: "installer reviewed this on site"
"""

WRITABLE = """    holding_registers:
      - {address: 0, entity: sensor.site_limit, type: uint16, scale: 0.1, writable: true,
         service: loadmanager.set_site_limit, field: limit_a}
"""


def rows(tmp_path: Path, text: str, rule: str) -> list[Status]:
    plan = plan_for(tmp_path, text)
    return [r.status for r in plan.report.rows if r.rule.id == rule]


def server(bind: str = "192.168.1.10", extra: str = "", holding: str = "") -> str:
    return SERVER.format(bind=bind, extra=extra, holding=holding)


# -- MODBUS-001 ----------------------------------------------------------------------------------------------

def test_modbus001_open_plain_server_refused(tmp_path: Path) -> None:
    assert rows(tmp_path, server(), "MODBUS-001") == [Status.REFUSED]


def test_modbus001_allowlist_loopback_or_tls_pass(tmp_path: Path) -> None:
    assert rows(tmp_path, server(extra="    allow_from: [192.168.1.50]"), "MODBUS-001") == []
    assert rows(tmp_path, server(bind="127.0.0.1"), "MODBUS-001") == []
    assert rows(tmp_path, server(extra="    tls: {}"), "MODBUS-001") == []


def test_modbus001_can_be_accepted(tmp_path: Path) -> None:
    plan = plan_for(tmp_path, ACCEPT.format(rule="MODBUS-001") + server())
    assert [r.status for r in plan.report.rows if r.rule.id == "MODBUS-001"] == [Status.ACCEPTED]


def test_server_is_off_and_loopback_by_default(tmp_path: Path) -> None:
    plan = plan_for(tmp_path, "modbus:\n  enabled: true\n  server:\n    input_registers: [{entity: sensor.x}]\n")
    assert not [e for e in plan.exposures if isinstance(e, Listener)]
    conf = plan.config.plugins["modbus"]["server"]
    assert conf["enabled"] is False and conf["bind"] == "127.0.0.1" and conf["port"] == 502


# -- MODBUS-002 ----------------------------------------------------------------------------------------------

def test_modbus002_plaintext_writes_refused(tmp_path: Path) -> None:
    text = server(extra="    allow_from: [192.168.1.50]", holding=WRITABLE)
    assert rows(tmp_path, text, "MODBUS-002") == [Status.REFUSED]
    assert rows(tmp_path, server(bind="127.0.0.1", holding=WRITABLE), "MODBUS-002") == [Status.REFUSED]


def test_modbus002_tls_writes_pass_and_read_only_passes(tmp_path: Path) -> None:
    assert rows(tmp_path, server(extra="    tls: {}", holding=WRITABLE), "MODBUS-002") == []
    assert rows(tmp_path, server(extra="    allow_from: [192.168.1.50]"), "MODBUS-002") == []


def test_modbus002_can_be_accepted(tmp_path: Path) -> None:
    text = ACCEPT.format(rule="MODBUS-002") + server(bind="127.0.0.1", holding=WRITABLE)
    assert rows(tmp_path, text, "MODBUS-002") == [Status.ACCEPTED]


# -- MODBUS-003 ----------------------------------------------------------------------------------------------

def test_modbus003_plain_tcp_load_management_meter_warned(tmp_path: Path) -> None:
    assert rows(tmp_path, TCP_METER.format(host="192.168.1.30", extra=""), "MODBUS-003") == [Status.WARNING]
    rtu_over_tcp = TCP_METER.format(host="gw.lan", extra="      transport: rtu_over_tcp")
    assert rows(tmp_path, rtu_over_tcp, "MODBUS-003") == [Status.WARNING]


def test_modbus003_loopback_rtu_tls_or_not_for_load_management_pass(tmp_path: Path) -> None:
    assert rows(tmp_path, TCP_METER.format(host="127.0.0.1", extra=""), "MODBUS-003") == []
    quiet = TCP_METER.format(host="192.168.1.30", extra="      load_management: false")
    assert rows(tmp_path, quiet, "MODBUS-003") == []
    rtu = "modbus:\n  enabled: true\n  meters:\n    - {name: grid, model: abb_b23, transport: rtu, device: /dev/ttyUSB0}\n"
    assert rows(tmp_path, rtu, "MODBUS-003") == []
    tls = TCP_METER.format(host="192.168.1.30", extra="      transport: tls\n      tls: {cert: c.pem, key: k.pem}")
    assert rows(tmp_path, tls, "MODBUS-003") == []


def test_modbus004_is_a_behaviour_rule(tmp_path: Path) -> None:
    plan = plan_for(tmp_path, "")
    rule = plan.rules["MODBUS-004"]
    assert rule.check is None and rule.plugin == "modbus"


# -- exposures -----------------------------------------------------------------------------------------------

def test_exposures_name_every_meter_and_the_server(tmp_path: Path) -> None:
    text = """
modbus:
  enabled: true
  meters:
    - {name: grid, model: eastron_sdm630, host: 127.0.0.1}
    - {name: pv, model: sunspec_203, transport: tls, host: 127.0.0.1, tls: {cert: c.pem, key: k.pem, ca: ca.pem}}
    - {name: ev, model: abb_b23, transport: rtu, device: /dev/ttyUSB0, unit_id: 2}
  server:
    enabled: true
    allow_from: [127.0.0.1]
    tls: {}
    input_registers: [{entity: sensor.grid_power}]
"""
    plan = plan_for(tmp_path, text)
    outs = [e for e in plan.exposures if isinstance(e, Outbound)]
    assert [(o.protocol, o.host, o.port, o.transport, o.auth) for o in outs] == [
        ("modbus", "127.0.0.1", 502, Transport.TCP, Auth.NONE),
        ("modbus-tls", "127.0.0.1", 802, Transport.TCP, Auth.CLIENT_CERT),
        ("modbus-rtu", "/dev/ttyUSB0", None, Transport.SERIAL, Auth.NONE),
    ]
    assert [o.config_path for o in outs] == [("modbus", "meters", i) for i in range(3)]
    [lst] = [e for e in plan.exposures if isinstance(e, Listener)]
    assert (lst.bind, lst.port, lst.writes, lst.allowlist, lst.auth) == ("127.0.0.1", 802, False, ("127.0.0.1/32",),
                                                                          Auth.CLIENT_CERT)
    assert lst.tls is not None and lst.tls.client_auth == "required"
    assert plan.config.where("modbus", "server") is not None


# -- config errors -------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("meter", "message"), [
    ("{name: grid, model: acme}", "expected one of"),
    ("{name: Grid, model: abb_b23, host: 127.0.0.1}", "meter name"),
    ("{name: grid, model: abb_b23}", "needs host"),
    ("{name: grid, model: abb_b23, transport: rtu}", "needs device"),
    ("{name: grid, model: abb_b23, host: 127.0.0.1, unit_id: 0}", "unit_id"),
    ("{name: grid, model: abb_b23, host: 127.0.0.1, transport: tls}", "client certificate"),
    ("{name: grid, model: abb_b23, host: 127.0.0.1, tls: {}}", "tls given"),
    ("{name: grid, model: custom, host: 127.0.0.1}", "custom: register map"),
    ("{name: grid, model: custom, host: 127.0.0.1, custom: {points: {power: {address: 0, unit: kW}}}}", "in W"),
    ("{name: grid, model: abb_b23, host: 127.0.0.1, poll_interval: 1ms}", "at least"),
])
def test_bad_meter_config_is_refused_with_the_fix(tmp_path: Path, meter: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        plan_for(tmp_path, f"modbus:\n  enabled: true\n  meters:\n    - {meter}\n")


def test_two_meters_on_one_bus_must_agree_on_line_settings(tmp_path: Path) -> None:
    text = """
modbus:
  enabled: true
  meters:
    - {name: a, model: abb_b23, transport: rtu, device: /dev/ttyUSB0, unit_id: 1}
    - {name: b, model: abb_b23, transport: rtu, device: /dev/ttyUSB0, unit_id: 2, baudrate: 19200}
"""
    with pytest.raises(ConfigError, match="different line settings"):
        plan_for(tmp_path, text)
    with pytest.raises(ConfigError, match="used twice"):
        plan_for(tmp_path, text.replace("unit_id: 2, baudrate: 19200", "unit_id: 1"))
    with pytest.raises(ConfigError, match="two meters named"):
        plan_for(tmp_path, text.replace("name: b", "name: a").replace(", baudrate: 19200", ""))


def test_server_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="always requires client certificates"):
        plan_for(tmp_path, server(extra="    tls: {client_auth: none}"))
    overlap = server(bind="127.0.0.1").replace("{address: 0, entity: sensor.grid_power}",
                                               "{address: 0, entity: sensor.a}\n      - {address: 1, entity: sensor.b}")
    with pytest.raises(ConfigError, match="used by both"):
        plan_for(tmp_path, overlap)
    half = WRITABLE.replace(", field: limit_a", "")
    with pytest.raises(ConfigError, match="writable needs service and field"):
        plan_for(tmp_path, server(bind="127.0.0.1", holding=half))
    with pytest.raises(ConfigError, match="empty map"):
        plan_for(tmp_path, "modbus:\n  enabled: true\n  server: {enabled: true}\n")
