"""The OCPP policy rules OCPP-001..011 (shared/design/POLICY.md): checks over the ``ocpp:`` section.

Contract: each check is pure over ``PolicyInput`` (it reads ``data.config.plugins["ocpp"]``, which holds only
``{"enabled": False}`` for a disabled plugin, and the exposures) and yields findings with the config path of
the setting, so ``ampgate check`` points at file:line. OCPP-008 also reads, read-only, when each station was
last seen from the database in ``data_dir`` (nothing when there is none). Behaviour rules (007, 011) have no
check: the code enforces them (``# policy:`` marks) and the tests prove it.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import time
from collections.abc import Iterator
from typing import Any, Final

from gateway.security.exposure import Listener
from gateway.security.netaddr import is_loopback
from gateway.security.policy import Finding, PolicyInput, Rule, Severity, rule_factory
from plugins.ocpp.const import DOMAIN, MAX_PASSWORD_BYTES_16, MIN_PASSWORD_BYTES
from plugins.ocpp.stations import password_bytes

NOT_SEEN_DAYS: Final = 30
DB_FILE: Final = "ampgate.db"


def _section(data: PolicyInput) -> dict[str, Any] | None:
    section = data.config.plugins.get(DOMAIN)
    if not section or not section.get("enabled"):
        return None
    return dict(section)


def _listeners(data: PolicyInput) -> list[Listener]:
    return [lst for lst in data.listeners() if lst.plugin == DOMAIN]


def check_plain_listener(data: PolicyInput) -> Iterator[Finding]:
    """OCPP-001: ws:// on a non-loopback address."""
    for lst in _listeners(data):
        if lst.tls is None and not is_loopback(lst.bind):
            yield Finding(rule_id="OCPP-001", plugin=DOMAIN, config_path=(DOMAIN, "tls"),
                          actual=f"ws://{lst.bind}:{lst.port}",
                          message="stations would connect over plain WebSockets",
                          fix="enable ocpp.tls (remove 'enabled: false'), or bind to 127.0.0.1")


def check_low_profile(data: PolicyInput) -> Iterator[Finding]:
    """OCPP-002: a station with security profile 1 (no TLS) on a non-loopback listener."""
    section = _section(data)
    if section is None:
        return
    if is_loopback(str(section.get("bind", "127.0.0.1"))):
        return
    for index, station in enumerate(section.get("stations", [])):
        if int(station.get("profile", 2)) < 2:
            yield Finding(rule_id="OCPP-002", plugin=DOMAIN, config_path=(DOMAIN, "stations", index, "profile"),
                          actual=f"{station.get('id')}: profile {station.get('profile')}",
                          message="station authenticated without TLS on a network listener",
                          fix="set profile: 2 (Basic Auth over TLS) or 3 (client certificate)")


def check_auto_approve(data: PolicyInput) -> Iterator[Finding]:
    """OCPP-004: accepting stations nobody enrolled."""
    section = _section(data)
    if section is not None and section.get("auto_approve"):
        yield Finding(rule_id="OCPP-004", plugin=DOMAIN, config_path=(DOMAIN, "auto_approve"), actual="true",
                      message="stations with a certificate from the station CA are accepted without approval",
                      fix="set auto_approve: false and approve new stations in the enrollment queue")


def check_free_charging(data: PolicyInput) -> Iterator[Finding]:
    """OCPP-005: free charging."""
    section = _section(data)
    if section is not None and section.get("free_charging"):
        yield Finding(rule_id="OCPP-005", plugin=DOMAIN, config_path=(DOMAIN, "free_charging"), actual="true",
                      message="every id token is accepted", fix="set free_charging: false and add the badges "
                      "with 'ampgate token add'")


def check_loose_tokens(data: PolicyInput) -> Iterator[Finding]:
    """OCPP-006: tokens outside the local list, or MAC-address (autocharge) tokens."""
    section = _section(data)
    if section is None:
        return
    if section.get("accept_unknown_tokens"):
        yield Finding(rule_id="OCPP-006", plugin=DOMAIN, config_path=(DOMAIN, "accept_unknown_tokens"),
                      actual="true", message="id tokens that are not in the local list are accepted",
                      fix="set accept_unknown_tokens: false and add the badges with 'ampgate token add'")
    if section.get("accept_mac_tokens"):
        yield Finding(rule_id="OCPP-006", plugin=DOMAIN, config_path=(DOMAIN, "accept_mac_tokens"),
                      actual="true", message="vehicle MAC addresses (autocharge) are accepted as id tokens",
                      fix="set accept_mac_tokens: false: a MAC address can be spoofed")


def _last_seen(data: PolicyInput) -> dict[str, float]:
    if data.data_dir is None:
        return {}
    path = data.data_dir / DB_FILE
    if not path.exists():
        return {}
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)
        try:
            rows = conn.execute("SELECT identity, COALESCE(last_seen, configured_at) FROM ocpp_stations").fetchall()
        finally:
            conn.close()
    except sqlite3.Error:
        return {}  # no table yet (never started), or a locked file: nothing to say
    return {str(identity): float(when) for identity, when in rows if when is not None}


