from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.security.audit import AuditLog
from gateway.security.enrollment import EnrollmentQueue
from gateway.storage import Storage


def seed(data_dir: Path) -> None:
    storage = Storage(data_dir).open()
    try:
        queue = EnrollmentQueue(storage, AuditLog(storage))
        asyncio.run(queue.request("ocpp", "CP-07", address="192.168.1.50", fingerprint="ab" * 32))
    finally:
        storage.close()


def test_enroll_list_approve_reject(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seed(tmp_path)
    assert main(["--data-dir", str(tmp_path), "enroll", "list", "--json"]) == 0
    (entry,) = json.loads(capsys.readouterr().out)
    assert entry["status"] == "pending" and entry["identity"] == "CP-07"
    assert main(["--data-dir", str(tmp_path), "enroll", "approve", "ocpp", "CP-07"]) == 0
    assert "approved ocpp CP-07" in capsys.readouterr().out
    assert main(["--data-dir", str(tmp_path), "enroll", "reject", "ocpp", "nope"]) == 1
    assert "no ocpp device 'nope'" in capsys.readouterr().err
    storage = Storage(tmp_path).open()
    try:
        queue = EnrollmentQueue(storage, AuditLog(storage))
        assert queue.status_sync("ocpp", "CP-07") == "approved"
        decisions = AuditLog(storage).list_sync(event_prefix="enrollment")
        assert decisions and decisions[-1].actor.startswith("cli")
    finally:
        storage.close()
