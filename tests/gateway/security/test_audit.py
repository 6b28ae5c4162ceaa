"""The hash-chained audit log (LOG-002): tampering with the SQLite file directly is detected."""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.commands import audit as audit_command
from gateway.context import Context, Role
from gateway.security.audit import (
    EVENT_LOGIN_FAILED,
    EVENT_START,
    GENESIS_HASH,
    AuditLog,
    record_hash,
    redact,
)
from gateway.storage import Storage

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def log(storage: Storage) -> AuditLog:
    audit = AuditLog(storage)
    for n in range(1, 11):
        audit.append_sync(f"test.event{n % 3}", {"n": n})
    return audit


def tamper(db: Path, *statements: str) -> None:
    """What an attacker with the file does: drop the append-only triggers, then edit rows."""
    conn = sqlite3.connect(db)
    conn.execute("DROP TRIGGER IF EXISTS audit_log_no_update")
    conn.execute("DROP TRIGGER IF EXISTS audit_log_no_delete")
    for sql in statements:
        conn.execute(sql)
    conn.commit()
    conn.close()


def test_records_are_chained(log: AuditLog) -> None:
    records = log.list_sync(limit=100)
    assert [r.seq for r in records] == list(range(1, 11))
    assert records[0].prev_hash == GENESIS_HASH
    for before, after in itertools.pairwise(records):
        assert after.prev_hash == before.hash
    first = records[0]
    assert first.hash == record_hash(1, first.ts, first.event, first.actor, {"n": 1}, GENESIS_HASH)
    assert log.verify_sync().ok and log.verify_sync().records == 10


def test_empty_log_verifies(storage: Storage) -> None:
    result = AuditLog(storage).verify_sync()
    assert result.ok and result.records == 0 and result.first_bad_seq is None


def test_actor_from_context_and_secrets_redacted(storage: Storage) -> None:
    audit = AuditLog(storage)
    ctx = Context(origin="web", principal="alice", role=Role.ADMIN, address="192.168.1.20")
    record = audit.append_sync("user.changed", {
        "user": "bob", "password": "Hunter2!xyz", "nested": {"id_token": "04A2B3", "apiKey": "k"},
        "items": [{"pin": "12345678"}], "public_key": "MCow", "key_id": "k1", "mapping": "kept",
        "pinCode": "8642", "clientSecret": "s3", "station_password": "pw",
    }, ctx)
    assert record.actor == "web:alice@192.168.1.20"
    assert audit.append_sync("x", {}).actor == "gateway"
    text = storage.execute_sync("SELECT data FROM audit_log WHERE seq = 1")[0][0]
    for secret in ("Hunter2!xyz", "04A2B3", "12345678", "8642", '"s3"', '"pw"'):
        assert secret not in text
    data = json.loads(text)
    assert data["password"] == "***" and data["nested"] == {"id_token": "***", "apiKey": "***"}
    assert data["items"] == [{"pin": "***"}]
    assert (data["public_key"], data["key_id"], data["mapping"], data["user"]) == ("MCow", "k1", "kept", "bob")
    assert audit.verify_sync().ok


def test_redact_leaves_input_alone() -> None:
    data = {"token": "t", "none_secret": None, "password": None}
    assert redact(data) == {"token": "***", "none_secret": None, "password": None}
    assert data["token"] == "t"


def test_the_table_refuses_updates_and_deletes(log: AuditLog, storage: Storage) -> None:
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        storage.execute_sync("UPDATE audit_log SET data = '{}' WHERE seq = 3")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        storage.execute_sync("DELETE FROM audit_log WHERE seq = 10")
    assert log.verify_sync().ok


def test_modified_record(log: AuditLog, storage: Storage) -> None:
    tamper(storage.path, """UPDATE audit_log SET data = '{"n":99}' WHERE seq = 4""")
    result = log.verify_sync()
    assert not result.ok and result.first_bad_seq == 4 and "modified" in result.problem
    assert result.records == 3


def test_modified_event_actor_or_ts(log: AuditLog, storage: Storage) -> None:
    for sql in ("UPDATE audit_log SET actor = 'cli:eve' WHERE seq = 6",
                "UPDATE audit_log SET event = 'test.other' WHERE seq = 6",
                "UPDATE audit_log SET ts = ts + 1 WHERE seq = 6",
                "UPDATE audit_log SET data = '{\"n\": 6}' WHERE seq = 6"):  # same meaning, other bytes
        conn = sqlite3.connect(storage.path)
        before = conn.execute("SELECT * FROM audit_log WHERE seq = 6").fetchone()
        conn.close()
        tamper(storage.path, sql)
        assert log.verify_sync().first_bad_seq == 6, sql
        # Put the original row back before the next variant.
        conn = sqlite3.connect(storage.path)
        conn.execute("DELETE FROM audit_log WHERE seq = 6")
        conn.execute("INSERT INTO audit_log VALUES (?, ?, ?, ?, ?, ?, ?)", before)
        conn.commit()
        conn.close()
        assert log.verify_sync().ok