def check_not_seen(data: PolicyInput) -> Iterator[Finding]:
    """OCPP-008: a configured station not seen for 30 days."""
    section = _section(data)
    if section is None or not section.get("stations"):
        return
    seen = _last_seen(data)
    horizon = time.time() - NOT_SEEN_DAYS * 86400
    for index, station in enumerate(section.get("stations", [])):
        when = seen.get(str(station.get("id")))
        if when is not None and when < horizon:
            day = dt.datetime.fromtimestamp(when).date().isoformat()
            yield Finding(rule_id="OCPP-008", plugin=DOMAIN, config_path=(DOMAIN, "stations", index, "id"),
                          actual=f"{station.get('id')}: last seen {day}",
                          message=f"station not seen for more than {NOT_SEEN_DAYS} days",
                          fix="remove the station from ocpp.stations if it is gone")


def check_station_passwords(data: PolicyInput) -> Iterator[Finding]:
    """OCPP-009: passwords shorter than 16 bytes, 1.6 keys longer than 20 bytes, or shared."""
    section = _section(data)
    if section is None:
        return
    first: dict[bytes, str] = {}
    for index, station in enumerate(section.get("stations", [])):
        if int(station.get("profile", 2)) == 3 and station.get("password") is None:
            continue
        path = (DOMAIN, "stations", index, "password")
        raw = password_bytes(station)
        if raw is None:
            continue  # a missing password for profile 1/2 is a configuration error, reported there
        ident = str(station.get("id"))
        if len(raw) < MIN_PASSWORD_BYTES:
            yield Finding(rule_id="OCPP-009", plugin=DOMAIN, config_path=path,
                          actual=f"{ident}: {len(raw)} bytes", message="station password shorter than 16 bytes",
                          fix="generate one with 'ampgate ocpp password' and set it on the station too")
        elif station.get("password_format") == "hex" and len(raw) > MAX_PASSWORD_BYTES_16:
            yield Finding(rule_id="OCPP-009", plugin=DOMAIN, config_path=path,
                          actual=f"{ident}: {len(raw)} bytes",
                          message="a 1.6 AuthorizationKey has 16 to 20 bytes (32 to 40 hex digits)",
                          fix="generate one with 'ampgate ocpp password --hex'")
        if raw in first:
            yield Finding(rule_id="OCPP-009", plugin=DOMAIN, config_path=path,
                          actual=f"{ident}: same password as {first[raw]}",
                          message="two stations share a password", fix="give every station its own password")
        else:
            first[raw] = ident


def check_rsa_ciphers(data: PolicyInput) -> Iterator[Finding]:
    """OCPP-010: RSA key exchange offered for stations that cannot do ECDHE."""
    section = _section(data)
    if section is None:
        return
    for index, station in enumerate(section.get("stations", [])):
        if station.get("ciphers_rsa"):
            yield Finding(rule_id="OCPP-010", plugin=DOMAIN,
                          config_path=(DOMAIN, "stations", index, "ciphers_rsa"),
                          actual=f"{station.get('id')}: TLS_RSA_WITH_AES_*_GCM_* offered",
                          message="RSA key exchange has no forward secrecy",
                          fix="update the station's firmware to ECDHE and remove ciphers_rsa")


_rule = rule_factory(DOMAIN)


W, R, N, B = Severity.WARN, Severity.REFUSE, Severity.NEVER, Severity.BEHAVIOUR

RULES: Final[tuple[Rule, ...]] = (
    _rule("OCPP-001", "Station listener without TLS off loopback", R, "wss:// (ocpp.tls enabled)",
          "plain WebSockets invite man-in-the-middle", check_plain_listener),
    _rule("OCPP-002", "Security profile below 2 on a network listener", R, "profile 2 or 3",
          "rogue devices can impersonate a station", check_low_profile),
    # No uplink to a remote CSMS exists yet; when it lands, its check lands with it.
    _rule("OCPP-003", "Uplink to a remote CSMS over ws:// with credentials", N, "wss:// for the uplink",
          "credentials in clear text"),
    _rule("OCPP-004", "Accepting stations that are not enrolled", R,
          "auto_approve: false; approve each new station", "unexpected devices must be reviewed before they are "
          "trusted", check_auto_approve),
    _rule("OCPP-005", "Free charging / authorization disabled", R, "free_charging: false",
          "anyone could charge without control", check_free_charging),
    _rule("OCPP-006", "Id tokens outside the local list, or MAC-address tokens", W,
          "only tokens in the local list", "tokens can be copied; MAC addresses can be spoofed", check_loose_tokens),
    _rule("OCPP-007", "Duplicate identity or repeated authentication failures", B,
          "refused, audited, raised as a security event", "the sign of an impersonation attempt"),
    _rule("OCPP-008", "Enrolled station not seen for 30 days", W, "remove stations that are gone",
          "a removed station should be removed from the configuration", check_not_seen),
    _rule("OCPP-009", "Station password too short or shared", R, "16-20 random bytes per station",
          "the whitepaper asks for 16-20 random bytes per station", check_station_passwords),
    _rule("OCPP-010", "RSA key exchange for stations without ECDHE", W, "ECDHE suites only",
          "allowed by the whitepaper for compatibility, but without forward secrecy", check_rsa_ciphers),
    _rule("OCPP-011", "One security profile per station; no downgrade", B,
          "a lower profile is refused and logged; no OCPP message can lower it", "downgrade attacks"),
)
