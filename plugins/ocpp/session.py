"""The state of one station connection: registration, gating, rate limit, error budget. No I/O, no clock.

Contract:
- ``Session.receive(text, now)`` runs the frame gate (``codec.decode``) and the registration gate, and
  returns the message to act on, or ``None`` for a response nobody waits for (a late answer after our
  timeout: dropped, ocpp.md §3). A refused frame raises ``codec.FrameError`` and counts against the error
  budget; once ``closing`` is true the adapter closes the socket with ``close_code``.
- Registration states change only through ``TRANSITIONS`` (all changes live in that table, as in h11's
  ``_state.py``). A CALL other than BootNotification from a station that is not Accepted is answered
  ``SecurityError`` (OCPP-J 1.6 errata §3.8; the same for 2.0.1), except the messages we asked for with a
  TriggerMessage while Pending.
- ``throttle(now)`` returns how long to hold the next CALL (token bucket per connection): back-pressure on
  one station, never an error it could mishandle and never a delay for any other station.
- The caller passes ``now`` (monotonic seconds) into every method that depends on time.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from plugins.ocpp import codec
from plugins.ocpp.codec import Call, CallError, CallResult, ErrorKind, FrameError
from plugins.ocpp.const import (
    CALL_BURST,
    CALL_RATE_PER_S,
    ERROR_BUDGET,
    ERROR_WINDOW_S,
    VERSIONS,
)

# WebSocket close codes (RFC 6455 §7.4.1) the adapter uses for what this module decides.
CLOSE_NORMAL: Final = 1000
CLOSE_PROTOCOL_ERROR: Final = 1002  # no OCPP subprotocol agreed (OCPP-J 1.6 §3.1.2: close right away)
CLOSE_UNSUPPORTED_DATA: Final = 1003  # a binary frame: OCPP-J frames are text only
CLOSE_POLICY_VIOLATION: Final = 1008  # error budget exhausted, replaced by a newer connection, revoked
CLOSE_TOO_BIG: Final = 1009  # sent by websockets itself beyond max_size


class Registration(StrEnum):
    CONNECTED = "connected"  # socket open, no BootNotification answered on it yet
    PENDING = "pending"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    CLOSED = "closed"


class Trigger(StrEnum):
    BOOT_ACCEPTED = "Accepted"
    BOOT_PENDING = "Pending"
    BOOT_REJECTED = "Rejected"
    CLOSE = "close"


# Every registration change, in one table. A station may boot again at any time (after a reboot).
TRANSITIONS: Final[dict[Registration, dict[Trigger, Registration]]] = {
    Registration.CONNECTED: {
        Trigger.BOOT_ACCEPTED: Registration.ACCEPTED,
        Trigger.BOOT_PENDING: Registration.PENDING,
        Trigger.BOOT_REJECTED: Registration.REJECTED,
        Trigger.CLOSE: Registration.CLOSED,
    },
    Registration.PENDING: {
        Trigger.BOOT_ACCEPTED: Registration.ACCEPTED,
        Trigger.BOOT_PENDING: Registration.PENDING,
        Trigger.BOOT_REJECTED: Registration.REJECTED,
        Trigger.CLOSE: Registration.CLOSED,
    },
    Registration.ACCEPTED: {
        Trigger.BOOT_ACCEPTED: Registration.ACCEPTED,
        Trigger.BOOT_PENDING: Registration.PENDING,
        Trigger.BOOT_REJECTED: Registration.REJECTED,
        Trigger.CLOSE: Registration.CLOSED,
    },
    Registration.REJECTED: {
        Trigger.BOOT_ACCEPTED: Registration.ACCEPTED,
        Trigger.BOOT_PENDING: Registration.PENDING,
        Trigger.BOOT_REJECTED: Registration.REJECTED,
        Trigger.CLOSE: Registration.CLOSED,
    },
    Registration.CLOSED: {},
}

BOOT_NOTIFICATION: Final = "BootNotification"
# Which CALLs a station may send in each state (None: all). 1.6 §4.2.1 / errata §3.8; 2.0.1 B02/B03.
ALLOWED_CALLS: Final[dict[Registration, frozenset[str] | None]] = {
    Registration.CONNECTED: frozenset({BOOT_NOTIFICATION}),
    Registration.PENDING: frozenset({BOOT_NOTIFICATION}),  # plus what we triggered, see Session.triggered
    Registration.ACCEPTED: None,
    Registration.REJECTED: frozenset({BOOT_NOTIFICATION}),
    Registration.CLOSED: frozenset(),
}


class InvalidTransition(Exception):
    """A local programming error: the adapter asked for a change the table does not allow."""


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up. Time comes from the caller."""

    __slots__ = ("_last", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._last = now

    def take(self, now: float) -> float:
        """Take one token; returns how long to wait until it is really ours (0 when available now)."""
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate


class Session:
    """One connection's protocol state (see the module contract)."""

    __slots__ = (
        "_bucket", "_error_times", "_expected", "_triggered", "close_code", "close_reason", "errors", "identity",
        "state", "version",
    )

    def __init__(
        self, *, identity: str, version: str, accepted: bool, now: float,
        rate: float = CALL_RATE_PER_S, burst: float = CALL_BURST,
    ) -> None:
        if version not in VERSIONS:
            raise ValueError(f"unknown OCPP version {version!r}")
        self.identity = identity
        self.version = version
        # A station that was Accepted before (persisted) and reconnects does not boot again: stations send
        # BootNotification after a reboot, not after a reconnect (1.6 §4.2).
        self.state = Registration.ACCEPTED if accepted else Registration.CONNECTED
        self._bucket = TokenBucket(rate, burst, now)
        self._error_times: list[float] = []
        self._expected: set[str] = set()
        self._triggered: set[str] = set()
        self.errors = 0  # protocol errors over the connection's life (for stats)
        self.close_code: int | None = None
        self.close_reason = ""

    # -- state ---------------------------------------------------------------------------------------------

    def apply(self, trigger: Trigger) -> Registration:
        try:
            self.state = TRANSITIONS[self.state][trigger]
        except KeyError:
            raise InvalidTransition(f"{trigger} in state {self.state}") from None
        return self.state

    @property
    def closing(self) -> bool:
        return self.close_code is not None

    def close(self, code: int, reason: str) -> None:
        if self.close_code is None:
            self.close_code, self.close_reason = code, reason
        if self.state is not Registration.CLOSED:
            self.apply(Trigger.CLOSE)

    def triggered(self, action: str) -> None:
        """We sent a TriggerMessage for ``action``: the station may send it once even while Pending."""
        self._triggered.add(action)

    # -- incoming ------------------------------------------------------------------------------------------

    def receive(self, text: str, now: float) -> Call | CallResult | CallError | None:
        try:
            message = codec.decode(text, self.version)
        except FrameError:
            self.protocol_error(now)
            raise
        if isinstance(message, Call):
            allowed = ALLOWED_CALLS[self.state]
            if allowed is not None and message.action not in allowed:
                if self.state is Registration.PENDING and message.action in self._triggered:
                    self._triggered.discard(message.action)
                    return message
                self.protocol_error(now)
                raise FrameError(ErrorKind.SECURITY, "station not accepted: send BootNotification first",
                                 message.message_id)
            return message
        if message.message_id not in self._expected:
            return None  # late or stray answer: drop (ocpp.md §3), not an error
        return message

    def throttle(self, now: float) -> float:
        """Seconds to hold the CALL just received before handling it."""
        return self._bucket.take(now)

    def protocol_error(self, now: float) -> bool:
        """Count one protocol error; True (and ``closing``) once the budget of the window is spent."""
        self.errors += 1
        horizon = now - ERROR_WINDOW_S
        self._error_times = [t for t in self._error_times if t > horizon]
        self._error_times.append(now)
        if len(self._error_times) > ERROR_BUDGET:
            self.close(CLOSE_POLICY_VIOLATION, "too many protocol errors")
            return True
        return False

    # -- outgoing ------------------------------------------------------------------------------------------

    def expect(self, message_id: str) -> None:
        """We are about to send a CALL with this id: its answer is welcome."""
        self._expected.add(message_id)

    def done(self, message_id: str) -> None:
        """The CALL was answered or timed out: a later answer is dropped."""
        self._expected.discard(message_id)
