from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest

from gateway.storage import Storage


def test_wal_mode_and_private_file(storage: Storage) -> None:
    assert storage.execute_sync("PRAGMA journal_mode")[0][0] == "wal"
    assert storage.path.stat().st_mode & 0o077 == 0


def test_migrations_apply_once_in_order(storage: Storage) -> None:
    steps = ["CREATE TABLE t (a INTEGER)", "ALTER TABLE t ADD COLUMN b TEXT"]
    assert storage.migrate("demo", steps) == [1, 2]
    assert storage.migrate("demo", steps) == []
    assert storage.migrate("demo", [*steps, "CREATE INDEX t_b ON t (b)"]) == [3]
    assert storage.schema_version("demo") == 3
    assert storage.schema_version("other") == 0


def test_a_failing_migration_rolls_back_and_is_retried(storage: Storage) -> None:
    bad = ["CREATE TABLE u (a INTEGER); INSERT INTO nowhere VALUES (1);"]
    with pytest.raises(sqlite3.OperationalError):
        storage.migrate("bad", bad)
    assert storage.schema_version("bad") == 0
    assert not storage.execute_sync("SELECT name FROM sqlite_master WHERE name='u'")


async def test_async_access_runs_off_the_event_loop(storage: Storage) -> None:
    storage.migrate("demo", ["CREATE TABLE t (a INTEGER)"])
    loop_thread = threading.get_ident()
    seen: list[int] = []

    def work(conn: sqlite3.Connection) -> int:
        seen.append(threading.get_ident())
        conn.execute("INSERT INTO t VALUES (1)")
        return int(conn.execute("SELECT COUNT(*) FROM t").fetchone()[0])

    results = await asyncio.gather(*(storage.run(work) for _ in range(20)))
    assert sorted(results) == list(range(1, 21))
    assert loop_thread not in seen and len(set(seen)) == 1


async def test_transaction_rolls_back_on_error(storage: Storage) -> None:
    storage.migrate("demo", ["CREATE TABLE t (a INTEGER)"])

    def fail(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO t VALUES (1)")
        raise ValueError("stop")

    with pytest.raises(ValueError):
        await storage.run(fail)
    assert (await storage.execute("SELECT COUNT(*) FROM t"))[0][0] == 0


def test_data_survives_reopen(tmp_path: Path) -> None:
    s = Storage(tmp_path).open()
    s.migrate("demo", ["CREATE TABLE t (a INTEGER)"])
    s.execute_sync("INSERT INTO t VALUES (42)")
    s.close()
    s2 = Storage(tmp_path).open()
    assert s2.execute_sync("SELECT a FROM t")[0][0] == 42
    s2.close()
