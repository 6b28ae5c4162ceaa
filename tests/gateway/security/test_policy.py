"""Every core rule: the insecure variant is refused (or warned), the secure one passes, and where the rule
may be accepted, the accepted variant passes. ``never`` rules stay refused with an acceptance."""

from __future__ import annotations

import datetime as dt
import os
import textwrap
from pathlib import Path

import pytest
import voluptuous as vol

from gateway.config import validate
from gateway.config.validation import plugin_schema
from gateway.config.yaml_loader import load_yaml
from gateway.security.exposure import Auth, Exposure, Listener, Outbound, TlsSpec
from gateway.security.netaddr import HostInfo
from gateway.security.policy import PolicyInput, Report, Severity, Status, catalogue, evaluate
from gateway.security.rules import CORE_RULES

LAN_HOST = HostInfo({"lo": ("127.0.0.1", "::1"), "eth0": ("192.168.1.10",)})
PUBLIC_HOST = HostInfo({"lo": ("127.0.0.1",), "eth0": ("81.2.69.160",)})
TODAY = dt.date(2026, 11, 23)
RULES = catalogue([CORE_RULES])


def run(tmp_path: Path, yaml_text: str = "", exposures: list[Exposure] = (),  # type: ignore[assignment]
        host: HostInfo = LAN_HOST, secrets: str | None = None, **extra: object) -> Report:
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent(yaml_text))
    if secrets is not None:
        (tmp_path / "secrets.yaml").write_text(textwrap.dedent(secrets))
    raw = load_yaml(path) or {}
    schemas = {"p": plugin_schema({vol.Extra: object}), "q": plugin_schema({vol.Extra: object})}
    config = validate(raw, schemas, path)  # type: ignore[arg-type]
    data = PolicyInput(config=config, exposures=list(exposures), host=host, today=TODAY, **extra)  # type: ignore[arg-type]
    return evaluate(RULES, data)


def statuses(report: Report, rule: str) -> list[Status]:
    return [r.status for r in report.rows if r.rule.id == rule]


def listener(**kw: object) -> Listener:
    base: dict[str, object] = dict(plugin="p", protocol="test", bind="192.168.1.10", port=9000,
                                   config_path=("p",))
    base.update(kw)
    return Listener(**base)  # type: ignore[arg-type]


def outbound(**kw: object) -> Outbound:
    base: dict[str, object] = dict(plugin="p", protocol="test", host="192.168.1.20", port=8883,
                                   config_path=("p",))
    base.update(kw)
    return Outbound(**base)  # type: ignore[arg-type]


TLS = TlsSpec(cert="c.pem", key="k.pem")

ACCEPT = """
gateway:
  accept_risk:
    - rule: {rule}
      reason: "installer reviewed this on site"
"""


# -- NET ---------------------------------------------------------------------------------------------

def test_net001_public_bind_refused_private_passes_and_can_be_accepted(tmp_path: Path) -> None:
    assert statuses(run(tmp_path, exposures=[listener(bind="81.2.69.160", tls=TLS)]), "NET-001") == [Status.REFUSED]
    assert statuses(run(tmp_path, exposures=[listener(tls=TLS)]), "NET-001") == []
    accepted = run(tmp_path, ACCEPT.format(rule="NET-001"), exposures=[listener(bind="81.2.69.160", tls=TLS)])
    assert statuses(accepted, "NET-001") == [Status.ACCEPTED] and accepted.exit_code == 0


def test_net001_wildcard_on_a_host_with_a_public_address(tmp_path: Path) -> None:
    exp = [listener(bind="0.0.0.0", tls=TLS)]
    assert statuses(run(tmp_path, exposures=exp, host=PUBLIC_HOST), "NET-001") == [Status.REFUSED]
    assert statuses(run(tmp_path, exposures=exp, host=LAN_HOST), "NET-001") == []


def test_net002_wildcard_warns(tmp_path: Path) -> None:
    report = run(tmp_path, exposures=[listener(bind="::", tls=TLS)])
    assert statuses(report, "NET-002") == [Status.WARNING] and report.exit_code == 0
    assert statuses(run(tmp_path, exposures=[listener(tls=TLS)]), "NET-002") == []


