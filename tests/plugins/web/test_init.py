"""Config schema, exposures and the WEB policy rules: plain HTTP off loopback is refused (WEB-001, and AUTH-001
which no acceptance lifts), plain HTTP on loopback and HTTPS anywhere pass; the behaviour rules are listed."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.errors import ConfigError, PluginError
from gateway.security.exposure import Auth, Listener
from gateway.security.policy import Severity, Status
from plugins.web import async_setup
from tests.helpers import plan_for

ACCEPT = """
gateway:
  accept_risk:
    - rule: {rule}
      reason: "lab bench behind its own firewall"
"""


def rows(tmp_path: Path, text: str, rule: str) -> list[Status]:
    return [r.status for r in plan_for(tmp_path, text).report.rows if r.rule.id == rule]


def web(bind: str = "127.0.0.1", tls: str = "") -> str:
    return f"web:\n  enabled: true\n  bind: {bind}\n{tls}"


PLAIN = "  tls:\n    enabled: false\n"


def test_defaults_are_https_on_loopback_8443(tmp_path: Path) -> None:
    plan = plan_for(tmp_path, "web:\n  enabled: true\n")
    conf = plan.config.plugins["web"]
    assert conf["bind"] == "127.0.0.1" and conf["port"] == 8443 and conf["tls"]["enabled"] is True
    [listener] = plan.exposures
    assert isinstance(listener, Listener)
    assert listener.protocol == "https" and listener.tls is not None and listener.tls.min_version == "1.2"
    assert listener.auth is Auth.PASSWORD and listener.writes and listener.config_path == ("web",)
    assert not plan.report.rows  # nothing to report for the default


def test_disabled_by_default_opens_nothing(tmp_path: Path) -> None:
    plan = plan_for(tmp_path, "web: {}\n")
    assert plan.exposures == []


def test_web001_plain_http_on_lan_refused_and_never_acceptable(tmp_path: Path) -> None:
    text = web("192.168.1.10", PLAIN)
    assert rows(tmp_path, text, "WEB-001") == [Status.REFUSED]
    # The listener carries passwords: AUTH-001 refuses it too, and that one cannot be accepted.
    assert rows(tmp_path, text, "AUTH-001") == [Status.REFUSED]
    accepted = ACCEPT.format(rule="WEB-001") + ACCEPT.format(rule="AUTH-001").replace("gateway:\n  accept_risk:\n", "")
    plan = plan_for(tmp_path, accepted + text)
    statuses = {r.rule.id: r.status for r in plan.report.rows}
    assert statuses["WEB-001"] is Status.ACCEPTED and statuses["AUTH-001"] is Status.REFUSED
    finding = next(r for r in plan.report.rows if r.rule.id == "WEB-001")
    assert finding.finding.config_path == ("web", "tls", "enabled")
    assert "config.yaml:" in finding.where  # points at file:line


def test_web001_loopback_plain_and_lan_https_pass(tmp_path: Path) -> None:
    assert rows(tmp_path, web("127.0.0.1", PLAIN), "WEB-001") == []
    assert rows(tmp_path, web("::1", PLAIN), "WEB-001") == []
    assert rows(tmp_path, web("192.168.1.10"), "WEB-001") == []
    # HTTPS on the LAN with the generated certificate: TLS-003 asks to pin its fingerprint (a warning).
    assert rows(tmp_path, web("192.168.1.10"), "TLS-003") == [Status.WARNING]


def test_behaviour_rules_listed(tmp_path: Path) -> None:
    plan = plan_for(tmp_path, "")
    for rule in ("WEB-002", "WEB-003"):
        assert plan.rules[rule].severity is Severity.BEHAVIOUR and plan.rules[rule].plugin == "web"
    assert plan.rules["WEB-001"].severity is Severity.REFUSE


def test_schema_errors_say_what_to_write(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="client certificates are not supported"):
        plan_for(tmp_path, "web:\n  enabled: true\n  tls:\n    client_auth: required\n")
    with pytest.raises(ConfigError, match="tls.cert and tls.key go together"):
        plan_for(tmp_path, "web:\n  enabled: true\n  tls:\n    cert: a.pem\n")
    with pytest.raises(ConfigError, match="entity id"):
        plan_for(tmp_path, "web:\n  enabled: true\n  power_flow:\n    grid: not an entity\n")


async def test_setup_refuses_plain_http_off_loopback_even_if_accepted(tmp_path: Path) -> None:
    """Defence in depth: async_setup refuses what WEB-001/AUTH-001 refuse, whatever the plan said."""
    plan = plan_for(tmp_path, web("192.168.1.10", PLAIN))
    with pytest.raises(PluginError, match="plain HTTP"):
        await async_setup(object(), plan.config.plugins["web"])  # type: ignore[arg-type]
