"""OCPP-001..011: the insecure variant refused (or warned), the secure one passes, the accepted one passes.
Plus the configuration checks the schema makes (file:line errors, not policy)."""

from __future__ import annotations

import sqlite3
import textwrap
import time
from pathlib import Path

import pytest

from gateway.errors import ConfigError
from gateway.security.policy import Report, Severity, Status
from plugins.ocpp import exposures
from plugins.ocpp.policy import RULES
from tests.helpers import plan_for

SECRETS = """
cp1: "0123456789abcdefXY"
cp2: "fedcba9876543210QZ"
short: "tooShort12"
hexkey: "00112233445566778899aabbccddeeff00112233"
longhex: "00112233445566778899aabbccddeeff0011223344"
"""


def config(body: str = "", *, bind: str = "127.0.0.1", tls: str = "", stations: str | None = None,
           gateway: str = "") -> str:
    stations = stations if stations is not None else """
      - id: CP1
        password: !secret cp1
    """
    return (textwrap.dedent(gateway) + textwrap.dedent(f"""
        ocpp:
          enabled: true
          bind: {bind}
          port: 9443
        """) + textwrap.indent(textwrap.dedent(tls + body), "  ") + "  stations:\n"
        + textwrap.indent(textwrap.dedent(stations), "  "))


def report(tmp_path: Path, text: str) -> Report:
    return plan_for(tmp_path, text, SECRETS).report


def statuses(rep: Report, rule: str) -> list[Status]:
    return [r.status for r in rep.rows if r.rule.id == rule]


def accept(rule: str) -> str:
    return f"""
        gateway:
          accept_risk:
            - rule: {rule}
              reason: "reviewed on site by the installer"
        """


def test_every_rule_is_catalogued_with_the_right_severity() -> None:
    severities = {r.id: r.severity for r in RULES}
    assert list(severities) == [f"OCPP-{n:03d}" for n in range(1, 12)]
    assert severities["OCPP-003"] is Severity.NEVER
    assert severities["OCPP-007"] is severities["OCPP-011"] is Severity.BEHAVIOUR
    assert {severities[i] for i in ("OCPP-006", "OCPP-008", "OCPP-010")} == {Severity.WARN}


def test_secure_default_passes(tmp_path: Path) -> None:
    rep = report(tmp_path, config())
    assert not rep.refused and not [r for r in rep.rows if r.rule.id.startswith("OCPP")]


def test_ocpp001_plain_listener_off_loopback(tmp_path: Path) -> None:
    plain = "tls:\n  enabled: false\n"
    one = """
      - id: CP1
        profile: 1
        password: !secret cp1
    """
    rep = report(tmp_path, config(bind="192.168.1.10", tls=plain, stations=one))
    assert statuses(rep, "OCPP-001") == [Status.REFUSED]
    assert statuses(report(tmp_path, config(tls=plain, stations=one)), "OCPP-001") == []  # loopback
    assert statuses(report(tmp_path, config(bind="192.168.1.10")), "OCPP-001") == []
    accepted = report(tmp_path, config(bind="192.168.1.10", tls=plain, stations=one, gateway=accept("OCPP-001")))
    assert statuses(accepted, "OCPP-001") == [Status.ACCEPTED]
    # ...but Basic Auth over plaintext off loopback stays refused by AUTH-001, which no acceptance lifts
    assert statuses(accepted, "AUTH-001") == [Status.REFUSED]


def test_ocpp002_profile1_off_loopback(tmp_path: Path) -> None:
    one = """
      - id: CP1
        profile: 1
        password: !secret cp1
    """
    plain = "tls:\n  enabled: false\n"
    assert statuses(report(tmp_path, config(bind="192.168.1.10", tls=plain, stations=one)), "OCPP-002") == [
        Status.REFUSED]
    assert statuses(report(tmp_path, config(tls=plain, stations=one)), "OCPP-002") == []


def test_ocpp004_auto_approve(tmp_path: Path) -> None:
    assert statuses(report(tmp_path, config("auto_approve: true\n")), "OCPP-004") == [Status.REFUSED]
    assert statuses(report(tmp_path, config("auto_approve: true\n", gateway=accept("OCPP-004"))), "OCPP-004") == [
        Status.ACCEPTED]


def test_ocpp005_free_charging(tmp_path: Path) -> None:
    assert statuses(report(tmp_path, config("free_charging: true\n")), "OCPP-005") == [Status.REFUSED]
    assert statuses(report(tmp_path, config("free_charging: true\n", gateway=accept("OCPP-005"))), "OCPP-005") == [
        Status.ACCEPTED]
    assert statuses(report(tmp_path, config("free_charging: false\n")), "OCPP-005") == []


def test_ocpp006_loose_tokens_warn(tmp_path: Path) -> None:
    rep = report(tmp_path, config("accept_unknown_tokens: true\naccept_mac_tokens: true\n"))
    assert statuses(rep, "OCPP-006") == [Status.WARNING, Status.WARNING] and rep.exit_code == 0


