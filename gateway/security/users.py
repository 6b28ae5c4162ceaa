"""Web UI and API accounts: scrypt-hashed passwords, roles, and the lockout rules of AUTH-005.

Contract:
- Passwords are stored only as scrypt hashes (DATA-001) and every new one passes ``check_password``
  (AUTH-002/AUTH-005), except the random one-time passwords this module generates itself, which always do.
- ``authenticate`` runs exactly one scrypt verification whatever the outcome (unknown users are checked
  against a dummy hash), so timing does not tell which user names exist. The scrypt work runs in the
  caller's thread, never on the storage thread, so a login does not stall other database work.
- Six failures in a row lock the account for 30 minutes; the lock ends by itself; a locked account fails
  even with the right password; a success resets the count. A password set by an administrator also
  unlocks.
- Every failure, lockout, addition, password change and deletion is written to the audit log in the same
  transaction as the change it records.
- The sync methods are for the CLI and start-up; ``async_*`` wrappers run them off the event loop.
"""

from __future__ import annotations

import asyncio
import builtins
import functools
import re
import sqlite3
import time
from dataclasses import dataclass
from typing import Any, TypeVar

from gateway.context import Context, Role
from gateway.errors import GatewayError
from gateway.security.audit import EVENT_LOCKOUT, EVENT_LOGIN_FAILED, EVENT_USER_CHANGED, AuditLog
from gateway.security.passwords import (
    check_password,
    generate_password,
    hash_password,
    needs_rehash,
    verify_password,
)
from gateway.storage import Storage

T = TypeVar("T")

NAMESPACE = "users"

# policy: AUTH-005, from the charging-station vendors' own account rules: six failed logins in a row lock the
# account for 30 minutes, and a web session idle for 30 minutes ends.
LOCKOUT_AFTER_FAILURES = 6
LOCKOUT_S = 1800
SESSION_IDLE_S = 1800

# Roles an account may have; SYSTEM belongs to the gateway itself and is never given to a person.
ROLES: dict[str, Role] = {"viewer": Role.VIEWER, "operator": Role.OPERATOR, "admin": Role.ADMIN}

# Letters, digits and ". _ @ -"; it must start with a letter or digit. Names are compared case-insensitively
# (COLLATE NOCASE), so "Admin" and "admin" are one account.
USERNAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
# Attempted user names are cut to this length in the audit log (a password typed into the name field should
# at least not land there whole).
AUDIT_NAME_CHARS = 64

REASON_OK = "ok"
REASON_BAD_CREDENTIALS = "bad_credentials"
REASON_LOCKED = "locked"

MIGRATIONS = [
    """
    CREATE TABLE users (
        username TEXT PRIMARY KEY COLLATE NOCASE,
        role TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'viewer')),
        password_hash TEXT NOT NULL,
        must_change INTEGER NOT NULL DEFAULT 0,
        failed_count INTEGER NOT NULL DEFAULT 0,
        locked_until REAL,
        created REAL NOT NULL,
        changed REAL NOT NULL
    )
    """,
]


class UserError(GatewayError):
    """A user operation cannot be done; the message says why."""


class UserExists(UserError):
    def __init__(self, username: str) -> None:
        super().__init__(f"user {username!r} already exists")
        self.username = username


class UnknownUser(UserError):
    def __init__(self, username: str) -> None:
        super().__init__(f"no user {username!r}")
        self.username = username


class WeakPassword(UserError):
    """The password fails the strength policy; ``problems`` holds each reason in words."""

    def __init__(self, problems: builtins.list[str]) -> None:
        super().__init__("password " + "; ".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True, kw_only=True)
class User:
    """An account as the UI shows it; the password hash never leaves this module."""

    username: str
    role: Role
    must_change: bool
    failed_count: int
    locked_until: float | None
    created: float
    changed: float

    def is_locked(self, now: float | None = None) -> bool:
        return self.locked_until is not None and (time.time() if now is None else now) < self.locked_until


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthResult:
    ok: bool
    username: str
    reason: str  # REASON_OK, REASON_BAD_CREDENTIALS (also for unknown users) or REASON_LOCKED
    role: Role | None = None
    must_change: bool = False  # AUTH-005: the UI allows nothing but a password change until it is done
    locked_until: float | None = None


def parse_role(role: Role | str) -> Role:
    if isinstance(role, Role):
        if role not in ROLES.values():
            raise UserError(f"role {role.name.lower()} cannot be given to a user")
        return role
    try:
        return ROLES[role.lower()]
    except KeyError:
        raise UserError(f"unknown role {role!r} (one of: {', '.join(ROLES)})") from None


def check_username(username: str) -> None:
    if not USERNAME_RE.fullmatch(username):
        raise UserError(
            f"invalid user name {username!r}: 1-64 letters, digits, '.', '_', '@' or '-', "
            "starting with a letter or digit"
        )


