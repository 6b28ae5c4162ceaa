"""Config schema, the declared exposure and the policy: MQTT-001..003 each refused (or warned), secure and
accepted; AUTH-001 and TLS-001 applying to the MQTT link."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.errors import ConfigError
from gateway.security.exposure import Auth, Outbound
from gateway.security.policy import Status
from tests.helpers import plan_for

SECRETS = "mqtt_password: Kx9-qLr2-Vb7w-Tz4m-Hp3s\n"

BASE = """
mqtt:
  enabled: true
  host: {host}
{extra}
"""

ACCEPT = """
gateway:
  accept_risk:
    - rule: {rule}
      reason: "installer reviewed this on site"
"""


def plan(tmp_path: Path, host: str = "192.168.1.20", extra: str = "", head: str = ""):  # type: ignore[no-untyped-def]
    return plan_for(tmp_path, head + BASE.format(host=host, extra=extra), SECRETS)


def statuses(tmp_path: Path, rule: str, **kw: str) -> list[Status]:
    return [r.status for r in plan(tmp_path, **kw).report.rows if r.rule.id == rule]


PLAIN = "  tls:\n    enabled: false"
TLS_CA = "  tls:\n    ca: broker-ca.pem"
CREDS = "  username: site1\n  password: !secret mqtt_password"


# -- schema and exposure -------------------------------------------------------------------------------------

def test_defaults_are_secure(tmp_path: Path) -> None:
    p = plan_for(tmp_path, "mqtt:\n  enabled: true\n")
    conf = p.config.plugins["mqtt"]
    assert conf["host"] == "127.0.0.1" and conf["tls"]["enabled"] is True and conf["port"] == 8883
    assert conf["protocol"] == "5" and conf["commands"] == {"enabled": False}
    assert conf["discovery"]["enabled"] is False and conf["min_interval"] == 1.0
    [link] = p.exposures
    assert isinstance(link, Outbound) and link.tls is not None and link.tls.verify and not link.writes
    assert link.config_path == ("mqtt",) and link.auth is Auth.NONE and not link.sends_credentials


def test_plain_port_default_and_protocol_spellings(tmp_path: Path) -> None:
    p = plan(tmp_path, host="127.0.0.1", extra=PLAIN + '\n  protocol: "3.1.1"')
    assert p.config.plugins["mqtt"]["port"] == 1883 and p.config.plugins["mqtt"]["protocol"] == "3.1.1"
    assert plan(tmp_path, extra="  protocol: 5").config.plugins["mqtt"]["protocol"] == "5"


def test_exposure_with_credentials_and_commands(tmp_path: Path) -> None:
    p = plan(tmp_path, extra=CREDS + "\n" + TLS_CA + "\n  commands:\n    enabled: true\n    allow: [charger.enable]")
    [link] = p.exposures
    assert isinstance(link, Outbound)
    assert link.auth is Auth.PASSWORD and link.sends_credentials and link.writes
    assert link.tls is not None and link.tls.ca == "broker-ca.pem" and link.port == 8883


@pytest.mark.parametrize(("extra", "needle"), [
    ("  prefix: a/+/b", "prefix"),
    ("  prefix: $SYS", "prefix"),
    ("  protocol: 4.0", "protocol"),
    ("  commands:\n    enabled: true\n    allow: ['charger.*']", "no wildcards"),
    ("  password: !secret mqtt_password", "username"),
    ("  tls:\n    server_name: other.example", "server_name"),
    ("  qos: 2", "qos"),
    ("  min_interval: 2h", "min_interval"),
    ("  client_id: 'has space'", "client_id"),
])
def test_schema_errors_name_the_key(tmp_path: Path, extra: str, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        plan(tmp_path, extra=extra)
    assert needle in str(info.value)


# -- MQTT-001 ------------------------------------------------------------------------------------------------

def test_mqtt001_plain_to_a_lan_broker_refused(tmp_path: Path) -> None:
    assert statuses(tmp_path, "MQTT-001", extra=PLAIN) == [Status.REFUSED]


def test_mqtt001_tls_or_loopback_pass(tmp_path: Path) -> None:
    assert statuses(tmp_path, "MQTT-001", extra=TLS_CA) == []
    assert statuses(tmp_path, "MQTT-001", host="127.0.0.1", extra=PLAIN) == []
    assert statuses(tmp_path, "MQTT-001", host="localhost", extra=PLAIN) == []


def test_mqtt001_can_be_accepted_without_a_password(tmp_path: Path) -> None:
    assert statuses(tmp_path, "MQTT-001", extra=PLAIN, head=ACCEPT.format(rule="MQTT-001")) == [Status.ACCEPTED]


def test_password_without_tls_to_a_lan_broker_is_never_accepted(tmp_path: Path) -> None:
    """AUTH-001 (core) sees our declared link: sends_credentials, no TLS, non-loopback."""
    head = ACCEPT.format(rule="MQTT-001") + '    - rule: AUTH-001\n      reason: "installer reviewed this on site"\n'
    report = plan(tmp_path, extra=PLAIN + "\n" + CREDS, head=head).report
    [row] = [r for r in report.rows if r.rule.id == "AUTH-001"]
    assert row.status is Status.REFUSED and "never" in row.note
    assert row.finding.plugin == "mqtt"
    # Over TLS the same password is fine; on loopback too.
    assert statuses(tmp_path, "AUTH-001", extra=TLS_CA + "\n" + CREDS) == []
    assert statuses(tmp_path, "AUTH-001", host="127.0.0.1", extra=PLAIN + "\n" + CREDS) == []


def test_verification_off_to_a_lan_broker_is_tls001(tmp_path: Path) -> None:
    rows = [r for r in plan(tmp_path, extra="  tls:\n    verify: false").report.rows if r.rule.id == "TLS-001"]
    assert [r.status for r in rows] == [Status.REFUSED] and rows[0].finding.config_path == ("mqtt", "tls")
    assert statuses(tmp_path, "TLS-001", host="127.0.0.1", extra="  tls:\n    verify: false") == []


def test_password_in_clear_is_auth004(tmp_path: Path) -> None:
    rows = [r.status for r in plan_for(tmp_path, BASE.format(
        host="192.168.1.20", extra=TLS_CA + "\n  username: site1\n  password: Kx9-qLr2-Vb7w-Tz4m-Hp3s")).report.rows
        if r.rule.id == "AUTH-004"]
    assert rows == [Status.REFUSED]


# -- MQTT-002 ------------------------------------------------------------------------------------------------

COMMANDS = "  commands:\n    enabled: true"


def test_mqtt002_commands_without_allow_list_refused(tmp_path: Path) -> None:
    assert statuses(tmp_path, "MQTT-002", extra=TLS_CA + "\n" + COMMANDS) == [Status.REFUSED]


def test_mqtt002_allow_list_or_no_commands_pass(tmp_path: Path) -> None:
    assert statuses(tmp_path, "MQTT-002", extra=TLS_CA + "\n" + COMMANDS + "\n    allow: [charger.enable]") == []
    assert statuses(tmp_path, "MQTT-002", extra=TLS_CA + "\n" + COMMANDS + "\n    allow: []") == []
    assert statuses(tmp_path, "MQTT-002", extra=TLS_CA) == []


def test_mqtt002_can_be_accepted(tmp_path: Path) -> None:
    p = plan(tmp_path, extra=TLS_CA + "\n" + COMMANDS, head=ACCEPT.format(rule="MQTT-002"))
    assert [r.status for r in p.report.rows if r.rule.id == "MQTT-002"] == [Status.ACCEPTED]
    assert "every service" in p.exposures[0].description  # ampgate ports shows what was accepted


# -- MQTT-003 ------------------------------------------------------------------------------------------------

def test_mqtt003_anonymous_to_a_lan_broker_warns(tmp_path: Path) -> None:
    assert statuses(tmp_path, "MQTT-003", extra=TLS_CA) == [Status.WARNING]
    assert plan(tmp_path, extra=TLS_CA).report.exit_code == 0


def test_mqtt003_account_certificate_or_loopback_pass(tmp_path: Path) -> None:
    assert statuses(tmp_path, "MQTT-003", extra=TLS_CA + "\n" + CREDS) == []
    cert = "  tls:\n    ca: broker-ca.pem\n    cert: gw.pem\n    key: gw.key"
    assert statuses(tmp_path, "MQTT-003", extra=cert) == []
    assert statuses(tmp_path, "MQTT-003", host="127.0.0.1", extra=PLAIN) == []
