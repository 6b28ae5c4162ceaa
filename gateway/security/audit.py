"""The audit log (policy: LOG-002): an append-only, hash-chained record of security-relevant events.

Contract:
- Each record's ``hash`` is SHA-256 over the canonical JSON (sorted keys, no spaces, ASCII) of its ``seq``,
  ``ts``, ``event``, ``actor``, ``data`` and the previous record's hash (64 zeros before the first). Reading
  the last hash and inserting the record happen in one storage transaction, so concurrent writers, even in
  other processes (``ampgate user`` beside a running gateway), cannot fork the chain.
- ``audit_head`` holds the seq and hash of the newest record, updated in that same transaction: deleting the
  last records leaves the head pointing past the end, which ``verify`` reports like any other gap.
- Triggers refuse UPDATE and DELETE on ``audit_log`` so no code path changes history by mistake. An attacker
  with the file can drop them; the chain is what detects that. It cannot detect someone who rewrites every
  later record and the head (SHA-256 has no key): copy the head hash elsewhere to anchor it.
- Secrets never enter the log: values under keys that look like secrets are replaced by ``***`` before the
  record is hashed (``redact``).
- ``append`` never blocks the event loop; the ``*_sync`` variants are for the CLI and start-up.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import re
import sqlite3
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.context import Context
from gateway.log import REDACTED
from gateway.storage import Storage

NAMESPACE = "audit"
GENESIS_HASH = "0" * 64

# Event names (LOG-002 lists what must be recorded). Stable: external tools filter on them.
EVENT_START = "gateway.start"
EVENT_STOP = "gateway.stop"
EVENT_RISK_ACCEPTED = "policy.risk_accepted"
EVENT_LOGIN_FAILED = "auth.login_failed"
EVENT_LOCKOUT = "auth.lockout"
EVENT_USER_CHANGED = "user.changed"
EVENT_ENROLLMENT = "enrollment.changed"
EVENT_SECURITY = "security.event"
EVENT_FACTORY_RESET = "gateway.factory_reset"
EVENT_CONFIG_CHANGED = "config.changed"

DEFAULT_ACTOR = "gateway"
DEFAULT_LIST_LIMIT = 100

MIGRATIONS = [
    """
    CREATE TABLE audit_log (
        seq INTEGER PRIMARY KEY,
        ts REAL NOT NULL,
        event TEXT NOT NULL,
        actor TEXT NOT NULL,
        data TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
    );
    CREATE INDEX audit_log_event ON audit_log (event);
    CREATE TABLE audit_head (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        seq INTEGER NOT NULL,
        hash TEXT NOT NULL
    );
    CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
    BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
    CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
    BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
    """,
]


# -- redaction ------------------------------------------------------------------------------------------------

# Key words whose values are secrets. Matched as whole words of the key ("pin_code", "apiKey"), except the
# long ones, which are also matched inside compounds ("idtoken", "clientsecret").
_SECRET_WORDS = frozenset({
    "password", "passwd", "passphrase", "pass", "pwd", "secret", "token", "key", "pin", "otp",
    "credential", "credentials", "authorization", "cookie", "apikey", "authkey", "privkey", "privatekey",
})
_SECRET_PARTS = ("password", "passwd", "secret", "token", "credential")
# A public key or a fingerprint names a key without revealing it: what the log should show.
_PUBLIC_WORDS = frozenset({"public", "pub", "fingerprint"})
# Keys that describe a key or PIN rather than hold it ("key_id", "key_type", "pin_length").
_DESCRIPTIVE_LAST_WORDS = frozenset({"id", "ids", "type", "length", "size", "bits", "name"})
_WORD = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|[0-9]+")


def is_secret_key(name: str) -> bool:
    """Whether a data key such as ``password``, ``id_token`` or ``pinCode`` names a secret value."""
    words = [w.lower() for w in _WORD.findall(name)]
    if not words or _PUBLIC_WORDS.intersection(words):
        return False
    if any(part in name.lower() for part in _SECRET_PARTS):
        return True
    return bool(_SECRET_WORDS.intersection(words)) and words[-1] not in _DESCRIPTIVE_LAST_WORDS


def redact(data: Any) -> Any:
    """A copy of ``data`` (dicts, lists, scalars) with the value of every secret-looking key replaced."""
    if isinstance(data, Mapping):
        return {
            key: (REDACTED if value is not None and is_secret_key(str(key)) else redact(value))
            for key, value in data.items()
        }
    if isinstance(data, list | tuple | set | frozenset):
        return [redact(item) for item in data]
    return data


# -- records --------------------------------------------------------------------------------------------------


def canonical_json(value: Any) -> str:
    """The one JSON text of ``value`` that hashes are computed over: sorted keys, no spaces, ASCII.

    Values JSON cannot express (dates, paths) are written as ``str(value)``: an audit record is never lost
    to a type error.
    """
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False, default=str
    )


def record_hash(seq: int, ts: float, event: str, actor: str, data: Any, prev_hash: str) -> str:
    """The chain hash of one record (see the module docstring)."""
    body = canonical_json({"seq": seq, "ts": ts, "event": event, "actor": actor, "data": data})
    return hashlib.sha256(f"{body}\n{prev_hash}".encode("ascii")).hexdigest()


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditRecord:
    seq: int
    ts: float  # seconds since the epoch (time.time())
    event: str
    actor: str  # Context.describe() of who caused it, or "gateway"
    data: dict[str, Any]
    prev_hash: str
    hash: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq, "ts": self.ts, "event": self.event, "actor": self.actor, "data": self.data,
            "prev_hash": self.prev_hash, "hash": self.hash,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifyResult:
    """What ``verify`` found. For a deleted record ``first_bad_seq`` is the missing seq; for a changed,
    moved or forged one it is the seq of the first record that does not check out."""

    ok: bool
    records: int  # records checked (all of them when ok)
    first_bad_seq: int | None = None  # the first seq that is missing, changed, moved or forged
    problem: str = ""


def _row_record(row: sqlite3.Row) -> AuditRecord:
    return AuditRecord(
        seq=row["seq"], ts=row["ts"], event=row["event"], actor=row["actor"], data=json.loads(row["data"]),
        prev_hash=row["prev_hash"], hash=row["hash"],
    )


class AuditLog:
    """The audit log in ``storage``; creates its tables on construction."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        storage.migrate(NAMESPACE, MIGRATIONS)

    # -- writing ------------------------------------------------------------------------------------------

    def append_in(
        self, conn: sqlite3.Connection, event: str, data: Mapping[str, Any] | None = None,
        context: Context | None = None,
    ) -> AuditRecord:
        """Append inside the caller's storage transaction: the change and its record commit together.

        Only for functions already running on the storage thread (``storage.run``/``run_sync``).
        """
        if not event:
            raise ValueError("an audit event needs a name")
        actor = context.describe() if context is not None else DEFAULT_ACTOR
        # Through canonical JSON and back: what is hashed now is exactly what verify() will read.
        text = canonical_json(redact(dict(data or {})))
        clean = json.loads(text)
        head = conn.execute("SELECT seq, hash FROM audit_head WHERE id = 1").fetchone()
        last = conn.execute("SELECT MAX(seq) FROM audit_log").fetchone()[0] or 0
        # Chain onto the head, not onto the last row: rows forged past the head must not be absorbed into
        # the chain, and a truncated tail must stay a visible gap.
        seq = max(head["seq"] if head else 0, last) + 1
        prev = head["hash"] if head else GENESIS_HASH
        ts = time.time()
        digest = record_hash(seq, ts, event, actor, clean, prev)
        conn.execute(
            "INSERT INTO audit_log (seq, ts, event, actor, data, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (seq, ts, event, actor, text, prev, digest),
        )
        conn.execute("INSERT OR REPLACE INTO audit_head (id, seq, hash) VALUES (1, ?, ?)", (seq, digest))
        return AuditRecord(seq=seq, ts=ts, event=event, actor=actor, data=clean, prev_hash=prev, hash=digest)

    def append_sync(
        self, event: str, data: Mapping[str, Any] | None = None, context: Context | None = None
    ) -> AuditRecord:
        """Append one record and wait until it is committed (CLI and start-up)."""
        return self.storage.run_sync(lambda conn: self.append_in(conn, event, data, context))

    async def append(
        self, event: str, data: Mapping[str, Any] | None = None, context: Context | None = None
    ) -> AuditRecord:
        """Append one record; returns once it is committed."""
        return await self.storage.run(lambda conn: self.append_in(conn, event, data, context))

    # -- reading ------------------------------------------------------------------------------------------

    def _select(
        self, conn: sqlite3.Connection, limit: int, event_prefix: str | None, since_seq: int | None
    ) -> builtins.list[AuditRecord]:
        where: builtins.list[str] = []
        params: builtins.list[Any] = []
        if event_prefix:
            # substr, not LIKE: '_' in event names would be a LIKE wildcard.
            where.append("substr(event, 1, ?) = ?")
            params += [len(event_prefix), event_prefix]
        if since_seq is not None:
            where.append("seq > ?")
            params.append(since_seq)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        # With since_seq: the oldest records after it (paging forward); else the newest ones.
        order = "ASC" if since_seq is not None else "DESC"
        rows = conn.execute(
            f"SELECT * FROM audit_log {clause} ORDER BY seq {order} LIMIT ?",  # noqa: S608 (fixed fragments)
            [*params, max(0, limit)],
        ).fetchall()
        records = [_row_record(row) for row in rows]
        return records if since_seq is not None else records[::-1]

    def list_sync(
        self, limit: int = DEFAULT_LIST_LIMIT, event_prefix: str | None = None, since_seq: int | None = None
    ) -> builtins.list[AuditRecord]:
        """Records in seq order: the newest ``limit``, or with ``since_seq`` the first ``limit`` after it."""
        return self.storage.run_sync(lambda conn: self._select(conn, limit, event_prefix, since_seq))

    async def list(
        self, limit: int = DEFAULT_LIST_LIMIT, event_prefix: str | None = None, since_seq: int | None = None
    ) -> builtins.list[AuditRecord]:
        """``list_sync`` without blocking the event loop."""
        return await self.storage.run(lambda conn: self._select(conn, limit, event_prefix, since_seq))

    # -- verification -------------------------------------------------------------------------------------

    def verify_sync(self) -> VerifyResult:
        """Walk the whole chain and the head; report the first record that is not what was written."""
        return self.storage.run_sync(_verify)

    async def verify(self) -> VerifyResult:
        return await self.storage.run(_verify)


