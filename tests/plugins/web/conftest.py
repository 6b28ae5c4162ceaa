"""Fixtures for the web plugin: a real gateway serving the console over HTTPS on loopback, accounts made
beforehand through the real user store, and a small cookie-keeping client that logs in like a browser."""

from __future__ import annotations

import contextlib
import re
import ssl
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.core import Gateway
from gateway.security import passwords, tls
from gateway.security.audit import AuditLog
from gateway.security.users import UserStore
from gateway.storage import Storage
from plugins.web.console import WebConsole
from tests.helpers import free_port, running_gateway

PASSWORDS = {"admin": "Adm1n!Secure#2024", "operator": "0perator!Strong#77", "viewer": "V1ewer!Strong#55"}


@pytest.fixture(autouse=True)
def fast_scrypt(monkeypatch: pytest.MonkeyPatch) -> None:
    # The account rules do not depend on the scrypt cost; 2**10 keeps each login at about a millisecond.
    monkeypatch.setattr(passwords, "SCRYPT_N", 2**10)


def web_yaml(port: int, *, extra: str = "", tls_enabled: bool = True) -> str:
    tls_block = "" if tls_enabled else "  tls:\n    enabled: false\n"
    return f"web:\n  enabled: true\n  port: {port}\n{tls_block}{extra}"


def make_users(data_dir: Path, users: dict[str, str] | None = None) -> None:
    """Accounts with known passwords (no forced change), made the way `ampgate user` makes them."""
    storage = Storage(data_dir).open()
    try:
        store = UserStore(storage, AuditLog(storage))
        for name, password in (users or PASSWORDS).items():
            store.add(name, name if name in ("admin", "operator", "viewer") else "viewer", password)
    finally:
        storage.close()


def console_of(gw: Gateway) -> WebConsole:
    assert gw._runner is not None
    for running in gw._runner.running:
        if running.name == "web":
            assert isinstance(running.instance, WebConsole)
            return running.instance
    raise AssertionError(f"web plugin not running: {gw.failed_plugins}")


def client_ssl(data_dir: Path) -> ssl.SSLContext:
    return tls.client_context(ca=data_dir / "certs" / "ca.pem")


class _Forms(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.inputs: list[dict[str, str | None]] = []
        self.meta: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "input":
            self.inputs.append(values)
        elif tag == "meta" and values.get("name"):
            self.meta[str(values["name"])] = str(values.get("content") or "")


def hidden_value(page: str, name: str) -> str:
    parser = _Forms()
    parser.feed(page)
    for item in parser.inputs:
        if item.get("name") == name:
            return str(item.get("value") or "")
    raise AssertionError(f"no input {name!r} in the page")


def meta_csrf(page: str) -> str:
    parser = _Forms()
    parser.feed(page)
    return parser.meta.get("csrf-token", "")


@dataclass
class Client:
    """A browser-like client: keeps cookies (also for IP hosts), follows no redirect unless asked."""

    base: str
    ssl_context: ssl.SSLContext | bool
    session: aiohttp.ClientSession = field(init=False)

    def __post_init__(self) -> None:
        self.session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True),
                                             connector=aiohttp.TCPConnector(ssl=self.ssl_context))

    async def close(self) -> None:
        await self.session.close()

    async def request(self, method: str, path: str, **kw: Any) -> tuple[int, str, aiohttp.ClientResponse]:
        kw.setdefault("allow_redirects", False)
        async with self.session.request(method, self.base + path, **kw) as resp:
            text = await resp.text()
            return resp.status, text, resp

    async def get(self, path: str, **kw: Any) -> tuple[int, str, aiohttp.ClientResponse]:
        return await self.request("GET", path, **kw)

    async def post_form(self, path: str, data: dict[str, str], *, csrf: bool = True,
                        **kw: Any) -> tuple[int, str, aiohttp.ClientResponse]:
        if csrf and "csrf" not in data:
            data = {**data, "csrf": await self.csrf()}
        return await self.request("POST", path, data=data, **kw)

    async def csrf(self) -> str:
        status, page, _ = await self.get("/password")
        assert status == 200, status
        return meta_csrf(page)

    async def login(self, username: str, password: str) -> tuple[int, str, aiohttp.ClientResponse]:
        status, page, _ = await self.get("/login")
        assert status == 200
        token = hidden_value(page, "csrf")
        return await self.request("POST", "/login", data={"username": username, "password": password,
                                                          "csrf": token, "next": "/"})

    def session_cookie(self) -> str | None:
        for cookie in self.session.cookie_jar:
            if cookie.key.endswith("ampgate_session"):
                return cookie.value
        return None


@dataclass
class WebEnv:
    gw: Gateway
    console: WebConsole
    base: str
    data_dir: Path
    clients: list[Client] = field(default_factory=list)

    def client(self) -> Client:
        scheme_ssl: ssl.SSLContext | bool = client_ssl(self.data_dir) if self.base.startswith("https") else False
        client = Client(self.base, scheme_ssl)
        self.clients.append(client)
        return client

    async def logged_in(self, username: str) -> Client:
        client = self.client()
        status, _, resp = await client.login(username, PASSWORDS[username])
        assert status == 303, status
        assert resp.headers["Location"] == "/"
        return client


@contextlib.asynccontextmanager
async def web_env(tmp_path: Path, *, users: bool = True, extra: str = "", tls_enabled: bool = True,
                  yaml_prefix: str = "") -> AsyncIterator[WebEnv]:
    data_dir = tmp_path / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    if users:
        make_users(data_dir)
    port = free_port()
    async with running_gateway(tmp_path, yaml_prefix + web_yaml(port, extra=extra, tls_enabled=tls_enabled)) as gw:
        console = console_of(gw)
        env = WebEnv(gw=gw, console=console, base=f"{'https' if tls_enabled else 'http'}://127.0.0.1:{port}",
                     data_dir=data_dir)
        try:
            yield env
        finally:
            for client in env.clients:
                await client.close()


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[WebEnv]:
    async with web_env(tmp_path) as value:
        yield value


class FakeClock:
    """Real time plus an offset the test moves forward (sessions and lockouts read it)."""

    def __init__(self) -> None:
        import time

        self._time = time.time
        self.offset = 0.0

    def __call__(self) -> float:
        return self._time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@pytest.fixture
def clock(env: WebEnv) -> Iterator[FakeClock]:
    fake = FakeClock()
    env.console.clock = fake
    yield fake


ONE_TIME_RE = re.compile(r"password: (\S+)")
