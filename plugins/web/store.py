"""Server-side sessions and API access tokens, persisted in the gateway's SQLite database (namespace "web").

Contract:
- Only ``auth.digest`` of a session id or token is stored; the secret itself is returned once, when it is
  made, and never again (WEB-003; tokens "shown once").
- The tables are mirrored in memory and every change is written through, so checking a request is a dict
  lookup, not a database round trip. The web plugin is the only writer of these tables.
- ``last_seen`` / ``last_used`` move in memory on every request and reach the database at most every
  ``SESSION_PERSIST_INTERVAL_S`` / ``TOKEN_PERSIST_INTERVAL_S``: after a restart a session may end up to that
  much early, never late.
- Expired sessions are dropped when met and swept at start and at each login.
"""

from __future__ import annotations

import builtins
import sqlite3
from collections.abc import Sequence
from typing import Final

from gateway.context import Role
from gateway.security.users import ROLES
from gateway.storage import Storage

from .auth import SessionRecord, TokenRecord, digest, new_api_token, new_session_secret, scope_role
from .const import (
    DOMAIN,
    MAX_API_TOKENS,
    MAX_SESSIONS_PER_USER,
    MAX_TOKEN_NAME_CHARS,
    SESSION_PERSIST_INTERVAL_S,
    TOKEN_PERSIST_INTERVAL_S,
)

MIGRATIONS: Final[Sequence[str]] = [
    """
    CREATE TABLE web_sessions (
        id_hash TEXT PRIMARY KEY,
        username TEXT NOT NULL COLLATE NOCASE,
        role TEXT NOT NULL,
        created REAL NOT NULL,
        last_seen REAL NOT NULL,
        address TEXT,
        must_change INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX web_sessions_user ON web_sessions (username);
    CREATE TABLE web_api_tokens (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL,
        token_hash TEXT NOT NULL UNIQUE,
        scope TEXT NOT NULL CHECK (scope IN ('read', 'operate', 'admin')),
        created_by TEXT NOT NULL,
        created REAL NOT NULL,
        last_used REAL,
        revoked REAL
    );
    """,
]


class TokenError(ValueError):
    """An API token cannot be created or revoked; the message says why."""


def _role_name(role: Role) -> str:
    return role.name.lower()