def test_deleted_middle_record(log: AuditLog, storage: Storage) -> None:
    tamper(storage.path, "DELETE FROM audit_log WHERE seq = 5")
    result = log.verify_sync()
    assert not result.ok and result.first_bad_seq == 5 and "missing" in result.problem


def test_deleted_first_record(log: AuditLog, storage: Storage) -> None:
    tamper(storage.path, "DELETE FROM audit_log WHERE seq = 1")
    assert log.verify_sync().first_bad_seq == 1


def test_deleted_last_record_is_caught_by_the_head(log: AuditLog, storage: Storage) -> None:
    tamper(storage.path, "DELETE FROM audit_log WHERE seq = 10")
    result = log.verify_sync()
    assert not result.ok and result.first_bad_seq == 10 and "end of the log" in result.problem
    # Appending afterwards continues from the head: the gap stays visible.
    assert log.append_sync("test.after", {}).seq == 11
    assert log.verify_sync().first_bad_seq == 10


def test_deleted_tail(log: AuditLog, storage: Storage) -> None:
    tamper(storage.path, "DELETE FROM audit_log WHERE seq >= 8")
    assert log.verify_sync().first_bad_seq == 8


def test_deleted_record_with_rows_renumbered(log: AuditLog, storage: Storage) -> None:
    # Hide the gap by moving later rows down one seq: the chain links no longer match.
    tamper(storage.path, "DELETE FROM audit_log WHERE seq = 5",
           "UPDATE audit_log SET seq = seq - 1 WHERE seq > 5")
    result = log.verify_sync()
    assert not result.ok and result.first_bad_seq == 5


def test_swapped_records(log: AuditLog, storage: Storage) -> None:
    columns = ("ts", "event", "actor", "data", "prev_hash", "hash")
    tamper(storage.path,
           "CREATE TEMP TABLE swap AS SELECT * FROM audit_log WHERE seq IN (3, 4)",
           "UPDATE audit_log SET " + ", ".join(
               f"{c} = (SELECT {c} FROM swap WHERE swap.seq = 7 - audit_log.seq)" for c in columns
           ) + " WHERE seq IN (3, 4)")
    rows = sqlite3.connect(storage.path).execute("SELECT seq, data FROM audit_log WHERE seq IN (3, 4)").fetchall()
    assert rows == [(3, '{"n":4}'), (4, '{"n":3}')]
    result = log.verify_sync()
    assert not result.ok and result.first_bad_seq == 3


def test_swapped_content_only(log: AuditLog, storage: Storage) -> None:
    tamper(storage.path,
           "CREATE TEMP TABLE swap AS SELECT * FROM audit_log WHERE seq IN (6, 7)",
           "UPDATE audit_log SET data = (SELECT data FROM swap WHERE swap.seq = 13 - audit_log.seq),"
           " event = (SELECT event FROM swap WHERE swap.seq = 13 - audit_log.seq) WHERE seq IN (6, 7)")
    assert log.verify_sync().first_bad_seq == 6


def test_forged_record_appended_with_a_valid_chain_hash(log: AuditLog, storage: Storage) -> None:
    # The forger knows the algorithm and the last hash; only the head, updated by the real API, differs.
    last = log.list_sync(limit=1)[0]
    ts = time.time()
    digest = record_hash(11, ts, EVENT_START, "gateway", {}, last.hash)
    tamper(storage.path, f"INSERT INTO audit_log VALUES (11, {ts!r}, 'gateway.start', 'gateway', '{{}}', "
                         f"'{last.hash}', '{digest}')")
    result = log.verify_sync()
    assert not result.ok and result.first_bad_seq == 11 and "forged" in result.problem
    # The next real record chains onto the head, not onto the forgery, so the break stays visible (the
    # walk now meets it at the real record that does not follow the forged one).
    log.append_sync("test.after", {})
    result = log.verify_sync()
    assert not result.ok and result.first_bad_seq == 12 and "does not follow record 11" in result.problem


def test_forged_record_inserted_before_the_first(log: AuditLog, storage: Storage) -> None:
    tamper(storage.path, f"INSERT INTO audit_log VALUES (0, 0, 'x', 'y', '{{}}', '{GENESIS_HASH}', 'z')")
    assert log.verify_sync().first_bad_seq == 0


