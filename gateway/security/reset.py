"""Factory reset (policy: DATA-002): erase users, tokens, transactions, enrollments, keys and certificates,
and say what was erased.

Contract:
- Runs from the CLI with the gateway stopped. ``ampgate run`` writes ``data_dir/ampgate.pid``; while that file
  names a live process the reset refuses (``GatewayRunning``) and touches nothing. A stale file (the gateway
  was killed) does not block it.
- Refuses a non-empty directory holding none of Ampgate's own files (``ampgate.db``, ``vault.key``,
  ``certs/``): a mistyped ``--data-dir`` must not wipe somebody's home directory (``NotADataDir``).
- ``inventory`` lists, without changing anything, what a reset would erase: the row count of every table in
  ``ampgate.db`` (SQLite's own tables and ``schema_migrations`` aside) and every file under ``data_dir``.
- ``factory_reset`` erases every file under ``data_dir``: each regular file is overwritten with zeros and
  synced before it is unlinked, then the empty sub-directories go. It then creates a fresh ``ampgate.db``
  whose audit log begins with one ``gateway.factory_reset`` record holding counts only (table names with
  row counts, number of files by kind), never a name, token or key.
- Symbolic links are removed, never followed: a link planted in the data directory cannot make the reset
  zero a file elsewhere. Files with other hard links are unlinked without zeroing for the same reason.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

from gateway.context import Context
from gateway.core import PID_FILE
from gateway.errors import GatewayError
from gateway.security.audit import EVENT_FACTORY_RESET, AuditLog
from gateway.security.vault import KEY_FILE
from gateway.storage import DB_FILE, Storage

CERTS_DIR = "certs"
# SQLite's companions of the database file: write-ahead log, shared memory index, rollback journal.
DB_SUFFIXES = ("", "-wal", "-shm", "-journal")
KEY_SUFFIXES = (".key",)
CERT_SUFFIXES = (".pem", ".crt", ".cer", ".der", ".p12", ".pfx", ".csr")
# Zeros are written in blocks of this size, so a large database does not need as much memory.
ZERO_BLOCK_BYTES = 1 << 20

KIND_DATABASE = "database"
KIND_KEY = "key"
KIND_CERTIFICATE = "certificate"
KIND_OTHER = "other"
_PLURAL = {KIND_DATABASE: "databases", KIND_KEY: "keys", KIND_CERTIFICATE: "certificates", KIND_OTHER: "others"}


class ResetRefused(GatewayError):
    """The reset did not start; nothing was erased. The message says why and what to do."""


class GatewayRunning(ResetRefused):
    def __init__(self, pid: int, pid_file: Path) -> None:
        super().__init__(
            f"the gateway is running (pid {pid}, from {pid_file}); stop it first. If no ampgate runs, that "
            "process id was reused: delete the file and try again"
        )
        self.pid = pid


class NotADataDir(ResetRefused):
    def __init__(self, path: Path) -> None:
        super().__init__(
            f"{path} holds none of Ampgate's files ({DB_FILE}, {KEY_FILE}, {CERTS_DIR}/); refusing to erase "
            "it. Check --data-dir"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class DataFile:
    path: str  # relative to the data directory, '/' separated
    kind: str  # KIND_DATABASE, KIND_KEY, KIND_CERTIFICATE or KIND_OTHER
    size: int  # bytes; 0 for links and special files
    link: bool = False  # a symbolic link: removed, its target untouched
    zeroed: bool = False  # overwritten with zeros before it was unlinked


@dataclass(frozen=True, slots=True, kw_only=True)
class ResetReport:
    """What a reset erases (from ``inventory``) or erased (from ``factory_reset``)."""

    data_dir: Path
    tables: dict[str, int]  # table -> rows, in name order
    files: tuple[DataFile, ...]
    database_error: str | None = None  # the database could not be read (its rows are not counted)
    erased: bool = False
    errors: tuple[str, ...] = field(default=())  # files that could not be erased
    audit_seq: int | None = None  # the seq of the factory_reset record in the fresh database

    @property
    def rows(self) -> int:
        return sum(self.tables.values())

    def summary(self) -> dict[str, object]:
        """Counts only, for the audit record: no file or table content, no identity."""
        # Plural names: the audit log hides the value of any key named "key" as a secret.
        kinds = Counter(_PLURAL[f.kind] for f in self.files)
        return {
            # A list, not a mapping: as keys, names like "id_tokens" would have their counts hidden as secrets.
            "tables": [{"table": name, "rows": rows} for name, rows in self.tables.items()],
            "rows": self.rows,
            "files": len(self.files),
            "files_by_kind": dict(sorted(kinds.items())),
            "zeroed": sum(1 for f in self.files if f.zeroed),
            "database_readable": self.database_error is None,
            "errors": len(self.errors),
        }


# -- checks ---------------------------------------------------------------------------------------------------


def running_pid(data_dir: Path) -> int | None:
    """The pid in ``data_dir/ampgate.pid`` when that process is alive, else None."""
    try:
        text = (Path(data_dir) / PID_FILE).read_text().strip()
        pid = int(text)
    except (FileNotFoundError, ValueError):
        return None
    if pid <= 0:
        return None  # os.kill(0 or -n) would address a process group, not a process
    try:
        os.kill(pid, 0)  # signal 0: only checks that the process exists
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid  # alive, but another user's
    return pid


def check_stopped(data_dir: Path) -> None:
    """Raise ``GatewayRunning`` while a live ampgate owns ``data_dir``."""
    pid = running_pid(data_dir)
    if pid is not None:
        raise GatewayRunning(pid, Path(data_dir) / PID_FILE)


def _check_is_data_dir(data_dir: Path) -> None:
    if not data_dir.exists():
        return
    if not data_dir.is_dir():
        raise NotADataDir(data_dir)
    if not any(data_dir.iterdir()):
        return
    markers = (DB_FILE, KEY_FILE, CERTS_DIR, PID_FILE)
    if not any(os.path.lexists(data_dir / name) for name in markers):
        raise NotADataDir(data_dir)


# -- inventory ------------------------------------------------------------------------------------------------


def _kind(relative: str) -> str:
    name = relative.rsplit("/", 1)[-1]
    if relative in {DB_FILE + suffix for suffix in DB_SUFFIXES}:
        return KIND_DATABASE
    if relative == KEY_FILE or name.endswith(KEY_SUFFIXES):
        return KIND_KEY
    if relative.startswith(CERTS_DIR + "/") or name.endswith(CERT_SUFFIXES):
        return KIND_CERTIFICATE
    return KIND_OTHER


def _files(data_dir: Path) -> list[DataFile]:
    found: list[DataFile] = []
    if not data_dir.is_dir():
        return found
    for root, dirs, names in os.walk(data_dir, followlinks=False):
        base = Path(root)
        # os.walk lists a link to a directory among the directories and does not enter it: it is a file here.
        entries = names + [d for d in dirs if (base / d).is_symlink()]
        for name in sorted(entries):
            path = base / name
            relative = path.relative_to(data_dir).as_posix()
            try:
                info = path.lstat()
            except FileNotFoundError:
                continue
            link = stat.S_ISLNK(info.st_mode)
            size = info.st_size if stat.S_ISREG(info.st_mode) else 0
            found.append(DataFile(path=relative, kind=_kind(relative), size=size, link=link))
    return sorted(found, key=lambda f: f.path)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _count_rows(conn: sqlite3.Connection) -> dict[str, int]:
    names = [
        row[0] for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
            " AND name != 'schema_migrations' ORDER BY name"
        )
    ]
    # Table names come from the database itself and are quoted: nothing outside it reaches this SQL.
    counts: dict[str, int] = {}
    for name in names:
        counts[name] = int(conn.execute(f"SELECT COUNT(*) FROM {_quote(name)}").fetchone()[0])  # noqa: S608
    return counts


def _count_tables(db: Path) -> tuple[dict[str, int], str | None]:
    if not db.is_file() or db.is_symlink():
        return {}, None
    # Read-only: a read-write connection would checkpoint and delete the -wal file on close, and what it held
    # would then be freed without being overwritten. Without a -wal file the database file is all there is,
    # and ``immutable`` keeps SQLite from creating -wal and -shm files just to read it.
    base = db.resolve().as_uri()
    wal = db.with_name(db.name + "-wal")
    first = f"{base}?mode=ro" if os.path.lexists(wal) else f"{base}?mode=ro&immutable=1"
    uris = (first, f"{base}?mode=rw")
    error = "not readable"
    for uri in uris:
        try:
            conn = sqlite3.connect(uri, uri=True)
        except sqlite3.Error as err:
            error = str(err)
            continue
        try:
            return _count_rows(conn), None
        except sqlite3.Error as err:
            error = str(err)
        finally:
            conn.close()
    return {}, error


def inventory(data_dir: Path) -> ResetReport:
    """What ``factory_reset`` would erase; changes nothing. Raises ``ResetRefused``."""
    data_dir = Path(data_dir)
    check_stopped(data_dir)
    _check_is_data_dir(data_dir)
    tables, error = _count_tables(data_dir / DB_FILE)
    # Listed after counting, so that a -shm file SQLite may have made to read the -wal is erased as well.
    return ResetReport(data_dir=data_dir, tables=tables, files=tuple(_files(data_dir)), database_error=error)


# -- erasing --------------------------------------------------------------------------------------------------


def _zero(path: Path) -> bool:
    """Overwrite a regular file with zeros and sync it; False when it was not a lone regular file.

    Best effort only: on SSDs and SD cards wear levelling writes the zeros to other flash cells, and on
    copy-on-write or journaling file systems old blocks may survive elsewhere, so the previous content can
    remain readable to someone with the raw device. Full-disk encryption is what really protects a disposed
    disk; zeroing removes the data from every ordinary read of the file system.
    """
    fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | getattr(os, "O_NOCTTY", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink > 1:
            return False  # another hard link may be someone else's file
        zeros = bytes(ZERO_BLOCK_BYTES)
        remaining = info.st_size
        while remaining > 0:
            remaining -= os.write(fd, zeros[: min(ZERO_BLOCK_BYTES, remaining)])
        os.fsync(fd)
        return True
    finally:
        os.close(fd)


def _erase(data_dir: Path, files: tuple[DataFile, ...]) -> tuple[tuple[DataFile, ...], tuple[str, ...]]:
    erased: list[DataFile] = []
    errors: list[str] = []
    # The database last: if the reset stops half-way, the database still says what is left.
    ordered = sorted(files, key=lambda f: (f.kind == KIND_DATABASE, f.path))
    for item in ordered:
        path = data_dir / item.path
        zeroed = False
        if not item.link:
            try:
                zeroed = _zero(path)
            except OSError:
                zeroed = False  # e.g. a read-only file: best effort, it is still unlinked below
        try:
            path.unlink()
        except FileNotFoundError:
            pass  # gone already (SQLite removes its -shm file itself): nothing left to erase
        except OSError as err:
            errors.append(f"{item.path}: {err.strerror or err}")
            continue
        erased.append(DataFile(path=item.path, kind=item.kind, size=item.size, link=item.link, zeroed=zeroed))
    # Sub-directories, deepest first; a directory still holding something we could not erase stays.
    for root, dirs, _ in os.walk(data_dir, topdown=False, followlinks=False):
        for name in dirs:
            directory = Path(root) / name
            if directory.is_symlink():
                continue
            try:
                directory.rmdir()
            except OSError as err:
                errors.append(f"{directory.relative_to(data_dir).as_posix()}/: {err.strerror or err}")
    return tuple(sorted(erased, key=lambda f: f.path)), tuple(errors)


def factory_reset(data_dir: Path, *, context: Context | None = None) -> ResetReport:
    """Erase everything in ``data_dir`` and start a fresh database whose audit log records the reset.

    Raises ``ResetRefused`` (``GatewayRunning``, ``NotADataDir``) before erasing anything. Files that could
    not be erased are listed in ``errors``; the fresh database is created all the same.
    """
    planned = inventory(data_dir)
    data_dir = planned.data_dir
    files, errors = _erase(data_dir, planned.files)
    report = ResetReport(
        data_dir=data_dir, tables=planned.tables, files=files, database_error=planned.database_error,
        erased=True, errors=errors,
    )
    storage = Storage(data_dir).open()
    try:
        record = AuditLog(storage).append_sync(EVENT_FACTORY_RESET, report.summary(), context)
    finally:
        storage.close()
    return replace(report, audit_seq=record.seq)
