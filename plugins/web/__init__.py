"""Web console and API: the installer's and operator's daily tool, secure by default.

HTTPS on 127.0.0.1:8443 with the gateway's own certificate; accounts from ``gw.users`` with the AUTH-005
rules; server-side sessions, CSRF tokens and security headers (WEB-003); a one-time administrator password
at first start (WEB-002); plain HTTP only on loopback (WEB-001). Pages are server-rendered HTML with a small
plain script (``static/``); the JSON API lives under ``/api/`` with scoped, revocable access tokens and an
OpenAPI document at ``/api/openapi.json``. Modules: ``auth`` and ``sse`` (pure rules and codec), ``store``
(sessions and tokens in SQLite), ``stream`` (live fan-out), ``console`` (logic), ``api``/``pages``/``views``
(routes and HTML), ``server`` (the aiohttp adapter).
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import voluptuous as vol

from gateway.config import validation as cv
from gateway.errors import PluginError
from gateway.plugin import Manifest
from gateway.security.exposure import Auth, Exposure, Listener, TlsSpec
from gateway.security.netaddr import is_loopback
from gateway.security.policy import Finding, PolicyInput, Rule, Severity, rule_factory

from .const import DEFAULT_BIND, DEFAULT_PORT, DOMAIN

if TYPE_CHECKING:
    import ssl

    from gateway.core import Gateway

    from .console import WebConsole

_LOGGER = logging.getLogger(__name__)

MANIFEST = Manifest(name=DOMAIN, title="Web console and API")

_ENTITY = re.compile(r"^[a-z0-9_]+\.[a-z0-9_]+$")


def _entity(value: Any) -> str:
    text = str(value)
    if not _ENTITY.match(text):
        raise cv.invalid("expected an entity id", value, "write for example sensor.grid_power")
    return text


def _tls(value: Any) -> dict[str, Any]:
    block: dict[str, Any] = cv.tls_schema(server=True)(value or {})
    if block.get("client_auth", "none") != "none":
        raise cv.invalid("client certificates are not supported by the web console", block["client_auth"],
                         "remove tls.client_auth; accounts and API tokens authenticate people and integrations")
    if bool(block.get("cert")) != bool(block.get("key")):
        raise vol.Invalid(f"tls.cert and tls.key go together{cv.FIX}give both, or neither to use the gateway's "
                          "own certificate")
    return block


CONFIG_SCHEMA = cv.plugin_schema({
    vol.Optional("bind", default=DEFAULT_BIND): cv.bind_address,
    vol.Optional("port", default=DEFAULT_PORT): cv.port,
    vol.Optional("tls", default={}): _tls,
    # Extra names and addresses the generated certificate must name (the LAN name of the gateway).
    vol.Optional("hosts", default=[]): cv.ensure_list(cv.host),
    vol.Optional("allow_from", default=[]): cv.ensure_list(cv.cidr),
    vol.Optional("power_flow", default={}): vol.Schema({
        vol.Optional("grid"): _entity,
        vol.Optional("pv", default=[]): cv.ensure_list(_entity),
    }),
})


def _tls_on(config: dict[str, Any]) -> bool:
    return bool((config.get("tls") or {}).get("enabled", True))


def exposures(config: dict[str, Any]) -> list[Exposure]:
    tls = TlsSpec.from_config(config.get("tls") or {"enabled": True}) if _tls_on(config) else None
    return [Listener(
        plugin=DOMAIN, protocol="https" if tls else "http", bind=config["bind"], port=config["port"], tls=tls,
        # Passwords and tokens travel on it: AUTH-001 refuses it in plaintext off loopback, whatever WEB-001 says.
        auth=Auth.PASSWORD, allowlist=tuple(config.get("allow_from", ())), writes=True, config_path=(DOMAIN,),
        description="web console and JSON API (accounts, sessions, API tokens)",
    )]


# -- policy --------------------------------------------------------------------------------------------------


def check_plain_http(data: PolicyInput) -> Iterator[Finding]:
    conf = data.config.plugins.get(DOMAIN) or {}
    if not conf.get("enabled") or _tls_on(conf) or is_loopback(conf["bind"]):
        return
    yield Finding(rule_id="WEB-001", plugin=DOMAIN, config_path=(DOMAIN, "tls", "enabled"),
                  actual=f"plain HTTP on {conf['bind']}:{conf['port']}",
                  message="the web console would send passwords and session cookies in clear text",
                  fix="remove tls.enabled: false (HTTPS with the gateway's certificate), or bind 127.0.0.1")


def rules() -> list[Rule]:
    rule = rule_factory(DOMAIN)
    return [
        rule("WEB-001", "Web console over plain HTTP on a non-loopback address", Severity.REFUSE,
             "HTTPS (the default), or plain HTTP on 127.0.0.1 only",
             "passwords and settings would travel in clear", check_plain_http),
        rule("WEB-002", "No default password", Severity.BEHAVIOUR,
             "first start creates admin with a random one-time password, printed once, stored as a hash",
             "shared or guessable factory passwords are the classic hole"),
        rule("WEB-003", "Security headers, CSRF protection, secure cookies", Severity.BEHAVIOUR,
             "HSTS on TLS, CSP without inline script, frame-deny, nosniff; CSRF token on every change; cookies "
             "Secure + HttpOnly + SameSite=Strict", "the usual web attacks"),
    ]


# -- setup ---------------------------------------------------------------------------------------------------


def _ssl_context(gw: Gateway, config: dict[str, Any]) -> tuple[ssl.SSLContext, str]:
    from gateway.security import certs, tls

    block = config["tls"]
    if block.get("cert"):
        cert, key = block["cert"], block["key"]
        fingerprint = certs.fingerprint_sha256(certs.load_certs(cert)[0])
    else:
        hosts = [config["bind"], *config.get("hosts", [])]
        own = certs.ensure_gateway_certs(gw.data_dir, hosts=hosts)
        cert, key, fingerprint = str(own.cert), str(own.key), own.fingerprint
    context = tls.server_context(cert=cert, key=key, min_version=block.get("min_version", "1.2"),
                                 ciphers=block.get("ciphers"))
    return context, fingerprint


def _url(config: dict[str, Any], tls: bool, port: int) -> str:
    host = config["bind"]
    host = f"[{host}]" if ":" in host else host
    return f"{'https' if tls else 'http'}://{host}:{port}/"


async def async_setup(gw: Gateway, config: dict[str, Any]) -> WebConsole:
    from . import api, pages
    from .console import WebConsole
    from .openapi import document
    from .routing import RouteSpec
    from .server import WebServer, build_app

    tls_on = _tls_on(config)
    if not tls_on and not is_loopback(config["bind"]):
        # policy: WEB-001 (and AUTH-001): refused by the policy check; refused here too, whatever was accepted.
        raise PluginError(f"web: plain HTTP on {config['bind']} refused; plain HTTP is allowed on loopback only")
    console = WebConsole(gw, config)
    await console.start()
    try:
        ssl_context = None
        if tls_on:
            ssl_context, console.fingerprint = await asyncio.get_running_loop().run_in_executor(
                None, _ssl_context, gw, config)
        specs = [*pages.routes(), *api.routes()]
        published = document(specs, title=f"Ampgate API ({gw.name})")

        async def openapi_json(request: Any) -> Any:
            return api.reply(published)

        specs.append(RouteSpec(method="GET", path="/api/openapi.json", handler=openapi_json, role=None, api=True,
                               published=False))
        server = WebServer(build_app(console, specs), bind=config["bind"], port=config["port"],
                           ssl_context=ssl_context)
        await server.start()
        console.server = server
        console.url = _url(config, tls_on, server.port)
        line = f"web console on {console.url}"
        if console.fingerprint:
            line += f" (certificate SHA-256 fingerprint {console.fingerprint})"
        _LOGGER.info("%s", line)
        print(f"ampgate: {line}", file=sys.stderr, flush=True)
        await console.ensure_first_admin()
    except BaseException:
        await console.stop()
        raise
    return console


__all__ = ["CONFIG_SCHEMA", "MANIFEST", "async_setup", "exposures", "rules"]
