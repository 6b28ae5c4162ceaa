"""The account rules (AUTH-005, WEB-002, WEB-003) against the real console over HTTPS on loopback.

Each rule is proven from the client's side: what the server answered, which cookie it set, what reached the
audit log and the database. Time is moved with the console's clock, never slept through.
"""

from __future__ import annotations

import json
import sqlite3
import urllib.parse
from pathlib import Path

import pytest

from gateway.context import Role
from gateway.security.users import LOCKOUT_S
from gateway.services import ServiceCall
from plugins.web.auth import LoginThrottle, digest
from plugins.web.const import CONTENT_SECURITY_POLICY, SESSION_IDLE_TIMEOUT_S
from tests.plugins.web.conftest import (
    ONE_TIME_RE,
    PASSWORDS,
    FakeClock,
    WebEnv,
    hidden_value,
    meta_csrf,
    web_env,
)

pytestmark = pytest.mark.peer


def audit_events(env: WebEnv) -> list[tuple[str, dict[str, object], str]]:
    records = env.gw.audit.list_sync(limit=1000)
    return [(r.event, r.data, r.actor) for r in records]


# -- WEB-002: first start -----------------------------------------------------------------------------------


async def test_first_start_creates_admin_with_one_time_password_printed_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with web_env(tmp_path, users=False) as env:
        err = capsys.readouterr().err
        match = ONE_TIME_RE.search(err)
        assert match, err
        password = match.group(1)
        assert "=====" in err and "shown only now" in err and "fingerprint" in err
        # Only the hash is stored; the password is nowhere in the database file.
        user = env.gw.users.get("admin")
        assert user is not None and user.role is Role.ADMIN and user.must_change
        db = (env.data_dir / "ampgate.db").read_bytes() + b"".join(
            p.read_bytes() for p in env.data_dir.glob("ampgate.db-*"))
        assert password.encode() not in db
        assert ("web.first_admin", {"user": "admin", "printed_once": True}) in [
            (e, d) for e, d, _ in audit_events(env)]

        # First login: forced to the password form; nothing else is reachable.
        client = env.client()
        status, _, resp = await client.login("admin", password)
        assert status == 303 and resp.headers["Location"] == "/password"
        for path in ("/", "/users", "/chargers"):
            status, _, resp = await client.get(path)
            assert status == 303 and resp.headers["Location"] == "/password", path
        status, body, _ = await client.get("/api/states")
        assert status == 403 and "password must be changed" in body

        # Weak new passwords are refused with the policy's own words.
        csrf = await client.csrf()
        for weak, problem in (("Sh0rt!", "at least 8"), ("password", "upper-case"), ("Password1!", "common"),
                              ("alllowercase1!", "upper-case"), ("Admin!admin123", "user name"),
                              (password, "must differ")):
            status, page, _ = await client.post_form("/password", {"current": password, "new": weak,
                                                                   "confirm": weak, "csrf": csrf})
            assert status == 400 and problem in page, weak
        status, page, _ = await client.post_form("/password", {"current": "Wrong!Current1", "new": "Str0ng!Passw0rd#X",
                                                               "confirm": "Str0ng!Passw0rd#X", "csrf": csrf})
        assert status == 400 and "current password is wrong" in page
        assert env.gw.users.get("admin").must_change  # type: ignore[union-attr]

        new = "Str0ng!Passw0rd#X"
        old_cookie = client.session_cookie()
        status, _, resp = await client.post_form("/password", {"current": password, "new": new, "confirm": new,
                                                               "csrf": csrf})
        assert status == 303 and resp.headers["Location"] == "/"
        assert client.session_cookie() != old_cookie  # a new session id after the change
        status, _, _ = await client.get("/")
        assert status == 200
        assert not env.gw.users.get("admin").must_change  # type: ignore[union-attr]

    # A second start creates nothing and prints no password.
    capsys.readouterr()
    async with web_env(tmp_path, users=False):
        assert not ONE_TIME_RE.search(capsys.readouterr().err)