def test_net003_plaintext_writer_without_allowlist(tmp_path: Path) -> None:
    assert statuses(run(tmp_path, exposures=[listener(writes=True)]), "NET-003") == [Status.REFUSED]
    assert statuses(run(tmp_path, exposures=[listener(writes=True, allowlist=("192.168.1.5/32",))]),
                    "NET-003") == []
    assert statuses(run(tmp_path, exposures=[listener(writes=True, tls=TLS)]), "NET-003") == []
    assert statuses(run(tmp_path, exposures=[listener(writes=True, bind="127.0.0.1")]), "NET-003") == []
    assert statuses(run(tmp_path, ACCEPT.format(rule="NET-003"), exposures=[listener(writes=True)]),
                    "NET-003") == [Status.ACCEPTED]


def test_net004_enabled_plugin_opening_nothing(tmp_path: Path) -> None:
    yaml_text = "p:\n  enabled: true\n"
    assert statuses(run(tmp_path, yaml_text), "NET-004") == [Status.WARNING]
    assert statuses(run(tmp_path, yaml_text, exposures=[listener(tls=TLS)]), "NET-004") == []
    assert statuses(run(tmp_path, yaml_text, silent_plugins={"p"}), "NET-004") == []
    assert statuses(run(tmp_path, yaml_text, dependents={"p": {"q"}}), "NET-004") == []


# -- TLS ---------------------------------------------------------------------------------------------

def test_tls001_verification_off_is_never_acceptable(tmp_path: Path) -> None:
    off = [outbound(tls=TlsSpec(verify=False))]
    assert statuses(run(tmp_path, exposures=off), "TLS-001") == [Status.REFUSED]
    report = run(tmp_path, ACCEPT.format(rule="TLS-001"), exposures=off)
    (row,) = [r for r in report.rows if r.rule.id == "TLS-001"]
    assert row.status is Status.REFUSED and "can never be accepted" in row.note
    assert statuses(run(tmp_path, exposures=[outbound(tls=TlsSpec(check_hostname=False))]), "TLS-001") == [
        Status.REFUSED]
    assert statuses(run(tmp_path, exposures=[outbound(tls=TlsSpec())]), "TLS-001") == []
    # loopback peers (a local broker) are the one place where it is allowed
    assert statuses(run(tmp_path, exposures=[outbound(host="127.0.0.1", tls=TlsSpec(verify=False))]),
                    "TLS-001") == []


def test_tls002_old_versions_and_weak_ciphers(tmp_path: Path) -> None:
    old = [listener(tls=TlsSpec(min_version="1.1", cert="c", key="k"))]
    assert statuses(run(tmp_path, exposures=old), "TLS-002") == [Status.REFUSED]
    weak = [listener(tls=TlsSpec(ciphers="AES128-SHA:ECDHE-ECDSA-AES128-GCM-SHA256", cert="c", key="k"))]
    (row,) = [r for r in run(tmp_path, exposures=weak).rows if r.rule.id == "TLS-002"]
    assert row.status is Status.REFUSED and "AES128-SHA" in row.finding.actual
    good = [listener(tls=TlsSpec(ciphers="ECDHE-ECDSA-AES128-GCM-SHA256", cert="c", key="k"))]
    assert statuses(run(tmp_path, exposures=good), "TLS-002") == []
    assert statuses(run(tmp_path, ACCEPT.format(rule="TLS-002"), exposures=old), "TLS-002") == [Status.ACCEPTED]


def test_tls003_self_signed_on_lan_warns(tmp_path: Path) -> None:
    exp = [listener(tls=TlsSpec(self_signed=True))]
    assert statuses(run(tmp_path, exposures=exp), "TLS-003") == [Status.WARNING]
    assert statuses(run(tmp_path, exposures=[listener(bind="127.0.0.1", tls=TlsSpec(self_signed=True))]),
                    "TLS-003") == []
    assert statuses(run(tmp_path, exposures=[listener(tls=TLS)]), "TLS-003") == []


