"""Every limit and name of the web console, each with its reason.

Sources: ``shared/design/POLICY.md`` (AUTH-005, WEB-001..003), the OWASP Session Management, CSRF Prevention
and HTTP Headers cheat sheets (below "OWASP SM", "OWASP CSRF", "OWASP HH"), RFC 6265bis (cookies), RFC 6797
(HSTS), the WHATWG HTML standard §9.2 (server-sent events) and CSP Level 3.
"""

from __future__ import annotations

from typing import Final

from gateway.context import Role
from gateway.security.users import LOCKOUT_AFTER_FAILURES, LOCKOUT_S, SESSION_IDLE_S

DOMAIN: Final = "web"
ORIGIN: Final = "web"  # Context.origin of everything the console and the API do

# -- listener --------------------------------------------------------------------------------------------

# Loopback and 8443 by default so that `make run` on a fresh machine opens nothing to the network (WEB-001).
DEFAULT_BIND: Final = "127.0.0.1"
DEFAULT_PORT: Final = 8443
# Request bodies are small forms and JSON documents; 64 KiB is ample and bounds what one request can make
# us parse (aiohttp's default is 1 MiB).
MAX_BODY_BYTES: Final = 64 * 1024
MAX_FORM_FIELDS: Final = 64
# aiohttp waits this long for running handlers when it stops; our streams end before (stop() closes them),
# and the loader gives a plugin 2 s to stop in all.
SHUTDOWN_TIMEOUT_S: Final = 1.0
# Browsers keep idle connections for minutes; 75 s (nginx's default keepalive_timeout) bounds how many idle
# sockets a page full of tabs can hold.
KEEPALIVE_TIMEOUT_S: Final = 75.0

# -- accounts and sessions (policy: AUTH-005, WEB-002, WEB-003) ----------------------------------------

FIRST_ADMIN: Final = "admin"  # WEB-002: created at first start with a random one-time password
ACCOUNT_LOCK_FAILURES: Final = LOCKOUT_AFTER_FAILURES  # 6, enforced by gateway.security.users
ACCOUNT_LOCK_S: Final = LOCKOUT_S  # 30 min
SESSION_IDLE_TIMEOUT_S: Final = SESSION_IDLE_S  # AUTH-005: idle sessions end after 30 min
# OWASP SM "Absolute Timeout": even a busy session ends; 12 h is one working day of an installer on site.
SESSION_ABSOLUTE_S: Final = 12 * 3600
# 256 bits from the OS CSPRNG; OWASP SM asks for at least 64 bits of entropy.
SESSION_ID_BYTES: Final = 32
# last_seen is kept in memory on every request and written to SQLite at most this often: a restart may
# then end a session up to a minute early, never late.
SESSION_PERSIST_INTERVAL_S: Final = 60.0
# One person rarely has more than a phone and two browsers open; the oldest sessions are dropped past this.
MAX_SESSIONS_PER_USER: Final = 10
# How long an account's role and existence are trusted before being read again from the user store, so
# that `ampgate user delete` in another process ends that user's sessions and tokens within seconds.
USER_RECHECK_S: Final = 10.0

# Cookie names. The __Host- prefix (RFC 6265bis §4.1.3.2) makes the browser refuse the cookie unless it
# is Secure, has Path=/ and no Domain: no other host can plant or overwrite it. Plain HTTP (loopback only)
# cannot use the prefix.
SESSION_COOKIE_TLS: Final = "__Host-ampgate_session"
SESSION_COOKIE_PLAIN: Final = "ampgate_session"
LOGIN_COOKIE_TLS: Final = "__Host-ampgate_login"
LOGIN_COOKIE_PLAIN: Final = "ampgate_login"
LOGIN_COOKIE_MAX_AGE_S: Final = 3600  # the login form's anti-CSRF cookie; a stale form is just reloaded

CSRF_FIELD: Final = "csrf"  # form field (OWASP CSRF "synchronizer token")
CSRF_HEADER: Final = "X-CSRF-Token"  # the same token for fetch() calls from our scripts

