"""One SQLite database in ``data_dir``, reached from asyncio through one worker thread.

Contract:
- Every statement runs on the single storage thread, never on the event loop, so a slow disk stalls no
  protocol. One thread also means one writer: no ``database is locked`` between our own tasks.
- WAL journal with ``synchronous=NORMAL``: a committed transaction survives a kill of the process at any
  moment (SQLite's WAL guarantee); only a power cut may lose the last commits, never corrupt the file.
- Migrations are numbered per namespace (``core``, ``ocpp``, ...); each runs once, in its own transaction,
  and the applied versions are recorded in ``schema_migrations``. A plugin registers its own namespace.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

DB_FILE = "ampgate.db"

Migration = str | Callable[[sqlite3.Connection], None]


class Storage:
    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / DB_FILE
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ampgate-storage")
        self._conn: sqlite3.Connection | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------------------

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=5000")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " namespace TEXT NOT NULL, version INTEGER NOT NULL, applied_at REAL NOT NULL,"
            " PRIMARY KEY (namespace, version))"
        )
        self.path.chmod(0o600)
        self._conn = conn
        self._thread = threading.current_thread()

    def open(self) -> Storage:
        """Open (and create) the database; safe to call twice."""
        if self._conn is None:
            self._submit(self._open).result()
        return self

    def close(self) -> None:
        if self._conn is not None:
            self._submit(self._close).result()
        self._executor.shutdown(wait=True)

    def _close(self) -> None:
        assert self._conn is not None
        self._conn.close()
        self._conn = None

    # -- running work on the storage thread ----------------------------------------------------------

    def _submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        return self._executor.submit(fn, *args)

    def _conn_or_raise(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("storage is not open")
        return self._conn

    def _transaction(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._conn_or_raise()
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = fn(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result

    def run_sync(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(conn)`` in one transaction on the storage thread and wait (CLI and start-up only)."""
        future: Future[T] = self._submit(self._transaction, fn)
        return future.result()

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(conn)`` in one transaction on the storage thread without blocking the event loop."""
        return await asyncio.wrap_future(self._submit(self._transaction, fn))

    async def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[sqlite3.Row]:
        return await self.run(lambda conn: conn.execute(sql, params).fetchall())

    def execute_sync(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[sqlite3.Row]:
        return self.run_sync(lambda conn: conn.execute(sql, params).fetchall())

    # -- migrations ----------------------------------------------------------------------------------

    def migrate(self, namespace: str, migrations: Sequence[Migration]) -> list[int]:
        """Apply the migrations of ``namespace`` not applied yet; returns the versions applied now.

        Version numbers are list positions starting at 1: append new steps, never edit or reorder old ones.
        """
        applied: list[int] = []
        for version, step in enumerate(migrations, start=1):

            def apply(conn: sqlite3.Connection, version: int = version, step: Migration = step) -> bool:
                done = conn.execute(
                    "SELECT 1 FROM schema_migrations WHERE namespace=? AND version=?", (namespace, version)
                ).fetchone()
                if done:
                    return False
                if isinstance(step, str):
                    for statement in _split_sql(step):
                        conn.execute(statement)
                else:
                    step(conn)
                conn.execute(
                    "INSERT INTO schema_migrations VALUES (?, ?, strftime('%s','now'))", (namespace, version)
                )
                return True

            if self.run_sync(apply):
                applied.append(version)
        return applied

    async def async_migrate(self, namespace: str, migrations: Sequence[Migration]) -> list[int]:
        """``migrate()`` without blocking the event loop (for plugins' ``async_setup``)."""
        return await asyncio.get_running_loop().run_in_executor(None, self.migrate, namespace, migrations)

    def schema_version(self, namespace: str) -> int:
        row = self.execute_sync(
            "SELECT MAX(version) AS v FROM schema_migrations WHERE namespace=?", (namespace,)
        )[0]
        return int(row["v"] or 0)


def _split_sql(script: str) -> list[str]:
    # sqlite3.executescript() would COMMIT our transaction; split into complete statements instead.
    # Accumulating up to each ';' and asking SQLite whether the text is complete keeps ';' inside string
    # literals and triggers intact.
    statements, current = [], ""
    for piece in script.split(";"):
        current += piece + ";"
        if sqlite3.complete_statement(current):
            if current.strip(" \n\t;"):
                statements.append(current.strip())
            current = ""
    if current.strip(" \n\t;"):
        statements.append(current.strip())
    return statements