# -- AUTH-005: lockout ----------------------------------------------------------------------------------------


async def test_lockout_after_the_sixth_failure_not_the_fifth(env: WebEnv, clock: FakeClock) -> None:
    env.console.login_throttle = LoginThrottle(max_failures=1000)  # the per-address throttle is tested apart
    attacker = env.client()
    for attempt in range(1, 6):
        status, page, _ = await attacker.login("operator", f"Wrong!Guess{attempt}")
        assert status == 401 and "Wrong user name or password" in page, attempt
    # After five failures the right password still works (and resets the count).
    user = env.client()
    status, _, _ = await user.login("operator", PASSWORDS["operator"])
    assert status == 303
    for attempt in range(1, 7):
        status, page, _ = await attacker.login("operator", f"Wrong!Guess{attempt}")
        assert status == 401
    assert "locked" in page
    # Now locked: even the right password fails.
    status, page, _ = await env.client().login("operator", PASSWORDS["operator"])
    assert status == 401 and "locked" in page
    events = [e for e, _, _ in audit_events(env)]
    assert events.count("auth.lockout") == 1
    assert events.count("auth.login_failed") >= 12


async def test_lock_ends_after_the_period(env: WebEnv, clock: FakeClock) -> None:
    client = env.client()
    for attempt in range(6):
        await client.login("viewer", f"Wrong!Guess{attempt}")
    status, _, _ = await client.login("viewer", PASSWORDS["viewer"])
    assert status == 401
    clock.advance(LOCKOUT_S - 60)
    status, _, _ = await client.login("viewer", PASSWORDS["viewer"])
    assert status == 401
    clock.advance(61)
    status, _, resp = await client.login("viewer", PASSWORDS["viewer"])
    assert status == 303 and resp.headers["Location"] == "/"


async def test_login_throttled_per_address(env: WebEnv, clock: FakeClock) -> None:
    client = env.client()
    # Ten failures spread over many (unknown) accounts: no account locks, the address is throttled.
    for n in range(10):
        status, _, _ = await client.login(f"nobody{n}", "Wrong!Guess1")
        assert status == 401
    status, page, resp = await client.login("admin", PASSWORDS["admin"])
    assert status == 429 and "Too many failed logins" in page and int(resp.headers["Retry-After"]) > 0
    assert any(e == "web.denied" and d.get("reason") == "login throttled" for e, d, _ in audit_events(env))
    clock.advance(301)
    status, _, _ = await client.login("admin", PASSWORDS["admin"])
    assert status == 303


# -- AUTH-005: idle timeout ----------------------------------------------------------------------------------


async def test_idle_session_expires(env: WebEnv, clock: FakeClock) -> None:
    client = await env.logged_in("viewer")
    clock.advance(SESSION_IDLE_TIMEOUT_S - 5)
    status, _, _ = await client.get("/")  # activity: the idle clock restarts
    assert status == 200
    clock.advance(SESSION_IDLE_TIMEOUT_S - 5)
    status, _, _ = await client.get("/")
    assert status == 200
    clock.advance(SESSION_IDLE_TIMEOUT_S + 1)
    status, _, resp = await client.get("/chargers")
    assert status == 303 and resp.headers["Location"].startswith("/login?") and "expired=1" in resp.headers["Location"]
    status, page, _ = await client.get(resp.headers["Location"])
    assert "30 minutes without activity" in page
    # The API says 401 for an expired session.
    client2 = await env.logged_in("viewer")
    clock.advance(SESSION_IDLE_TIMEOUT_S + 1)
    status, body, _ = await client2.get("/api/states")
    assert status == 401 and json.loads(body)["error"] == "session expired"
    assert any(e == "web.session_expired" for e, _, _ in audit_events(env))


async def test_unauthenticated_page_redirects_and_api_401(env: WebEnv) -> None:
    client = env.client()
    status, _, resp = await client.get("/users")
    assert status == 303 and urllib.parse.unquote(resp.headers["Location"]) == "/login?next=/users"
    status, body, resp = await client.get("/api/states")
    assert status == 401 and resp.headers["WWW-Authenticate"] == "Bearer"
    assert json.loads(body) == {"error": "authentication required", "status": 401}


