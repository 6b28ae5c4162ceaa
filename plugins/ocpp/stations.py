"""Station configuration as typed values: identity rules, entity slugs, passwords. No I/O.

Contract:
- ``parse_identity(segment)`` percent-decodes a URL segment once and returns the identity, or ``None`` when
  it is not an identity we accept (ocpp.md §4.1: 2.0.1 identifierString minus ':', at most 48 chars).
- ``slug(identity)`` is the entity-id-safe lower-case object id (``CP-001`` -> ``cp_001``): ``charger.cp_001``.
- ``StationConfig.from_config`` turns one validated ``stations:`` entry into the values the listener
  checks. Passwords are kept as bytes, compared in constant time, never logged (OCPP-009, AUTH-001).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_to_bytes

from plugins.ocpp.const import IDENTITY_CHARS, MAX_IDENTITY_CHARS, VERSIONS

_NOT_SLUG = re.compile(r"[^a-z0-9]+")


def valid_identity(identity: str) -> bool:
    return (
        0 < len(identity) <= MAX_IDENTITY_CHARS
        and identity not in {".", ".."}
        and all(ch in IDENTITY_CHARS for ch in identity)
    )


def parse_identity(segment: str) -> str | None:
    """Decode ``segment`` once (``%252F`` stays ``%2F`` and is then refused for its '%')."""
    try:
        text = unquote_to_bytes(segment).decode("utf-8")
    except UnicodeDecodeError:
        return None
    return text if valid_identity(text) else None


def slug(identity: str) -> str:
    text = _NOT_SLUG.sub("_", identity.lower()).strip("_")
    return text or "station"


@dataclass(frozen=True, slots=True, kw_only=True)
class StationConfig:
    identity: str
    slug: str
    profile: int  # security profile 1, 2 or 3
    password: bytes | None = field(default=None, repr=False)  # what the station sends in Basic Auth
    versions: tuple[str, ...] = VERSIONS  # subprotocols this station may use
    phases: int = 3
    min_current_a: float = 6.0
    max_current_a: float = 16.0
    ciphers_rsa: bool = False  # OCPP-010: station can only do RSA key exchange
    rate_unit: str = "auto"  # auto | A | W: the unit of our charging profiles
    limit_purpose: str = "tx_default"  # tx_default | station_max
    fingerprint: str | None = None  # profile 3: optional pin of the client certificate (sha256 hex)
    configured: bool = True  # False: admitted through enrollment approval with the defaults

    @classmethod
    def from_config(cls, entry: dict[str, Any]) -> StationConfig:
        identity = str(entry["id"])
        version = entry.get("version")
        fingerprint = entry.get("fingerprint")
        return cls(
            identity=identity,
            slug=slug(identity),
            profile=int(entry.get("profile", 2)),
            password=password_bytes(entry),
            versions=(str(version),) if version else VERSIONS,
            phases=int(entry.get("phases", 3)),
            min_current_a=float(entry.get("min_current_a", 6.0)),
            max_current_a=float(entry.get("max_current_a", 16.0)),
            ciphers_rsa=bool(entry.get("ciphers_rsa", False)),
            rate_unit=str(entry.get("rate_unit", "auto")),
            limit_purpose=str(entry.get("limit_purpose", "tx_default")),
            fingerprint=str(fingerprint).replace(":", "").lower() if fingerprint else None,
        )

    @classmethod
    def enrolled(cls, identity: str, defaults: dict[str, Any], fingerprint: str | None = None) -> StationConfig:
        """A station admitted by an approved enrollment (profile 3 only: it has no password here), with the
        fingerprint of the certificate it was admitted with (its enrollment is checked again at boot)."""
        return cls(
            identity=identity,
            slug=slug(identity),
            profile=3,
            fingerprint=fingerprint,
            phases=int(defaults.get("phases", 3)),
            min_current_a=float(defaults.get("min_current_a", 6.0)),
            max_current_a=float(defaults.get("max_current_a", 16.0)),
            configured=False,
        )


def password_bytes(entry: dict[str, Any]) -> bytes | None:
    """The password of a ``stations:`` entry as the bytes on the wire (``None`` when absent or unreadable)."""
    password = entry.get("password")
    if password is None:
        return None
    text = str(password)
    if entry.get("password_format") == "hex":
        try:
            return bytes.fromhex(text)
        except ValueError:
            return None
    return text.encode("utf-8")
