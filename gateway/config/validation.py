"""Validators shared by the core and every plugin schema.

Each validator coerces the value or raises ``vol.Invalid`` whose message says what was expected, what was
found, and after `` — fix: `` what to write instead (after Home Assistant's ``config_validation``).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import voluptuous as vol

FIX = " — fix: "


def invalid(expected: str, got: Any, fix: str) -> vol.Invalid:
    return vol.Invalid(f"{expected}, got {got!r}{FIX}{fix}")


def boolean(value: Any) -> bool:
    # YAML already turns true/false/yes/no into bool; strings from !env_var need the same treatment.
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in {"true", "yes", "on", "1", "false", "no", "off", "0"}:
        return value.lower() in {"true", "yes", "on", "1"}
    raise invalid("expected true or false", value, "write true or false")


def port(value: Any) -> int:
    try:
        number = int(value)
        if isinstance(value, bool) or number != float(value):
            raise ValueError
    except (TypeError, ValueError):
        raise invalid("expected int between 1 and 65535", value, "use a port number such as 8443") from None
    if not 1 <= number <= 65535:
        raise invalid("expected int between 1 and 65535", value, "use a port number such as 8443")
    return number


_LABEL = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?"
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*\.?$")


def host(value: Any) -> str:
    """An IP address or a host name (no scheme, no port)."""
    text = str(value).strip() if value is not None else ""
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    if _HOSTNAME.match(text) and not text.replace(".", "").isdigit():
        return text.lower()
    raise invalid("expected an IP address or host name", value,
                  "write an address such as 127.0.0.1 or a name such as broker.lan, without scheme or port")


def bind_address(value: Any) -> str:
    """An address to listen on: an IP literal (0.0.0.0 and :: allowed, flagged later by NET-002)."""
    try:
        return str(ipaddress.ip_address(str(value).strip("[]")))
    except ValueError:
        raise invalid("expected an IP address to bind to", value,
                      "use the address of the LAN interface that needs it, or 127.0.0.1") from None


def cidr(value: Any) -> str:
    try:
        return str(ipaddress.ip_network(str(value), strict=False))
    except ValueError:
        raise invalid("expected an address or network", value,
                      "write 192.168.1.10 or 192.168.1.0/24") from None


def url(*schemes: str) -> Callable[[Any], str]:
    def validate(value: Any) -> str:
        text = str(value)
        parts = urlsplit(text)
        if parts.scheme not in schemes or not parts.hostname:
            raise invalid(f"expected a URL starting with {' or '.join(s + '://' for s in schemes)}", value,
                          f"write for example {schemes[-1]}://host:port/path")
        try:
            parts.port  # noqa: B018  # raises on a bad port
        except ValueError:
            raise invalid("expected a URL with a numeric port", value, "fix the port after the colon") from None
        return text

    return validate


_DURATION = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)\s*h)?\s*(?:(\d+(?:\.\d+)?)\s*m(?!s))?\s*(?:(\d+(?:\.\d+)?)\s*s)?"
                       r"\s*(?:(\d+(?:\.\d+)?)\s*ms)?\s*$")


def duration(value: Any) -> float:
    """Seconds as a float, from a number of seconds or text such as ``90s``, ``5m``, ``2h``, ``1h30m``."""
    if isinstance(value, bool):
        raise invalid("expected a duration", value, "write 30s, 5m or 2h")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match or not any(match.groups()):
            raise invalid("expected a duration", value, "write 30s, 5m or 2h")
        h, m, s, ms = (float(g) if g else 0.0 for g in match.groups())
        seconds = h * 3600 + m * 60 + s + ms / 1000
    if seconds < 0:
        raise invalid("expected a positive duration", value, "write 30s, 5m or 2h")
    return seconds


def duration_between(low: float, high: float | None = None) -> Callable[[Any], float]:
    """A ``duration`` of at least ``low`` (and at most ``high``) seconds."""

    def validate(value: Any) -> float:
        seconds = duration(value)
        if high is None and seconds < low:
            raise invalid(f"expected at least {low:g} s", value, f"write {low:g}s or more")
        if high is not None and not low <= seconds <= high:
            raise invalid(f"expected a duration between {low:g} s and {high:g} s", value,
                          f"write a value from {low:g}s to {high:g}s")
        return seconds

    return validate


def path(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise invalid("expected a file path", value, "write a path such as certs/server.pem")
    return str(Path(value).expanduser())


def one_of(*choices: str) -> Callable[[Any], str]:
    def validate(value: Any) -> str:
        text = str(value).lower()
        if text not in choices:
            raise invalid(f"expected one of {', '.join(choices)}", value, f"write one of {', '.join(choices)}")
        return text

    return validate


def string(value: Any) -> str:
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return value if isinstance(value, str) else str(value)
    raise invalid("expected text", value, "write a plain value, quoted if needed")


def secret(value: Any) -> str:
    """A password or token. The original object is returned so ``SecretStr`` survives for AUTH-004."""
    if not isinstance(value, str) or not value:
        raise invalid("expected a secret", value, "write !secret name and put the value in secrets.yaml")
    return value


def ensure_list(validator: Any) -> vol.All:
    return vol.All(lambda v: [] if v is None else v if isinstance(v, list) else [v], [validator])


TLS_VERSIONS = ("1.0", "1.1", "1.2", "1.3")


def tls_version(value: Any) -> str:
    text = str(value).removeprefix("TLSv").removeprefix("tls")
    if text in {"1", "1.0"}:
        return "1.0"
    if text not in TLS_VERSIONS:
        raise invalid("expected a TLS version", value, "write \"1.2\" or \"1.3\"")
    return text


def tls_schema(*, server: bool) -> vol.Schema:
    """The one ``tls:`` block every plugin uses. Weak settings validate here and are refused by policy
    (TLS-001/TLS-002), so the installer reads *why* rather than a bare type error."""
    fields: dict[Any, Any] = {
        vol.Optional("enabled", default=True): boolean,
        vol.Optional("cert"): path,
        vol.Optional("key"): path,
        vol.Optional("ca"): path,
        vol.Optional("min_version", default="1.2"): tls_version,
        vol.Optional("ciphers"): string,
    }
    if server:
        fields[vol.Optional("client_auth", default="none")] = one_of("none", "optional", "required")
    else:
        fields[vol.Optional("verify", default=True)] = boolean
        fields[vol.Optional("check_hostname", default=True)] = boolean
        fields[vol.Optional("server_name")] = host
    return vol.Schema(fields)


def plugin_schema(fields: dict[Any, Any]) -> vol.Schema:
    """A plugin's section: always ``enabled`` (default false: every plugin is off until enabled)."""
    return vol.Schema({vol.Optional("enabled", default=False): boolean, **fields})