# -- WEB-003: CSRF, cookies, headers ------------------------------------------------------------------------------


async def test_csrf_missing_or_wrong_is_403(env: WebEnv) -> None:
    client = await env.logged_in("admin")
    before = len(env.gw.users.list())
    status, page, _ = await client.post_form("/users", {"username": "mallory", "role": "admin"}, csrf=False)
    assert status == 403 and "CSRF" in page
    status, _, _ = await client.post_form("/users", {"username": "mallory", "role": "admin", "csrf": "0" * 64})
    assert status == 403
    # The API with the session cookie needs the header.
    status, body, _ = await client.request("POST", "/api/users", json={"username": "mallory", "role": "admin"})
    assert status == 403 and "CSRF" in json.loads(body)["error"]
    assert len(env.gw.users.list()) == before  # nothing was created
    # Logging out is a change too.
    status, _, _ = await client.post_form("/logout", {}, csrf=False)
    assert status == 403
    # With the token, it works.
    status, _, _ = await client.request("POST", "/api/users", json={"username": "alice", "role": "viewer"},
                                        headers={"X-CSRF-Token": await client.csrf()})
    assert status == 201
    assert any(e == "web.denied" and d.get("reason") == "missing or wrong CSRF token" for e, d, _ in audit_events(env))


async def test_cross_origin_post_refused(env: WebEnv) -> None:
    client = await env.logged_in("admin")
    csrf = await client.csrf()
    status, _, _ = await client.request("POST", "/logout", data={"csrf": csrf},
                                        headers={"Origin": "https://evil.example"})
    assert status == 403
    status, _, _ = await client.request("POST", "/logout", data={"csrf": csrf},
                                        headers={"Sec-Fetch-Site": "cross-site", "Origin": "null"})
    assert status == 403
    assert client.session_cookie() is not None
    status, _, _ = await client.request("POST", "/logout", data={"csrf": csrf},
                                        headers={"Sec-Fetch-Site": "same-origin", "Origin": "null"})
    assert status == 303


async def test_login_form_needs_its_token(env: WebEnv) -> None:
    client = env.client()
    status, page, _ = await client.request("POST", "/login", data={"username": "admin",
                                                                   "password": PASSWORDS["admin"]})
    assert status == 403 and "expired" in page
    assert client.session_cookie() is None


async def test_session_cookie_flags_and_security_headers(env: WebEnv) -> None:
    client = env.client()
    status, page, resp = await client.get("/login")
    token = hidden_value(page, "csrf")
    status, _, resp = await client.request("POST", "/login", data={"username": "admin", "password": PASSWORDS["admin"],
                                                                   "csrf": token})
    assert status == 303
    cookie = next(v for k, v in resp.headers.items() if k.lower() == "set-cookie" and "ampgate_session" in v)
    assert cookie.startswith("__Host-ampgate_session=")
    lowered = cookie.lower()
    assert "secure" in lowered and "httponly" in lowered and "samesite=strict" in lowered and "path=/" in lowered
    assert "domain=" not in lowered and "max-age" not in lowered  # a browser-session cookie, host-only
    for path in ("/", "/api/states", "/static/app.css", "/login"):
        _, _, resp = await client.get(path)
        assert resp.headers["Strict-Transport-Security"] == "max-age=31536000"
        csp = resp.headers["Content-Security-Policy"]
        assert csp == CONTENT_SECURITY_POLICY and "'unsafe-inline'" not in csp and "default-src 'self'" in csp
        assert "frame-ancestors 'none'" in csp
        assert resp.headers["X-Frame-Options"] == "DENY"
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["Referrer-Policy"] == "no-referrer"
        assert resp.headers["Server"] == "ampgate"
    _, page, resp = await client.get("/")
    assert resp.headers["Cache-Control"] == "no-store"
    # No inline script or style anywhere in a page: the CSP would block it and it must not be needed.
    assert "<script>" not in page and " style=" not in page and " onclick=" not in page
    assert meta_csrf(page)