def _real_pair(tmp_path: Path, days: int = 365) -> tuple[Path, Path]:
    from gateway.security import certs

    pair = certs.self_signed_server("gw", ["localhost"], days=days)
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    certs.write_pair(pair, cert, key)
    return cert, key


def test_tls004_key_readable_by_others(tmp_path: Path) -> None:
    cert, key = _real_pair(tmp_path)
    exp = [listener(tls=TlsSpec(cert=str(cert), key=str(key)))]
    assert statuses(run(tmp_path, exposures=exp), "TLS-004") == []
    os.chmod(key, 0o644)
    assert statuses(run(tmp_path, exposures=exp), "TLS-004") == [Status.REFUSED]
    assert statuses(run(tmp_path, ACCEPT.format(rule="TLS-004"), exposures=exp), "TLS-004") == [Status.ACCEPTED]


def test_tls005_expiring_warns_and_expired_refuses(tmp_path: Path) -> None:
    cert, key = _real_pair(tmp_path, days=365)
    exp = [listener(tls=TlsSpec(cert=str(cert), key=str(key)))]
    assert statuses(run(tmp_path, exposures=exp), "TLS-005") == []
    cert, key = _real_pair(tmp_path, days=10)
    assert statuses(run(tmp_path, exposures=exp), "TLS-005") == [Status.WARNING]


# -- AUTH --------------------------------------------------------------------------------------------

def test_auth001_credentials_in_clear_never(tmp_path: Path) -> None:
    clear = [outbound(sends_credentials=True, auth=Auth.PASSWORD)]
    assert statuses(run(tmp_path, exposures=clear), "AUTH-001") == [Status.REFUSED]
    assert statuses(run(tmp_path, ACCEPT.format(rule="AUTH-001"), exposures=clear), "AUTH-001") == [Status.REFUSED]
    assert statuses(run(tmp_path, exposures=[outbound(sends_credentials=True, tls=TlsSpec())]), "AUTH-001") == []
    basic = [listener(auth=Auth.PASSWORD)]
    assert statuses(run(tmp_path, exposures=basic), "AUTH-001") == [Status.REFUSED]
    assert statuses(run(tmp_path, exposures=[listener(auth=Auth.PASSWORD, tls=TLS)]), "AUTH-001") == []


SECRETS = """
    a: Tr0ub4dor&3xyz
    b: correct-horse-battery-staple-42
    weak: password
    short: Ab1!
"""


def test_auth002_weak_passwords(tmp_path: Path) -> None:
    weak = "p:\n  enabled: true\n  password: !secret weak\n"
    assert statuses(run(tmp_path, weak, secrets=SECRETS), "AUTH-002") == [Status.REFUSED]
    short = "p:\n  enabled: true\n  password: !secret short\n"
    assert statuses(run(tmp_path, short, secrets=SECRETS), "AUTH-002") == [Status.REFUSED]
    good = "p:\n  enabled: true\n  password: !secret b\n"
    assert statuses(run(tmp_path, good, secrets=SECRETS), "AUTH-002") == []
    accepted = ACCEPT.format(rule="AUTH-002") + weak
    assert statuses(run(tmp_path, accepted, secrets=SECRETS), "AUTH-002") == [Status.ACCEPTED]


def test_auth003_reused_password(tmp_path: Path) -> None:
    reused = "p:\n  password: !secret a\nq:\n  password: !secret a\n"
    assert statuses(run(tmp_path, reused, secrets=SECRETS), "AUTH-003") == [Status.REFUSED]
    distinct = "p:\n  password: !secret a\nq:\n  password: !secret b\n"
    assert statuses(run(tmp_path, distinct, secrets=SECRETS), "AUTH-003") == []