def test_forged_record_with_a_wrong_hash(log: AuditLog, storage: Storage) -> None:
    last = log.list_sync(limit=1)[0]
    tamper(storage.path, f"INSERT INTO audit_log VALUES (11, 1.0, 'x', 'y', '{{}}', '{last.hash}', 'bad')",
           "UPDATE audit_head SET seq = 11, hash = 'bad'")
    result = log.verify_sync()
    assert result.first_bad_seq == 11 and "modified" in result.problem


def test_head_removed(log: AuditLog, storage: Storage) -> None:
    tamper(storage.path, "DELETE FROM audit_head")
    assert not log.verify_sync().ok


def test_list_filters(log: AuditLog) -> None:
    assert [r.seq for r in log.list_sync(limit=3)] == [8, 9, 10]
    assert [r.seq for r in log.list_sync(limit=3, since_seq=2)] == [3, 4, 5]
    assert [r.seq for r in log.list_sync(event_prefix="test.event1")] == [1, 4, 7, 10]
    assert [r.seq for r in log.list_sync(event_prefix="test.event1", since_seq=4)] == [7, 10]
    assert log.list_sync(event_prefix="test_") == []  # '_' is no wildcard
    assert log.list_sync(limit=0) == []


async def test_async_api(storage: Storage) -> None:
    audit = AuditLog(storage)
    records = await asyncio.gather(*(audit.append(EVENT_LOGIN_FAILED, {"i": i}) for i in range(20)))
    assert sorted(r.seq for r in records) == list(range(1, 21))
    assert len(await audit.list(limit=5)) == 5
    assert (await audit.verify()).ok


def test_concurrent_writers_in_two_processes_keep_one_chain(tmp_path: Path) -> None:
    first, second = Storage(tmp_path).open(), Storage(tmp_path).open()
    try:
        a, b = AuditLog(first), AuditLog(second)
        for i in range(10):
            (a if i % 2 else b).append_sync("test.alt", {"i": i})
        assert a.verify_sync().ok and a.verify_sync().records == 10
    finally:
        first.close()
        second.close()


CHILD = """
import sys
from pathlib import Path
from gateway.security.audit import AuditLog
from gateway.storage import Storage

log = AuditLog(Storage(Path(sys.argv[1])).open())
print("ready", flush=True)
n = 0
while True:
    n += 1
    record = log.append_sync("test.tick", {"n": n, "pad": "x" * 200})
    print(record.seq, flush=True)
"""


def test_kill_9_loses_no_committed_record_and_breaks_no_chain(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path)], stdout=subprocess.PIPE,
                             cwd=REPO, env=env)
    assert child.stdout is not None
    try:
        assert child.stdout.readline() == b"ready\n"
        time.sleep(0.5)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    output = child.stdout.read().decode()
    child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    # The last line may be cut off by the kill; count only complete ones.
    committed = [int(line) for line in output.split("\n")[:-1]]
    assert len(committed) > 10, "the child committed too few records to prove anything"

    storage = Storage(tmp_path).open()
    try:
        log = AuditLog(storage)
        result = log.verify_sync()
        assert result.ok, result
        present = {row[0] for row in storage.execute_sync("SELECT seq FROM audit_log")}
        assert set(committed) <= present
        assert result.records >= max(committed)
    finally:
        storage.close()


# -- ampgate audit ------------------------------------------------------------------------------------------


def cli(tmp_path: Path, *argv: str) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir")
    parser.add_argument("--config")
    sub = parser.add_subparsers()
    audit_command.register(sub)
    args = parser.parse_args(["--data-dir", str(tmp_path), "audit", *argv])
    return int(args.func(args))


def test_cli_lists_and_verifies(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(tmp_path) == 0
    assert "empty" in capsys.readouterr().out
    storage = Storage(tmp_path).open()
    audit = AuditLog(storage)
    for n in range(30):
        audit.append_sync("test.cli", {"n": n})
    storage.close()

    assert cli(tmp_path, "--limit", "5") == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 5 and lines[-1].split()[0] == "30" and "test.cli" in lines[-1]

    assert cli(tmp_path, "--json", "--limit", "2") == 0
    records = json.loads(capsys.readouterr().out)
    assert [r["seq"] for r in records] == [29, 30] and records[1]["data"] == {"n": 29}

    assert cli(tmp_path, "verify") == 0
    assert "30 records" in capsys.readouterr().out

    tamper(tmp_path / "ampgate.db", "DELETE FROM audit_log WHERE seq = 17")
    assert cli(tmp_path, "verify") == 1
    err = capsys.readouterr().err
    assert "seq 17" in err and "missing" in err
