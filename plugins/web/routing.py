"""Route declarations: what each URL needs (role, CSRF, forced password change) and what it takes and gives.

Every page and API route is a ``RouteSpec``. The server registers exactly these (a handler without a spec
cannot be reached: the auth middleware refuses it), the auth middleware enforces ``role``, and
``openapi.py`` publishes the API routes from the same objects, so the OpenAPI document, the checks and the
routes are one list.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from aiohttp import web

from gateway.context import Role

from .auth import Principal

if TYPE_CHECKING:
    from .console import WebConsole

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

CONSOLE_KEY: Final = web.AppKey("console", object)
SPECS_KEY: Final = web.AppKey("specs", dict)
# request[PRINCIPAL]: who is asking (absent on public routes without a session)
PRINCIPAL: Final = web.RequestKey("principal", Principal)
PARAMS: Final = web.RequestKey("params", dict)  # validated query and path parameters (API routes)
BODY: Final = web.RequestKey("body", dict)  # the validated JSON body (API routes)


@dataclass(frozen=True, slots=True, kw_only=True)
class Param:
    name: str
    where: str  # "query" or "path"
    schema: dict[str, Any]
    required: bool = False
    description: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteSpec:
    method: str
    path: str
    handler: Handler
    role: Role | None  # None: public (login page, static files, the OpenAPI document)
    api: bool = False  # JSON errors and bearer tokens; else HTML errors and redirects to the login page
    before_password_change: bool = False  # reachable while the account must change its password
    summary: str = ""
    description: str = ""
    tag: str = ""
    params: tuple[Param, ...] = ()
    body: dict[str, Any] | None = None  # JSON schema of the request body (API)
    response: dict[str, Any] | None = None  # JSON schema of the success body (API)
    status: int = 200
    content_type: str = "application/json"
    errors: tuple[int, ...] = field(default=())  # extra documented error statuses
    published: bool = True  # listed in the OpenAPI document (the document itself is not)

    @property
    def operation_id(self) -> str:
        name = getattr(self.handler, "__name__", "op")
        return name.removeprefix("api_")


def console_of(request: web.Request) -> WebConsole:
    console: WebConsole = request.app[CONSOLE_KEY]  # type: ignore[assignment]
    return console


def principal_of(request: web.Request) -> Principal:
    principal: Principal | None = request.get(PRINCIPAL)
    if principal is None:  # only public routes run without one, and they do not call this
        raise web.HTTPUnauthorized()
    return principal


def client_address(request: web.Request) -> str | None:
    """The peer's address (no proxy headers are trusted: the console is reached directly)."""
    return request.remote


class WebError(Exception):
    """A refusal with an HTTP status; rendered as JSON on API routes and as a page elsewhere."""

    def __init__(self, status: int, message: str, problems: tuple[str, ...] | list[str] = (),
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.problems = tuple(problems)
        self.headers = headers or {}