async def test_session_id_stored_only_as_hash(env: WebEnv) -> None:
    client = await env.logged_in("viewer")
    secret = client.session_cookie()
    assert secret
    conn = sqlite3.connect(env.data_dir / "ampgate.db")
    try:
        rows = conn.execute("SELECT id_hash FROM web_sessions").fetchall()
    finally:
        conn.close()
    assert (digest(secret),) in rows
    assert all(secret not in row[0] for row in rows)


async def test_logout_ends_the_session_server_side(env: WebEnv) -> None:
    client = await env.logged_in("viewer")
    stolen = client.session_cookie()
    status, _, resp = await client.post_form("/logout", {})
    assert status == 303 and resp.headers["Location"] == "/login"
    thief = env.client()
    thief.session.cookie_jar.update_cookies({"__Host-ampgate_session": stolen or ""},
                                            response_url=__import__("yarl").URL(env.base))
    status, _, _ = await thief.get("/")
    assert status == 303


# -- roles ------------------------------------------------------------------------------------------------


async def test_viewer_calling_a_command_gets_403(env: WebEnv) -> None:
    calls: list[ServiceCall] = []
    env.gw.services.register("charger", "stop", calls.append, schema={"charger": str}, owner="test",
                             route_by="charger")
    env.gw.states.set("charger.cp1", "Charging", owner="test")
    viewer = await env.logged_in("viewer")
    csrf = await viewer.csrf()
    status, _body, _ = await viewer.request("POST", "/api/services/charger/stop", json={"charger": "cp1"},
                                           headers={"X-CSRF-Token": csrf})
    assert status == 403
    status, _, _ = await viewer.post_form("/chargers/cp1/stop", {"csrf": csrf})
    assert status == 403
    assert calls == []
    # An operator may, and the call carries who it was.
    operator = await env.logged_in("operator")
    status, _, _resp = await operator.post_form("/chargers/cp1/stop", {})
    assert status == 303
    assert len(calls) == 1
    context = calls[0].context
    assert (context.origin, context.principal, context.role, context.address) == (
        "web", "operator", Role.OPERATOR, "127.0.0.1")
    # Viewers see no admin pages either.
    for path in ("/users", "/tokens", "/audit", "/reset"):
        status, _, _ = await viewer.get(path)
        assert status == 403, path
    assert any(e == "web.service_call" for e, _, _ in audit_events(env))


async def test_service_role_of_the_core_applies(env: WebEnv) -> None:
    """A service registered admin-only refuses an operator although the route admits operators."""
    env.gw.services.register("site", "shutdown", lambda call: None, role=Role.ADMIN, owner="test")
    operator = await env.logged_in("operator")
    status, body, _ = await operator.request("POST", "/api/services/site/shutdown", json={},
                                             headers={"X-CSRF-Token": await operator.csrf()})
    assert status == 403 and "may not call site.shutdown" in json.loads(body)["error"]


# -- API tokens and scopes ------------------------------------------------------------------------------------


