"""Id tokens (RFID badges, key codes, ...) that may start charging: stored encrypted, checked by blind index.

Contract (policy: DATA-001, OCPP-005/006; protocol-free: OCPP, the web UI and any future charger plugin use it):
- A token's value is stored only encrypted (``vault.encrypt``, purpose ``idtokens.token``) next to a blind
  index (``vault.blind_index`` of the normalised value) that ``check`` looks it up by. Values are normalised
  by stripping blanks and upper-casing: OCPP id tokens are case-insensitive ``CiString``s (1.6 §7.26,
  2.0.1 IdTokenType), and badge readers disagree on hex case.
- ``check`` reads the database on every call (one indexed row): a revocation, even one made by
  ``ampgate token revoke`` in another process, refuses the token at once; nothing is cached.
- Statuses are protocol-free: ``accepted``, ``blocked`` (revoked), ``expired``, ``invalid`` (unknown).
- Every add, reactivation and revocation is audited with the token's id, label and kind, never its value.
- ``list`` gives no values, only a hint (the last two characters) for people to tell badges apart.
"""

from __future__ import annotations

import builtins
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from gateway.context import Context
from gateway.errors import GatewayError
from gateway.security.audit import AuditLog
from gateway.security.vault import Vault, VaultError
from gateway.storage import Storage

NAMESPACE: Final = "idtokens"
PURPOSE: Final = "idtokens.token"  # vault aad and blind-index purpose
MAX_TOKEN_CHARS: Final = 36  # OCPP 2.0.1 IdTokenType.idToken (CiString36); 1.6 idTag is 20
MAX_LABEL_CHARS: Final = 64
KINDS: Final = ("rfid", "key_code", "central", "emaid", "mac_address", "other")

EVENT_ADDED: Final = "idtoken.added"
EVENT_REVOKED: Final = "idtoken.revoked"

MIGRATIONS: Final[Sequence[str]] = [
    """
    CREATE TABLE id_tokens (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        token_index TEXT NOT NULL UNIQUE,
        token TEXT NOT NULL,
        label TEXT NOT NULL DEFAULT '',
        kind TEXT NOT NULL,
        created_at REAL NOT NULL,
        expires_at REAL,
        revoked_at REAL
    );
    """,
]


class TokenStatus(StrEnum):
    ACCEPTED = "accepted"
    BLOCKED = "blocked"  # revoked
    EXPIRED = "expired"
    INVALID = "invalid"  # not in the list