def test_auth004_secret_in_clear(tmp_path: Path) -> None:
    report = run(tmp_path, "p:\n  enabled: true\n  password: Tr0ub4dor&3xyz\n")
    (row,) = [r for r in report.rows if r.rule.id == "AUTH-004"]
    assert row.status is Status.REFUSED and row.where == "config.yaml:3" and "!secret p_password" in row.finding.fix
    assert statuses(run(tmp_path, "p:\n  password: !secret a\n", secrets=SECRETS), "AUTH-004") == []
    os.environ["AMPGATE_TEST_PW"] = "Tr0ub4dor&3xyz"
    assert statuses(run(tmp_path, "p:\n  password: !env_var AMPGATE_TEST_PW\n"), "AUTH-004") == []


def test_auth006_weak_pins(tmp_path: Path) -> None:
    for pin in ("1234", "12345678", "11112222"):
        text = "p:\n  pin: !secret pin\n"
        assert statuses(run(tmp_path, text, secrets=f"pin: '{pin}'\n"), "AUTH-006") == [Status.REFUSED], pin
    assert statuses(run(tmp_path, "p:\n  pin: !secret pin\n", secrets="pin: '39174620'\n"), "AUTH-006") == []


# -- LOG, DATA, PLUG, acceptance mechanics -------------------------------------------------------------

def test_log001_debug_warns(tmp_path: Path) -> None:
    assert statuses(run(tmp_path, "gateway:\n  log_level: debug\n"), "LOG-001") == [Status.WARNING]
    assert statuses(run(tmp_path, "gateway:\n  log_level: info\n"), "LOG-001") == []


def test_data003_diagnostics_warns(tmp_path: Path) -> None:
    assert statuses(run(tmp_path, "gateway:\n  diagnostics: true\n"), "DATA-003") == [Status.WARNING]
    assert statuses(run(tmp_path, ""), "DATA-003") == []


def test_plug001_blocked_third_party_plugin(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("evil:\n  enabled: true\n")
    config = validate(load_yaml(path), {}, path, blocked={"evil"})
    data = PolicyInput(config=config, exposures=[], host=LAN_HOST, today=TODAY,
                       blocked_plugins={"evil": "evil_pkg:plugin"})
    report = evaluate(RULES, data)
    assert statuses(report, "PLUG-001") == [Status.REFUSED]


def test_expired_acceptance_no_longer_counts(tmp_path: Path) -> None:
    text = ACCEPT.format(rule="NET-003") + "      expires: 2026-11-22\n"
    report = run(tmp_path, text, exposures=[listener(writes=True)])
    (row,) = [r for r in report.rows if r.rule.id == "NET-003"]
    assert row.status is Status.REFUSED and "expired on 2026-11-22" in row.note
    text = ACCEPT.format(rule="NET-003") + "      expires: 2026-11-23\n"
    assert statuses(run(tmp_path, text, exposures=[listener(writes=True)]), "NET-003") == [Status.ACCEPTED]


def test_acceptance_for_another_plugin_does_not_apply(tmp_path: Path) -> None:
    text = ACCEPT.format(rule="NET-003") + "      plugin: q\n"
    report = run(tmp_path, text, exposures=[listener(writes=True)])
    assert statuses(report, "NET-003") == [Status.REFUSED]
    assert [a.rule for a in report.unused_acceptances] == ["NET-003"]


def test_catalogue_covers_every_core_id_of_the_design() -> None:
    ids = {r.id for r in CORE_RULES}
    expected = {f"NET-00{i}" for i in range(1, 5)} | {f"TLS-00{i}" for i in range(1, 6)} | {
        f"AUTH-00{i}" for i in range(1, 7)} | {"LOG-001", "LOG-002", "DATA-001", "DATA-002", "DATA-003",
                                               "PLUG-001", "DISC-001"}
    assert ids == expected
    assert all(r.check is None for r in CORE_RULES if r.severity is Severity.BEHAVIOUR)
    assert all(r.check is not None for r in CORE_RULES if r.severity is not Severity.BEHAVIOUR)


def test_duplicate_rule_ids_fail() -> None:
    with pytest.raises(ValueError, match="defined twice"):
        catalogue([CORE_RULES, CORE_RULES[:1]])
