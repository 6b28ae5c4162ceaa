"""The sample insecure site under tests/data produces the full report and is refused (exit 1)."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

from gateway.bootstrap import prepare
from gateway.security.netaddr import HostInfo
from gateway.security.policy import Status

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "tests" / "data" / "insecure.yaml"
LAN = HostInfo({"lo": ("127.0.0.1",), "eth0": ("192.168.1.10",)})
PUBLIC = HostInfo({"lo": ("127.0.0.1",), "eth0": ("81.2.69.160",)})


def by_status(host: HostInfo, tmp_path: Path) -> dict[str, set[str]]:
    plan = prepare(SAMPLE, data_dir=tmp_path, host=host, today=dt.date(2026, 11, 23))
    found: dict[str, set[str]] = {}
    for row in plan.report.rows:
        found.setdefault(row.status.value, set()).add(row.rule.id)
    return found


def test_every_insecure_setting_is_reported(tmp_path: Path) -> None:
    found = by_status(LAN, tmp_path)
    assert found[Status.REFUSED.value] >= {"AUTH-001", "AUTH-002", "AUTH-004", "WEB-001", "NET-003",
                                           "MODBUS-001", "MODBUS-002", "MQTT-001", "MQTT-002"}
    assert found[Status.WARNING.value] >= {"LOG-001", "DATA-003", "NET-002", "MODBUS-003"}
    assert Status.ACCEPTED.value not in found, "a never rule's acceptance must not count"


def test_a_public_interface_adds_net001(tmp_path: Path) -> None:
    assert "NET-001" in by_status(PUBLIC, tmp_path)[Status.REFUSED.value]


def test_check_prints_the_report_and_exits_1(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "gateway", "--config", str(SAMPLE), "--data-dir",
                             str(tmp_path), "check", "--format", "json"],
                            capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert report["refused"] >= 5
    row = next(f for f in report["findings"] if f["rule"] == "WEB-001")
    assert row["where"].endswith("insecure.yaml:11") or "insecure.yaml:" in row["where"]
    assert row["why"] and row["fix"] and row["recommended"]
    assert [a["rule"] for a in report["unused_acceptances"]] == ["TLS-001"]
