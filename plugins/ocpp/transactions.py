"""Charging sessions and station records in SQLite (migration namespace ``ocpp``).

Contract:
- Every write is one storage transaction committed before the station gets its answer: a
  StartTransaction answered with an id, or a TransactionEvent answered at all, is on disk (WAL), and survives
  a restart and a kill -9 of the gateway (tests/plugins/ocpp/test_persistence.py proves it).
- Idempotent, because stations resend their queued transaction messages after a reconnect (ocpp.md §2.3):
  1.6 StartTransaction with the same connector, timestamp and meterStart returns the same transaction id;
  a StopTransaction for a completed transaction changes nothing; 2.0.1 events are keyed by
  (station, transactionId) and an Updated with an older seqNo does not move the meter back.
- A StopTransaction for a transaction we do not know (another station's, or lost with a factory reset) is
  recorded as an ``orphan`` session and answered; it never touches another station's record.
- The id token is stored encrypted (vault purpose ``ocpp.transaction.id_token``) with the blind index of the
  id-token list, so "every session of this badge" is a lookup without decrypting anything (DATA-001).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from gateway.security.idtokens import PURPOSE as TOKEN_INDEX_PURPOSE
from gateway.security.idtokens import normalize as normalize_token
from gateway.security.vault import Vault
from gateway.storage import Storage
from plugins.ocpp.const import DOMAIN, MAX_REASON_CHARS, VERSION_16, VERSION_201

TOKEN_AAD: Final = "ocpp.transaction.id_token"  # noqa: S105  # a vault purpose, not a secret
MAX_TIMESTAMP_CHARS: Final = 40
ACTIVE: Final = "active"
COMPLETED: Final = "completed"
ORPHAN: Final = "orphan"  # a stop (or end) for a start we never saw

MIGRATIONS: Final[Sequence[str]] = [
    """
    CREATE TABLE ocpp_transactions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        station TEXT NOT NULL,
        version TEXT NOT NULL,
        tx_key TEXT,
        start_key TEXT,
        connector INTEGER,
        evse INTEGER,
        id_token TEXT,
        id_token_index TEXT,
        auth_status TEXT,
        meter_start_wh REAL,
        meter_last_wh REAL,
        meter_stop_wh REAL,
        energy_wh REAL,
        started_at TEXT,
        stopped_at TEXT,
        stop_reason TEXT,
        state TEXT NOT NULL,
        seq_no INTEGER,
        created REAL NOT NULL,
        updated REAL NOT NULL
    );
    CREATE UNIQUE INDEX ocpp_transactions_key ON ocpp_transactions (station, tx_key) WHERE tx_key IS NOT NULL;
    CREATE UNIQUE INDEX ocpp_transactions_start ON ocpp_transactions (station, start_key)
        WHERE start_key IS NOT NULL;
    CREATE INDEX ocpp_transactions_state ON ocpp_transactions (station, state);
    CREATE INDEX ocpp_transactions_token ON ocpp_transactions (id_token_index);
    CREATE TABLE ocpp_stations (
        identity TEXT PRIMARY KEY,
        vendor TEXT,
        model TEXT,
        serial TEXT,
        firmware TEXT,
        version TEXT,
        boot_status TEXT,
        last_boot REAL,
        last_seen REAL,
        configured_at REAL NOT NULL
    );
    """,
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Transaction:
    id: int  # our row id; the 1.6 transactionId we handed out
    station: str
    version: str
    tx_key: str | None  # 2.0.1 transactionId
    connector: int | None
    evse: int | None
    meter_start_wh: float | None
    meter_last_wh: float | None
    meter_stop_wh: float | None
    energy_wh: float | None
    started_at: str | None
    stopped_at: str | None
    stop_reason: str | None
    state: str
    auth_status: str | None
    seq_no: int | None
    has_token: bool

    @property
    def key(self) -> str:
        """The id the station uses for it: 1.6 our integer, 2.0.1 its string."""
        return self.tx_key if self.version == VERSION_201 and self.tx_key else str(self.id)

    def session_energy_wh(self) -> float | None:
        if self.energy_wh is not None:
            return self.energy_wh
        if self.meter_start_wh is not None and self.meter_last_wh is not None:
            return max(0.0, self.meter_last_wh - self.meter_start_wh)
        return None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "station": self.station, "version": self.version, "transaction": self.key,
            "connector": self.connector, "evse": self.evse, "meter_start_wh": self.meter_start_wh,
            "meter_stop_wh": self.meter_stop_wh, "energy_wh": self.energy_wh, "started_at": self.started_at,
            "stopped_at": self.stopped_at, "stop_reason": self.stop_reason, "state": self.state,
            "auth_status": self.auth_status,
        }


def _row(row: sqlite3.Row) -> Transaction:
    return Transaction(
        id=row["id"], station=row["station"], version=row["version"], tx_key=row["tx_key"],
        connector=row["connector"], evse=row["evse"], meter_start_wh=row["meter_start_wh"],
        meter_last_wh=row["meter_last_wh"], meter_stop_wh=row["meter_stop_wh"], energy_wh=row["energy_wh"],
        started_at=row["started_at"], stopped_at=row["stopped_at"], stop_reason=row["stop_reason"],
        state=row["state"], auth_status=row["auth_status"], seq_no=row["seq_no"],
        has_token=row["id_token"] is not None,
    )


def _energy(start: float | None, stop: float | None) -> float | None:
    # A meter that went backwards (replaced meter, firmware bug) gives no energy rather than a negative one.
    if start is None or stop is None or stop < start:
        return None
    return stop - start


def _text(value: Any, limit: int = MAX_TIMESTAMP_CHARS) -> str | None:
    return None if value is None else str(value)[:limit]


class TransactionStore:
    def __init__(self, storage: Storage, vault: Vault) -> None:
        self.storage = storage
        self.vault = vault

    async def migrate(self) -> None:
        await self.storage.async_migrate(DOMAIN, MIGRATIONS)

    def _token(self, token: str | None) -> tuple[str | None, str | None]:
        if not token:
            return None, None
        value = normalize_token(token)
        return (self.vault.encrypt(value, aad=TOKEN_AAD),
                self.vault.blind_index(value, purpose=TOKEN_INDEX_PURPOSE))

    def id_token(self, transaction_id: int) -> str | None:
        """The decrypted id token of a session (for an administrator's export; never logged)."""
        rows = self.storage.execute_sync("SELECT id_token FROM ocpp_transactions WHERE id = ?", (transaction_id,))
        if not rows or rows[0]["id_token"] is None:
            return None
        return self.vault.decrypt_str(rows[0]["id_token"], aad=TOKEN_AAD)

    # -- 1.6 -----------------------------------------------------------------------------------------------

    async def start_16(self, *, station: str, connector: int, id_token: str, meter_start_wh: float,
                       timestamp: str, auth_status: str) -> tuple[Transaction, bool]:
        """The transaction for a StartTransaction; ``(tx, False)`` when it is a resend of one we recorded."""
        start_key = f"{connector}|{timestamp}|{meter_start_wh}"
        sealed, index = self._token(id_token)

        def run(conn: sqlite3.Connection) -> tuple[Transaction, bool]:
            found = conn.execute("SELECT * FROM ocpp_transactions WHERE station = ? AND start_key = ?",
                                 (station, start_key)).fetchone()
            if found is not None:
                return _row(found), False
            now = time.time()
            cursor = conn.execute(
                "INSERT INTO ocpp_transactions (station, version, start_key, connector, id_token, id_token_index,"
                " auth_status, meter_start_wh, meter_last_wh, started_at, state, created, updated)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (station, VERSION_16, start_key, connector, sealed, index, auth_status, meter_start_wh,
                 meter_start_wh, _text(timestamp), ACTIVE, now, now))
            row = conn.execute("SELECT * FROM ocpp_transactions WHERE id = ?", (cursor.lastrowid,)).fetchone()
            return _row(row), True

        return await self.storage.run(run)

    async def stop_16(self, *, station: str, transaction_id: int, meter_stop_wh: float, timestamp: str,
                      reason: str | None, id_token: str | None) -> tuple[Transaction, str]:
        """Complete a 1.6 transaction. The outcome: ``stopped``, ``repeat`` (a resend: nothing changed) or
        ``orphan`` (unknown here: recorded as an orphan)."""
        sealed, index = self._token(id_token)
        reason = _text(reason, MAX_REASON_CHARS) or "Local"  # 1.6 §6.48: absent reason means Local

        def run(conn: sqlite3.Connection) -> tuple[Transaction, str]:
            now = time.time()
            found = conn.execute(
                "SELECT * FROM ocpp_transactions WHERE id = ? AND station = ? AND version = ? AND tx_key IS NULL",
                (transaction_id, station, VERSION_16)).fetchone()
            if found is not None:
                outcome = "repeat"
                if found["state"] == ACTIVE:
                    outcome = "stopped"
                    conn.execute(
                        "UPDATE ocpp_transactions SET meter_stop_wh = ?, meter_last_wh = ?, energy_wh = ?,"
                        " stopped_at = ?, stop_reason = ?, state = ?, updated = ? WHERE id = ?",
                        (meter_stop_wh, meter_stop_wh, _energy(found["meter_start_wh"], meter_stop_wh),
                         _text(timestamp), reason, COMPLETED, now, found["id"]))
                row = conn.execute("SELECT * FROM ocpp_transactions WHERE id = ?", (found["id"],)).fetchone()
                return _row(row), outcome
            key = f"orphan:{transaction_id}"
            orphan = conn.execute("SELECT * FROM ocpp_transactions WHERE station = ? AND tx_key = ?",
                                  (station, key)).fetchone()
            if orphan is None:
                cursor = conn.execute(
                    "INSERT INTO ocpp_transactions (station, version, tx_key, id_token, id_token_index,"
                    " meter_stop_wh, meter_last_wh, stopped_at, stop_reason, state, created, updated)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (station, VERSION_16, key, sealed, index, meter_stop_wh, meter_stop_wh, _text(timestamp),
                     reason, ORPHAN, now, now))
                orphan = conn.execute("SELECT * FROM ocpp_transactions WHERE id = ?",
                                      (cursor.lastrowid,)).fetchone()
            return _row(orphan), ORPHAN

        return await self.storage.run(run)

    # -- 2.0.1 ---------------------------------------------------------------------------------------------

    async def event_201(self, *, station: str, event_type: str, tx_key: str, seq_no: int, timestamp: str,
                        evse: int | None, connector: int | None, id_token: str | None, energy_wh: float | None,
                        stopped_reason: str | None, auth_status: str | None) -> Transaction:
        """Apply one TransactionEvent (Started / Updated / Ended) and return the session after it."""
        sealed, index = self._token(id_token)

        def run(conn: sqlite3.Connection) -> Transaction:
            now = time.time()
            found = conn.execute("SELECT * FROM ocpp_transactions WHERE station = ? AND tx_key = ?",
                                 (station, tx_key)).fetchone()
            if found is None:
                # Started, or the first event we hear of a transaction whose Started was lost: record it as
                # active (Started/Updated) or as an orphan (Ended) so that nothing a station says is lost.
                state = ORPHAN if event_type == "Ended" else ACTIVE
                cursor = conn.execute(
                    "INSERT INTO ocpp_transactions (station, version, tx_key, connector, evse, id_token,"
                    " id_token_index, auth_status, meter_start_wh, meter_last_wh, started_at, state, seq_no,"
                    " created, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (station, VERSION_201, tx_key, connector, evse, sealed, index, auth_status,
                     energy_wh if event_type == "Started" else None, energy_wh,
                     _text(timestamp) if event_type == "Started" else None, state, seq_no, now, now))
                found = conn.execute("SELECT * FROM ocpp_transactions WHERE id = ?", (cursor.lastrowid,)).fetchone()
                if event_type != "Ended":
                    return _row(found)
            tx_id = found["id"]
            if sealed is not None and found["id_token"] is None:
                # 2.0.1: the token often arrives in an Updated event, after plug-in (E03).
                conn.execute("UPDATE ocpp_transactions SET id_token = ?, id_token_index = ?, auth_status = ?"
                             " WHERE id = ?", (sealed, index, auth_status, tx_id))
            newer = found["seq_no"] is None or seq_no >= found["seq_no"]
            if newer and energy_wh is not None:
                conn.execute("UPDATE ocpp_transactions SET meter_last_wh = ?, seq_no = ?, updated = ? WHERE id = ?",
                             (energy_wh, seq_no, now, tx_id))
                if found["meter_start_wh"] is None and event_type != "Ended" and found["state"] == ACTIVE:
                    conn.execute("UPDATE ocpp_transactions SET meter_start_wh = ? WHERE id = ?", (energy_wh, tx_id))
            if event_type == "Ended" and found["stopped_at"] is None:
                stop = energy_wh if energy_wh is not None else found["meter_last_wh"]
                state = COMPLETED if found["state"] == ACTIVE else found["state"]
                conn.execute(
                    "UPDATE ocpp_transactions SET meter_stop_wh = ?, energy_wh = ?, stopped_at = ?, stop_reason = ?,"
                    " state = ?, updated = ? WHERE id = ?",
                    (stop, _energy(found["meter_start_wh"], stop), _text(timestamp),
                     _text(stopped_reason, MAX_REASON_CHARS) or "Local", state, now, tx_id))
            row = conn.execute("SELECT * FROM ocpp_transactions WHERE id = ?", (tx_id,)).fetchone()
            return _row(row)

        return await self.storage.run(run)

    # -- both ----------------------------------------------------------------------------------------------

    async def meter(self, transaction_id: int, energy_wh: float) -> None:
        """The newest energy register reading of an active session (MeterValues with a transactionId)."""
        await self.storage.run(lambda conn: conn.execute(
            "UPDATE ocpp_transactions SET meter_last_wh = ?, updated = ? WHERE id = ? AND state = ?",
            (energy_wh, time.time(), transaction_id, ACTIVE)))

    async def active(self, station: str) -> list[Transaction]:
        rows = await self.storage.execute(
            "SELECT * FROM ocpp_transactions WHERE station = ? AND state = ? ORDER BY id", (station, ACTIVE))
        return [_row(r) for r in rows]

    async def get(self, transaction_id: int) -> Transaction | None:
        rows = await self.storage.execute("SELECT * FROM ocpp_transactions WHERE id = ?", (transaction_id,))
        return _row(rows[0]) if rows else None

    async def all(self, station: str | None = None, limit: int = 100) -> list[Transaction]:
        if station is None:
            rows = await self.storage.execute("SELECT * FROM ocpp_transactions ORDER BY id DESC LIMIT ?", (limit,))
        else:
            rows = await self.storage.execute(
                "SELECT * FROM ocpp_transactions WHERE station = ? ORDER BY id DESC LIMIT ?", (station, limit))
        return [_row(r) for r in rows]

    # -- stations ------------------------------------------------------------------------------------------

    async def configured(self, identities: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Make sure every configured station has a row; return what is known of each (boot info)."""
        def run(conn: sqlite3.Connection) -> dict[str, dict[str, Any]]:
            now = time.time()
            for identity in identities:
                conn.execute("INSERT OR IGNORE INTO ocpp_stations (identity, configured_at) VALUES (?, ?)",
                             (identity, now))
            return {r["identity"]: dict(r) for r in conn.execute("SELECT * FROM ocpp_stations")}

        return await self.storage.run(run)

    async def booted(self, identity: str, *, vendor: str, model: str, serial: str | None, firmware: str | None,
                     version: str, status: str) -> None:
        now = time.time()
        await self.storage.run(lambda conn: conn.execute(
            "INSERT INTO ocpp_stations (identity, vendor, model, serial, firmware, version, boot_status, last_boot,"
            " last_seen, configured_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT(identity) DO UPDATE SET vendor = excluded.vendor, model = excluded.model,"
            " serial = excluded.serial, firmware = excluded.firmware, version = excluded.version,"
            " boot_status = excluded.boot_status, last_boot = excluded.last_boot, last_seen = excluded.last_seen",
            (identity, vendor, model, serial, firmware, version, status, now, now, now)))

    async def seen(self, identity: str) -> None:
        now = time.time()
        await self.storage.run(lambda conn: conn.execute(
            "INSERT INTO ocpp_stations (identity, last_seen, configured_at) VALUES (?, ?, ?)"
            " ON CONFLICT(identity) DO UPDATE SET last_seen = excluded.last_seen", (identity, now, now)))