def _verify(conn: sqlite3.Connection) -> VerifyResult:
    expected_seq, prev, checked = 1, GENESIS_HASH, 0
    for row in conn.execute("SELECT * FROM audit_log ORDER BY seq"):
        seq = row["seq"]
        if seq != expected_seq:
            if isinstance(seq, int) and seq > expected_seq:
                missing = f"{expected_seq}" if seq == expected_seq + 1 else f"{expected_seq} to {seq - 1}"
                return VerifyResult(ok=False, records=checked, first_bad_seq=expected_seq,
                                    problem=f"record {missing} missing (deleted)")
            return VerifyResult(ok=False, records=checked, first_bad_seq=seq,
                                problem=f"record with unexpected seq {seq!r} (inserted)")
        if row["prev_hash"] != prev:
            return VerifyResult(ok=False, records=checked, first_bad_seq=seq,
                                problem=f"record {seq} does not follow record {seq - 1} "
                                        "(removed, moved or inserted record)")
        try:
            data = json.loads(row["data"])
            intact = canonical_json(data) == row["data"] and row["hash"] == record_hash(
                seq, row["ts"], row["event"], row["actor"], data, row["prev_hash"]
            )
        except (TypeError, ValueError):
            intact = False
        if not intact:
            return VerifyResult(ok=False, records=checked, first_bad_seq=seq,
                                problem=f"record {seq} was modified (hash mismatch)")
        prev, expected_seq, checked = row["hash"], seq + 1, checked + 1
    last_seq = expected_seq - 1
    head = conn.execute("SELECT seq, hash FROM audit_head WHERE id = 1").fetchone()
    if head is None:
        if checked:
            return VerifyResult(ok=False, records=checked, first_bad_seq=last_seq,
                                problem="the audit head is missing (records beyond it may be deleted)")
        return VerifyResult(ok=True, records=0)
    if head["seq"] > last_seq:
        missing = f"{last_seq + 1}" if head["seq"] == last_seq + 1 else f"{last_seq + 1} to {head['seq']}"
        return VerifyResult(ok=False, records=checked, first_bad_seq=last_seq + 1,
                            problem=f"record {missing} missing at the end of the log (deleted)")
    if head["seq"] < last_seq:
        return VerifyResult(ok=False, records=checked, first_bad_seq=head["seq"] + 1,
                            problem=f"record {head['seq'] + 1} was added outside the audit log (forged)")
    if head["hash"] != prev:
        return VerifyResult(ok=False, records=checked, first_bad_seq=last_seq,
                            problem=f"record {last_seq} does not match the audit head (replaced)")
    return VerifyResult(ok=True, records=checked)