class WebStore:
    """Sessions and API tokens; ``await load()`` once before use."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.sessions: dict[str, SessionRecord] = {}
        self.tokens: dict[str, TokenRecord] = {}  # by token_hash, revoked ones included

    async def load(self, now: float) -> None:
        await self.storage.async_migrate(DOMAIN, MIGRATIONS)

        def read(conn: sqlite3.Connection) -> tuple[builtins.list[sqlite3.Row], builtins.list[sqlite3.Row]]:
            return (conn.execute("SELECT * FROM web_sessions").fetchall(),
                    conn.execute("SELECT * FROM web_api_tokens ORDER BY id").fetchall())

        sessions, tokens = await self.storage.run(read)
        for row in sessions:
            role = ROLES.get(row["role"])
            if role is None:
                continue
            record = SessionRecord(id_hash=row["id_hash"], username=row["username"], role=role,
                                   created=row["created"], last_seen=row["last_seen"], address=row["address"],
                                   must_change=bool(row["must_change"]), persisted_seen=row["last_seen"])
            self.sessions[record.id_hash] = record
        for row in tokens:
            token = TokenRecord(id=row["id"], name=row["name"], token_hash=row["token_hash"], scope=row["scope"],
                                created_by=row["created_by"], created=row["created"], last_used=row["last_used"],
                                revoked=row["revoked"], persisted_used=row["last_used"])
            self.tokens[token.token_hash] = token
        await self.sweep(now)

    # -- sessions ---------------------------------------------------------------------------------------

    async def create_session(self, *, username: str, role: Role, now: float, address: str | None,
                             must_change: bool) -> tuple[str, SessionRecord]:
        """A new session; returns the cookie's secret (shown to this browser only) and the record."""
        secret = new_session_secret()
        record = SessionRecord(id_hash=digest(secret), username=username, role=role, created=now, last_seen=now,
                               address=address, must_change=must_change, persisted_seen=now, checked=now)
        mine = sorted((s for s in self.sessions.values() if s.username.lower() == username.lower()),
                      key=lambda s: s.last_seen)
        dropped = [s.id_hash for s in mine[: max(0, len(mine) - MAX_SESSIONS_PER_USER + 1)]]

        def insert(conn: sqlite3.Connection) -> None:
            conn.executemany("DELETE FROM web_sessions WHERE id_hash = ?", [(h,) for h in dropped])
            conn.execute(
                "INSERT INTO web_sessions (id_hash, username, role, created, last_seen, address, must_change)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (record.id_hash, username, _role_name(role), now, now, address, int(must_change)),
            )

        await self.storage.run(insert)
        for id_hash in dropped:
            self.sessions.pop(id_hash, None)
        self.sessions[record.id_hash] = record
        return secret, record

    def find_session(self, secret: str | None) -> SessionRecord | None:
        if not secret:
            return None
        return self.sessions.get(digest(secret))

    async def touch(self, record: SessionRecord, now: float) -> None:
        record.last_seen = now
        if now - record.persisted_seen >= SESSION_PERSIST_INTERVAL_S:
            record.persisted_seen = now
            await self.storage.run(lambda conn: conn.execute(
                "UPDATE web_sessions SET last_seen = ? WHERE id_hash = ?", (now, record.id_hash)))

    async def end_session(self, record: SessionRecord) -> None:
        self.sessions.pop(record.id_hash, None)
        await self.storage.run(lambda conn: conn.execute(
            "DELETE FROM web_sessions WHERE id_hash = ?", (record.id_hash,)))

    async def end_sessions_of(self, username: str) -> int:
        gone = [s for s in self.sessions.values() if s.username.lower() == username.lower()]
        for record in gone:
            self.sessions.pop(record.id_hash, None)
        await self.storage.run(lambda conn: conn.execute(
            "DELETE FROM web_sessions WHERE username = ?", (username,)))
        return len(gone)

    async def sweep(self, now: float) -> list[SessionRecord]:
        """Drop expired sessions (memory and database); returns them (for the audit log)."""
        expired = [s for s in self.sessions.values() if s.expired(now)]
        for record in expired:
            self.sessions.pop(record.id_hash, None)
        if expired:
            await self.storage.run(lambda conn: conn.executemany(
                "DELETE FROM web_sessions WHERE id_hash = ?", [(s.id_hash,) for s in expired]))
        return expired

    # -- API tokens --------------------------------------------------------------------------------------

    def active_tokens(self) -> list[TokenRecord]:
        return sorted((t for t in self.tokens.values() if t.revoked is None), key=lambda t: t.id)

    def all_tokens(self) -> list[TokenRecord]:
        return sorted(self.tokens.values(), key=lambda t: t.id)

    async def create_token(self, *, name: str, scope: str, created_by: str, now: float) -> tuple[str, TokenRecord]:
        """A new token; returns the token (shown once, never stored) and its record."""
        name = name.strip()
        if not name or len(name) > MAX_TOKEN_NAME_CHARS or not name.isprintable():
            raise TokenError(f"a token name is 1-{MAX_TOKEN_NAME_CHARS} printable characters")
        scope_role(scope)
        if len(self.active_tokens()) >= MAX_API_TOKENS:
            raise TokenError(f"{MAX_API_TOKENS} tokens are active: revoke unused ones first")
        secret = new_api_token()
        token_hash = digest(secret)

        def insert(conn: sqlite3.Connection) -> int:
            cursor = conn.execute(
                "INSERT INTO web_api_tokens (name, token_hash, scope, created_by, created) VALUES (?, ?, ?, ?, ?)",
                (name, token_hash, scope, created_by, now),
            )
            return int(cursor.lastrowid or 0)

        token_id = await self.storage.run(insert)
        record = TokenRecord(id=token_id, name=name, token_hash=token_hash, scope=scope, created_by=created_by,
                             created=now, checked=now)
        self.tokens[token_hash] = record
        return secret, record

    def find_token(self, secret: str | None) -> TokenRecord | None:
        if not secret:
            return None
        record = self.tokens.get(digest(secret))
        if record is None or record.revoked is not None:
            return None
        return record

    def token_by_id(self, token_id: int) -> TokenRecord | None:
        return next((t for t in self.tokens.values() if t.id == token_id), None)

    async def revoke_token(self, record: TokenRecord, now: float) -> bool:
        if record.revoked is not None:
            return False
        record.revoked = now
        await self.storage.run(lambda conn: conn.execute(
            "UPDATE web_api_tokens SET revoked = ? WHERE id = ?", (now, record.id)))
        return True

    async def revoke_tokens_of(self, username: str, now: float) -> list[TokenRecord]:
        mine = [t for t in self.active_tokens() if t.created_by.lower() == username.lower()]
        for record in mine:
            await self.revoke_token(record, now)
        return mine

    async def used(self, record: TokenRecord, now: float) -> None:
        record.last_used = now
        if record.persisted_used is None or now - record.persisted_used >= TOKEN_PERSIST_INTERVAL_S:
            record.persisted_used = now
            await self.storage.run(lambda conn: conn.execute(
                "UPDATE web_api_tokens SET last_used = ? WHERE id = ?", (now, record.id)))
