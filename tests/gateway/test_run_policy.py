"""``ampgate run`` and the policy: refusals stop the start, acceptances are audited at every start,
third-party plugins are not even imported unless allowed."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import textwrap
from pathlib import Path

import pytest

from gateway import bootstrap
from gateway.commands import run as run_command
from gateway.core import Gateway
from gateway.loader import discover
from gateway.security.audit import AuditLog
from gateway.storage import Storage
from tests.gateway import fakeplugins
from tests.gateway.fakeplugins import _common
from tests.helpers import LAN_HOST

INSECURE = """
exposer:
  enabled: true
  bind: 192.168.1.10
  writes: true
"""
ACCEPTED = """
gateway:
  accept_risk:
    - rule: NET-003
      plugin: exposer
      reason: "test bench on an isolated VLAN, ticket 42"
""" + INSECURE


@pytest.fixture(autouse=True)
def fake_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    _common.STARTED.clear()
    registry = discover(package=fakeplugins)
    monkeypatch.setattr(bootstrap, "discover", lambda allow=(): registry)
    monkeypatch.setattr(bootstrap.HostInfo, "read", classmethod(lambda cls: LAN_HOST))


def args_for(tmp_path: Path, text: str) -> argparse.Namespace:
    config = tmp_path / "config.yaml"
    config.write_text(textwrap.dedent(text))
    return argparse.Namespace(config=str(config), data_dir=str(tmp_path / "data"), log_level="warning")


def test_run_refuses_and_starts_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_command.handle(args_for(tmp_path, INSECURE)) == 1
    err = capsys.readouterr().err
    assert "REFUSED  NET-003" in err and "config.yaml:4" in err and "refuses to start" in err
    assert _common.STARTED == []
    assert not (tmp_path / "data" / "ampgate.pid").exists()


async def test_accepted_risk_is_audited_at_every_start(tmp_path: Path) -> None:
    args = args_for(tmp_path, ACCEPTED)
    for _ in range(2):
        plan = bootstrap.prepare(args.config, data_dir=Path(args.data_dir), today=dt.date(2026, 11, 23))
        assert plan.report.exit_code == 0 and [r.rule.id for r in plan.report.accepted] == ["NET-003"]
        gw = Gateway(plan.config, Path(args.data_dir))
        await gw.async_start(plan)
        await gw.async_stop()
    storage = Storage(Path(args.data_dir)).open()
    try:
        records = AuditLog(storage).list_sync(event_prefix="policy.risk_accepted")
        assert AuditLog(storage).verify_sync().ok
    finally:
        storage.close()
    assert len(records) == 2
    assert records[0].data["rule"] == "NET-003" and records[0].data["reason"].startswith("test bench")
    assert records[0].data["setting"].endswith("config.yaml:10")


async def test_first_start_creates_the_gateway_certificate(tmp_path: Path) -> None:
    args = args_for(tmp_path, "gateway:\n  name: t\n")
    plan = bootstrap.prepare(args.config, data_dir=Path(args.data_dir))
    gw = Gateway(plan.config, Path(args.data_dir))
    await gw.async_start(plan)
    await gw.async_stop()
    key = Path(args.data_dir) / "certs" / "server.key"
    assert key.exists() and key.stat().st_mode & 0o077 == 0
    assert gw.certs is not None and len(gw.certs.fingerprint) >= 64


def test_third_party_plugin_is_not_imported_unless_allowed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A distribution on sys.path whose entry point module would fail loudly if imported.
    dist = tmp_path / "evilplug-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: evilplug\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[ampgate.plugins]\nevil = evil_module_for_test\n")
    (tmp_path / "evil_module_for_test.py").write_text("raise SystemExit('imported!')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = discover(package=fakeplugins)
    assert "evil" in registry.not_allowed and "evil" not in registry.plugins
    assert "evil_module_for_test" not in sys.modules
    with pytest.raises(SystemExit, match="imported!"):
        discover(["evil"], package=fakeplugins)
