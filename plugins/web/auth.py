"""The account rules as pure code: secrets and their hashes, CSRF tokens, sessions, throttles, tokens.

Contract (no I/O, no clock: every function that needs the time takes ``now``):
- Session ids and API tokens are random secrets shown to the client once; only ``digest(secret)``
  (SHA-256, enough for 256-bit random values, unlike passwords) is kept, so a copy of the database opens
  no session (WEB-003, DATA-001 spirit).
- ``csrf_token(session_secret)`` is derived from the session secret with HMAC, so it needs no storage and
  cannot be computed from anything stored; ``csrf_ok`` compares in constant time.
- ``SessionRecord.expired(now)`` applies AUTH-005's 30 min idle timeout and an absolute lifetime.
- ``LoginThrottle`` counts failed logins per address in a sliding window with bounded memory.
- ``AuditThrottle`` lets one audit record through per key and interval and counts the rest.
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import ipaddress
import secrets
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from gateway.context import Role

from .const import (
    API_TOKEN_BYTES,
    API_TOKEN_PREFIX,
    AUDIT_THROTTLE_S,
    LOGIN_MAX_FAILURES_PER_ADDRESS,
    LOGIN_MAX_TRACKED_ADDRESSES,
    LOGIN_WINDOW_S,
    SCOPES,
    SESSION_ABSOLUTE_S,
    SESSION_ID_BYTES,
    SESSION_IDLE_TIMEOUT_S,
)

STATE_CHANGING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_CSRF_LABEL = b"ampgate-web-csrf-v1"


def new_session_secret() -> str:
    return secrets.token_urlsafe(SESSION_ID_BYTES)


def new_api_token() -> str:
    return API_TOKEN_PREFIX + secrets.token_urlsafe(API_TOKEN_BYTES)


def digest(secret: str) -> str:
    """What is stored for a session id or token: SHA-256, hex. The secret has 256 random bits, so a fast
    hash is enough (nothing to brute-force), and lookups stay one dict access."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def csrf_token(session_secret: str) -> str:
    """The synchronizer token of a session (OWASP CSRF, "HMAC based token pattern")."""
    return hmac.new(session_secret.encode("utf-8", "surrogatepass"), _CSRF_LABEL, hashlib.sha256).hexdigest()


def csrf_ok(session_secret: str, presented: str | None) -> bool:
    if not presented:
        return False
    return hmac.compare_digest(csrf_token(session_secret).encode(), presented.encode("utf-8", "replace"))


