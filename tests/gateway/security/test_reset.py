"""Factory reset (DATA-002): everything in the data directory is erased, and the fresh audit log says what."""

from __future__ import annotations

import argparse
import io
import os
import sqlite3
import subprocess
from pathlib import Path

import pytest

from gateway.commands import factory_reset as reset_command
from gateway.context import Context, Role
from gateway.core import PID_FILE
from gateway.security.audit import EVENT_FACTORY_RESET, AuditLog
from gateway.security.enrollment import EnrollmentQueue
from gateway.security.reset import (
    KIND_CERTIFICATE,
    KIND_DATABASE,
    KIND_KEY,
    GatewayRunning,
    NotADataDir,
    factory_reset,
    inventory,
    running_pid,
)
from gateway.storage import DB_FILE, Storage

ADMIN = Context(origin="cli", principal="root", role=Role.ADMIN)
KEY_BYTES = b"\x5a" * 32


def fill(data_dir: Path) -> None:
    """A used gateway: some tables with rows, an audit log, enrollments, a vault key and certificates."""
    storage = Storage(data_dir).open()
    try:
        storage.migrate("demo", [
            "CREATE TABLE transactions (id INTEGER PRIMARY KEY, token TEXT); CREATE TABLE empty_one (x);"
            "CREATE TABLE web_api_tokens (hash TEXT)"
        ])
        storage.execute_sync("INSERT INTO web_api_tokens VALUES ('h')")
        storage.execute_sync("INSERT INTO transactions (token) VALUES ('04AABBCC'), ('04DDEEFF'), ('04112233')")
        audit = AuditLog(storage)
        audit.append_sync("test.event", {"n": 1})
        queue = EnrollmentQueue(storage, audit)
        queue.request_sync("ocpp", "CP01")
        queue.request_sync("ocpp", "CP02")
        queue.approve_sync("ocpp", "CP01", ADMIN)
    finally:
        storage.close()
    (data_dir / "vault.key").write_bytes(KEY_BYTES)
    certs = data_dir / "certs"
    certs.mkdir()
    (certs / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    (certs / "server.key").write_bytes(b"-----BEGIN PRIVATE KEY-----\nsecret\n-----END PRIVATE KEY-----\n")
    (certs / "clients").mkdir()
    (certs / "clients" / "cp01.pem").write_text("client cert")
    (data_dir / "station.pem").write_text("pem")


def test_reset_erases_everything_and_reports_it(tmp_path: Path) -> None:
    data = tmp_path / "data"
    fill(data)
    before = {p.relative_to(data).as_posix() for p in data.rglob("*") if p.is_file()}

    report = factory_reset(data, context=ADMIN)

    assert report.erased and not report.errors and report.database_error is None
    assert report.tables["transactions"] == 3
    assert report.tables["empty_one"] == 0
    assert report.tables["enrollments"] == 2
    assert report.tables["audit_log"] == 2  # the test event and the approval
    assert "schema_migrations" not in report.tables
    assert not any(name.startswith("sqlite_") for name in report.tables)
    assert list(report.tables) == sorted(report.tables)

    erased = {f.path: f for f in report.files}
    assert set(erased) == before
    assert {"vault.key", "certs/ca.pem", "certs/server.key", "certs/clients/cp01.pem", "station.pem", DB_FILE} <= set(erased)
    assert erased["vault.key"].kind == KIND_KEY and erased["vault.key"].zeroed
    assert erased["certs/server.key"].kind == KIND_KEY
    assert erased["certs/ca.pem"].kind == KIND_CERTIFICATE
    assert erased[DB_FILE].kind == KIND_DATABASE and erased[DB_FILE].zeroed

    # Gone: the keys, the certificates directory, the old tables; a fresh database holds one record.
    assert not (data / "vault.key").exists()
    assert not (data / "certs").exists()
    assert not (data / "station.pem").exists()
    storage = Storage(data).open()
    try:
        tables = {r["name"] for r in storage.execute_sync("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert "transactions" not in tables and "enrollments" not in tables
        audit = AuditLog(storage)
        records = audit.list_sync()
        assert len(records) == 1
        record = records[0]
        assert record.seq == report.audit_seq == 1
        assert record.event == EVENT_FACTORY_RESET
        assert record.actor == "cli:root"
        assert {"table": "transactions", "rows": 3} in record.data["tables"]
        assert {"table": "web_api_tokens", "rows": 1} in record.data["tables"], "no count is hidden as a secret"
        assert record.data["files"] == len(report.files)
        assert record.data["files_by_kind"]["keys"] == 2
        assert "04AABBCC" not in str(record.data), "counts only, no personal data"
        assert audit.verify_sync().ok
    finally:
        storage.close()


def test_key_files_are_overwritten_before_unlinking(tmp_path: Path) -> None:
    fill(tmp_path)
    # An open descriptor keeps the unlinked inode readable: it shows what the reset left on it.
    with open(tmp_path / "vault.key", "rb") as kept:
        factory_reset(tmp_path)
        kept.seek(0)
        assert kept.read() == b"\x00" * len(KEY_BYTES)


def test_links_are_removed_never_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    precious = outside / "precious.key"
    precious.write_bytes(b"keep me")
    shared = outside / "shared.txt"
    shared.write_bytes(b"hard linked")
    data = tmp_path / "data"
    fill(data)
    (data / "link.key").symlink_to(precious)
    (data / "linkdir").symlink_to(outside, target_is_directory=True)
    os.link(shared, data / "hardlink.txt")

    report = factory_reset(data)

    assert precious.read_bytes() == b"keep me"
    assert shared.read_bytes() == b"hard linked"
    assert not os.path.lexists(data / "link.key") and not os.path.lexists(data / "linkdir")
    erased = {f.path: f for f in report.files}
    assert erased["link.key"].link and not erased["link.key"].zeroed
    assert erased["linkdir"].link
    assert not erased["hardlink.txt"].zeroed


def test_refused_while_the_gateway_runs(tmp_path: Path) -> None:
    fill(tmp_path)
    (tmp_path / PID_FILE).write_text(f"{os.getpid()}\n")
    assert running_pid(tmp_path) == os.getpid()
    with pytest.raises(GatewayRunning, match=str(os.getpid())):
        factory_reset(tmp_path)
    with pytest.raises(GatewayRunning):
        inventory(tmp_path)
    assert (tmp_path / "vault.key").read_bytes() == KEY_BYTES
    assert (tmp_path / DB_FILE).exists()


def test_a_stale_pid_file_does_not_block(tmp_path: Path) -> None:
    fill(tmp_path)
    dead = subprocess.Popen(["true"])
    dead.wait()
    (tmp_path / PID_FILE).write_text(f"{dead.pid}\n")
    assert running_pid(tmp_path) is None
    (tmp_path / PID_FILE).write_text("garbage")
    assert running_pid(tmp_path) is None
    report = factory_reset(tmp_path)
    assert PID_FILE in {f.path for f in report.files}


def test_refuses_a_directory_that_is_not_ampgates(tmp_path: Path) -> None:
    (tmp_path / "thesis.tex").write_text("years of work")
    with pytest.raises(NotADataDir):
        factory_reset(tmp_path)
    assert (tmp_path / "thesis.tex").read_text() == "years of work"


def test_an_empty_directory_gets_a_fresh_database(tmp_path: Path) -> None:
    report = factory_reset(tmp_path / "new")
    assert report.tables == {} and report.files == () and report.audit_seq == 1


def test_an_unreadable_database_is_erased_anyway(tmp_path: Path) -> None:
    (tmp_path / DB_FILE).write_bytes(b"this is not a database" * 100)
    (tmp_path / "vault.key").write_bytes(KEY_BYTES)
    report = factory_reset(tmp_path)
    assert report.database_error is not None and report.tables == {}
    assert {f.path for f in report.files} == {DB_FILE, "vault.key"}
    conn = sqlite3.connect(tmp_path / DB_FILE)
    try:
        assert conn.execute("SELECT event FROM audit_log").fetchall() == [(EVENT_FACTORY_RESET,)]
    finally:
        conn.close()


def test_inventory_changes_nothing(tmp_path: Path) -> None:
    fill(tmp_path)
    before = sorted((p.as_posix(), p.stat().st_size) for p in tmp_path.rglob("*") if p.is_file())
    report = inventory(tmp_path)
    assert not report.erased and report.tables["transactions"] == 3
    assert sorted((p.as_posix(), p.stat().st_size) for p in tmp_path.rglob("*") if p.is_file()) == before


# -- ampgate factory-reset --------------------------------------------------------------------------------


def run_cli(data: Path, *argv: str) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir")
    parser.add_argument("--config")
    sub = parser.add_subparsers()
    reset_command.register(sub)
    args = parser.parse_args(["--data-dir", str(data), "factory-reset", *argv])
    return int(args.func(args))


def test_cli_with_yes_erases_and_prints_what(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fill(tmp_path)
    assert run_cli(tmp_path, "--yes") == 0
    out = capsys.readouterr().out
    assert "Erased in" in out
    assert "transactions" in out and "3 rows" in out
    assert "enrollments" in out and "2 rows" in out
    assert "vault.key" in out and "certs/server.key" in out
    assert not (tmp_path / "vault.key").exists()


def test_cli_without_a_terminal_refuses(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    fill(tmp_path)
    monkeypatch.setattr("sys.stdin", io.StringIO("ERASE\n"))
    assert run_cli(tmp_path) == 1
    assert "--yes" in capsys.readouterr().err
    assert (tmp_path / "vault.key").read_bytes() == KEY_BYTES


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("typed", "code"), [("ERASE\n", 0), ("erase\n", 1), ("\n", 1), ("", 1)])
def test_cli_asks_to_type_erase(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                monkeypatch: pytest.MonkeyPatch, typed: str, code: int) -> None:
    fill(tmp_path)
    monkeypatch.setattr("sys.stdin", _Terminal(typed))
    assert run_cli(tmp_path) == code
    assert (tmp_path / "vault.key").exists() == (code != 0)
    if code:
        assert "nothing was erased" in capsys.readouterr().err


def test_cli_refuses_while_running(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fill(tmp_path)
    (tmp_path / PID_FILE).write_text(str(os.getpid()))
    assert run_cli(tmp_path, "--yes") == 1
    assert "running" in capsys.readouterr().err
    assert (tmp_path / "vault.key").exists()
