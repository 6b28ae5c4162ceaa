"""The web console's logic, shared by the HTML pages and the JSON API; the plugin instance.

Contract:
- Every action takes the ``Principal`` making the request and acts with ``Context(origin="web",
  principal=<user or token:name>, role=..., address=...)``, so the core's own checks (service roles,
  enrollment decisions by admins only) and the audit log see who it was.
- Account rules (AUTH-005, WEB-002): ``ensure_first_admin`` creates ``admin`` with a one-time password,
  prints it once to stderr and keeps only its hash; ``login`` applies the per-address throttle and the user
  store's lockout; a session that must change its password can do nothing else; ``change_password`` checks
  the current password (failures count toward the lockout), the strength policy, ends the user's other
  sessions and starts a new one (no session fixation).
- The clock is ``self.clock`` (``time.time``): tests move it to prove the idle timeout and the lockout end.
- Every security-relevant action is audited: logins, logouts, expiries, denials (throttled per address),
  commands, token and user changes, the factory-reset request.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import ipaddress
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.bus import Event
from gateway.context import Context, Role
from gateway.security.audit import EVENT_FACTORY_RESET, EVENT_SECURITY
from gateway.security.enrollment import EVENT_DECIDED, EVENT_REQUESTED
from gateway.security.idtokens import IdTokenStore
from gateway.security.passwords import check_password, generate_password
from gateway.security.report import ports_json
from gateway.security.users import REASON_LOCKED, UserError, WeakPassword
from gateway.states import EVENT_STATE_CHANGED

from .auth import AuditThrottle, LoginThrottle, Principal, SessionRecord, TokenRecord
from .const import (
    AUDIT_DENIED,
    AUDIT_FIRST_ADMIN,
    AUDIT_LOGIN,
    AUDIT_LOGOUT,
    AUDIT_SERVICE_CALL,
    AUDIT_SESSION_EXPIRED,
    AUDIT_TOKEN_CREATED,
    AUDIT_TOKEN_REVOKED,
    EVENT_CHARGER_TRANSACTION,
    FIRST_ADMIN,
    MAX_RECENT_SESSIONS,
    ORIGIN,
    SERVICE_CALL_TIMEOUT_S,
    USER_RECHECK_S,
)
from .overview import PowerFlow, power_flow
from .store import WebStore
from .stream import StreamHub, to_json

if TYPE_CHECKING:
    from gateway.core import Gateway
    from gateway.states import State

    from .server import WebServer

_LOGGER = logging.getLogger(__name__)

MAX_USERNAME_INPUT = 256  # longer input is refused before any scrypt work
MAX_PASSWORD_INPUT = 1024
RESET_STOP_DELAY_S = 0.5  # lets the "stopping" page reach the browser before the gateway stops
# Zeroing a database of a few hundred MB on an SD card takes minutes; beyond this something is wrong.
RESET_WORKER_TIMEOUT_S = 600
MAX_CACHED_DOMAINS = 64  # GET /api/states?domain=... answers kept; domains are few, names are checked


@dataclass(frozen=True, slots=True, kw_only=True)
class LoginOutcome:
    ok: bool
    secret: str | None = None
    session: SessionRecord | None = None
    retry_after: float = 0.0  # > 0: throttled (429)
    locked_until: float | None = None
    message: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class PasswordOutcome:
    ok: bool
    problems: tuple[str, ...] = ()
    secret: str | None = None  # the new session's secret
    session: SessionRecord | None = None
    logged_out: bool = False  # the account got locked: the session was ended


def print_once(username: str, password: str, url: str | None) -> None:
    """WEB-002: the one-time password goes to the console once, framed, never to the log."""
    lines = [
        "Ampgate web console: first start, an administrator account was created.",
        f"  user:     {username}",
        f"  password: {password}",
        "This password is shown only now and must be changed at the first login.",
    ]
    if url:
        lines.append(f"Open {url} in a browser.")
    width = max(len(line) for line in lines)
    bar = "=" * (width + 4)
    body = "\n".join(f"| {line.ljust(width)} |" for line in lines)
    print(f"\n{bar}\n{body}\n{bar}\n", file=sys.stderr, flush=True)


def _erase_in_child(data_dir: Path, context: Context) -> None:
    # The child must import what this process imports (a source checkout as much as an installed package).
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    info = json.dumps({"origin": context.origin, "principal": context.principal, "role": context.role.name,
                       "address": context.address})
    try:
        subprocess.run([sys.executable, "-m", "plugins.web.resetworker", str(data_dir), info], env=env,
                       check=False, timeout=RESET_WORKER_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        print("factory reset did not finish in time; run `ampgate factory-reset`", file=sys.stderr)


def reset_at_exit(data_dir: Path, context: Context) -> None:
    """The factory reset of a running gateway: stop it, then erase as the process exits.

    ``ampgate run`` stops on SIGTERM; after the shutdown (plugins stopped, storage closed, pid file removed)
    the interpreter runs its exit handlers, and the one registered here runs ``plugins.web.resetworker`` (which
    calls ``gateway.security.reset``, refusing while a live gateway owns the directory) and waits for it. The
    request itself is in the audit log before anything stops.
    """
    atexit.register(_erase_in_child, data_dir, context)
    loop = asyncio.get_running_loop()
    loop.call_later(RESET_STOP_DELAY_S, os.kill, os.getpid(), signal.SIGTERM)


class WebConsole:
    """The running web plugin: stores, live stream hub, throttles and the HTTP server."""

    def __init__(self, gw: Gateway, config: dict[str, Any], *, clock: Callable[[], float] = time.time) -> None:
        self.gw = gw
        self.config = config
        self.clock = clock
        self.store = WebStore(gw.storage)
        self.hub = StreamHub(gw.bus, enrollment_events=(EVENT_REQUESTED, EVENT_DECIDED))
        self.login_throttle = LoginThrottle()
        self.audit_throttle = AuditThrottle()
        # Signs the login form's anti-CSRF token; new at every start (an old form is simply reloaded).
        self.login_key = secrets.token_bytes(32)
        self.idtokens = IdTokenStore(gw.storage, gw.vault, gw.audit)
        self.server: WebServer | None = None
        self.tls = bool(config.get("tls", {}).get("enabled", True))
        self.fingerprint: str | None = None
        self.url: str | None = None
        # What the factory-reset page does once the password is confirmed (tests replace it).
        self.reset_action: Callable[[Path, Context], None] = reset_at_exit
        self._allow_from = [ipaddress.ip_network(n, strict=False) for n in config.get("allow_from", ())]
        self.sessions: collections.deque[dict[str, Any]] = collections.deque(maxlen=MAX_RECENT_SESSIONS)
        self._unsubscribe = [gw.bus.subscribe(EVENT_CHARGER_TRANSACTION, self._on_transaction, owner="web"),
                             gw.bus.subscribe(EVENT_STATE_CHANGED, self._on_state_changed, owner="web")]
        # GET /api/states answers from the JSON made after the last change (an integration polling a site of
        # 500 entities would otherwise serialise them all on every request). A state re-reported unchanged
        # fires nothing, so its last_updated in this answer may lag until the next change.
        self._states_version = 0
        self._states_cache: dict[str | None, tuple[int, bytes]] = {}

    def _on_state_changed(self, event: Event) -> None:
        self._states_version += 1

    def states_json(self, domain: str | None = None) -> bytes:
        cached = self._states_cache.get(domain)
        if cached is not None and cached[0] == self._states_version:
            return cached[1]
        body = to_json([s.as_dict() for s in self.gw.states.all(domain)]).encode()
        if len(self._states_cache) >= MAX_CACHED_DOMAINS:
            self._states_cache.clear()
        self._states_cache[domain] = (self._states_version, body)
        return body

    def _on_transaction(self, event: Event) -> None:
        self.sessions.append({**event.data, "time": event.time_fired})

    def allowed(self, address: str | None) -> bool:
        """Whether ``address`` is in ``allow_from`` (an empty list admits everyone)."""
        if not self._allow_from:
            return True
        try:
            ip = ipaddress.ip_address((address or "").split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in network for network in self._allow_from)

    async def start(self) -> None:
        await self.store.load(self.clock())

    async def stop(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self.hub.close()
        if self.server is not None:
            await self.server.stop()

    # -- contexts and audit -------------------------------------------------------------------------------

    @staticmethod
    def context(principal: Principal | None, *, address: str | None = None, user: str | None = None) -> Context:
        if principal is None:
            return Context(origin=ORIGIN, principal=user, role=Role.VIEWER, address=address)
        return Context(origin=ORIGIN, principal=principal.name, role=principal.role, address=principal.address)

    async def audit(self, event: str, data: dict[str, Any], context: Context) -> None:
        await self.gw.audit.append(event, data, context)

    async def denied(self, reason: str, *, address: str | None, principal: Principal | None = None,
                     detail: str = "") -> None:
        """Audit a refused request, at most once a minute per (reason, address), with the count skipped."""
        skipped = self.audit_throttle.allow(f"{reason}|{address}", self.clock())
        if skipped is None:
            return
        data: dict[str, Any] = {"reason": reason, "address": address, "suppressed_since_last": skipped}
        if detail:
            data["detail"] = detail[:200]
        await self.audit(AUDIT_DENIED, data, self.context(principal, address=address))

    # -- first start (WEB-002) ------------------------------------------------------------------------------

    async def ensure_first_admin(self) -> str | None:
        """Create ``admin`` with a one-time password when no account exists; returns it (printed once)."""
        users = await asyncio.get_running_loop().run_in_executor(None, self.gw.users.list)
        if users:
            return None
        context = Context(origin=ORIGIN, principal="first-start", role=Role.SYSTEM)
        password = await asyncio.get_running_loop().run_in_executor(
            None, lambda: self.gw.users.add(FIRST_ADMIN, "admin", context=context))
        assert password is not None
        await self.audit(AUDIT_FIRST_ADMIN, {"user": FIRST_ADMIN, "printed_once": True}, context)
        print_once(FIRST_ADMIN, password, self.url)
        return password

    # -- who is asking --------------------------------------------------------------------------------------

    async def session_principal(self, secret: str | None, address: str | None) -> tuple[Principal | None, str]:
        """The principal of a session cookie, or (None, why): "none", "expired" or "ended"."""
        record = self.store.find_session(secret)
        if record is None:
            return None, "none"
        now = self.clock()
        if record.expired(now):  # policy: AUTH-005 (idle timeout)
            await self.store.end_session(record)
            await self.audit(AUDIT_SESSION_EXPIRED, {"user": record.username, "idle_s": round(now - record.last_seen)},
                             Context(origin=ORIGIN, principal=record.username, role=record.role, address=address))
            return None, "expired"
        if now - record.checked >= USER_RECHECK_S:
            user = await self.gw.users.async_get(record.username)
            # Deleted, or its password changed elsewhere (ampgate user passwd) since this session began.
            if user is None or user.changed > record.created:
                await self.store.end_session(record)
                return None, "ended"
            record.role = user.role
            record.must_change = record.must_change or user.must_change
            record.checked = now
        await self.store.touch(record, now)
        return Principal(kind="session", username=record.username, role=record.role, address=address,
                         session=record, session_secret=secret), "ok"

    async def token_principal(self, secret: str | None, address: str | None) -> Principal | None:
        record = self.store.find_token(secret)
        if record is None:
            return None
        now = self.clock()
        if now - record.checked >= USER_RECHECK_S:
            user = await self.gw.users.async_get(record.created_by)
            if user is None:
                # The account that made it is gone: so is its token.
                await self.store.revoke_token(record, now)
                await self.audit(AUDIT_TOKEN_REVOKED, {"id": record.id, "name": record.name,
                                                       "reason": f"user {record.created_by} no longer exists"},
                                 Context(origin=ORIGIN, principal="gateway", role=Role.SYSTEM, address=address))
                return None
            record.checked = now
            record.cap = user.role  # a token never acts above the account that made it
        await self.store.used(record, now)
        return Principal(kind="token", username=record.created_by, role=record.role, address=address, token=record)

    # -- logging in and out ---------------------------------------------------------------------------------

    async def login(self, username: str, password: str, address: str | None) -> LoginOutcome:
        now = self.clock()
        key = address or "?"
        wait = self.login_throttle.retry_after(key, now)
        if wait > 0:
            await self.denied("login throttled", address=address, detail=f"user {username[:64]}")
            return LoginOutcome(ok=False, retry_after=wait,
                                message=f"Too many failed logins from your address. Try again in {int(wait) + 1} s.")
        if not username or len(username) > MAX_USERNAME_INPUT or len(password) > MAX_PASSWORD_INPUT:
            self.login_throttle.failed(key, now)
            return LoginOutcome(ok=False, message="Wrong user name or password.")
        context = Context(origin=ORIGIN, principal=username[:64], role=Role.VIEWER, address=address)
        result = await self.gw.users.async_authenticate(username, password, now=now, address=address,
                                                        context=context)
        if not result.ok:
            self.login_throttle.failed(key, now)
            if result.reason == REASON_LOCKED and result.locked_until is not None:
                minutes = max(1, round((result.locked_until - now) / 60))
                return LoginOutcome(ok=False, locked_until=result.locked_until,
                                    message=f"This account is locked after repeated failed logins. "
                                            f"Try again in {minutes} min, or ask an administrator.")
            return LoginOutcome(ok=False, message="Wrong user name or password.")
        assert result.role is not None
        for expired in await self.store.sweep(now):
            await self.audit(AUDIT_SESSION_EXPIRED, {"user": expired.username}, context)
        secret, record = await self.store.create_session(username=result.username, role=result.role, now=now,
                                                         address=address, must_change=result.must_change)
        await self.audit(AUDIT_LOGIN, {"user": result.username, "address": address,
                                       "must_change": result.must_change},
                         Context(origin=ORIGIN, principal=result.username, role=result.role, address=address))
        return LoginOutcome(ok=True, secret=secret, session=record)

    async def logout(self, principal: Principal) -> None:
        if principal.session is not None:
            await self.store.end_session(principal.session)
            await self.audit(AUDIT_LOGOUT, {"user": principal.username}, self.context(principal))

    async def change_password(self, principal: Principal, current: str, new: str, confirm: str) -> PasswordOutcome:
        username = principal.username
        if new != confirm:
            return PasswordOutcome(ok=False, problems=("the new password and its confirmation differ",))
        if len(new) > MAX_PASSWORD_INPUT or len(current) > MAX_PASSWORD_INPUT:
            return PasswordOutcome(ok=False, problems=("is far too long",))
        problems = check_password(new, username=username)  # policy: AUTH-005 strength
        if problems:
            return PasswordOutcome(ok=False, problems=tuple(problems))
        context = self.context(principal)
        now = self.clock()
        check = await self.gw.users.async_authenticate(username, current, now=now, address=principal.address,
                                                       context=context)
        if not check.ok:
            if check.reason == REASON_LOCKED:
                await self.store.end_sessions_of(username)
                return PasswordOutcome(ok=False, problems=("the account is locked",), logged_out=True)
            return PasswordOutcome(ok=False, problems=("the current password is wrong",))
        try:
            await self.gw.users.async_set_password(username, new, must_change=False, context=context)
        except WeakPassword as err:
            return PasswordOutcome(ok=False, problems=tuple(err.problems))
        # Every other session of this account ends; this browser gets a new session id.
        await self.store.end_sessions_of(username)
        secret, record = await self.store.create_session(username=username, role=principal.role, now=self.clock(),
                                                         address=principal.address, must_change=False)
        return PasswordOutcome(ok=True, secret=secret, session=record)

    async def confirm_password(self, principal: Principal, password: str) -> bool:
        """Re-entry of the user's own password before a destructive action; failures count toward the lockout."""
        if len(password) > MAX_PASSWORD_INPUT:
            return False
        result = await self.gw.users.async_authenticate(principal.username, password, now=self.clock(),
                                                        address=principal.address, context=self.context(principal))
        return result.ok

    # -- commands -------------------------------------------------------------------------------------------

    async def call_service(self, principal: Principal, domain: str, service: str, data: dict[str, Any]) -> Any:
        context = self.context(principal)
        record: dict[str, Any] = {"domain": domain, "service": service, "data": data}
        try:
            result = await asyncio.wait_for(self.gw.services.call(domain, service, data, context),
                                            SERVICE_CALL_TIMEOUT_S)
        except Exception as err:
            await self.audit(AUDIT_SERVICE_CALL, {**record, "ok": False, "error": type(err).__name__}, context)
            raise
        await self.audit(AUDIT_SERVICE_CALL, {**record, "ok": True}, context)
        return result

    # -- users --------------------------------------------------------------------------------------------

    async def add_user(self, principal: Principal, username: str, role: str) -> str:
        context = self.context(principal)
        password = await asyncio.get_running_loop().run_in_executor(
            None, lambda: self.gw.users.add(username, role, context=context))
        assert password is not None
        return password

    async def delete_user(self, principal: Principal, username: str) -> None:
        if username.lower() == principal.username.lower():
            raise UserError("you cannot delete your own account")
        context = self.context(principal)
        await asyncio.get_running_loop().run_in_executor(None, lambda: self.gw.users.delete(username, context=context))
        await self.store.end_sessions_of(username)
        for token in await self.store.revoke_tokens_of(username, self.clock()):
            await self.audit(AUDIT_TOKEN_REVOKED, {"id": token.id, "name": token.name,
                                                   "reason": f"user {username} deleted"}, context)

    async def reset_user(self, principal: Principal, username: str) -> str:
        """A new one-time password for ``username`` (changed at next login); their sessions end."""
        password = generate_password()
        await self.gw.users.async_set_password(username, password, must_change=True, context=self.context(principal))
        await self.store.end_sessions_of(username)
        return password

    # -- API access tokens --------------------------------------------------------------------------------------

    async def create_token(self, principal: Principal, name: str, scope: str) -> tuple[str, TokenRecord]:
        secret, record = await self.store.create_token(name=name, scope=scope, created_by=principal.username,
                                                       now=self.clock())
        record.cap = principal.role
        await self.audit(AUDIT_TOKEN_CREATED, {"id": record.id, "name": record.name, "scope": scope},
                         self.context(principal))
        return secret, record

    async def revoke_token(self, principal: Principal, token_id: int) -> TokenRecord | None:
        record = self.store.token_by_id(token_id)
        if record is None:
            return None
        if await self.store.revoke_token(record, self.clock()):
            await self.audit(AUDIT_TOKEN_REVOKED, {"id": record.id, "name": record.name}, self.context(principal))
        return record

    # -- reading ------------------------------------------------------------------------------------------

    def states(self) -> list[State]:
        return sorted(self.gw.states.all(), key=lambda s: s.entity_id)

    def power_flow(self) -> PowerFlow:
        flow_config = self.config.get("power_flow") or {}
        return power_flow(self.gw.states.all(), grid_entity=flow_config.get("grid"),
                          pv_entities=flow_config.get("pv") or None)

    def posture(self) -> dict[str, Any]:
        """The same findings as ``ampgate check``, the accepted risks and the ports plan."""
        plan = self.gw.plan
        if plan is None:
            return {"available": False, "findings": [], "accepted": [], "unused_acceptances": [], "ports": [],
                    "refused": 0, "warnings": 0, "failed_plugins": self.gw.failed_plugins, "plugins": []}
        report = plan.report.as_dict()
        return {
            "available": True,
            "refused": report["refused"],
            "warnings": report["warnings"],
            "findings": report["findings"],
            "accepted": [r.as_dict() for r in plan.report.accepted],
            "unused_acceptances": report["unused_acceptances"],
            "ports": json.loads(ports_json(plan.exposures)),
            "plugins": list(plan.order),
            "failed_plugins": self.gw.failed_plugins,
        }

    # -- factory reset (DATA-002) ---------------------------------------------------------------------------

    async def request_reset(self, principal: Principal) -> None:
        context = self.context(principal)
        await self.audit(EVENT_FACTORY_RESET, {"action": "requested", "via": "web console",
                                               "by": principal.username}, context)
        await self.audit(EVENT_SECURITY, {"event": "factory reset requested from the web console"}, context)
        _LOGGER.warning("factory reset requested by %s from %s: stopping the gateway", principal.username,
                        principal.address)
        self.reset_action(self.gw.data_dir, context)
