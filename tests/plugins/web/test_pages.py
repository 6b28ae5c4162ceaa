"""The console's pages through their forms: secrets shown once, the audit log's verify, badges, the factory
reset behind the password, and what a viewer is not offered."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from gateway.context import Context
from tests.plugins.web.conftest import PASSWORDS, WebEnv

pytestmark = pytest.mark.peer


async def test_new_account_password_shown_once(env: WebEnv) -> None:
    admin = await env.logged_in("admin")
    status, page, _ = await admin.post_form("/users", {"username": "dave", "role": "operator"})
    assert status == 200 and "Account dave created" in page
    password = page.split("data-copy-source>", 1)[1].split("<", 1)[0]
    assert len(password) == 20
    status, page, _ = await admin.get("/users")
    assert password not in page  # never again
    newcomer = env.client()
    status, _, resp = await newcomer.login("dave", password)
    assert status == 303 and resp.headers["Location"] == "/password"
    # A new one-time password from the admin ends dave's session.
    status, page, _ = await admin.post_form("/users/dave/password", {})
    assert status == 200 and "New one-time password for dave" in page
    status, _, resp = await newcomer.get("/password")
    assert status == 303 and resp.headers["Location"].startswith("/login")
    status, _, _ = await admin.post_form("/users/dave/delete", {})
    assert status == 303 and env.gw.users.get("dave") is None
    status, _, _ = await admin.post_form("/users/admin/delete", {})
    assert env.gw.users.get("admin") is not None  # not oneself


async def test_api_token_page_shows_the_token_once(env: WebEnv) -> None:
    admin = await env.logged_in("admin")
    status, page, _ = await admin.post_form("/tokens", {"name": "home-assistant", "scope": "read"})
    assert status == 200
    token = page.split("data-copy-source>", 1)[1].split("<", 1)[0]
    assert token.startswith("agt_")
    status, page, _ = await admin.get("/tokens")
    assert token not in page and "home-assistant" in page
    status, _, _ = await admin.get("/api/states", headers={"Authorization": f"Bearer {token}"})
    assert status == 200
    record = env.console.store.active_tokens()[0]
    status, _, _ = await admin.post_form(f"/tokens/{record.id}/revoke", {})
    assert status == 303
    status, _, _ = await admin.get("/api/states", headers={"Authorization": f"Bearer {token}"})
    assert status == 401


async def test_audit_page_verifies_and_shows_tampering(env: WebEnv) -> None:
    admin = await env.logged_in("admin")
    status, page, _ = await admin.get("/audit?verify=1")
    assert status == 200 and "Chain intact" in page and "web.login" in page
    conn = sqlite3.connect(env.data_dir / "ampgate.db")
    try:
        conn.execute("DROP TRIGGER audit_log_no_update")
        conn.execute("UPDATE audit_log SET actor = 'nobody' WHERE seq = 1")
        conn.commit()
    finally:
        conn.close()
    status, page, _ = await admin.get("/audit?verify=1")
    assert "Tampering detected" in page and "record 1" in page


async def test_badges_added_and_revoked_through_the_page(env: WebEnv) -> None:
    admin = await env.logged_in("admin")
    status, _, _ = await admin.post_form("/idtokens", {"token": "04:AA:BB:CC", "label": "van 1", "kind": "rfid",
                                                       "expires": "2099-12-31"})
    assert status == 303
    status, page, _ = await admin.get("/idtokens")
    assert "van 1" in page and "04:AA:BB:CC" not in page and "…CC" in page
    [badge] = await env.console.idtokens.list()
    assert badge.expires_at is not None
    status, _, _ = await admin.post_form(f"/idtokens/{badge.id}/revoke", {})
    assert await env.console.idtokens.check("04:aa:bb:cc") == "blocked"
    viewer = await env.logged_in("operator")
    status, page, _ = await viewer.get("/idtokens")
    assert status == 200 and "Add badge" not in page and "Revoke" not in page
    status, _, _ = await viewer.post_form("/idtokens", {"token": "X1", "kind": "rfid"})
    assert status == 403


async def test_viewer_is_offered_no_commands(env: WebEnv) -> None:
    env.gw.states.set("charger.cp1", "Available", owner="test")
    env.gw.services.register("charger", "start", lambda call: None, schema={"charger": str}, owner="test",
                             route_by="charger")
    viewer = await env.logged_in("viewer")
    status, page, _ = await viewer.get("/chargers")
    assert status == 200 and "Read only" in page and "/chargers/cp1/start" not in page
    status, page, _ = await viewer.get("/")
    assert 'href="/users"' not in page and 'href="/audit"' not in page
    operator = await env.logged_in("operator")
    status, page, _ = await operator.get("/chargers")
    assert "/chargers/cp1/start" in page


async def test_factory_reset_needs_the_password_and_the_word(env: WebEnv) -> None:
    requested: list[tuple[Path, Context]] = []
    env.console.reset_action = lambda data_dir, context: requested.append((data_dir, context))
    admin = await env.logged_in("admin")
    status, page, _ = await admin.post_form("/reset", {"password": PASSWORDS["admin"], "confirm": "erase"})
    assert status == 400 and requested == []
    status, page, _ = await admin.post_form("/reset", {"password": "Wrong!Pass1", "confirm": "ERASE"})
    assert status == 403 and "nothing was erased" in page and requested == []
    status, page, _ = await admin.post_form("/reset", {"password": PASSWORDS["admin"], "confirm": "ERASE"})
    assert status == 200 and "The gateway is stopping" in page
    [(data_dir, context)] = requested
    assert data_dir == env.gw.data_dir and context.principal == "admin" and context.origin == "web"
    events = [r.event for r in env.gw.audit.list_sync(limit=100)]
    assert "gateway.factory_reset" in events
    status, _, _resp = await admin.get("/")
    assert status == 303  # the session ended with the request
    operator = await env.logged_in("operator")
    status, _, _ = await operator.get("/reset")
    assert status == 403
