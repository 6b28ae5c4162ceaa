"""The enrollment queue: devices asking to be trusted, and the administrator's answer (DISC-001).

Contract:
- Nothing that announces itself is trusted. ``request`` puts an unknown device (an OCPP station identity,
  an EEBUS SKI, an SSDP/mDNS finding, a Modbus unit) into the queue as ``pending``; only ``approve`` (or
  ``add_approved``, for pre-approval from the configuration) by a caller with the ADMIN role makes it
  ``approved``. A later request never changes a decision: a rejected device stays rejected, however often
  it asks.
- An approved entry may pin a fingerprint (certificate hash, EEBUS SKI). ``is_trusted`` is true only for an
  approved entry whose pinned fingerprint, if it has one, equals the one presented. A different fingerprint
  on an approved entry is never adopted silently: it is kept as ``offered_fingerprint``, the entry reports
  ``fingerprint_changed``, and the first time that fingerprint appears a security event is audited and
  fired (policy: EEBUS-001, OCPP-004). An administrator who approves such an entry again pins the offered
  fingerprint (or the one passed to ``approve``).
- Every decision (approve, reject, remove, pre-approval) is written to the audit log in the same storage
  transaction as the change, with the deciding context, and fires ``device_enrollment_decided``. A first
  request fires ``device_enrollment_requested``; plain requests are not audited, because anyone on the
  network can cause them and the audit log cannot be pruned.
- ``is_trusted`` is a dict lookup (OCPP calls it for every connection). The dict is updated after each
  change made through this object and, while an event loop runs, re-read at most every
  ``REFRESH_INTERVAL_S`` when another process (``ampgate enroll`` beside a running gateway) changed the
  database.
- Async methods are the primary API; the ``*_sync`` variants are for the CLI and start-up.
"""

from __future__ import annotations

import asyncio
import builtins
import json
import logging
import re
import sqlite3
import string
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.bus import EventBus
from gateway.context import SYSTEM, Context, Role
from gateway.errors import GatewayError, Unauthorized
from gateway.security.audit import EVENT_ENROLLMENT, EVENT_SECURITY, AuditLog
from gateway.storage import Storage

_LOGGER = logging.getLogger(__name__)

NAMESPACE = "enrollment"

PENDING = "pending"
APPROVED = "approved"
REJECTED = "rejected"
STATUSES = (PENDING, APPROVED, REJECTED)

EVENT_REQUESTED = "device_enrollment_requested"
EVENT_DECIDED = "device_enrollment_decided"
EVENT_FINGERPRINT_CHANGED = "device_fingerprint_changed"

# What kind of identity an entry holds ("ocpp", "eebus", "ssdp", "mdns", "modbus"): a short lower-case name.
KIND_RE = re.compile(r"[a-z][a-z0-9_-]{0,31}")
# 255 covers the longest identities we know: OCPP 2.0.1 limits the station identity to 48 characters,
# an mDNS instance name is at most 63 bytes per label, an SSDP USN is a UUID plus a URN.
MAX_IDENTITY_CHARS = 255
MAX_ADDRESS_CHARS = 255
MAX_FINGERPRINT_CHARS = 255
# Discovery info comes from the device (SSDP headers, mDNS TXT records): bounded so a device cannot grow
# the database by announcing itself.
MAX_INFO_CHARS = 4096
# Pending entries at most. Anyone on the LAN can add pending entries (the OCPP plugin also limits them per
# address); beyond this number new identities are refused rather than old ones dropped, so a flood cannot
# push a genuine device out of the queue, and an administrator sees a full queue to clean up.
MAX_PENDING = 1000
# How stale the trusted set may get while another process changes the database: a CLI approval takes
# effect for new connections within this many seconds, without a query on the hot path.
REFRESH_INTERVAL_S = 5.0

MIGRATIONS = [
    """
    CREATE TABLE enrollments (
        kind TEXT NOT NULL,
        identity TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'rejected')),
        address TEXT,
        fingerprint TEXT,
        offered_fingerprint TEXT,
        info TEXT NOT NULL DEFAULT '{}',
        first_seen REAL NOT NULL,
        last_seen REAL NOT NULL,
        decided_by TEXT,
        decided_at REAL,
        reason TEXT,
        PRIMARY KEY (kind, identity)
    );
    CREATE INDEX enrollments_status ON enrollments (status);
    """,
]