def _role_name(role: Role) -> str:
    return role.name.lower()


def _row_user(row: sqlite3.Row) -> User:
    return User(
        username=row["username"], role=ROLES[row["role"]], must_change=bool(row["must_change"]),
        failed_count=row["failed_count"], locked_until=row["locked_until"], created=row["created"],
        changed=row["changed"],
    )


class UserStore:
    """The accounts in ``storage``; changes are recorded in ``audit``."""

    def __init__(self, storage: Storage, audit: AuditLog) -> None:
        self.storage = storage
        self.audit = audit
        self._dummy_hash: str | None = None
        storage.migrate(NAMESPACE, MIGRATIONS)

    # -- reading ------------------------------------------------------------------------------------------

    def get(self, username: str) -> User | None:
        row = self.storage.run_sync(
            lambda conn: conn.execute("SELECT * FROM users WHERE username = ?", (username,)).fetchone()
        )
        return _row_user(row) if row else None

    def list(self) -> builtins.list[User]:
        rows = self.storage.run_sync(
            lambda conn: conn.execute("SELECT * FROM users ORDER BY username").fetchall()
        )
        return [_row_user(row) for row in rows]

    # -- changing -----------------------------------------------------------------------------------------

    def add(
        self, username: str, role: Role | str, password: str | None = None, *, context: Context | None = None
    ) -> str | None:
        """Create an account; returns the one-time password when ``password`` is None (shown once, WEB-002).

        A generated password must be changed at first login (AUTH-005); a given one must pass the policy.
        """
        check_username(username)
        parsed_role = parse_role(role)
        one_time = password is None
        if password is None:
            password = generate_password()
        else:
            _check(password, username)
        stored = hash_password(password)

        def insert(conn: sqlite3.Connection) -> None:
            if conn.execute("SELECT 1 FROM users WHERE username = ?", (username,)).fetchone():
                raise UserExists(username)
            now = time.time()
            conn.execute(
                "INSERT INTO users (username, role, password_hash, must_change, failed_count, locked_until,"
                " created, changed) VALUES (?, ?, ?, ?, 0, NULL, ?, ?)",
                (username, _role_name(parsed_role), stored, int(one_time), now, now),
            )
            self.audit.append_in(conn, EVENT_USER_CHANGED, {
                "action": "add", "user": username, "role": _role_name(parsed_role), "must_change": one_time,
            }, context)

        self.storage.run_sync(insert)
        return password if one_time else None

    def set_password(
        self, username: str, password: str, *, must_change: bool = False, context: Context | None = None
    ) -> None:
        """Replace the password (policy-checked, ``WeakPassword``) and clear any lockout."""
        _check(password, username)
        current = self._hash_of(username)
        if current is None:
            raise UnknownUser(username)
        if verify_password(password, current):
            raise WeakPassword(["must differ from the current password"])
        stored = hash_password(password)

        def update(conn: sqlite3.Connection) -> None:
            cursor = conn.execute(
                "UPDATE users SET password_hash = ?, must_change = ?, failed_count = 0, locked_until = NULL,"
                " changed = ? WHERE username = ?",
                (stored, int(must_change), time.time(), username),
            )
            if cursor.rowcount == 0:
                raise UnknownUser(username)
            self.audit.append_in(conn, EVENT_USER_CHANGED, {
                "action": "password", "user": username, "must_change": must_change,
            }, context)

        self.storage.run_sync(update)

    def delete(self, username: str, *, context: Context | None = None) -> None:
        """Remove the account; refuses to remove the last administrator (nobody could manage users then)."""

        def remove(conn: sqlite3.Connection) -> None:
            row = conn.execute("SELECT role FROM users WHERE username = ?", (username,)).fetchone()
            if row is None:
                raise UnknownUser(username)
            if row["role"] == "admin":
                admins = conn.execute("SELECT COUNT(*) FROM users WHERE role = 'admin'").fetchone()[0]
                if admins <= 1:
                    raise UserError(f"{username!r} is the last administrator and cannot be deleted")
            conn.execute("DELETE FROM users WHERE username = ?", (username,))
            self.audit.append_in(conn, EVENT_USER_CHANGED, {"action": "delete", "user": username}, context)

        self.storage.run_sync(remove)

    # -- logging in ---------------------------------------------------------------------------------------

    def authenticate(
        self, username: str, password: str, *, now: float | None = None, address: str | None = None,
        context: Context | None = None,
    ) -> AuthResult:
        """Check a login (AUTH-005); ``now`` defaults to ``time.time()``, tests pass it to control the clock."""
        now = time.time() if now is None else now
        current = self._hash_of(username)
        # Exactly one scrypt run on every path: an unknown user costs what a known one does.
        matches = verify_password(password, current if current is not None else self._dummy())
        matches = matches and current is not None
        rehash = hash_password(password) if matches and current and needs_rehash(current) else None
        if context is None:
            context = Context(origin="login", principal=username[:AUDIT_NAME_CHARS], role=Role.VIEWER,
                              address=address)
        return self.storage.run_sync(
            lambda conn: self._settle(conn, username, current, matches, rehash, now, address, context)
        )

    def _settle(
        self, conn: sqlite3.Connection, username: str, checked_hash: str | None, matches: bool,
        rehash: str | None, now: float, address: str | None, context: Context,
    ) -> AuthResult:
        # The count and lock are read and written in this one transaction: parallel attempts cannot both
        # count as failure 5 and so slip past the lockout.
        row = conn.execute("SELECT * FROM users WHERE username = ?", (username,)).fetchone()
        data: dict[str, Any] = {"user": username[:AUDIT_NAME_CHARS], "address": address}
        if row is None:
            self.audit.append_in(conn, EVENT_LOGIN_FAILED, {**data, "reason": "unknown user"}, context)
            return AuthResult(ok=False, username=username, reason=REASON_BAD_CREDENTIALS)
        if row["password_hash"] != checked_hash:
            matches = False  # the password changed while it was being checked
        failed, locked_until = row["failed_count"], row["locked_until"]
        if locked_until is not None and now >= locked_until:
            failed, locked_until = 0, None  # the lock ended by itself; a fresh count starts
        if locked_until is not None:
            conn.execute("UPDATE users SET failed_count = ?, locked_until = ? WHERE username = ?",
                         (failed, locked_until, username))
            self.audit.append_in(conn, EVENT_LOGIN_FAILED,
                                 {**data, "reason": "account locked", "locked_until": locked_until}, context)
            return AuthResult(ok=False, username=username, reason=REASON_LOCKED, locked_until=locked_until)
        if matches:
            conn.execute(
                "UPDATE users SET failed_count = 0, locked_until = NULL,"
                " password_hash = COALESCE(?, password_hash) WHERE username = ?",
                (rehash, username),
            )
            return AuthResult(ok=True, username=row["username"], reason=REASON_OK, role=ROLES[row["role"]],
                              must_change=bool(row["must_change"]))
        failed += 1
        if failed >= LOCKOUT_AFTER_FAILURES:
            locked_until = now + LOCKOUT_S
        conn.execute("UPDATE users SET failed_count = ?, locked_until = ? WHERE username = ?",
                     (failed, locked_until, username))
        self.audit.append_in(conn, EVENT_LOGIN_FAILED,
                             {**data, "reason": "wrong password", "failures": failed}, context)
        if locked_until is None:
            return AuthResult(ok=False, username=username, reason=REASON_BAD_CREDENTIALS)
        self.audit.append_in(conn, EVENT_LOCKOUT,
                             {**data, "failures": failed, "locked_until": locked_until}, context)
        return AuthResult(ok=False, username=username, reason=REASON_LOCKED, locked_until=locked_until)

    # -- async wrappers for the web UI ----------------------------------------------------------------

    async def async_authenticate(
        self, username: str, password: str, *, now: float | None = None, address: str | None = None,
        context: Context | None = None,
    ) -> AuthResult:
        return await _off_loop(functools.partial(
            self.authenticate, username, password, now=now, address=address, context=context
        ))

    async def async_get(self, username: str) -> User | None:
        return await _off_loop(functools.partial(self.get, username))

    async def async_set_password(
        self, username: str, password: str, *, must_change: bool = False, context: Context | None = None
    ) -> None:
        await _off_loop(functools.partial(
            self.set_password, username, password, must_change=must_change, context=context
        ))

    # -- helpers ------------------------------------------------------------------------------------------

    def _hash_of(self, username: str) -> str | None:
        row = self.storage.run_sync(
            lambda conn: conn.execute(
                "SELECT password_hash FROM users WHERE username = ?", (username,)
            ).fetchone()
        )
        return str(row["password_hash"]) if row else None

    def _dummy(self) -> str:
        # Made with the current parameters (re-made if they change), so it costs what real hashes cost.
        if self._dummy_hash is None or needs_rehash(self._dummy_hash):
            self._dummy_hash = hash_password(generate_password())
        return self._dummy_hash


def _check(password: str, username: str) -> None:
    problems = check_password(password, username=username)
    if problems:
        raise WeakPassword(problems)


async def _off_loop(call: functools.partial[T]) -> T:
    # The default executor, not the storage thread: scrypt takes ~0.1 s and the storage thread must stay free.
    return await asyncio.get_running_loop().run_in_executor(None, call)