async def test_token_scopes(env: WebEnv) -> None:
    calls: list[ServiceCall] = []
    env.gw.services.register("demo", "poke", calls.append, owner="test")
    admin = await env.logged_in("admin")
    csrf = await admin.csrf()
    tokens = {}
    for scope in ("read", "operate", "admin"):
        status, body, _ = await admin.request("POST", "/api/tokens", json={"name": f"t-{scope}", "scope": scope},
                                              headers={"X-CSRF-Token": csrf})
        assert status == 201
        tokens[scope] = json.loads(body)["token"]
        assert tokens[scope].startswith("agt_")
    bare = env.client()

    async def call(scope: str, method: str, path: str, **kw: object) -> int:
        status, _, _ = await bare.request(method, path, headers={"Authorization": f"Bearer {tokens[scope]}"}, **kw)
        return status

    assert await call("read", "GET", "/api/states") == 200
    assert await call("read", "POST", "/api/services/demo/poke", json={}) == 403
    assert await call("operate", "POST", "/api/services/demo/poke", json={}) == 200
    assert await call("operate", "GET", "/api/users") == 403
    assert await call("admin", "GET", "/api/users") == 200
    assert calls[0].context.principal == "token:t-operate" and calls[0].context.role is Role.OPERATOR
    # No CSRF header needed with a bearer token (no ambient credential to ride on).
    assert await call("admin", "POST", "/api/users", json={"username": "bob", "role": "viewer"}) == 201
    # Only hashes are stored.
    conn = sqlite3.connect(env.data_dir / "ampgate.db")
    try:
        stored = [row[0] for row in conn.execute("SELECT token_hash FROM web_api_tokens")]
    finally:
        conn.close()
    assert sorted(stored) == sorted(digest(t) for t in tokens.values())
    # Revoked: refused at once.
    token_id = next(t.id for t in env.console.store.all_tokens() if t.name == "t-operate")
    status, _, _ = await admin.request("DELETE", f"/api/tokens/{token_id}", headers={"X-CSRF-Token": csrf})
    assert status == 200
    assert await call("operate", "GET", "/api/states") == 401
    # A made-up token is refused, and so is a malformed header.
    status, _, resp = await bare.request("GET", "/api/states", headers={"Authorization": "Bearer agt_nope"})
    assert status == 401 and "invalid_token" in resp.headers["WWW-Authenticate"]
    status, _, _ = await bare.request("GET", "/api/states", headers={"Authorization": "Basic YWRtaW46YWRtaW4="})
    assert status == 401
    events = [e for e, _, _ in audit_events(env)]
    assert events.count("web.api_token_created") == 3 and events.count("web.api_token_revoked") == 1


async def test_token_dies_with_its_account(env: WebEnv, clock: FakeClock) -> None:
    admin = await env.logged_in("admin")
    csrf = await admin.csrf()
    status, _, _ = await admin.request("POST", "/api/users", json={"username": "second", "role": "admin"},
                                       headers={"X-CSRF-Token": csrf})
    assert status == 201
    secret, _ = await env.console.store.create_token(name="by-second", scope="admin", created_by="second",
                                                     now=clock())
    bare = env.client()
    status, _, _ = await bare.get("/api/users", headers={"Authorization": f"Bearer {secret}"})
    assert status == 200
    status, _, _ = await admin.request("DELETE", "/api/users/second", headers={"X-CSRF-Token": csrf})
    assert status == 200
    status, _, _ = await bare.get("/api/users", headers={"Authorization": f"Bearer {secret}"})
    assert status == 401


# -- plain HTTP on loopback (WEB-001 allows it there) ------------------------------------------------------


async def test_plain_http_on_loopback_works_without_secure_cookie_or_hsts(tmp_path: Path) -> None:
    async with web_env(tmp_path, tls_enabled=False) as env:
        client = env.client()
        status, page, resp = await client.get("/login")
        assert status == 200 and "Strict-Transport-Security" not in resp.headers
        status, _, resp = await client.request("POST", "/login", data={
            "username": "admin", "password": PASSWORDS["admin"], "csrf": hidden_value(page, "csrf")})
        assert status == 303
        cookie = next(v for k, v in resp.headers.items() if k.lower() == "set-cookie" and "ampgate_session" in v)
        assert cookie.startswith("ampgate_session=") and "secure" not in cookie.lower()
        assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower()


async def test_allow_from_refuses_other_addresses(tmp_path: Path) -> None:
    async with web_env(tmp_path, extra="  allow_from: [10.0.0.0/8]\n") as env:
        client = env.client()
        for path in ("/login", "/api/openapi.json", "/api/states"):
            status, _, _ = await client.get(path)
            assert status == 403, path
        assert any(e == "web.denied" and d.get("reason") == "address not in allow_from"
                   for e, d, _ in audit_events(env))
    async with web_env(tmp_path / "lan", extra="  allow_from: [127.0.0.0/8]\n") as env:
        status, _, _ = await env.client().get("/login")
        assert status == 200