class IdTokenError(GatewayError):
    """A token cannot be added or changed (empty, too long, unknown kind, not found)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class IdToken:
    id: int
    label: str
    kind: str
    created_at: float
    expires_at: float | None
    revoked_at: float | None
    hint: str  # "…AB": the last two characters, enough to tell badges apart

    def status(self, now: float) -> TokenStatus:
        if self.revoked_at is not None:
            return TokenStatus.BLOCKED
        if self.expires_at is not None and self.expires_at <= now:
            return TokenStatus.EXPIRED
        return TokenStatus.ACCEPTED

    def as_dict(self, now: float | None = None) -> dict[str, Any]:
        return {
            "id": self.id, "label": self.label, "kind": self.kind, "created_at": self.created_at,
            "expires_at": self.expires_at, "revoked_at": self.revoked_at, "hint": self.hint,
            "status": self.status(time.time() if now is None else now).value,
        }


def normalize(token: str) -> str:
    return token.strip().upper()


class IdTokenStore:
    """The local list of id tokens in ``storage`` (creates its table on construction)."""

    def __init__(self, storage: Storage, vault: Vault, audit: AuditLog) -> None:
        self.storage = storage
        self.vault = vault
        self.audit = audit
        storage.migrate(NAMESPACE, MIGRATIONS)

    # -- helpers -----------------------------------------------------------------------------------------------

    def _index(self, token: str) -> str:
        return self.vault.blind_index(normalize(token), purpose=PURPOSE)

    @staticmethod
    def _validated(token: str) -> str:
        value = normalize(token)
        if not value:
            raise IdTokenError("an id token cannot be empty")
        if len(value) > MAX_TOKEN_CHARS:
            raise IdTokenError(f"an id token has at most {MAX_TOKEN_CHARS} characters")
        if not value.isprintable():
            raise IdTokenError("an id token must be printable text")
        return value

    def _row(self, row: sqlite3.Row) -> IdToken:
        try:
            value = self.vault.decrypt_str(row["token"], aad=PURPOSE)
            hint = "…" + value[-2:]
        except VaultError:
            hint = "?"  # a row sealed with another key: listed, not readable
        return IdToken(id=row["id"], label=row["label"], kind=row["kind"], created_at=row["created_at"],
                       expires_at=row["expires_at"], revoked_at=row["revoked_at"], hint=hint)

    # -- changes -----------------------------------------------------------------------------------------------

    def _add(self, conn: sqlite3.Connection, token: str, label: str, kind: str, expires_at: float | None,
             context: Context | None) -> IdToken:
        value = self._validated(token)
        if kind not in KINDS:
            raise IdTokenError(f"unknown token kind {kind!r}: use one of {', '.join(KINDS)}")
        label = label.strip()[:MAX_LABEL_CHARS]
        index = self.vault.blind_index(value, purpose=PURPOSE)
        now = time.time()
        existing = conn.execute("SELECT * FROM id_tokens WHERE token_index = ?", (index,)).fetchone()
        if existing is not None:
            if existing["revoked_at"] is None:
                raise IdTokenError(f"this token is already in the list (id {existing['id']})")
            # Adding a revoked token again reactivates it: one row per badge keeps its history together.
            conn.execute("UPDATE id_tokens SET revoked_at = NULL, label = ?, kind = ?, expires_at = ? WHERE id = ?",
                         (label or existing["label"], kind, expires_at, existing["id"]))
            token_id = int(existing["id"])
        else:
            sealed = self.vault.encrypt(value, aad=PURPOSE)
            cursor = conn.execute(
                "INSERT INTO id_tokens (token_index, token, label, kind, created_at, expires_at) "
                "VALUES (?, ?, ?, ?, ?, ?)", (index, sealed, label, kind, now, expires_at))
            token_id = int(cursor.lastrowid or 0)
        self.audit.append_in(conn, EVENT_ADDED, {"id": token_id, "label": label, "kind": kind,
                                                 "reactivated": existing is not None}, context)
        row = conn.execute("SELECT * FROM id_tokens WHERE id = ?", (token_id,)).fetchone()
        return self._row(row)

    def add_sync(self, token: str, *, label: str = "", kind: str = "rfid", expires_at: float | None = None,
                 context: Context | None = None) -> IdToken:
        return self.storage.run_sync(lambda conn: self._add(conn, token, label, kind, expires_at, context))

    async def add(self, token: str, *, label: str = "", kind: str = "rfid", expires_at: float | None = None,
                  context: Context | None = None) -> IdToken:
        return await self.storage.run(lambda conn: self._add(conn, token, label, kind, expires_at, context))

    def _revoke(self, conn: sqlite3.Connection, token: str | None, token_id: int | None,
                context: Context | None) -> bool:
        if token is not None:
            row = conn.execute("SELECT * FROM id_tokens WHERE token_index = ?", (self._index(token),)).fetchone()
        elif token_id is not None:
            row = conn.execute("SELECT * FROM id_tokens WHERE id = ?", (token_id,)).fetchone()
        else:
            raise IdTokenError("name the token or its id")
        if row is None:
            raise IdTokenError("no such token in the list")
        if row["revoked_at"] is not None:
            return False
        conn.execute("UPDATE id_tokens SET revoked_at = ? WHERE id = ?", (time.time(), row["id"]))
        self.audit.append_in(conn, EVENT_REVOKED, {"id": row["id"], "label": row["label"], "kind": row["kind"]},
                             context)
        return True

    def revoke_sync(self, token: str | None = None, *, token_id: int | None = None,
                    context: Context | None = None) -> bool:
        """Revoke by value or by id; False when it was already revoked."""
        return self.storage.run_sync(lambda conn: self._revoke(conn, token, token_id, context))

    async def revoke(self, token: str | None = None, *, token_id: int | None = None,
                     context: Context | None = None) -> bool:
        return await self.storage.run(lambda conn: self._revoke(conn, token, token_id, context))

    # -- reading -----------------------------------------------------------------------------------------------

    def _list(self, conn: sqlite3.Connection) -> builtins.list[IdToken]:
        return [self._row(r) for r in conn.execute("SELECT * FROM id_tokens ORDER BY id")]

    def list_sync(self) -> builtins.list[IdToken]:
        return self.storage.run_sync(self._list)

    async def list(self) -> builtins.list[IdToken]:
        return await self.storage.run(self._list)

    def _check(self, conn: sqlite3.Connection, index: str, now: float) -> tuple[TokenStatus, int | None]:
        row = conn.execute("SELECT id, expires_at, revoked_at FROM id_tokens WHERE token_index = ?",
                           (index,)).fetchone()
        if row is None:
            return TokenStatus.INVALID, None
        if row["revoked_at"] is not None:
            return TokenStatus.BLOCKED, row["id"]
        if row["expires_at"] is not None and row["expires_at"] <= now:
            return TokenStatus.EXPIRED, row["id"]
        return TokenStatus.ACCEPTED, row["id"]

    async def check(self, token: str, now: float | None = None) -> TokenStatus:
        """The token's status now; unknown, empty or over-long tokens are ``invalid``."""
        value = normalize(token)
        if not value or len(value) > MAX_TOKEN_CHARS:
            return TokenStatus.INVALID
        index = self.vault.blind_index(value, purpose=PURPOSE)
        moment = time.time() if now is None else now
        status, _ = await self.storage.run(lambda conn: self._check(conn, index, moment))
        return status

    def check_sync(self, token: str, now: float | None = None) -> TokenStatus:
        value = normalize(token)
        if not value or len(value) > MAX_TOKEN_CHARS:
            return TokenStatus.INVALID
        index = self.vault.blind_index(value, purpose=PURPOSE)
        moment = time.time() if now is None else now
        return self.storage.run_sync(lambda conn: self._check(conn, index, moment))[0]

    def index_of(self, token: str) -> str:
        """The blind index of ``token`` (for records that must find "every session of this badge")."""
        return self._index(token)
