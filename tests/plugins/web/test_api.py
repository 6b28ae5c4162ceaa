"""The JSON API against the real server: the OpenAPI document matches the routes, each endpoint does what it
says with the caller's context, secrets are shown once and never listed, and the live stream pushes changes."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from gateway.context import Role
from gateway.services import ServiceCall
from plugins.web import stream as stream_module
from plugins.web.sse import SseMessage, SseParser
from tests.plugins.web.conftest import Client, FakeClock, WebEnv

pytestmark = pytest.mark.peer


async def token_client(env: WebEnv, scope: str = "admin") -> tuple[Client, dict[str, str]]:
    admin = await env.logged_in("admin")
    status, body, _ = await admin.request("POST", "/api/tokens", json={"name": f"test-{scope}", "scope": scope},
                                          headers={"X-CSRF-Token": await admin.csrf()})
    assert status == 201
    return env.client(), {"Authorization": f"Bearer {json.loads(body)['token']}"}


async def get_json(client: Client, path: str, headers: dict[str, str]) -> tuple[int, Any]:
    status, body, resp = await client.get(path, headers=headers)
    assert resp.content_type == "application/json", (path, resp.content_type)
    return status, json.loads(body)


async def test_openapi_document_matches_the_routes(env: WebEnv) -> None:
    client = env.client()
    status, doc = await get_json(client, "/api/openapi.json", {})  # public: integrators need it
    assert status == 200 and doc["openapi"].startswith("3.0")
    documented = {(method.upper(), path) for path, ops in doc["paths"].items() for method in ops}
    served = set()
    for resource in env.console.server.app.router.resources():  # type: ignore[union-attr]
        info = resource.get_info()
        path = info.get("path") or info.get("formatter")
        for route in resource:
            if path and path.startswith("/api/") and route.method != "HEAD" and path != "/api/openapi.json":
                served.add((route.method, path))
    assert documented == served
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert op["operationId"] and op["summary"]
            assert {"200", "201"} & set(op["responses"]) and {"400", "401", "403"} <= set(op["responses"])
            for name in __import__("re").findall(r"{(\w+)}", path):
                assert any(p["name"] == name and p["in"] == "path" for p in op["parameters"]), (method, path)
    assert set(doc["components"]["securitySchemes"]) == {"bearer", "session"}


async def test_states_and_flow(env: WebEnv) -> None:
    env.gw.states.set("sensor.grid_power", 1500.0, "W", {"phase": "all"}, owner="test")
    env.gw.states.set("charger.cp1", "Charging", owner="test")
    env.gw.states.set("sensor.cp1_power", 1000.0, "W", owner="test")
    client, auth = await token_client(env, "read")
    status, states = await get_json(client, "/api/states", auth)
    assert status == 200 and {s["entity_id"] for s in states} == {"sensor.grid_power", "charger.cp1",
                                                                  "sensor.cp1_power"}
    status, only = await get_json(client, "/api/states?domain=charger", auth)
    assert [s["entity_id"] for s in only] == ["charger.cp1"]
    env.gw.states.set("charger.cp1", "Faulted", owner="test")  # the cached answer follows every change
    status, only = await get_json(client, "/api/states?domain=charger", auth)
    assert only[0]["value"] == "Faulted"
    status, one = await get_json(client, "/api/states/sensor.grid_power", auth)
    assert one["value"] == 1500.0 and one["unit"] == "W" and one["attributes"] == {"phase": "all"}
    status, missing = await get_json(client, "/api/states/sensor.nope", auth)
    assert status == 404 and missing == {"error": "no entity sensor.nope", "status": 404}
    status, bad = await get_json(client, "/api/states/NOT-AN-ID", auth)
    assert status == 400 and "entity_id" in bad["error"]
    status, flow = await get_json(client, "/api/flow", auth)
    assert flow["grid_w"] == 1500.0 and flow["chargers_w"] == 1000.0 and flow["home_w"] == 500.0
    status, chargers = await get_json(client, "/api/chargers", auth)
    assert chargers[0]["id"] == "cp1" and chargers[0]["power_w"] == 1000.0


async def test_service_call_carries_the_context(env: WebEnv) -> None:
    import voluptuous as vol

    calls: list[ServiceCall] = []

    def handler(call: ServiceCall) -> dict[str, Any]:
        calls.append(call)
        return {"accepted": True, "limit_a": call.data["limit_a"]}

    env.gw.states.set("charger.cp1", "Charging", owner="test")
    env.gw.services.register("charger", "set_current_limit", handler, owner="test", route_by="charger",
                             schema={vol.Required("charger"): str, vol.Required("limit_a"): vol.Coerce(float)})
    client, auth = await token_client(env, "operate")
    status, body, _ = await client.request("POST", "/api/services/charger/set_current_limit",
                                           json={"charger": "cp1", "limit_a": 10}, headers=auth)
    assert status == 200 and json.loads(body) == {"result": {"accepted": True, "limit_a": 10.0}}
    ctx = calls[0].context
    assert ctx.origin == "web" and ctx.principal == "token:test-operate" and ctx.role is Role.OPERATOR
    assert ctx.address == "127.0.0.1"
    status, body, _ = await client.request("POST", "/api/services/charger/set_current_limit",
                                           json={"charger": "cp1", "limit_a": "lots"}, headers=auth)
    assert status == 400 and "limit_a" in json.loads(body)["error"]
    status, body, _ = await client.request("POST", "/api/services/charger/fly", json={}, headers=auth)
    assert status == 404
    status, body, _ = await client.request("POST", "/api/services/charger/set_current_limit", data="{not json",
                                           headers={**auth, "Content-Type": "application/json"})
    assert status == 400 and "not valid JSON" in json.loads(body)["error"]
    status, body, _ = await client.request("POST", "/api/services/charger/set_current_limit",
                                           json={"x": "y" * 70_000}, headers=auth)
    assert status == 413
    status, services = await get_json(client, "/api/services", auth)
    [svc] = [s for s in services if s["service"] == "set_current_limit"]
    assert svc["routed"] and {f["name"] for f in svc["fields"]} == {"charger", "limit_a"}


async def test_enrollment_decisions(env: WebEnv) -> None:
    await env.gw.enrollment.request("ocpp", "CP-1", address="192.168.1.50", fingerprint="AB:CD")
    client, auth = await token_client(env, "admin")
    status, entries = await get_json(client, "/api/enrollment?status=pending", auth)
    assert [(e["identity"], e["status"]) for e in entries] == [("CP-1", "pending")]
    status, body, _ = await client.request("POST", "/api/enrollment/decision", headers=auth,
                                           json={"kind": "ocpp", "identity": "CP-1", "decision": "approve"})
    assert status == 200 and json.loads(body)["status"] == "approved"
    assert env.gw.enrollment.is_trusted("ocpp", "CP-1", "abcd")
    status, body, _ = await client.request("POST", "/api/enrollment/decision", headers=auth,
                                           json={"kind": "ocpp", "identity": "CP-9", "decision": "approve"})
    assert status == 404
    reader, read_auth = await token_client(env, "operate")
    status, _, _ = await reader.request("POST", "/api/enrollment/decision", headers=read_auth,
                                        json={"kind": "ocpp", "identity": "CP-1", "decision": "reject"})
    assert status == 403
    record = next(r for r in env.gw.audit.list_sync(limit=100) if r.event == "enrollment.changed")
    assert record.actor.startswith("web:token:test-admin@127.0.0.1")


async def test_audit_users_tokens_idtokens(env: WebEnv) -> None:
    client, auth = await token_client(env, "admin")
    status, body, _ = await client.request("POST", "/api/users", json={"username": "carol", "role": "operator"},
                                           headers=auth)
    created = json.loads(body)
    assert status == 201 and created["username"] == "carol" and len(created["one_time_password"]) == 20
    status, body, _ = await client.request("POST", "/api/users", json={"username": "carol", "role": "viewer"},
                                           headers=auth)
    assert status == 409
    status, users = await get_json(client, "/api/users", auth)
    carol = next(u for u in users if u["username"] == "carol")
    assert carol["must_change"] and "password" not in json.dumps(users).replace("must_change", "")
    status, body, _ = await client.request("POST", "/api/users/carol/password", headers=auth)
    assert status == 200 and json.loads(body)["one_time_password"] != created["one_time_password"]
    status, _, _ = await client.request("DELETE", "/api/users/carol", headers=auth)
    assert status == 200
    status, _, _ = await client.request("DELETE", "/api/users/carol", headers=auth)
    assert status == 404
    status, body, _ = await client.request("DELETE", "/api/users/admin", headers=auth)
    assert status == 400  # one's own account (and the last admin)

    status, tokens = await get_json(client, "/api/tokens", auth)
    assert [t["name"] for t in tokens] == ["test-admin"] and "token" not in tokens[0]
    status, _, _ = await client.request("DELETE", "/api/tokens/999", headers=auth)
    assert status == 404
    status, _, _ = await client.request("DELETE", "/api/tokens/0", headers=auth)
    assert status == 400

    status, body, _ = await client.request("POST", "/api/idtokens", headers=auth,
                                           json={"token": "04A1B2C3D4", "label": "van 2", "kind": "rfid"})
    badge = json.loads(body)
    assert status == 201 and badge["hint"] == "…D4" and "04A1B2C3D4" not in body
    status, listing, _ = await client.get("/api/idtokens", headers=auth)
    assert "04A1B2C3D4" not in listing
    assert await env.console.idtokens.check("04a1b2c3d4") == "accepted"
    status, body, _ = await client.request("DELETE", f"/api/idtokens/{badge['id']}", headers=auth)
    assert status == 200 and json.loads(body) == {"revoked": True}
    assert await env.console.idtokens.check("04A1B2C3D4") == "blocked"

    status, records = await get_json(client, "/api/audit?limit=500", auth)
    events = {r["event"] for r in records}
    assert {"user.changed", "idtoken.added", "idtoken.revoked", "web.api_token_created"} <= events
    status, only = await get_json(client, "/api/audit?event=idtoken.", auth)
    assert {r["event"] for r in only} == {"idtoken.added", "idtoken.revoked"}
    status, verify = await get_json(client, "/api/audit/verify", auth)
    assert verify["ok"] and verify["records"] >= len(records)
    status, posture = await get_json(client, "/api/posture", auth)
    assert posture["available"] and posture["ports"][0]["plugin"] == "web" and posture["refused"] == 0


# -- the live stream ------------------------------------------------------------------------------------------


async def read_until(resp: Any, parser: SseParser, want: Any, limit_s: float = 5.0) -> list[SseMessage]:
    seen: list[SseMessage] = []
    async with asyncio.timeout(limit_s):
        while True:
            chunk = await resp.content.readany()
            assert chunk, f"stream ended; saw {seen}"
            seen.extend(parser.feed(chunk))
            if any(want(m) for m in seen):
                return seen


async def test_stream_pushes_snapshot_then_changes(env: WebEnv) -> None:
    env.gw.states.set("sensor.grid_power", 100.0, "W", owner="test")
    client, auth = await token_client(env, "read")
    parser = SseParser()
    async with client.session.get(env.base + "/api/stream", headers=auth) as resp:
        assert resp.status == 200 and resp.headers["Content-Type"] == "text/event-stream"
        assert resp.headers["Cache-Control"] == "no-store"
        seen = await read_until(resp, parser, lambda m: m.event == "snapshot")
        snapshot = json.loads(next(m for m in seen if m.event == "snapshot").data)
        assert [s["entity_id"] for s in snapshot] == ["sensor.grid_power"]
        env.gw.states.set("sensor.grid_power", 250.0, "W", owner="test")
        seen = await read_until(resp, parser, lambda m: m.event == "state")
        change = json.loads(next(m for m in seen if m.event == "state").data)
        assert change["entity_id"] == "sensor.grid_power" and change["state"]["value"] == 250.0
        assert change["origin"] == "test"
        env.gw.states.remove("sensor.grid_power", owner="test")
        seen = await read_until(resp, parser, lambda m: m.event == "state" and json.loads(m.data)["state"] is None)
        await env.gw.enrollment.request("ocpp", "CP-7")
        await read_until(resp, parser, lambda m: m.event == "enrollment")


async def test_stream_filters(env: WebEnv) -> None:
    client, auth = await token_client(env, "read")
    parser = SseParser()
    async with client.session.get(env.base + "/api/stream?entity_id=charger.*&entity_id=sensor.pv_power",
                                  headers=auth) as resp:
        await read_until(resp, parser, lambda m: m.event == "snapshot")
        env.gw.states.set("sensor.grid_power", 1.0, "W", owner="test")
        env.gw.states.set("charger.cp1", "Available", owner="test")
        env.gw.states.set("sensor.pv_power", 2.0, "W", owner="test")
        seen = await read_until(resp, parser, lambda m: m.event == "state"
                                and json.loads(m.data)["entity_id"] == "sensor.pv_power")
        ids = [json.loads(m.data)["entity_id"] for m in seen if m.event == "state"]
        assert ids == ["charger.cp1", "sensor.pv_power"]


async def test_stream_of_an_expired_session_ends(env: WebEnv, clock: FakeClock) -> None:
    env.console.hub.keepalive_s = 0.05
    client = await env.logged_in("viewer")
    parser = SseParser()
    async with client.session.get(env.base + "/api/stream") as resp:
        assert resp.status == 200
        await read_until(resp, parser, lambda m: m.event == "snapshot")
        clock.advance(31 * 60)  # the stream does not count as activity (AUTH-005)
        seen = await read_until(resp, parser, lambda m: m.event == "expired")
        assert seen[-1].event == "expired"
        assert await resp.content.read() == b""  # and the server closed it


async def test_stream_limit(env: WebEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stream_module, "MAX_STREAMS", 1)
    client, auth = await token_client(env, "read")
    parser = SseParser()
    async with client.session.get(env.base + "/api/stream", headers=auth) as first:
        await read_until(first, parser, lambda m: m.event == "snapshot")
        status, _body, resp = await client.get("/api/stream", headers=auth)
        assert status == 503 and resp.headers["Retry-After"] == "10"