def test_ocpp008_station_not_seen_for_30_days(tmp_path: Path) -> None:
    assert statuses(report(tmp_path, config()), "OCPP-008") == []  # never started: nothing known
    data = tmp_path / "data"
    data.mkdir()
    db = sqlite3.connect(data / "ampgate.db")
    db.execute("CREATE TABLE ocpp_stations (identity TEXT PRIMARY KEY, last_seen REAL, configured_at REAL)")
    db.execute("INSERT INTO ocpp_stations VALUES ('CP1', ?, ?)", (time.time() - 40 * 86400, time.time() - 90 * 86400))
    db.commit()
    db.close()
    rep = report(tmp_path, config())
    assert statuses(rep, "OCPP-008") == [Status.WARNING]
    assert "ocpp.stations.0.id" in [r.as_dict()["setting"] for r in rep.rows if r.rule.id == "OCPP-008"]


def test_ocpp009_short_shared_and_long_hex_passwords(tmp_path: Path) -> None:
    short = """
      - id: CP1
        password: !secret short
    """
    assert statuses(report(tmp_path, config(stations=short)), "OCPP-009") == [Status.REFUSED]
    shared = """
      - id: CP1
        password: !secret cp1
      - id: CP2
        password: !secret cp1
    """
    assert statuses(report(tmp_path, config(stations=shared)), "OCPP-009") == [Status.REFUSED]
    hexes = """
      - id: CP1
        password: !secret hexkey
        password_format: hex
      - id: CP2
        password: !secret longhex
        password_format: hex
    """
    assert statuses(report(tmp_path, config(stations=hexes)), "OCPP-009") == [Status.REFUSED]  # 22 bytes
    good = """
      - id: CP1
        password: !secret cp1
      - id: CP2
        password: !secret cp2
    """
    assert statuses(report(tmp_path, config(stations=good)), "OCPP-009") == []


def test_ocpp010_rsa_key_exchange_warns_and_tls002_needs_acceptance(tmp_path: Path) -> None:
    rsa = """
      - id: CP1
        password: !secret cp1
        ciphers_rsa: true
    """
    rep = report(tmp_path, config(stations=rsa))
    assert statuses(rep, "OCPP-010") == [Status.WARNING]
    assert statuses(rep, "TLS-002") == [Status.REFUSED]  # the suites lack forward secrecy
    accepted = report(tmp_path, config(stations=rsa, gateway=accept("TLS-002")))
    assert statuses(accepted, "TLS-002") == [Status.ACCEPTED] and accepted.exit_code == 0


def test_secret_in_clear_is_refused_by_the_core(tmp_path: Path) -> None:
    clear = """
      - id: CP1
        password: "0123456789abcdefXY"
    """
    assert statuses(report(tmp_path, config(stations=clear)), "AUTH-004") == [Status.REFUSED]


def test_exposure_declares_tls_auth_and_writes(tmp_path: Path) -> None:
    plan = plan_for(tmp_path, config(bind="192.168.1.10", stations="""
      - id: CP1
        password: !secret cp1
      - id: CP3
        profile: 3
    """), SECRETS)
    (listener,) = plan.exposures
    assert (listener.bind, listener.port, listener.writes) == ("192.168.1.10", 9443, True)
    assert listener.tls is not None and listener.tls.client_auth == "optional" and listener.auth.value == "password"
    only3 = exposures({"bind": "127.0.0.1", "port": 9443, "tls": {"enabled": True}, "stations": [
        {"id": "CP3", "profile": 3}]})
    assert only3[0].tls is not None and only3[0].tls.client_auth == "required"
    assert only3[0].auth.value == "client_cert"


@pytest.mark.parametrize(("stations", "message"), [
    ("- id: CP1\n  profile: 2\n", "authenticates with a password"),
    ("- id: CP1\n  password: !secret cp1\n- id: cp1\n  password: !secret cp2\n", "differ only in case"),
    ("- id: CP-1\n  password: !secret cp1\n- id: CP_1\n  password: !secret cp2\n", "charger.cp_1"),
    ("- id: CP1\n  password: !secret cp1\n  profile: 1\n", "profile 1 is plain ws://"),
    ("- id: 'bad id'\n  password: !secret cp1\n", "station identity"),
    ("- id: CP1\n  password: !secret short\n  password_format: hex\n", "hexadecimal"),
    ("- id: CP1\n  password: !secret cp1\n  min_current_a: 20\n  max_current_a: 10\n", "above max_current_a"),
    ("- id: CP1\n  password: !secret cp1\n  rate_unit: kW\n", "auto, A or W"),
])
def test_configuration_errors(tmp_path: Path, stations: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        plan_for(tmp_path, config(stations=stations), SECRETS)
    assert message in str(info.value)