class EnrollmentError(GatewayError):
    """An enrollment operation cannot be done; the message says why."""


class UnknownEnrollment(EnrollmentError):
    def __init__(self, kind: str, identity: str) -> None:
        super().__init__(f"no {kind} device {identity!r} in the enrollment queue")
        self.kind = kind
        self.identity = identity


class EnrollmentQueueFull(EnrollmentError):
    """``MAX_PENDING`` entries wait for a decision; new identities are refused until some are decided."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Enrollment:
    """One device in the queue, as the CLI and the web UI show it."""

    kind: str
    identity: str
    status: str  # PENDING, APPROVED or REJECTED
    address: str | None  # where it was last seen (IP address, host:port)
    fingerprint: str | None  # pinned once approved; on a pending entry, the one last presented
    offered_fingerprint: str | None  # a different fingerprint an approved entry presented since
    info: dict[str, Any]
    first_seen: float
    last_seen: float
    decided_by: str | None  # Context.describe() of the administrator, or of the configuration
    decided_at: float | None
    reason: str | None
    created: bool = False  # set by request(): this request put the device into the queue

    @property
    def fingerprint_changed(self) -> bool:
        """An approved entry presented a fingerprint other than the pinned one; no administrator reviewed it."""
        return self.status == APPROVED and self.offered_fingerprint is not None

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "identity": self.identity, "status": self.status, "address": self.address,
            "fingerprint": self.fingerprint, "offered_fingerprint": self.offered_fingerprint,
            "fingerprint_changed": self.fingerprint_changed, "info": self.info, "first_seen": self.first_seen,
            "last_seen": self.last_seen, "decided_by": self.decided_by, "decided_at": self.decided_at,
            "reason": self.reason,
        }


# -- validation -----------------------------------------------------------------------------------------------


def check_kind(kind: str) -> str:
    if not isinstance(kind, str) or not KIND_RE.fullmatch(kind):
        raise ValueError(f"invalid device kind {kind!r}: 1-32 lower-case letters, digits, '_' or '-'")
    return kind


def check_identity(identity: str) -> str:
    """A device identity: non-empty, at most ``MAX_IDENTITY_CHARS``, printable (no control characters)."""
    if not isinstance(identity, str) or not identity:
        raise ValueError("a device identity must be a non-empty string")
    if len(identity) > MAX_IDENTITY_CHARS:
        raise ValueError(f"device identity is {len(identity)} characters long (at most {MAX_IDENTITY_CHARS})")
    if not identity.isprintable():
        # Control characters would let a device forge lines in logs and in the CLI's table.
        raise ValueError(f"device identity {identity!r} contains non-printable characters")
    return identity


def _check_text(what: str, value: str | None, limit: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > limit or not value.isprintable():
        raise ValueError(f"invalid {what} {value!r}: at most {limit} printable characters")
    return value


def normalise_fingerprint(fingerprint: str | None) -> str | None:
    """A hex fingerprint in one spelling (lower case, no ':' or spaces); any other text as given.

    Raises ``ValueError`` for an empty, over-long or non-printable value.
    """
    if fingerprint is None:
        return None
    text = _check_text("fingerprint", fingerprint, MAX_FINGERPRINT_CHARS)
    assert text is not None
    text = text.strip()
    compact = text.replace(":", "").replace(" ", "")
    if not compact:
        raise ValueError("a fingerprint must not be empty")
    if all(c in string.hexdigits for c in compact):
        return compact.lower()
    return text


def _info_json(info: Mapping[str, Any] | None) -> str | None:
    if info is None:
        return None
    if not isinstance(info, Mapping):
        raise ValueError("device info must be a mapping")
    try:
        text = json.dumps(dict(info), sort_keys=True, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ValueError(f"device info is not JSON: {err}") from None
    if len(text) > MAX_INFO_CHARS:
        raise ValueError(f"device info is {len(text)} characters as JSON (at most {MAX_INFO_CHARS})")
    return text


def _require_admin(context: Context, action: str) -> None:
    # policy: DISC-001 - only an administrator (or the gateway applying its configuration) decides trust.
    if context.role < Role.ADMIN:
        raise Unauthorized(context, f"{action} device enrollments")


def _row_enrollment(row: sqlite3.Row, *, created: bool = False) -> Enrollment:
    return Enrollment(
        kind=row["kind"], identity=row["identity"], status=row["status"], address=row["address"],
        fingerprint=row["fingerprint"], offered_fingerprint=row["offered_fingerprint"],
        info=json.loads(row["info"]), first_seen=row["first_seen"], last_seen=row["last_seen"],
        decided_by=row["decided_by"], decided_at=row["decided_at"], reason=row["reason"], created=created,
    )


def _select(conn: sqlite3.Connection, kind: str, identity: str) -> sqlite3.Row | None:
    row: sqlite3.Row | None = conn.execute(
        "SELECT * FROM enrollments WHERE kind = ? AND identity = ?", (kind, identity)
    ).fetchone()
    return row


def _reread(conn: sqlite3.Connection, kind: str, identity: str, *, created: bool = False) -> Enrollment:
    """The entry as just written in this transaction."""
    row = _select(conn, kind, identity)
    if row is None:
        raise UnknownEnrollment(kind, identity)
    return _row_enrollment(row, created=created)


# -- the queue ------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Change:
    """What a transaction did, applied to the cache and the bus once it has committed."""

    key: tuple[str, str]
    enrollment: Enrollment | None  # None: the entry was removed
    events: builtins.list[tuple[str, dict[str, Any], Context]] = field(default_factory=builtins.list)


class EnrollmentQueue:
    """The persisted queue in ``storage``; decisions are recorded in ``audit`` and announced on ``bus``."""

    def __init__(self, storage: Storage, audit: AuditLog, bus: EventBus | None = None) -> None:
        self.storage = storage
        self.audit = audit
        self.bus = bus
        storage.migrate(NAMESPACE, MIGRATIONS)
        # (kind, identity) -> pinned fingerprint (None: trusted whatever it presents), approved entries only.
        self._trusted: dict[tuple[str, str], str | None] = {}
        self._data_version = 0
        self._changes = 0  # local changes applied; a refresh read before one of them is discarded
        self._next_check = time.monotonic() + REFRESH_INTERVAL_S
        self._refresh_task: asyncio.Task[None] | None = None
        self.refresh_sync()

    # -- the hot path ---------------------------------------------------------------------------------------

    def is_trusted(self, kind: str, identity: str, fingerprint: str | None = None) -> bool:
        """Approved, and presenting the pinned fingerprint when one is pinned. Never raises, never queries."""
        self._maybe_refresh()
        key = (kind, identity)
        if key not in self._trusted:
            return False
        pinned = self._trusted[key]
        if pinned is None:
            return True
        try:
            return normalise_fingerprint(fingerprint) == pinned
        except ValueError:
            return False

    # -- requests from devices ------------------------------------------------------------------------------

    async def request(
        self, kind: str, identity: str, *, address: str | None = None, fingerprint: str | None = None,
        info: Mapping[str, Any] | None = None, context: Context | None = None, now: float | None = None,
    ) -> Enrollment:
        """A device asks to be trusted: queue it as pending, or note that a known one was seen again.

        Never changes a decision. ``context`` names the channel the request came on (for the audit log of a
        fingerprint change). Raises ``ValueError`` for a malformed identity and ``EnrollmentQueueFull``.
        """
        work = self._request_work(kind, identity, address, fingerprint, info, context, now)
        return self._applied(await self.storage.run(work))

    def request_sync(
        self, kind: str, identity: str, *, address: str | None = None, fingerprint: str | None = None,
        info: Mapping[str, Any] | None = None, context: Context | None = None, now: float | None = None,
    ) -> Enrollment:
        work = self._request_work(kind, identity, address, fingerprint, info, context, now)
        return self._applied(self.storage.run_sync(work))

    def _request_work(
        self, kind: str, identity: str, address: str | None, fingerprint: str | None,
        info: Mapping[str, Any] | None, context: Context | None, now: float | None,
    ) -> Callable[[sqlite3.Connection], _Change]:
        check_kind(kind)
        check_identity(identity)
        address = _check_text("address", address, MAX_ADDRESS_CHARS)
        presented = normalise_fingerprint(fingerprint)
        info_text = _info_json(info)
        when = time.time() if now is None else now
        origin = context or SYSTEM

        def work(conn: sqlite3.Connection) -> _Change:
            key = (kind, identity)
            row = _select(conn, kind, identity)
            if row is None:
                pending = conn.execute("SELECT COUNT(*) FROM enrollments WHERE status = ?", (PENDING,)).fetchone()
                if pending[0] >= MAX_PENDING:
                    raise EnrollmentQueueFull(
                        f"{pending[0]} devices already wait for a decision; {kind} device {identity!r} refused"
                    )
                conn.execute(
                    "INSERT INTO enrollments (kind, identity, status, address, fingerprint, info, first_seen,"
                    " last_seen) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (kind, identity, PENDING, address, presented, info_text or "{}", when, when),
                )
                entry = _reread(conn, kind, identity, created=True)
                data = {"kind": kind, "identity": identity, "address": address, "fingerprint": presented}
                return _Change(key, entry, [(EVENT_REQUESTED, data, origin)])

            events: builtins.list[tuple[str, dict[str, Any], Context]] = []
            pinned, offered = row["fingerprint"], row["offered_fingerprint"]
            if presented is not None:
                if row["status"] == PENDING:
                    # Nothing is trusted yet: the queue shows what the device presents now.
                    pinned = presented
                elif row["status"] == APPROVED and pinned is not None and presented != pinned:
                    # policy: EEBUS-001, OCPP-004 - never adopt a new key on an approved entry by ourselves.
                    if presented != offered:
                        data = {
                            "type": "fingerprint_changed", "kind": kind, "identity": identity,
                            "address": address, "pinned_fingerprint": pinned, "offered_fingerprint": presented,
                        }
                        self.audit.append_in(conn, EVENT_SECURITY, data, origin)
                        events.append((EVENT_FINGERPRINT_CHANGED, data, origin))
                        _LOGGER.warning("%s device %r presented fingerprint %s, approved was %s: not trusted",
                                        kind, identity, presented, pinned)
                    offered = presented
            conn.execute(
                "UPDATE enrollments SET last_seen = MAX(last_seen, ?), address = COALESCE(?, address),"
                " info = COALESCE(?, info), fingerprint = ?, offered_fingerprint = ?"
                " WHERE kind = ? AND identity = ?",
                (when, address, info_text, pinned, offered, kind, identity),
            )
            return _Change(key, _reread(conn, kind, identity), events)

        return work

    # -- decisions --------------------------------------------------------------------------------------------

    async def approve(
        self, kind: str, identity: str, context: Context, fingerprint: str | None = None
    ) -> Enrollment:
        """Trust the device, pinning ``fingerprint``, else the offered one (a reviewed change), else the
        one it presented while pending. Raises ``UnknownEnrollment`` and ``Unauthorized``."""
        return self._applied(await self.storage.run(self._decide_work(kind, identity, APPROVED, context,
                                                                      fingerprint, None)))

    def approve_sync(
        self, kind: str, identity: str, context: Context, fingerprint: str | None = None
    ) -> Enrollment:
        return self._applied(self.storage.run_sync(self._decide_work(kind, identity, APPROVED, context,
                                                                     fingerprint, None)))

    async def reject(
        self, kind: str, identity: str, context: Context, reason: str | None = None
    ) -> Enrollment:
        """Refuse the device for good: later requests keep it rejected until it is removed or approved."""
        return self._applied(await self.storage.run(self._decide_work(kind, identity, REJECTED, context,
                                                                      None, reason)))

    def reject_sync(
        self, kind: str, identity: str, context: Context, reason: str | None = None
    ) -> Enrollment:
        return self._applied(self.storage.run_sync(self._decide_work(kind, identity, REJECTED, context,
                                                                     None, reason)))

    def _decide_work(
        self, kind: str, identity: str, status: str, context: Context, fingerprint: str | None,
        reason: str | None,
    ) -> Callable[[sqlite3.Connection], _Change]:
        _require_admin(context, "approve" if status == APPROVED else "reject")
        given = normalise_fingerprint(fingerprint)
        reason = _check_text("reason", reason, MAX_INFO_CHARS)

        def work(conn: sqlite3.Connection) -> _Change:
            row = _select(conn, kind, identity)
            if row is None:
                raise UnknownEnrollment(kind, identity)
            pinned = row["fingerprint"]
            if status == APPROVED:
                pinned = given or row["offered_fingerprint"] or pinned
            return self._decided(conn, row, status, pinned, reason, context)

        return work

    def _decided(
        self, conn: sqlite3.Connection, row: sqlite3.Row, status: str, pinned: str | None, reason: str | None,
        context: Context, *, new: bool = False,
    ) -> _Change:
        kind, identity = row["kind"], row["identity"]
        conn.execute(
            "UPDATE enrollments SET status = ?, fingerprint = ?, offered_fingerprint = NULL, decided_by = ?,"
            " decided_at = ?, reason = ? WHERE kind = ? AND identity = ?",
            (status, pinned, context.describe(), time.time(), reason, kind, identity),
        )
        data: dict[str, Any] = {
            "action": status, "kind": kind, "identity": identity,
            "previous_status": None if new else row["status"], "fingerprint": pinned, "reason": reason,
        }
        if pinned != row["fingerprint"] and row["status"] == APPROVED:
            data["previous_fingerprint"] = row["fingerprint"]
        self.audit.append_in(conn, EVENT_ENROLLMENT, data, context)
        entry = _reread(conn, kind, identity)
        return _Change((kind, identity), entry, [(EVENT_DECIDED, _decided_event(data), context)])

    async def remove(self, kind: str, identity: str, context: Context) -> None:
        """Forget the device; if it asks again it starts over as pending. Raises ``UnknownEnrollment``."""
        self._apply(await self.storage.run(self._remove_work(kind, identity, context)))

    def remove_sync(self, kind: str, identity: str, context: Context) -> None:
        self._apply(self.storage.run_sync(self._remove_work(kind, identity, context)))

    def _remove_work(self, kind: str, identity: str, context: Context) -> Callable[[sqlite3.Connection], _Change]:
        _require_admin(context, "remove")

        def work(conn: sqlite3.Connection) -> _Change:
            row = _select(conn, kind, identity)
            if row is None:
                raise UnknownEnrollment(kind, identity)
            conn.execute("DELETE FROM enrollments WHERE kind = ? AND identity = ?", (kind, identity))
            data: dict[str, Any] = {
                "action": "removed", "kind": kind, "identity": identity, "previous_status": row["status"],
                "fingerprint": row["fingerprint"],
            }
            self.audit.append_in(conn, EVENT_ENROLLMENT, data, context)
            return _Change((kind, identity), None, [(EVENT_DECIDED, _decided_event(data), context)])

        return work

    async def add_approved(
        self, kind: str, identity: str, context: Context, *, address: str | None = None,
        fingerprint: str | None = None, info: Mapping[str, Any] | None = None, reason: str | None = None,
    ) -> Enrollment:
        """Pre-approve a device named in the configuration; applied at every start, so it is a no-op (and
        not audited) when the entry is already approved with that fingerprint. Keeps an existing pin when
        ``fingerprint`` is None."""
        return self._applied(await self.storage.run(
            self._add_work(kind, identity, context, address, fingerprint, info, reason)
        ))

    def add_approved_sync(
        self, kind: str, identity: str, context: Context, *, address: str | None = None,
        fingerprint: str | None = None, info: Mapping[str, Any] | None = None, reason: str | None = None,
    ) -> Enrollment:
        return self._applied(self.storage.run_sync(
            self._add_work(kind, identity, context, address, fingerprint, info, reason)
        ))

    def _add_work(
        self, kind: str, identity: str, context: Context, address: str | None, fingerprint: str | None,
        info: Mapping[str, Any] | None, reason: str | None,
    ) -> Callable[[sqlite3.Connection], _Change]:
        _require_admin(context, "pre-approve")
        check_kind(kind)
        check_identity(identity)
        address = _check_text("address", address, MAX_ADDRESS_CHARS)
        given = normalise_fingerprint(fingerprint)
        info_text = _info_json(info)
        reason = _check_text("reason", reason, MAX_INFO_CHARS)

        def work(conn: sqlite3.Connection) -> _Change:
            row = _select(conn, kind, identity)
            new = row is None
            if row is None:
                now = time.time()
                conn.execute(
                    "INSERT INTO enrollments (kind, identity, status, address, fingerprint, info, first_seen,"
                    " last_seen) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (kind, identity, PENDING, address, given, info_text or "{}", now, now),
                )
                row = _select(conn, kind, identity)
                assert row is not None
            elif row["status"] == APPROVED and (given is None or given == row["fingerprint"]):
                return _Change((kind, identity), _row_enrollment(row))
            return self._decided(conn, row, APPROVED, given or row["fingerprint"], reason, context, new=new)

        return work

    # -- reading ----------------------------------------------------------------------------------------------

    async def get(self, kind: str, identity: str) -> Enrollment | None:
        row = await self.storage.run(lambda conn: _select(conn, kind, identity))
        return _row_enrollment(row) if row else None

    def get_sync(self, kind: str, identity: str) -> Enrollment | None:
        row = self.storage.run_sync(lambda conn: _select(conn, kind, identity))
        return _row_enrollment(row) if row else None

    async def status(self, kind: str, identity: str) -> str | None:
        """PENDING, APPROVED, REJECTED, or None for a device never seen."""
        entry = await self.get(kind, identity)
        return entry.status if entry else None

    def status_sync(self, kind: str, identity: str) -> str | None:
        entry = self.get_sync(kind, identity)
        return entry.status if entry else None

    async def list(self, status: str | None = None, kind: str | None = None) -> builtins.list[Enrollment]:
        """Entries ordered by kind and identity, optionally only one status and/or kind."""
        return await self.storage.run(self._list_work(status, kind))

    def list_sync(self, status: str | None = None, kind: str | None = None) -> builtins.list[Enrollment]:
        return self.storage.run_sync(self._list_work(status, kind))

    @staticmethod
    def _list_work(
        status: str | None, kind: str | None
    ) -> Callable[[sqlite3.Connection], builtins.list[Enrollment]]:
        if status is not None and status not in STATUSES:
            raise ValueError(f"unknown enrollment status {status!r} (one of: {', '.join(STATUSES)})")

        def work(conn: sqlite3.Connection) -> builtins.list[Enrollment]:
            rows = conn.execute(
                "SELECT * FROM enrollments WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR kind = ?2)"
                " ORDER BY kind, identity",
                (status, kind),
            ).fetchall()
            return [_row_enrollment(row) for row in rows]

        return work

    # -- the trusted set ----------------------------------------------------------------------------------

    def refresh_sync(self) -> None:
        """Re-read the trusted set from the database (start-up, or after another process changed it)."""
        self._install(*self.storage.run_sync(_load_trusted))

    async def refresh(self) -> None:
        changes = self._changes
        self._install(*await self.storage.run(_load_trusted), changes)

    def _install(
        self, trusted: dict[tuple[str, str], str | None], version: int, changes: int | None = None
    ) -> None:
        if changes is not None and changes != self._changes:
            return  # a local change landed after this snapshot was read; the next check reads again
        self._trusted = trusted
        self._data_version = version

    def _maybe_refresh(self) -> None:
        now = time.monotonic()
        if now < self._next_check or self._refresh_task is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # the CLI: no loop and no long-lived cache to keep fresh
        self._next_check = now + REFRESH_INTERVAL_S
        self._refresh_task = loop.create_task(self._refresh_if_changed(), name="enrollment-refresh")

    async def _refresh_if_changed(self) -> None:
        changes = self._changes
        try:
            version = await self.storage.run(_data_version)
            if version != self._data_version:
                self._install(*await self.storage.run(_load_trusted), changes)
        except Exception:  # storage closing at shutdown: keep the set we have
            _LOGGER.debug("enrollment refresh failed", exc_info=True)
        finally:
            self._refresh_task = None

    def _applied(self, change: _Change) -> Enrollment:
        self._apply(change)
        if change.enrollment is None:
            raise UnknownEnrollment(*change.key)
        return change.enrollment

    def _apply(self, change: _Change) -> None:
        entry = change.enrollment
        self._changes += 1
        if entry is not None and entry.status == APPROVED:
            self._trusted[change.key] = entry.fingerprint
        else:
            self._trusted.pop(change.key, None)
        if self.bus is not None:
            for event_type, data, context in change.events:
                self.bus.fire(event_type, data, context=context)


def _decided_event(audit_data: dict[str, Any]) -> dict[str, Any]:
    data = dict(audit_data)
    data["status"] = data.pop("action")
    return data


def _data_version(conn: sqlite3.Connection) -> int:
    # Changes only when another connection (another process) committed: our own writes update the set.
    return int(conn.execute("PRAGMA data_version").fetchone()[0])


def _load_trusted(conn: sqlite3.Connection) -> tuple[dict[tuple[str, str], str | None], int]:
    rows = conn.execute("SELECT kind, identity, fingerprint FROM enrollments WHERE status = ?", (APPROVED,))
    trusted = {(row["kind"], row["identity"]): row["fingerprint"] for row in rows}
    return trusted, _data_version(conn)
