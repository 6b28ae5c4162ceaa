"""The ``ocpp:`` configuration section: validators, the station schema and the checks across keys.

Contract: ``CONFIG_SCHEMA`` validates and fills defaults; every error names the key and says how to fix it
(``gateway.config.validation`` style). What single keys cannot say (unique identities and slugs, a password
where the profile needs one, TLS where the profile needs it) is checked by ``_check_section``. Security
judgements on valid values (short passwords, free charging, ...) are the policy's (``plugins/ocpp/policy.py``).
"""

from __future__ import annotations

import re
from typing import Any

import voluptuous as vol

from gateway.config import validation as cv
from plugins.ocpp.const import (
    DEFAULT_BIND,
    DEFAULT_HEARTBEAT_INTERVAL_S,
    DEFAULT_PATH,
    DEFAULT_PORT,
    MAX_FRAME_BYTES,
    MAX_PASSWORD_BYTES_201,
    VERSIONS,
)
from plugins.ocpp.stations import password_bytes, slug, valid_identity

_PATH = re.compile(r"^(/[A-Za-z0-9_.-]+)+$")


def _identity(value: Any) -> str:
    text = str(value)
    if not valid_identity(text):
        raise cv.invalid("expected a station identity (1-48 of A-Z a-z 0-9 * _ = + . | @ -)", value,
                         "use the identity the station puts at the end of its URL, e.g. CP001")
    return text


def _url_path(value: Any) -> str:
    text = str(value).rstrip("/")
    if not _PATH.match(text):
        raise cv.invalid("expected a URL path such as /ocpp", value, "write /ocpp (no trailing slash, no query)")
    return text


def _rate_unit(value: Any) -> str:
    text = str(value)
    if text.lower() == "auto":
        return "auto"
    if text.upper() in ("A", "W"):
        return text.upper()
    raise cv.invalid("expected auto, A or W", value, "write auto (ask the station), A or W")


def _current(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise cv.invalid("expected a current in amperes", value, "write a number such as 16") from None
    if not 0 <= number <= 1000:
        raise cv.invalid("expected a current between 0 and 1000 A", value, "write a number such as 16")
    return number


STATION_SCHEMA = vol.Schema({
    vol.Required("id"): _identity,
    vol.Optional("profile", default=2): vol.All(vol.Coerce(int), vol.In([1, 2, 3])),
    vol.Optional("password"): cv.secret,
    vol.Optional("password_format", default="text"): cv.one_of("text", "hex"),
    vol.Optional("version"): vol.All(cv.string, vol.In(VERSIONS)),
    vol.Optional("phases", default=3): vol.All(vol.Coerce(int), vol.In([1, 3])),
    vol.Optional("min_current_a", default=6.0): _current,
    vol.Optional("max_current_a", default=16.0): _current,
    vol.Optional("ciphers_rsa", default=False): cv.boolean,
    vol.Optional("rate_unit", default="auto"): _rate_unit,
    vol.Optional("limit_purpose", default="tx_default"): cv.one_of("tx_default", "station_max"),
    vol.Optional("fingerprint"): vol.All(cv.string, vol.Match(r"^([0-9A-Fa-f]{2}:?){31}[0-9A-Fa-f]{2}$")),
})

ENROLLED_DEFAULTS_SCHEMA = vol.Schema({
    vol.Optional("phases", default=3): vol.All(vol.Coerce(int), vol.In([1, 3])),
    vol.Optional("min_current_a", default=6.0): _current,
    vol.Optional("max_current_a", default=16.0): _current,
})


def _check_section(section: dict[str, Any]) -> dict[str, Any]:
    """What single keys cannot say: unique identities and slugs, a password where the profile needs one,
    TLS where the profile needs it."""
    if not section.get("enabled"):
        return section
    tls_on = bool(section.get("tls", {}).get("enabled", True))
    seen: dict[str, str] = {}
    slugs: dict[str, str] = {}
    for index, station in enumerate(section.get("stations", [])):
        ident = station["id"]
        where = ["stations", index]
        if ident.lower() in seen:
            raise vol.Invalid(f"station {ident!r} and {seen[ident.lower()]!r} differ only in case{cv.FIX}"
                              "identities are matched exactly; give the stations distinct identities",
                              path=[*where, "id"])
        seen[ident.lower()] = ident
        if slug(ident) in slugs:
            raise vol.Invalid(f"stations {ident!r} and {slugs[slug(ident)]!r} would both be charger."
                              f"{slug(ident)}{cv.FIX}rename one of them", path=[*where, "id"])
        slugs[slug(ident)] = ident
        profile = station["profile"]
        if profile in (1, 2) and "password" not in station:
            raise vol.Invalid(f"security profile {profile} authenticates with a password{cv.FIX}"
                              "add 'password: !secret <name>' (generate one with 'ampgate ocpp password')",
                              path=where)
        if "password" in station:
            raw = password_bytes(station)
            if raw is None:
                raise vol.Invalid(f"password_format: hex needs hexadecimal digits{cv.FIX}generate one with "
                                  "'ampgate ocpp password --hex'", path=[*where, "password"])
            if len(raw) > MAX_PASSWORD_BYTES_201:
                raise vol.Invalid(f"a station password has at most {MAX_PASSWORD_BYTES_201} bytes"
                                  f"{cv.FIX}use 16 to 20 random bytes", path=[*where, "password"])
        if profile == 1 and tls_on:
            raise vol.Invalid(f"security profile 1 is plain ws:// but ocpp.tls is on{cv.FIX}use profile 2 "
                              "(the same password, over TLS)", path=[*where, "profile"])
        if profile in (2, 3) and not tls_on:
            raise vol.Invalid(f"security profile {profile} needs TLS{cv.FIX}remove 'tls: {{enabled: false}}'",
                              path=[*where, "profile"])
        if station["min_current_a"] > station["max_current_a"]:
            raise vol.Invalid(f"min_current_a is above max_current_a{cv.FIX}swap them",
                              path=[*where, "min_current_a"])
    return section


CONFIG_SCHEMA = vol.All(cv.plugin_schema({
    vol.Optional("bind", default=DEFAULT_BIND): cv.bind_address,
    vol.Optional("port", default=DEFAULT_PORT): cv.port,
    vol.Optional("path", default=DEFAULT_PATH): _url_path,
    vol.Optional("tls", default={}): cv.tls_schema(server=True),
    vol.Optional("allow_from", default=[]): cv.ensure_list(cv.cidr),
    vol.Optional("heartbeat_interval", default=DEFAULT_HEARTBEAT_INTERVAL_S):
        vol.All(cv.duration, vol.Range(min=10, max=86400), vol.Coerce(int)),
    vol.Optional("max_frame_bytes", default=MAX_FRAME_BYTES): vol.All(int, vol.Range(min=4096, max=1024 * 1024)),
    vol.Optional("free_charging", default=False): cv.boolean,
    vol.Optional("accept_unknown_tokens", default=False): cv.boolean,
    vol.Optional("accept_mac_tokens", default=False): cv.boolean,
    vol.Optional("auto_approve", default=False): cv.boolean,
    vol.Optional("enrolled_defaults", default={}): ENROLLED_DEFAULTS_SCHEMA,
    vol.Optional("stations", default=[]): [STATION_SCHEMA],
}), _check_section)