# Per-address login throttle, on top of the per-account lockout: it slows password spraying across many
# accounts from one address (OWASP Authentication cheat sheet, "Login Throttling"). Ten failures in five
# minutes is more than a person mistyping and far less than a guessing script.
LOGIN_MAX_FAILURES_PER_ADDRESS: Final = 10
LOGIN_WINDOW_S: Final = 300.0
# Addresses tracked at most; the least recently seen are forgotten first, so a scan from many addresses
# cannot grow the table without bound.
LOGIN_MAX_TRACKED_ADDRESSES: Final = 4096
# A refused or suspicious request is audited, but one script must not flood the audit log: one record per
# (kind, address) per interval, carrying the count since the last one.
AUDIT_THROTTLE_S: Final = 60.0

# -- API access tokens ------------------------------------------------------------------------------------

# Recognisable in logs and secret scanners; the prefix is not secret, the rest of the token is never stored.
API_TOKEN_PREFIX: Final = "agt_"  # noqa: S105
API_TOKEN_BYTES: Final = 32
MAX_API_TOKENS: Final = 200
MAX_TOKEN_NAME_CHARS: Final = 64
# Scope -> the role a request made with the token has (ordered like the roles).
SCOPES: Final[dict[str, Role]] = {"read": Role.VIEWER, "operate": Role.OPERATOR, "admin": Role.ADMIN}
# last_used is written at most this often per token: an integration polling every second must not
# become a write per second.
TOKEN_PERSIST_INTERVAL_S: Final = 60.0

# -- security headers (policy: WEB-003) -----------------------------------------------------------------

# RFC 6797: one year is the value browsers' preload lists require; no includeSubDomains, the console does
# not own its parent domain.
HSTS_MAX_AGE_S: Final = 31_536_000
# No inline script or style anywhere (CSP Level 3): scripts and styles come from /static only, so an
# injected <script> or style attribute does nothing.
CONTENT_SECURITY_POLICY: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)

# -- live stream (server-sent events) ------------------------------------------------------------------

# Events queued for one slow client before it is cut off (it reconnects and gets a fresh snapshot): a
# phone on a bad link must not make the gateway buffer the whole site's history.
STREAM_QUEUE_EVENTS: Final = 2000
# A comment line this often keeps proxies and phones from closing an idle stream (most cut at 60 s) and is
# when an expired session's stream is ended.
STREAM_KEEPALIVE_S: Final = 20.0
# Streams open at once; each holds a socket and a queue. A site has a few screens and integrations.
MAX_STREAMS: Final = 256
# HTML §9.2.4: the client waits this long (ms) before reconnecting after a dropped stream.
STREAM_RETRY_MS: Final = 3000
MAX_STREAM_FILTERS: Final = 32

# -- pages and API ------------------------------------------------------------------------------------------

AUDIT_PAGE_SIZE: Final = 100
AUDIT_MAX_LIMIT: Final = 1000
MAX_FLASH_CHARS: Final = 500
# A service command from the console or the API that takes longer than this is answered 504; the call
# itself goes on (the charger plugin has its own timeouts).
SERVICE_CALL_TIMEOUT_S: Final = 30.0
# Charging sessions started or ended since the gateway started, kept in memory for the chargers page (the
# charger plugins keep the persistent record).
MAX_RECENT_SESSIONS: Final = 100
EVENT_CHARGER_TRANSACTION: Final = "charger_transaction"  # protocol-free event of the charger plugins
RESET_CONFIRM_WORD: Final = "ERASE"  # typed on the factory-reset form, as `ampgate factory-reset` asks

# Audit event names of this plugin (the core's names are used where they fit).
AUDIT_LOGIN: Final = "web.login"
AUDIT_LOGOUT: Final = "web.logout"
AUDIT_SESSION_EXPIRED: Final = "web.session_expired"
AUDIT_DENIED: Final = "web.denied"  # CSRF failure, role too low, origin mismatch, throttled login
AUDIT_SERVICE_CALL: Final = "web.service_call"
AUDIT_TOKEN_CREATED: Final = "web.api_token_created"  # noqa: S105 (an event name)
AUDIT_TOKEN_REVOKED: Final = "web.api_token_revoked"  # noqa: S105
AUDIT_FIRST_ADMIN: Final = "web.first_admin"
