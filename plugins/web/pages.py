"""The console's HTML pages: handlers and their route declarations.

Contract: every state-changing form answers with a redirect (POST/redirect/GET) and a flash message, except
the ones that show a secret once (a new account's one-time password, a new API token), which render the
page directly so the secret never lands in a URL or a later response. The login form is public and carries
its own anti-CSRF token (a pre-login cookie bound to an HMAC kept only in memory).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
from typing import Any

from aiohttp import web

from gateway.context import Role
from gateway.errors import ServiceNotFound, ServiceValidationError, Unauthorized
from gateway.security.enrollment import PENDING, EnrollmentError, UnknownEnrollment
from gateway.security.idtokens import KINDS, IdTokenError
from gateway.security.users import UserError, WeakPassword

from . import views
from .auth import login_csrf_ok, login_csrf_token, safe_next
from .const import (
    CSRF_FIELD,
    LOGIN_COOKIE_MAX_AGE_S,
    LOGIN_COOKIE_PLAIN,
    LOGIN_COOKIE_TLS,
    MAX_FLASH_CHARS,
    RESET_CONFIRM_WORD,
)
from .fields import form_value, service_fields
from .html import Markup
from .overview import chargers
from .routing import PRINCIPAL, RouteSpec, WebError, client_address, console_of, principal_of
from .server import session_cookie


def html(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html")


def flash(request: web.Request, kind: str, text: str) -> None:
    principal = request.get(PRINCIPAL)
    if principal is not None and principal.session is not None:
        principal.session.flash.append((kind, text[:MAX_FLASH_CHARS]))


def back(location: str) -> web.HTTPSeeOther:
    return web.HTTPSeeOther(location)


async def form_of(request: web.Request) -> dict[str, str]:
    data = await request.post()
    return {k: v for k, v in data.items() if isinstance(v, str)}


def _cookie_kwargs(request: web.Request) -> dict[str, Any]:
    console = console_of(request)
    # policy: WEB-003 - Secure on HTTPS, never readable by scripts, never sent by another site.
    return {"secure": console.tls, "httponly": True, "samesite": "Strict", "path": "/"}


def set_session_cookie(response: web.StreamResponse, request: web.Request, secret: str) -> None:
    response.set_cookie(session_cookie(console_of(request)), secret, **_cookie_kwargs(request))


def clear_session_cookie(response: web.StreamResponse, request: web.Request) -> None:
    response.del_cookie(session_cookie(console_of(request)), path="/", secure=console_of(request).tls,
                        httponly=True, samesite="Strict")


def login_cookie_name(request: web.Request) -> str:
    return LOGIN_COOKIE_TLS if console_of(request).tls else LOGIN_COOKIE_PLAIN


# -- login, logout, password --------------------------------------------------------------------------------


def _login_form(request: web.Request, *, message: str = "", kind: str = "error", username: str = "",
                status: int = 200, next_url: str = "/") -> web.Response:
    console = console_of(request)
    cookie = request.cookies.get(login_cookie_name(request))
    fresh = not cookie or len(cookie) > 128
    if fresh:
        cookie = secrets.token_urlsafe(24)
    assert cookie is not None
    frame = views.Frame(site=console.gw.name, principal=None, tls=console.tls)
    page = views.login_page(frame, csrf=login_csrf_token(console.login_key, cookie), next_url=next_url,
                            message=message, kind=kind, username=username)
    response = html(page, status)
    if fresh:
        response.set_cookie(login_cookie_name(request), cookie, max_age=LOGIN_COOKIE_MAX_AGE_S,
                            **_cookie_kwargs(request))
    return response


async def login_get(request: web.Request) -> web.StreamResponse:
    if request.get(PRINCIPAL) is not None:
        raise back("/")
    message, kind = "", "error"
    if request.query.get("expired"):
        message, kind = "Your session ended after 30 minutes without activity. Please log in again.", "info"
    return _login_form(request, message=message, kind=kind, next_url=safe_next(request.query.get("next")))


async def login_post(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    form = await form_of(request)
    username, password = form.get("username", "").strip(), form.get("password", "")
    next_url = safe_next(form.get("next"))
    address = client_address(request)
    # policy: WEB-003 - the login form is state-changing too (login CSRF).
    if not login_csrf_ok(console.login_key, request.cookies.get(login_cookie_name(request)), form.get(CSRF_FIELD)):
        await console.denied("missing or wrong login CSRF token", address=address)
        return _login_form(request, message="The form expired. Please try again.", status=403, next_url=next_url)
    outcome = await console.login(username, password, address)
    if not outcome.ok:
        status = 429 if outcome.retry_after else 401
        response = _login_form(request, message=outcome.message, username=username[:64], status=status,
                               next_url=next_url)
        if outcome.retry_after:
            response.headers["Retry-After"] = str(int(outcome.retry_after) + 1)
        return response
    assert outcome.secret is not None and outcome.session is not None
    target = "/password" if outcome.session.must_change else next_url
    response = web.HTTPSeeOther(target)
    set_session_cookie(response, request, outcome.secret)
    response.del_cookie(login_cookie_name(request), path="/", secure=console_of(request).tls, httponly=True,
                        samesite="Strict")
    raise response


async def logout_post(request: web.Request) -> web.StreamResponse:
    await console_of(request).logout(principal_of(request))
    response = web.HTTPSeeOther("/login")
    clear_session_cookie(response, request)
    raise response


async def password_get(request: web.Request) -> web.StreamResponse:
    principal = principal_of(request)
    frame = views.frame_for(console_of(request), principal)
    forced = bool(principal.session and principal.session.must_change)
    return html(views.password_page(frame, forced=forced))


async def password_post(request: web.Request) -> web.StreamResponse:
    console, principal = console_of(request), principal_of(request)
    form = await form_of(request)
    outcome = await console.change_password(principal, form.get("current", ""), form.get("new", ""),
                                            form.get("confirm", ""))
    if outcome.logged_out:
        response = web.HTTPSeeOther("/login")
        clear_session_cookie(response, request)
        raise response
    if not outcome.ok:
        frame = views.frame_for(console, principal)
        forced = bool(principal.session and principal.session.must_change)
        return html(views.password_page(frame, forced=forced, problems=outcome.problems), 400)
    assert outcome.secret is not None and outcome.session is not None
    outcome.session.flash.append(("ok", "Password changed. Your other sessions were logged out."))
    response = web.HTTPSeeOther("/")
    set_session_cookie(response, request, outcome.secret)
    raise response


# -- overview and chargers --------------------------------------------------------------------------------


async def overview_get(request: web.Request) -> web.StreamResponse:
    console, principal = console_of(request), principal_of(request)
    states = console.states()
    pending = len(await console.gw.enrollment.list(status=PENDING))
    page = views.overview_page(views.frame_for(console, principal), flow=console.power_flow(),
                               chargers=chargers(states), states=states, pending=pending, posture=console.posture())
    return html(page)


def charger_services(console: Any) -> list[tuple[str, list[Any]]]:
    return [(s.name, service_fields(s.schema)) for s in console.gw.services.all() if s.domain == "charger"]


async def chargers_get(request: web.Request) -> web.StreamResponse:
    console, principal = console_of(request), principal_of(request)
    page = views.chargers_page(views.frame_for(console, principal), chargers=chargers(console.states()),
                               services=charger_services(console), sessions=list(console.sessions),
                               site_limit=console.gw.states.get(views.SITE_LIMIT_ENTITY),
                               has_site_limit=console.gw.services.has("loadmanager", "set_site_limit"))
    return html(page)


async def site_limit_post(request: web.Request) -> web.StreamResponse:
    """Lower or release what the whole site may draw; the load manager shares it out (operator role)."""
    console, principal = console_of(request), principal_of(request)
    form = await form_of(request)
    if form.get("release"):
        data: dict[str, Any] = {"active": False}
    else:
        data = {"limit_a": form.get("limit_a", "")}
        if form.get("duration", "").strip():
            data["duration"] = form["duration"].strip()
    try:
        await console.call_service(principal, "loadmanager", "set_site_limit", data)
    except (ServiceNotFound, ServiceValidationError) as err:
        flash(request, "error", f"site limit refused: {err}")
        raise back("/chargers") from None
    except Unauthorized as err:
        await console.denied("role too low", address=principal.address, principal=principal, detail=str(err))
        raise WebError(403, str(err)) from None
    flash(request, "ok", "site limit released" if form.get("release") else f"site limit set to {data['limit_a']} A")
    raise back("/chargers")


async def charger_command(request: web.Request) -> web.StreamResponse:
    console, principal = console_of(request), principal_of(request)
    charger_id, service = request.match_info["charger"], request.match_info["service"]
    target = f"/chargers#{charger_id}"
    fields = dict(charger_services(console)).get(service)
    if fields is None:
        raise WebError(404, f"no charger service {service}")
    form = await form_of(request)
    data: dict[str, Any] = {"charger": charger_id}
    for f in fields:
        if f.name == "charger":
            continue
        present, value = form_value(f, form.get(f.name))
        if present:
            data[f.name] = value
    try:
        result = await console.call_service(principal, "charger", service, data)
    except (ServiceNotFound, ServiceValidationError) as err:
        flash(request, "error", f"{views.humanize(service)} refused: {err}")
        raise back(target) from None
    except Unauthorized as err:
        await console.denied("role too low", address=principal.address, principal=principal, detail=str(err))
        raise WebError(403, str(err)) from None
    except TimeoutError:
        flash(request, "error", f"{views.humanize(service)}: no answer in time")
        raise back(target) from None
    accepted = not isinstance(result, dict) or result.get("accepted", True)
    detail = f" ({result.get('status')})" if isinstance(result, dict) and result.get("status") else ""
    flash(request, "ok" if accepted else "warn",
          f"{views.humanize(service)} on {charger_id}: {'accepted' if accepted else 'not accepted'}{detail}")
    raise back(target)


# -- security, devices, audit ---------------------------------------------------------------------------------


async def security_get(request: web.Request) -> web.StreamResponse:
    console, principal = console_of(request), principal_of(request)
    page = views.security_page(views.frame_for(console, principal), posture=console.posture(),
                               fingerprint=console.fingerprint, today=dt.date.today())
    return html(page)


async def enrollment_get(request: web.Request) -> web.StreamResponse:
    console, principal = console_of(request), principal_of(request)
    entries = [e.as_dict() for e in await console.gw.enrollment.list()]
    return html(views.enrollment_page(views.frame_for(console, principal), entries=entries))


async def enrollment_post(request: web.Request) -> web.StreamResponse:
    console, principal = console_of(request), principal_of(request)
    form = await form_of(request)
    kind, identity, decision = form.get("kind", ""), form.get("identity", ""), form.get("decision", "")
    context = console.context(principal)
    try:
        if decision == "approve":
            await console.gw.enrollment.approve(kind, identity, context)
        elif decision == "reject":
            await console.gw.enrollment.reject(kind, identity, context, reason="rejected in the web console")
        else:
            raise WebError(400, "decision must be approve or reject")
    except UnknownEnrollment as err:
        flash(request, "error", str(err))
    except Unauthorized as err:
        raise WebError(403, str(err)) from None
    except (EnrollmentError, ValueError) as err:
        flash(request, "error", str(err))
    else:
        flash(request, "ok", f"{kind} device {identity} {'approved' if decision == 'approve' else 'rejected'}.")
    raise back("/enrollment")


async def audit_get(request: web.Request) -> web.StreamResponse:
    console, principal = console_of(request), principal_of(request)
    event = request.query.get("event", "")
    if event not in views.AUDIT_FILTERS:
        event = ""
    try:
        limit = int(request.query.get("limit", "100"))
    except ValueError:
        limit = 100
    limit = limit if limit in (100, 500, 1000) else 100
    records = [r.as_dict() for r in await console.gw.audit.list(limit=limit, event_prefix=event or None)]
    verify = None
    if request.query.get("verify"):
        result = await console.gw.audit.verify()
        verify = {"ok": result.ok, "records": result.records, "first_bad_seq": result.first_bad_seq,
                  "problem": result.problem}
    return html(views.audit_page(views.frame_for(console, principal), records=records, verify=verify, event=event,
                                 limit=limit))


# -- users and tokens -------------------------------------------------------------------------------------------


async def _users_view(request: web.Request, shown: Markup | None = None) -> web.Response:
    console, principal = console_of(request), principal_of(request)
    users = await asyncio.get_running_loop().run_in_executor(None, console.gw.users.list)
    now = console.clock()
    rows = [{"username": u.username, "role": u.role.name.lower(), "must_change": u.must_change,
             "locked": u.is_locked(now), "failed_count": u.failed_count, "created": u.created} for u in users]
    return html(views.users_page(views.frame_for(console, principal), users=rows, shown=shown))


async def users_get(request: web.Request) -> web.StreamResponse:
    return await _users_view(request)


async def users_post(request: web.Request) -> web.StreamResponse:
    console, principal = console_of(request), principal_of(request)
    form = await form_of(request)
    username, role = form.get("username", "").strip(), form.get("role", "viewer")
    try:
        password = await console.add_user(principal, username, role)
    except UserError as err:
        flash(request, "error", str(err))
        raise back("/users") from None
    shown = views.secret_once(f"Account {username} created", "Shown only now: give it to the person securely.",
                              password, "Their one-time password (they choose their own at the first login):")
    return await _users_view(request, shown)


async def user_password_post(request: web.Request) -> web.StreamResponse:
    console, principal = console_of(request), principal_of(request)
    username = request.match_info["username"]
    if username.lower() == principal.username.lower():
        flash(request, "error", "Change your own password under Change password.")
        raise back("/users")
    try:
        password = await console.reset_user(principal, username)
    except (UserError, WeakPassword) as err:
        flash(request, "error", str(err))
        raise back("/users") from None
    shown = views.secret_once(f"New one-time password for {username}", "Shown only now.", password,
                              "Their sessions were ended; they choose their own password at the next login:")
    return await _users_view(request, shown)


async def user_delete_post(request: web.Request) -> web.StreamResponse:
    console, principal = console_of(request), principal_of(request)
    username = request.match_info["username"]
    try:
        await console.delete_user(principal, username)
    except UserError as err:
        flash(request, "error", str(err))
    else:
        flash(request, "ok", f"Account {username} deleted; its sessions and API tokens ended.")
    raise back("/users")


async def _tokens_view(request: web.Request, shown: Markup | None = None) -> web.Response:
    console, principal = console_of(request), principal_of(request)
    tokens = [t.as_dict() for t in console.store.all_tokens()]
    return html(views.tokens_page(views.frame_for(console, principal), tokens=tokens, shown=shown))


async def tokens_get(request: web.Request) -> web.StreamResponse:
    return await _tokens_view(request)


async def tokens_post(request: web.Request) -> web.StreamResponse:
    console, principal = console_of(request), principal_of(request)
    form = await form_of(request)
    try:
        secret, record = await console.create_token(principal, form.get("name", ""), form.get("scope", "read"))
    except ValueError as err:
        flash(request, "error", str(err))
        raise back("/tokens") from None
    shown = views.secret_once(f"Token {record.name} ({record.scope}) created", "Shown only now: store it in the "
                              "integration's secret storage.", secret, "Copy it now; it cannot be shown again:")
    return await _tokens_view(request, shown)


async def token_revoke_post(request: web.Request) -> web.StreamResponse:
    console, principal = console_of(request), principal_of(request)
    try:
        token_id = int(request.match_info["token_id"])
    except ValueError:
        raise WebError(404, "no such token") from None
    record = await console.revoke_token(principal, token_id)
    flash(request, "ok" if record else "error", f"Token {record.name} revoked." if record else "No such token.")
    raise back("/tokens")


# -- badges (id tokens) -----------------------------------------------------------------------------------------


async def idtokens_get(request: web.Request) -> web.StreamResponse:
    console, principal = console_of(request), principal_of(request)
    tokens = [t.as_dict() for t in await console.idtokens.list()]
    return html(views.idtokens_page(views.frame_for(console, principal), tokens=tokens, kinds=KINDS))


async def idtokens_post(request: web.Request) -> web.StreamResponse:
    console, principal = console_of(request), principal_of(request)
    form = await form_of(request)
    expires = None
    if form.get("expires"):
        try:
            day = dt.date.fromisoformat(form["expires"])
        except ValueError:
            flash(request, "error", "The last valid day must be a date.")
            raise back("/idtokens") from None
        # Valid through the whole last day, local time (as `ampgate token add --expires`).
        expires = dt.datetime.combine(day + dt.timedelta(days=1), dt.time()).timestamp()
    try:
        entry = await console.idtokens.add(form.get("token", ""), label=form.get("label", ""),
                                           kind=form.get("kind", "rfid"), expires_at=expires,
                                           context=console.context(principal))
    except IdTokenError as err:
        flash(request, "error", str(err))
    else:
        flash(request, "ok", f"Badge {entry.label or entry.id} added.")
    raise back("/idtokens")


async def idtoken_revoke_post(request: web.Request) -> web.StreamResponse:
    console, principal = console_of(request), principal_of(request)
    try:
        token_id = int(request.match_info["token_id"])
        await console.idtokens.revoke(token_id=token_id, context=console.context(principal))
    except (ValueError, IdTokenError) as err:
        flash(request, "error", str(err))
    else:
        flash(request, "ok", "Badge revoked.")
    raise back("/idtokens")


# -- factory reset ----------------------------------------------------------------------------------------------


async def reset_get(request: web.Request) -> web.StreamResponse:
    console, principal = console_of(request), principal_of(request)
    return html(views.reset_page(views.frame_for(console, principal)))


async def reset_post(request: web.Request) -> web.StreamResponse:
    console, principal = console_of(request), principal_of(request)
    form = await form_of(request)
    frame = views.frame_for(console, principal)
    if form.get("confirm", "") != RESET_CONFIRM_WORD:
        return html(views.reset_page(frame, problem=f"Type {RESET_CONFIRM_WORD} to confirm."), 400)
    if not await console.confirm_password(principal, form.get("password", "")):
        return html(views.reset_page(frame, problem="Wrong password; nothing was erased."), 403)
    await console.request_reset(principal)
    if principal.session is not None:
        await console.store.end_session(principal.session)
    response = html(views.reset_page(frame, done=True))
    clear_session_cookie(response, request)
    return response


# -- the table -------------------------------------------------------------------------------------------------


def routes() -> list[RouteSpec]:
    V, OP, A = Role.VIEWER, Role.OPERATOR, Role.ADMIN

    def p(method: str, path: str, handler: Any, role: Role | None, **kw: Any) -> RouteSpec:
        return RouteSpec(method=method, path=path, handler=handler, role=role, **kw)

    return [
        p("GET", "/login", login_get, None),
        p("POST", "/login", login_post, None),
        p("POST", "/logout", logout_post, V, before_password_change=True),
        p("GET", "/password", password_get, V, before_password_change=True),
        p("POST", "/password", password_post, V, before_password_change=True),
        p("GET", "/", overview_get, V),
        p("GET", "/chargers", chargers_get, V),
        p("POST", "/chargers/{charger}/{service}", charger_command, OP),
        p("POST", "/site/limit", site_limit_post, OP),
        p("GET", "/security", security_get, V),
        p("GET", "/enrollment", enrollment_get, V),
        p("POST", "/enrollment/decide", enrollment_post, A),
        p("GET", "/audit", audit_get, A),
        p("GET", "/users", users_get, A),
        p("POST", "/users", users_post, A),
        p("POST", "/users/{username}/password", user_password_post, A),
        p("POST", "/users/{username}/delete", user_delete_post, A),
        p("GET", "/tokens", tokens_get, A),
        p("POST", "/tokens", tokens_post, A),
        p("POST", "/tokens/{token_id}/revoke", token_revoke_post, A),
        p("GET", "/idtokens", idtokens_get, OP),
        p("POST", "/idtokens", idtokens_post, A),
        p("POST", "/idtokens/{token_id}/revoke", idtoken_revoke_post, A),
        p("GET", "/reset", reset_get, A),
        p("POST", "/reset", reset_post, A),
    ]