def login_csrf_token(server_key: bytes, login_cookie: str) -> str:
    """The login form's token: bound to a pre-login cookie by a key that lives only in this process."""
    return hmac.new(server_key, login_cookie.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()


def login_csrf_ok(server_key: bytes, login_cookie: str | None, presented: str | None) -> bool:
    if not login_cookie or not presented:
        return False
    expected = login_csrf_token(server_key, login_cookie)
    return hmac.compare_digest(expected.encode(), presented.encode("utf-8", "replace"))


def is_state_changing(method: str) -> bool:
    return method.upper() in STATE_CHANGING_METHODS


def parse_bearer(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (RFC 6750 §2.1), else None."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    value = value.strip()
    return value or None


def safe_next(target: str | None, default: str = "/") -> str:
    """A redirect target after login that stays on this site: a path, never ``//host`` or a URL."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or any(ord(c) < 0x20 for c in target):
        return default
    return target


def same_origin(origin: str | None, scheme: str, host: str | None, fetch_site: str | None = None) -> bool:
    """Whether a request's ``Origin`` and ``Sec-Fetch-Site`` headers allow it to come from this site.

    A browser sends ``Origin: null`` on a form post when the referrer policy is ``no-referrer`` (Fetch
    standard, "serializing a request origin"), which ours is: null and a missing header prove nothing either
    way and leave the decision to the CSRF token. A named other origin, or ``Sec-Fetch-Site: cross-site`` /
    ``same-site`` (another host on the LAN), is refused.
    """
    if fetch_site is not None and fetch_site.lower() not in ("same-origin", "none"):
        return False
    if origin is None or origin == "null":
        return True
    if not host:
        return False
    return origin.lower() == f"{scheme}://{host}".lower()


def scope_role(scope: str) -> Role:
    try:
        return SCOPES[scope]
    except KeyError:
        raise ValueError(f"unknown scope {scope!r}: use one of {', '.join(SCOPES)}") from None


def is_loopback_address(address: str | None) -> bool:
    if not address:
        return False
    try:
        return ipaddress.ip_address(address.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


@dataclass(slots=True, kw_only=True)
class SessionRecord:
    """A logged-in browser. ``id_hash`` is ``digest`` of the cookie's secret; the secret is never kept."""

    id_hash: str
    username: str
    role: Role
    created: float
    last_seen: float
    address: str | None = None
    must_change: bool = False  # AUTH-005: only the password form is allowed until it is changed
    persisted_seen: float = 0.0  # last_seen as last written to storage
    checked: float = 0.0  # when the account was last confirmed in the user store
    flash: list[tuple[str, str]] = field(default_factory=list)  # (kind, text) shown on the next page

    def expired(self, now: float, idle_s: float = SESSION_IDLE_TIMEOUT_S,
                absolute_s: float = SESSION_ABSOLUTE_S) -> bool:
        # policy: AUTH-005 (idle 30 min) and OWASP SM absolute timeout.
        return now - self.last_seen >= idle_s or now - self.created >= absolute_s

    def idle_left(self, now: float, idle_s: float = SESSION_IDLE_TIMEOUT_S) -> float:
        return max(0.0, idle_s - (now - self.last_seen))


@dataclass(slots=True, kw_only=True)
class TokenRecord:
    """A long-lived API access token. ``token_hash`` is ``digest`` of the token; the token is never kept."""

    id: int
    name: str
    token_hash: str
    scope: str
    created_by: str
    created: float
    last_used: float | None = None
    revoked: float | None = None
    persisted_used: float | None = None
    checked: float = 0.0
    cap: Role | None = None  # the creating account's role when last checked: a token never acts above it

    @property
    def role(self) -> Role:
        role = scope_role(self.scope)
        return role if self.cap is None else min(role, self.cap)

    def as_dict(self) -> dict[str, object]:
        return {"id": self.id, "name": self.name, "scope": self.scope, "created_by": self.created_by,
                "created": self.created, "last_used": self.last_used, "revoked": self.revoked}


class LoginThrottle:
    """Failed logins per address in a sliding window; ``retry_after`` says how long an address must wait.

    Only failures count: a person who logs in often is never throttled, a script guessing is.
    """

    def __init__(self, *, max_failures: int = LOGIN_MAX_FAILURES_PER_ADDRESS, window_s: float = LOGIN_WINDOW_S,
                 max_addresses: int = LOGIN_MAX_TRACKED_ADDRESSES) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self.max_addresses = max_addresses
        self._failures: collections.OrderedDict[str, collections.deque[float]] = collections.OrderedDict()

    def _recent(self, address: str, now: float) -> collections.deque[float] | None:
        times = self._failures.get(address)
        if times is None:
            return None
        while times and now - times[0] >= self.window_s:
            times.popleft()
        if not times:
            del self._failures[address]
            return None
        return times

    def retry_after(self, address: str, now: float) -> float:
        """0 when the address may try now, else the seconds until its oldest counted failure ages out."""
        times = self._recent(address, now)
        if times is None or len(times) < self.max_failures:
            return 0.0
        return max(0.0, self.window_s - (now - times[0]))

    def failed(self, address: str, now: float) -> None:
        times = self._recent(address, now)
        if times is None:
            times = self._failures[address] = collections.deque(maxlen=self.max_failures)
        self._failures.move_to_end(address)
        times.append(now)
        while len(self._failures) > self.max_addresses:
            self._failures.popitem(last=False)

    def __len__(self) -> int:
        return len(self._failures)


class AuditThrottle:
    """``allow(key, now)`` returns how many events were suppressed since the last allowed one, or None when
    this one is to be suppressed too (one record per key and interval reaches the audit log)."""

    def __init__(self, *, interval_s: float = AUDIT_THROTTLE_S, max_keys: int = LOGIN_MAX_TRACKED_ADDRESSES) -> None:
        self.interval_s = interval_s
        self.max_keys = max_keys
        self._last: collections.OrderedDict[str, tuple[float, int]] = collections.OrderedDict()

    def allow(self, key: str, now: float) -> int | None:
        last = self._last.get(key)
        if last is not None and now - last[0] < self.interval_s:
            self._last[key] = (last[0], last[1] + 1)
            return None
        suppressed = last[1] if last is not None else 0
        self._last[key] = (now, 0)
        self._last.move_to_end(key)
        while len(self._last) > self.max_keys:
            self._last.popitem(last=False)
        return suppressed


@dataclass(slots=True, kw_only=True)
class Principal:
    """Who is making a request: a browser session or an API token, with the role it acts with."""

    kind: str  # "session" or "token"
    username: str  # the account (a token acts for the account that created it)
    role: Role
    address: str | None
    session: SessionRecord | None = None
    session_secret: str | None = None  # to check the CSRF token; never logged
    token: TokenRecord | None = None

    @property
    def name(self) -> str:
        """How the audit log names it: the user, or ``token:<name>`` for an integration."""
        if self.token is not None:
            return f"token:{self.token.name}"
        return self.username

    @property
    def csrf(self) -> str | None:
        return csrf_token(self.session_secret) if self.session_secret else None
