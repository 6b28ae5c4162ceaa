"""The JSON REST API under ``/api/``: handlers and their declarations (published at ``/api/openapi.json``).

Contract:
- Requests authenticate with ``Authorization: Bearer <token>`` (a long-lived access token, scope read,
  operate or admin) or with the console's session cookie plus the ``X-CSRF-Token`` header on changes.
- Query parameters and bodies are checked against the schemas declared here before a handler runs; a
  handler answers JSON, and every refusal is ``{"error": ..., "status": ...}`` with a 4xx status.
- Every call acts with the requester's ``Context`` (origin ``web``), so service roles and enrollment rules
  of the core apply to API callers exactly as to the console.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Final

import voluptuous as vol
from aiohttp import web

from gateway import __version__
from gateway.context import Role
from gateway.errors import ServiceNotFound, ServiceValidationError, Unauthorized
from gateway.security.enrollment import STATUSES, EnrollmentError, UnknownEnrollment
from gateway.security.idtokens import KINDS, MAX_LABEL_CHARS, MAX_TOKEN_CHARS, IdTokenError
from gateway.security.users import ROLES, UnknownUser, UserError, WeakPassword

from .const import AUDIT_MAX_LIMIT, AUDIT_PAGE_SIZE, MAX_TOKEN_NAME_CHARS, SCOPES
from .fields import service_fields
from .overview import chargers
from .routing import BODY, PARAMS, Param, RouteSpec, WebError, console_of, principal_of
from .store import TokenError
from .stream import state_dict, to_json

# -- schemas ------------------------------------------------------------------------------------------------

NAME_RE: Final = r"^[a-z0-9_]+$"
ENTITY_RE: Final = r"^[a-z0-9_]+\.[a-z0-9_]+$"
USERNAME_RE: Final = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$"

ANY: dict[str, Any] = {}
STRING: dict[str, Any] = {"type": "string"}
NULLABLE_STRING: dict[str, Any] = {"type": "string", "nullable": True}
NUMBER: dict[str, Any] = {"type": "number"}
NULLABLE_NUMBER: dict[str, Any] = {"type": "number", "nullable": True}
INTEGER: dict[str, Any] = {"type": "integer"}
BOOLEAN: dict[str, Any] = {"type": "boolean"}
OBJECT: dict[str, Any] = {"type": "object"}


def obj(properties: dict[str, Any], required: tuple[str, ...] = (), *, closed: bool = True) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    if closed:
        schema["additionalProperties"] = False
    return schema


def array(items: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": items}


ERROR = obj({"error": STRING, "status": INTEGER, "problems": array(STRING)}, ("error", "status"))
STATE = obj({"entity_id": STRING, "value": ANY, "unit": NULLABLE_STRING, "attributes": OBJECT,
             "last_changed": NUMBER, "last_updated": NUMBER},
            ("entity_id", "value", "unit", "attributes", "last_changed", "last_updated"))
FIELD = obj({"name": STRING, "required": BOOLEAN, "type": STRING, "default": ANY, "choices": array(ANY),
             "description": STRING}, ("name", "required", "type"))
SERVICE = obj({"domain": STRING, "service": STRING, "role": STRING, "description": STRING, "routed": BOOLEAN,
               "fields": array(FIELD)}, ("domain", "service", "role", "fields"))
ENROLLMENT = obj({
    "kind": STRING, "identity": STRING, "status": STRING, "address": NULLABLE_STRING,
    "fingerprint": NULLABLE_STRING, "offered_fingerprint": NULLABLE_STRING, "fingerprint_changed": BOOLEAN,
    "info": OBJECT, "first_seen": NUMBER, "last_seen": NUMBER, "decided_by": NULLABLE_STRING,
    "decided_at": NULLABLE_NUMBER, "reason": NULLABLE_STRING,
}, ("kind", "identity", "status"))
AUDIT_RECORD = obj({"seq": INTEGER, "ts": NUMBER, "event": STRING, "actor": STRING, "data": OBJECT,
                    "prev_hash": STRING, "hash": STRING}, ("seq", "ts", "event", "actor", "data", "hash"))
VERIFY = obj({"ok": BOOLEAN, "records": INTEGER, "first_bad_seq": {"type": "integer", "nullable": True},
              "problem": STRING}, ("ok", "records"))
USER = obj({"username": STRING, "role": STRING, "must_change": BOOLEAN, "locked": BOOLEAN,
            "locked_until": NULLABLE_NUMBER, "failed_count": INTEGER, "created": NUMBER, "changed": NUMBER},
           ("username", "role"))
ONE_TIME = obj({"username": STRING, "role": STRING, "one_time_password": STRING}, ("username", "one_time_password"))
TOKEN = obj({"id": INTEGER, "name": STRING, "scope": STRING, "created_by": STRING, "created": NUMBER,
             "last_used": NULLABLE_NUMBER, "revoked": NULLABLE_NUMBER}, ("id", "name", "scope"))
NEW_TOKEN = obj({**TOKEN["properties"], "token": STRING}, ("id", "name", "scope", "token"))
IDTOKEN = obj({"id": INTEGER, "label": STRING, "kind": STRING, "created_at": NUMBER, "expires_at": NULLABLE_NUMBER,
               "revoked_at": NULLABLE_NUMBER, "hint": STRING, "status": STRING}, ("id", "label", "kind", "status"))
FLOW = obj({"grid_entity": STRING, "pv_entities": array(STRING), "charger_entities": array(STRING),
            "grid_w": NULLABLE_NUMBER, "pv_w": NULLABLE_NUMBER, "chargers_w": NULLABLE_NUMBER,
            "home_w": NULLABLE_NUMBER}, ("grid_w", "pv_w", "chargers_w", "home_w"))
CHARGER = obj({"id": STRING, "entity_id": STRING, "status": ANY, "attributes": OBJECT, "power_entity": STRING,
               "power_w": NULLABLE_NUMBER, "sensors": array(STATE)}, ("id", "entity_id", "status"))
POSTURE = obj({"available": BOOLEAN, "refused": INTEGER, "warnings": INTEGER, "findings": array(OBJECT),
               "accepted": array(OBJECT), "unused_acceptances": array(OBJECT), "ports": array(OBJECT),
               "plugins": array(STRING), "failed_plugins": OBJECT}, ("available", "findings", "ports"))
INFO = obj({"name": STRING, "version": STRING, "user": STRING, "role": STRING, "auth": STRING, "time": NUMBER},
           ("name", "version", "user", "role", "auth"))

# -- helpers --------------------------------------------------------------------------------------------------


def reply(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=to_json)


def role_name(role: Role) -> str:
    return role.name.lower()


def user_dict(user: Any, now: float) -> dict[str, Any]:
    return {"username": user.username, "role": role_name(user.role), "must_change": user.must_change,
            "locked": user.is_locked(now), "locked_until": user.locked_until, "failed_count": user.failed_count,
            "created": user.created, "changed": user.changed}


def charger_dict(view: Any) -> dict[str, Any]:
    return {"id": view.id, "entity_id": view.entity_id, "status": view.status, "attributes": dict(view.attributes),
            "power_entity": view.power_entity, "power_w": view.power_w,
            "sensors": [state_dict(s) for s in view.sensors]}


# -- handlers -------------------------------------------------------------------------------------------------


async def api_info(request: web.Request) -> web.Response:
    console, principal = console_of(request), principal_of(request)
    return reply({"name": console.gw.name, "version": __version__, "user": principal.name,
                  "role": role_name(principal.role), "auth": principal.kind, "time": time.time()})


async def api_states(request: web.Request) -> web.Response:
    body = console_of(request).states_json(request[PARAMS].get("domain"))
    return web.Response(body=body, content_type="application/json")


async def api_state(request: web.Request) -> web.Response:
    state = console_of(request).gw.states.get(request.match_info["entity_id"])
    if state is None:
        raise WebError(404, f"no entity {request.match_info['entity_id']}")
    return reply(state.as_dict())


async def api_flow(request: web.Request) -> web.Response:
    return reply(console_of(request).power_flow().as_dict())


async def api_chargers(request: web.Request) -> web.Response:
    return reply([charger_dict(c) for c in chargers(console_of(request).gw.states.all())])


async def api_services(request: web.Request) -> web.Response:
    out = []
    for service in console_of(request).gw.services.all():
        out.append({"domain": service.domain, "service": service.name, "role": role_name(service.role),
                    "description": service.description, "routed": service.route_by is not None,
                    "fields": [f.as_dict() for f in service_fields(service.schema)]})
    return reply(out)


async def api_call(request: web.Request) -> web.Response:
    console, principal = console_of(request), principal_of(request)
    domain, service = request.match_info["domain"], request.match_info["service"]
    try:
        result = await console.call_service(principal, domain, service, request[BODY])
    except ServiceNotFound as err:
        raise WebError(404, str(err)) from None
    except (ServiceValidationError, vol.Invalid) as err:
        raise WebError(400, str(err)) from None
    except Unauthorized as err:
        await console.denied("role too low", address=principal.address, principal=principal, detail=str(err))
        raise WebError(403, str(err)) from None
    except TimeoutError:
        raise WebError(504, f"{domain}.{service} did not answer in time") from None
    return reply({"result": result})


async def api_enrollment(request: web.Request) -> web.Response:
    query = request[PARAMS]
    entries = await console_of(request).gw.enrollment.list(status=query.get("status"), kind=query.get("kind"))
    return reply([e.as_dict() for e in entries])


async def api_enrollment_decide(request: web.Request) -> web.Response:
    console, principal = console_of(request), principal_of(request)
    body = request[BODY]
    context = console.context(principal)
    queue = console.gw.enrollment
    try:
        if body["decision"] == "approve":
            entry = await queue.approve(body["kind"], body["identity"], context, fingerprint=body.get("fingerprint"))
        else:
            entry = await queue.reject(body["kind"], body["identity"], context, reason=body.get("reason"))
    except UnknownEnrollment as err:
        raise WebError(404, str(err)) from None
    except Unauthorized as err:
        raise WebError(403, str(err)) from None
    except (EnrollmentError, ValueError) as err:
        raise WebError(400, str(err)) from None
    return reply(entry.as_dict())


async def api_audit(request: web.Request) -> web.Response:
    query = request[PARAMS]
    records = await console_of(request).gw.audit.list(limit=query.get("limit", AUDIT_PAGE_SIZE),
                                                      event_prefix=query.get("event"), since_seq=query.get("since"))
    return reply([r.as_dict() for r in records])


async def api_audit_verify(request: web.Request) -> web.Response:
    result = await console_of(request).gw.audit.verify()
    return reply({"ok": result.ok, "records": result.records, "first_bad_seq": result.first_bad_seq,
                  "problem": result.problem})


async def api_posture(request: web.Request) -> web.Response:
    return reply(console_of(request).posture())


async def api_users(request: web.Request) -> web.Response:
    console = console_of(request)
    users = await asyncio.get_running_loop().run_in_executor(None, console.gw.users.list)
    now = console.clock()
    return reply([user_dict(u, now) for u in users])


async def api_user_add(request: web.Request) -> web.Response:
    console, principal = console_of(request), principal_of(request)
    body = request[BODY]
    try:
        password = await console.add_user(principal, body["username"], body["role"])
    except UserError as err:
        raise WebError(409 if "exists" in str(err) else 400, str(err)) from None
    return reply({"username": body["username"], "role": body["role"], "one_time_password": password}, 201)


async def api_user_delete(request: web.Request) -> web.Response:
    console, principal = console_of(request), principal_of(request)
    username = request.match_info["username"]
    try:
        await console.delete_user(principal, username)
    except UnknownUser as err:
        raise WebError(404, str(err)) from None
    except UserError as err:
        raise WebError(400, str(err)) from None
    return reply({"deleted": username})


async def api_user_reset(request: web.Request) -> web.Response:
    console, principal = console_of(request), principal_of(request)
    username = request.match_info["username"]
    try:
        password = await console.reset_user(principal, username)
    except UnknownUser as err:
        raise WebError(404, str(err)) from None
    except (WeakPassword, UserError) as err:
        raise WebError(400, str(err)) from None
    user = await console.gw.users.async_get(username)
    return reply({"username": username, "role": role_name(user.role) if user else "", "one_time_password": password})


async def api_tokens(request: web.Request) -> web.Response:
    return reply([t.as_dict() for t in console_of(request).store.all_tokens()])


async def api_token_create(request: web.Request) -> web.Response:
    console, principal = console_of(request), principal_of(request)
    body = request[BODY]
    try:
        secret, record = await console.create_token(principal, body["name"], body["scope"])
    except TokenError as err:
        raise WebError(400, str(err)) from None
    return reply({**record.as_dict(), "token": secret}, 201)


async def api_token_revoke(request: web.Request) -> web.Response:
    console, principal = console_of(request), principal_of(request)
    record = await console.revoke_token(principal, request[PARAMS]["token_id"])
    if record is None:
        raise WebError(404, "no such access token")
    return reply(record.as_dict())


async def api_idtokens(request: web.Request) -> web.Response:
    tokens = await console_of(request).idtokens.list()
    return reply([t.as_dict() for t in tokens])


async def api_idtoken_add(request: web.Request) -> web.Response:
    console, principal = console_of(request), principal_of(request)
    body = request[BODY]
    try:
        entry = await console.idtokens.add(body["token"], label=body.get("label", ""), kind=body.get("kind", "rfid"),
                                           expires_at=body.get("expires_at"), context=console.context(principal))
    except IdTokenError as err:
        raise WebError(409 if "already" in str(err) else 400, str(err)) from None
    return reply(entry.as_dict(), 201)


async def api_idtoken_revoke(request: web.Request) -> web.Response:
    console, principal = console_of(request), principal_of(request)
    try:
        changed = await console.idtokens.revoke(token_id=request[PARAMS]["token_id"],
                                                context=console.context(principal))
    except IdTokenError as err:
        raise WebError(404, str(err)) from None
    return reply({"revoked": changed})


# -- the table ------------------------------------------------------------------------------------------------

V, OP, A = Role.VIEWER, Role.OPERATOR, Role.ADMIN
ENTITY_PARAM = Param(name="entity_id", where="path", required=True,
                     schema={"type": "string", "pattern": ENTITY_RE, "maxLength": 255})
USERNAME_PARAM = Param(name="username", where="path", required=True,
                       schema={"type": "string", "pattern": USERNAME_RE})
TOKEN_ID_PARAM = Param(name="token_id", where="path", required=True,
                       schema={"type": "integer", "minimum": 1, "maximum": 2**62})
STREAM_DESCRIPTION = (
    "Server-sent events (text/event-stream). First a `snapshot` event (a JSON list of states), then one "
    "`state` event per change (`{entity_id, state, origin}`, `state` null when the entity was removed), "
    "`enrollment` events when the device queue changes, comment lines as keep-alive, and `expired` when "
    "the session behind a console stream ends. Filter with `entity_id` (exact ids, or a prefix ending in *)."
)


def routes() -> list[RouteSpec]:
    """Every API route; ``server.py`` registers them and ``openapi.py`` publishes them."""
    from .server import api_stream  # the stream handler lives with the other socket code

    def r(method: str, path: str, handler: Any, role: Role, summary: str, **kw: Any) -> RouteSpec:
        return RouteSpec(method=method, path=path, handler=handler, role=role, api=True, summary=summary, **kw)

    return [
        r("GET", "/api/", api_info, V, "Who is asking, and the gateway's name and version", tag="general",
          response=INFO),
        r("GET", "/api/states", api_states, V, "All entity states", tag="states",
          params=(Param(name="domain", where="query", schema={"type": "string", "pattern": NAME_RE, "maxLength": 64},
                        description="only this domain (sensor, charger, ...)"),),
          response=array(STATE)),
        r("GET", "/api/states/{entity_id}", api_state, V, "One entity's state", tag="states",
          params=(ENTITY_PARAM,), response=STATE, errors=(404,)),
        r("GET", "/api/stream", api_stream, V, "Live state changes (server-sent events)", tag="states",
          description=STREAM_DESCRIPTION, content_type="text/event-stream",
          params=(Param(name="entity_id", where="query",
                        schema={"type": "array", "maxItems": 32,
                                "items": {"type": "string", "pattern": r"^[a-z0-9_.]+\*?$", "maxLength": 255}},
                        description="entity ids, or prefixes ending in *"),),
          response={"type": "string"}, errors=(503,)),
        r("GET", "/api/flow", api_flow, V, "The power flow: grid, PV, chargers and the rest of the house",
          tag="states", response=FLOW),
        r("GET", "/api/chargers", api_chargers, V, "Chargers (charger.<id>) with their sensors", tag="states",
          response=array(CHARGER)),
        r("GET", "/api/services", api_services, V, "The services that can be called, with their fields",
          tag="services", response=array(SERVICE)),
        r("POST", "/api/services/{domain}/{service}", api_call, OP, "Call a service (a command)", tag="services",
          description="The body is the service's data, checked by the service's own schema. A caller whose "
                      "role is below the service's gets 403.",
          params=(Param(name="domain", where="path", required=True, schema={"type": "string", "pattern": NAME_RE}),
                  Param(name="service", where="path", required=True, schema={"type": "string", "pattern": NAME_RE})),
          body={"type": "object", "maxProperties": 64}, response=obj({"result": ANY}, ("result",)),
          errors=(404, 504)),
        r("GET", "/api/enrollment", api_enrollment, V, "The enrollment queue (devices asking to be trusted)",
          tag="enrollment",
          params=(Param(name="status", where="query", schema={"type": "string", "enum": list(STATUSES)}),
                  Param(name="kind", where="query", schema={"type": "string", "pattern": r"^[a-z][a-z0-9_-]{0,31}$"})),
          response=array(ENROLLMENT)),
        r("POST", "/api/enrollment/decision", api_enrollment_decide, A, "Approve or reject a device",
          tag="enrollment",
          body=obj({"kind": {"type": "string", "pattern": r"^[a-z][a-z0-9_-]{0,31}$"},
                    "identity": {"type": "string", "minLength": 1, "maxLength": 255},
                    "decision": {"type": "string", "enum": ["approve", "reject"]},
                    "reason": {"type": "string", "maxLength": 500},
                    "fingerprint": {"type": "string", "minLength": 1, "maxLength": 255}},
                   ("kind", "identity", "decision")),
          response=ENROLLMENT, errors=(404,)),
        r("GET", "/api/audit", api_audit, A, "Audit log records (newest, or the ones after since)", tag="audit",
          params=(Param(name="limit", where="query", schema={"type": "integer", "minimum": 1,
                                                            "maximum": AUDIT_MAX_LIMIT}),
                  Param(name="event", where="query", schema={"type": "string", "maxLength": 64},
                        description="event name prefix, e.g. auth."),
                  Param(name="since", where="query", schema={"type": "integer", "minimum": 0, "maximum": 2**62})),
          response=array(AUDIT_RECORD)),
        r("GET", "/api/audit/verify", api_audit_verify, A, "Verify the audit log's hash chain", tag="audit",
          response=VERIFY),
        r("GET", "/api/posture", api_posture, V,
          "The security posture: policy findings (as `ampgate check`), accepted risks, ports plan", tag="security",
          response=POSTURE),
        r("GET", "/api/users", api_users, A, "Accounts", tag="users", response=array(USER)),
        r("POST", "/api/users", api_user_add, A, "Create an account; answers its one-time password (shown once)",
          tag="users", status=201,
          body=obj({"username": {"type": "string", "pattern": USERNAME_RE},
                    "role": {"type": "string", "enum": list(ROLES)}}, ("username", "role")),
          response=ONE_TIME, errors=(409,)),
        r("DELETE", "/api/users/{username}", api_user_delete, A, "Delete an account (its sessions and tokens end)",
          tag="users", params=(USERNAME_PARAM,), response=obj({"deleted": STRING}, ("deleted",)), errors=(404,)),
        r("POST", "/api/users/{username}/password", api_user_reset, A,
          "Give an account a new one-time password (changed at its next login)", tag="users",
          params=(USERNAME_PARAM,), response=ONE_TIME, errors=(404,)),
        r("GET", "/api/tokens", api_tokens, A, "API access tokens (never their values)", tag="tokens",
          response=array(TOKEN)),
        r("POST", "/api/tokens", api_token_create, A, "Create an API access token; the token is shown only here",
          tag="tokens", status=201,
          body=obj({"name": {"type": "string", "minLength": 1, "maxLength": MAX_TOKEN_NAME_CHARS},
                    "scope": {"type": "string", "enum": list(SCOPES)}}, ("name", "scope")),
          response=NEW_TOKEN),
        r("DELETE", "/api/tokens/{token_id}", api_token_revoke, A, "Revoke an API access token", tag="tokens",
          params=(TOKEN_ID_PARAM,), response=TOKEN, errors=(404,)),
        r("GET", "/api/idtokens", api_idtokens, OP, "Id tokens (RFID badges, ...) allowed to charge, without values",
          tag="idtokens", response=array(IDTOKEN)),
        r("POST", "/api/idtokens", api_idtoken_add, A, "Add an id token (stored encrypted)", tag="idtokens",
          status=201,
          body=obj({"token": {"type": "string", "minLength": 1, "maxLength": MAX_TOKEN_CHARS},
                    "label": {"type": "string", "maxLength": MAX_LABEL_CHARS},
                    "kind": {"type": "string", "enum": list(KINDS)},
                    "expires_at": {"type": "number", "minimum": 0, "maximum": 1e11}}, ("token",)),
          response=IDTOKEN, errors=(409,)),
        r("DELETE", "/api/idtokens/{token_id}", api_idtoken_revoke, A, "Revoke an id token", tag="idtokens",
          params=(TOKEN_ID_PARAM,), response=obj({"revoked": BOOLEAN}, ("revoked",)), errors=(404,)),
    ]
