"""The only module that touches sockets: the aiohttp application, its middlewares, TLS and the live stream.

Contract:
- HTTPS with the gateway's certificate (``gateway.security.certs``/``tls``) unless ``tls.enabled: false``,
  which ``async_setup`` allows only on loopback (policy: WEB-001).
- Every response carries the security headers (policy: WEB-003): HSTS on TLS, a CSP without inline script
  or style, frame denial, nosniff, no referrer, and ``Cache-Control: no-store`` on everything but static
  files (pages show one-time passwords and tokens).
- A request reaches a handler only through its ``RouteSpec``: the auth middleware resolves the bearer token
  (API routes) or the session cookie, sends the unauthenticated to the login page (401 on the API), checks
  the CSRF token of every state-changing request made with a session (403), keeps an account that must
  change its password on the password form, enforces the route's role (403) and checks API input against
  the declared schemas (400).
- Errors never show a traceback: 4xx and 5xx are a JSON ``{"error", "status"}`` on ``/api/`` and a page
  elsewhere; unexpected exceptions are logged with the request line and answered 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlencode

from aiohttp import web

from .auth import csrf_ok, is_state_changing, parse_bearer, same_origin
from .const import (
    CONTENT_SECURITY_POLICY,
    CSRF_FIELD,
    CSRF_HEADER,
    HSTS_MAX_AGE_S,
    KEEPALIVE_TIMEOUT_S,
    MAX_BODY_BYTES,
    MAX_FORM_FIELDS,
    SESSION_COOKIE_PLAIN,
    SESSION_COOKIE_TLS,
    SHUTDOWN_TIMEOUT_S,
    STREAM_RETRY_MS,
)
from .routing import (
    BODY,
    CONSOLE_KEY,
    PARAMS,
    PRINCIPAL,
    SPECS_KEY,
    RouteSpec,
    WebError,
    client_address,
    console_of,
    principal_of,
)
from .schema import SchemaError, from_query, validate
from .sse import encode_comment, encode_event
from .stream import CLOSE, KEEPALIVE, TooManyStreams

if TYPE_CHECKING:
    import ssl

    from .console import WebConsole

_LOGGER = logging.getLogger(__name__)

STATIC_DIR: Final = Path(__file__).parent / "static"
STATIC_PREFIX: Final = "/static"
SERVER_HEADER: Final = "ampgate"  # not aiohttp's "Python/3.x aiohttp/3.y": versions help attackers only

Middleware = Callable[[web.Request, Callable[[web.Request], Awaitable[web.StreamResponse]]],
                      Awaitable[web.StreamResponse]]


def session_cookie(console: WebConsole) -> str:
    return SESSION_COOKIE_TLS if console.tls else SESSION_COOKIE_PLAIN


# -- headers (policy: WEB-003) ------------------------------------------------------------------------------


def security_headers(tls: bool) -> dict[str, str]:
    headers = {
        "Content-Security-Policy": CONTENT_SECURITY_POLICY,
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cross-Origin-Opener-Policy": "same-origin",
        "Cross-Origin-Resource-Policy": "same-origin",
        "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
    }
    if tls:
        headers["Strict-Transport-Security"] = f"max-age={HSTS_MAX_AGE_S}"
    return headers


def _add_headers(tls: bool) -> Callable[[web.Request, web.StreamResponse], Awaitable[None]]:
    fixed = security_headers(tls)

    async def on_prepare(request: web.Request, response: web.StreamResponse) -> None:
        for name, value in fixed.items():
            response.headers.setdefault(name, value)
        response.headers["Server"] = SERVER_HEADER
        if not request.path.startswith(STATIC_PREFIX + "/"):
            response.headers.setdefault("Cache-Control", "no-store")
        else:
            response.headers.setdefault("Cache-Control", "no-cache")

    return on_prepare


# -- errors -------------------------------------------------------------------------------------------------


def _error_response(request: web.Request, status: int, message: str, problems: Sequence[str] = (),
                    headers: dict[str, str] | None = None) -> web.StreamResponse:
    if request.path.startswith("/api/") or request.path == "/api":
        body: dict[str, Any] = {"error": message, "status": status}
        if problems:
            body["problems"] = list(problems)
        return web.json_response(body, status=status, headers=headers)
    from .views import error_page

    console = console_of(request)
    html = error_page(console, request.get(PRINCIPAL), status, message, problems)
    return web.Response(text=html, status=status, content_type="text/html", headers=headers)


@web.middleware
async def error_middleware(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                           ) -> web.StreamResponse:
    try:
        return await handler(request)
    except WebError as err:
        return _error_response(request, err.status, err.message, err.problems, err.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise  # redirects
        allow = exc.headers.get("Allow")
        return _error_response(request, exc.status, exc.reason, headers={"Allow": allow} if allow else None)
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception:
        _LOGGER.exception("web: %s %s failed", request.method, request.path)
        return _error_response(request, 500, "internal error (logged on the gateway)")


# -- authentication, CSRF, roles, input -------------------------------------------------------------------


def _login_redirect(request: web.Request, why: str) -> web.HTTPException:
    query: dict[str, str] = {}
    if request.method == "GET" and request.path != "/":
        query["next"] = request.path_qs
    if why == "expired":
        query["expired"] = "1"
    location = "/login" + (f"?{urlencode(query)}" if query else "")
    return web.HTTPSeeOther(location)


async def _csrf_presented(request: web.Request, spec: RouteSpec) -> str | None:
    presented = request.headers.get(CSRF_HEADER)
    if presented is None and not spec.api and request.content_type in (
        "application/x-www-form-urlencoded", "multipart/form-data"
    ):
        form = await request.post()
        value = form.get(CSRF_FIELD)
        presented = value if isinstance(value, str) else None
    return presented


async def _validated_input(request: web.Request, spec: RouteSpec) -> None:
    params: dict[str, Any] = {}
    try:
        for param in spec.params:
            path = param.where == "path"
            texts = [request.match_info[param.name]] if path else request.query.getall(param.name, [])
            if not texts:
                if param.required:
                    raise SchemaError(param.name, "required")
                continue
            params[param.name] = from_query(param.schema, texts, param.name)
        request[PARAMS] = params
        if spec.body is not None:
            if request.content_type != "application/json":
                raise SchemaError("body", "send JSON with Content-Type: application/json")
            text = await request.text()
            try:
                data = json.loads(text) if text.strip() else None
            except json.JSONDecodeError as err:
                raise SchemaError("body", f"not valid JSON ({err.msg} at character {err.pos})") from None
            if data is None:
                raise SchemaError("body", "a JSON object is required")
            request[BODY] = validate(spec.body, data, "body")
    except SchemaError as err:
        raise WebError(400, str(err)) from None
    except UnicodeDecodeError:
        raise WebError(400, "the body is not UTF-8") from None


@web.middleware
async def auth_middleware(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                          ) -> web.StreamResponse:
    match = request.match_info
    if match.http_exception is not None:
        raise match.http_exception  # 404 / 405 from the router
    spec: RouteSpec | None = request.app[SPECS_KEY].get(match.route)
    if spec is None:
        raise WebError(404, "not found")  # a route without a declaration is unreachable by construction
    console = console_of(request)
    address = client_address(request)
    if not console.allowed(address):
        await console.denied("address not in allow_from", address=address, detail=f"{request.method} {request.path}")
        raise WebError(403, "this address may not use the console")
    principal = None
    why = "none"
    if spec.api:
        bearer = parse_bearer(request.headers.get("Authorization"))
        if bearer is not None:
            principal = await console.token_principal(bearer, address)
            if principal is None:
                await console.denied("invalid access token", address=address)
                raise WebError(401, "invalid or revoked access token",
                               headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
    if principal is None:
        secret = request.cookies.get(session_cookie(console))
        if secret:
            principal, why = await console.session_principal(secret, address)
    if principal is not None:
        request[PRINCIPAL] = principal
    if spec.role is None:
        return await handler(request)
    if principal is None:
        if spec.api:
            raise WebError(401, "session expired" if why == "expired" else "authentication required",
                           headers={"WWW-Authenticate": "Bearer"})
        raise _login_redirect(request, why)
    if principal.kind == "session" and is_state_changing(request.method):  # policy: WEB-003 (CSRF)
        if not same_origin(request.headers.get("Origin"), request.scheme, request.host,
                           request.headers.get("Sec-Fetch-Site")):
            await console.denied("cross-origin request", address=address, principal=principal,
                                 detail=f"{request.method} {request.path}")
            raise WebError(403, "cross-origin request refused")
        if not csrf_ok(principal.session_secret or "", await _csrf_presented(request, spec)):
            await console.denied("missing or wrong CSRF token", address=address, principal=principal,
                                 detail=f"{request.method} {request.path}")
            raise WebError(403, "missing or wrong CSRF token: reload the page and try again")
    if principal.session is not None and principal.session.must_change and not spec.before_password_change:
        # policy: AUTH-005 (first login forces a password change)
        if spec.api:
            raise WebError(403, "the password must be changed first (in the console)")
        raise web.HTTPSeeOther("/password")
    if principal.role < spec.role:
        await console.denied("role too low", address=address, principal=principal,
                             detail=f"{request.method} {request.path} needs {spec.role.name.lower()}")
        raise WebError(403, f"your role ({principal.role.name.lower()}) may not do this; "
                            f"it needs {spec.role.name.lower()}")
    if spec.api:
        await _validated_input(request, spec)
    return await handler(request)


# -- the live stream ------------------------------------------------------------------------------------------


async def api_stream(request: web.Request) -> web.StreamResponse:
    console, principal = console_of(request), principal_of(request)
    try:
        client = console.hub.register(request[PARAMS].get("entity_id", ()))
    except TooManyStreams as err:
        raise WebError(503, str(err), headers={"Retry-After": "10"}) from None
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store",
                                           "X-Accel-Buffering": "no"})
    session = principal.session
    try:
        await response.prepare(request)
        first = encode_comment("ampgate live states") + encode_event("hello", "{}", retry_ms=STREAM_RETRY_MS)
        await response.write(first + console.hub.snapshot(client, console.gw.states.all()))
        queue = client.queue
        while True:
            item = await queue.get()
            chunks = [item]
            while not queue.empty() and item != CLOSE:
                item = queue.get_nowait()
                chunks.append(item)
            if chunks[-1] == CLOSE:
                chunks.pop()
                if chunks:
                    await response.write(b"".join(chunks))
                break
            if session is not None and KEEPALIVE in chunks and (
                session.expired(console.clock()) or session.id_hash not in console.store.sessions
            ):
                await response.write(encode_event("expired", "{}"))  # policy: AUTH-005, also for streams
                break
            await response.write(b"".join(chunks) if len(chunks) > 1 else item)
    except (ConnectionResetError, ConnectionError):
        pass
    finally:
        console.hub.unregister(client)
    with contextlib.suppress(ConnectionError, RuntimeError):
        await response.write_eof()
    return response


# -- the application and the listener ----------------------------------------------------------------------------


def build_app(console: WebConsole, specs: Sequence[RouteSpec]) -> web.Application:
    app = web.Application(middlewares=[error_middleware, auth_middleware], client_max_size=MAX_BODY_BYTES,
                          client_max_fields=MAX_FORM_FIELDS)
    app[CONSOLE_KEY] = console
    table: dict[Any, RouteSpec] = {}
    for spec in specs:
        route = app.router.add_route(spec.method, spec.path, spec.handler)
        table[route] = spec
    static = app.router.add_static(STATIC_PREFIX, STATIC_DIR, follow_symlinks=False, show_index=False)
    for route in static:
        table[route] = RouteSpec(method=route.method, path=STATIC_PREFIX + "/{filename}", handler=route.handler,
                                 role=None)
    app[SPECS_KEY] = table
    app.on_response_prepare.append(_add_headers(console.tls))
    return app


class WebServer:
    """The listener; ``start`` binds, ``stop`` closes it after the live streams have ended."""

    def __init__(self, app: web.Application, *, bind: str, port: int, ssl_context: ssl.SSLContext | None) -> None:
        self.app = app
        self.bind = bind
        self.port = port
        self.ssl_context = ssl_context
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        # handler_cancellation: a client that disconnects cancels its handler (its stream ends at once).
        runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S,
                               keepalive_timeout=KEEPALIVE_TIMEOUT_S, handler_cancellation=True)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.bind, self.port, ssl_context=self.ssl_context)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        addresses = runner.addresses
        if addresses:
            self.port = int(addresses[0][1])

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
