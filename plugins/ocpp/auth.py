"""Who may open a station connection: the decision taken before the WebSocket upgrade. No I/O, no clock.

Contract (ocpp.md §4, OCPP-004/007/009/011):
- ``decide(handshake, ...)`` returns a ``Verdict``: accepted with the station's configuration, or refused with
  the HTTP status to answer *before* the upgrade, a stable ``reason`` for the audit log and the counters,
  and whether the identity goes to the enrollment queue.
- 404: the path is not ``<prefix>/<one identity segment>``. 401 (with ``WWW-Authenticate: Basic``): unknown
  identity, no or malformed credentials, user name != identity, wrong password, locked out. Unknown
  identities get the same 401 as a wrong password, so a LAN scanner cannot list the enrolled identities
  (OCPP-J 1.6 §3.2 only says SHOULD 404; see docs/plugins/ocpp.md). 403: a lower security profile than the
  station's (profile 3 without a client certificate, OCPP-011), a client certificate for another identity,
  or one that does not match the station's pinned fingerprint.
- Passwords are compared as bytes in constant time; the header is parsed as bytes, split at the first
  ``b":"`` (the 1.6 AuthorizationKey may be any bytes, OCPP-J 1.6 §6.2.2).
- The TLS layer has already verified a presented client certificate against the station CA; this module
  only binds its CN to the identity (and to a pin when configured).
- ``FailureTracker`` counts failed attempts per (identity, address) and locks further attempts out for a
  while; ``EnrollmentLimiter`` caps how many unknown identities one address may enqueue.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from plugins.ocpp.const import (
    AUTH_FAILURE_LIMIT,
    AUTH_FAILURE_WINDOW_S,
    AUTH_LOCKOUT_S,
    ENROLLMENT_REQUESTS_PER_ADDRESS,
    ENROLLMENT_WINDOW_S,
    MAX_TRACKED_FAILURES,
)
from plugins.ocpp.stations import StationConfig, parse_identity


class Reason(StrEnum):
    """Why a connection was refused (stable: audit records and counters use these)."""

    BAD_PATH = "bad_path"
    UNKNOWN_IDENTITY = "unknown_identity"
    NOT_CONFIGURED = "approved_without_credentials"
    NO_CREDENTIALS = "no_credentials"
    MALFORMED_CREDENTIALS = "malformed_credentials"
    USERNAME_MISMATCH = "username_mismatch"
    BAD_PASSWORD = "bad_password"  # noqa: S105  # a reason, not a password
    LOCKED_OUT = "locked_out"
    LOWER_PROFILE = "lower_profile"
    CERTIFICATE_MISMATCH = "certificate_for_another_identity"
    CERTIFICATE_PIN = "certificate_not_pinned"
    DUPLICATE = "duplicate_identity"
    NO_SUBPROTOCOL = "no_subprotocol"


UNAUTHORIZED: Final = 401
FORBIDDEN: Final = 403
NOT_FOUND: Final = 404

STATUS: Final[dict[Reason, int]] = {
    Reason.BAD_PATH: NOT_FOUND,
    Reason.UNKNOWN_IDENTITY: UNAUTHORIZED,
    Reason.NOT_CONFIGURED: UNAUTHORIZED,
    Reason.NO_CREDENTIALS: UNAUTHORIZED,
    Reason.MALFORMED_CREDENTIALS: UNAUTHORIZED,
    Reason.USERNAME_MISMATCH: UNAUTHORIZED,
    Reason.BAD_PASSWORD: UNAUTHORIZED,
    Reason.LOCKED_OUT: UNAUTHORIZED,
    Reason.LOWER_PROFILE: FORBIDDEN,
    Reason.CERTIFICATE_MISMATCH: FORBIDDEN,
    Reason.CERTIFICATE_PIN: FORBIDDEN,
    Reason.DUPLICATE: FORBIDDEN,
}

# Refusals that hint at an attack rather than a misconfiguration: raised as security events (OCPP-007/011).
SECURITY_EVENTS: Final = frozenset({
    Reason.LOWER_PROFILE, Reason.CERTIFICATE_MISMATCH, Reason.CERTIFICATE_PIN, Reason.DUPLICATE,
})
# Refusals that count towards the (identity, address) lock-out.
COUNTED_FAILURES: Final = frozenset({
    Reason.NO_CREDENTIALS, Reason.MALFORMED_CREDENTIALS, Reason.USERNAME_MISMATCH, Reason.BAD_PASSWORD,
    Reason.LOWER_PROFILE, Reason.CERTIFICATE_MISMATCH, Reason.CERTIFICATE_PIN,
})


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerCert:
    """The client certificate the TLS layer verified: its subject CN and SHA-256 fingerprint (hex)."""

    common_name: str | None
    fingerprint: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Handshake:
    path: str  # the request target as sent (path and query)
    authorization: tuple[str, ...]  # every Authorization header value
    address: str
    tls: bool
    peer: PeerCert | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    identity: str | None
    station: StationConfig | None = None
    reason: Reason | None = None  # None: accepted
    enqueue: bool = False  # put the identity into the enrollment queue

    @property
    def accepted(self) -> bool:
        return self.reason is None

    @property
    def status(self) -> int:
        return 101 if self.reason is None else STATUS[self.reason]

    @property
    def security_event(self) -> bool:
        return self.reason in SECURITY_EVENTS


def identity_from_path(path: str, prefix: str) -> str | None:
    """The identity in ``<prefix>/<identity>``; ``None`` for anything else (query, extra segment, ...)."""
    if "?" in path or "#" in path:
        return None
    head = prefix.rstrip("/") + "/"
    if not path.startswith(head):
        return None
    segment = path[len(head):]
    if not segment or "/" in segment:
        return None
    return parse_identity(segment)


def parse_basic(values: tuple[str, ...]) -> tuple[bytes, bytes] | None:
    """(user, password) bytes from exactly one ``Authorization: Basic`` header; ``None`` if malformed."""
    if len(values) != 1:
        return None
    scheme, _, encoded = values[0].strip().partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        raw = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, sep, password = raw.partition(b":")
    if not sep:
        return None
    return user, password


def _check_password(station: StationConfig, handshake: Handshake, identity: str) -> Reason | None:
    if not handshake.authorization:
        return Reason.NO_CREDENTIALS
    credentials = parse_basic(handshake.authorization)
    if credentials is None:
        return Reason.MALFORMED_CREDENTIALS
    user, password = credentials
    # A00.FR.204/303: the user name must be the identity in the path.
    if not hmac.compare_digest(user, identity.encode("utf-8")):
        return Reason.USERNAME_MISMATCH
    if station.password is None or not hmac.compare_digest(password, station.password):
        return Reason.BAD_PASSWORD
    return None


def _check_certificate(station: StationConfig, peer: PeerCert, identity: str) -> Reason | None:
    if peer.common_name != identity:
        return Reason.CERTIFICATE_MISMATCH
    if station.fingerprint is not None and not hmac.compare_digest(peer.fingerprint.lower(), station.fingerprint):
        return Reason.CERTIFICATE_PIN
    return None


def decide(
    handshake: Handshake,
    *,
    prefix: str,
    stations: Mapping[str, StationConfig],
    is_trusted: Callable[[str, str | None], bool],
    enrolled_defaults: Callable[[str, str | None], StationConfig],
    auto_approve: bool = False,
    locked_out: bool = False,
) -> Verdict:
    """The verdict for one upgrade request (see the module contract)."""
    identity = identity_from_path(handshake.path, prefix)
    if identity is None:
        return Verdict(identity=None, reason=Reason.BAD_PATH)
    if locked_out:
        return Verdict(identity=identity, reason=Reason.LOCKED_OUT)
    peer = handshake.peer
    station = stations.get(identity)
    if station is None:
        # policy: OCPP-004 - only enrolled stations. An identity that is not configured may still be admitted
        # with a client certificate whose CN is the identity, once an administrator approved it (or with
        # auto_approve, an accepted risk). A password station cannot: we would not know its password.
        certified = peer is not None and peer.common_name == identity
        if certified and (auto_approve or is_trusted(identity, peer.fingerprint if peer else None)):
            return Verdict(identity=identity, station=enrolled_defaults(identity, peer.fingerprint if peer else None))
        if is_trusted(identity, peer.fingerprint if peer else None):
            return Verdict(identity=identity, reason=Reason.NOT_CONFIGURED)
        return Verdict(identity=identity, reason=Reason.UNKNOWN_IDENTITY, enqueue=True)
    if station.profile == 3:
        # policy: OCPP-011 - a profile-3 station arriving without its certificate arrives with a lower
        # profile (Basic Auth at most): refused, whatever password it offers.
        if peer is None:
            return Verdict(identity=identity, reason=Reason.LOWER_PROFILE)
        reason = _check_certificate(station, peer, identity)
        return Verdict(identity=identity, station=station, reason=reason)
    if peer is not None and peer.common_name != identity:
        # A certificate for another station on a password connection is an impersonation attempt.
        return Verdict(identity=identity, reason=Reason.CERTIFICATE_MISMATCH)
    reason = _check_password(station, handshake, identity)
    return Verdict(identity=identity, station=station, reason=reason)


# -- counters with memory -------------------------------------------------------------------------------------


class FailureTracker:
    """Failed attempts per (identity, address) in a sliding window; a lock-out after ``limit`` of them."""

    def __init__(self, *, limit: int = AUTH_FAILURE_LIMIT, window_s: float = AUTH_FAILURE_WINDOW_S,
                 lockout_s: float = AUTH_LOCKOUT_S, max_entries: int = MAX_TRACKED_FAILURES) -> None:
        self.limit = limit
        self.window_s = window_s
        self.lockout_s = lockout_s
        self.max_entries = max_entries
        # key -> (failure times, locked until); ordered by last use so the oldest entry is evicted first.
        self._entries: OrderedDict[tuple[str, str], tuple[list[float], float]] = OrderedDict()

    def locked(self, identity: str, address: str, now: float) -> bool:
        entry = self._entries.get((identity, address))
        return entry is not None and entry[1] > now

    def failure(self, identity: str, address: str, now: float) -> bool:
        """Record one failure; True when this one starts a lock-out (raise one security event then)."""
        key = (identity, address)
        times, until = self._entries.pop(key, ([], 0.0))
        times = [t for t in times if t > now - self.window_s]
        times.append(now)
        starts = False
        if len(times) >= self.limit and until <= now:
            until, starts, times = now + self.lockout_s, True, []
        self._entries[key] = (times, until)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return starts

    def success(self, identity: str, address: str) -> None:
        self._entries.pop((identity, address), None)


class EnrollmentLimiter:
    """At most ``limit`` enrollment requests per address per window (a scanner must not flood the queue)."""

    def __init__(self, *, limit: int = ENROLLMENT_REQUESTS_PER_ADDRESS, window_s: float = ENROLLMENT_WINDOW_S,
                 max_entries: int = MAX_TRACKED_FAILURES) -> None:
        self.limit = limit
        self.window_s = window_s
        self.max_entries = max_entries
        self._seen: OrderedDict[str, list[float]] = OrderedDict()

    def allow(self, address: str, now: float) -> bool:
        times = [t for t in self._seen.pop(address, []) if t > now - self.window_s]
        allowed = len(times) < self.limit
        if allowed:
            times.append(now)
        self._seen[address] = times
        while len(self._seen) > self.max_entries:
            self._seen.popitem(last=False)
        return allowed
