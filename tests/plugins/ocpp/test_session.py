"""Registration gating, rate limit and error budget of one connection (sans-IO, time passed in)."""

from __future__ import annotations

import pytest

from plugins.ocpp.codec import Call, CallResult, ErrorKind, FrameError
from plugins.ocpp.const import CALL_BURST, CALL_RATE_PER_S, ERROR_BUDGET
from plugins.ocpp.session import (
    ALLOWED_CALLS,
    CLOSE_POLICY_VIOLATION,
    TRANSITIONS,
    InvalidTransition,
    Registration,
    Session,
    TokenBucket,
    Trigger,
)

HEARTBEAT = '[2,"h1","Heartbeat",{}]'
BOOT = '[2,"b1","BootNotification",{"chargePointVendor":"v","chargePointModel":"m"}]'


def new(accepted: bool = False, version: str = "1.6") -> Session:
    return Session(identity="CP1", version=version, accepted=accepted, now=0.0)


@pytest.mark.parametrize("state", list(Registration))
def test_every_state_has_rules(state: Registration) -> None:
    assert state in TRANSITIONS and state in ALLOWED_CALLS


@pytest.mark.parametrize(("start", "trigger", "end"), [
    (s, t, e) for s, row in TRANSITIONS.items() for t, e in row.items()
])
def test_transitions_table(start: Registration, trigger: Trigger, end: Registration) -> None:
    session = new()
    session.state = start
    assert session.apply(trigger) is end


def test_closed_is_final() -> None:
    session = new()
    session.apply(Trigger.CLOSE)
    with pytest.raises(InvalidTransition):
        session.apply(Trigger.BOOT_ACCEPTED)


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
def test_call_before_accepted_is_a_security_error(version: str) -> None:
    # OCPP-J 1.6 errata §3.8: a CALL (other than BootNotification) from a station not yet accepted.
    session = new(version=version)
    with pytest.raises(FrameError) as info:
        session.receive(HEARTBEAT, 0.0)
    assert info.value.kind is ErrorKind.SECURITY and info.value.message_id == "h1"
    assert isinstance(session.receive(BOOT, 0.0), Call)
    session.apply(Trigger.BOOT_ACCEPTED)
    assert isinstance(session.receive(HEARTBEAT, 0.0), Call)


def test_rejected_station_may_only_boot() -> None:
    session = new()
    session.apply(Trigger.BOOT_REJECTED)
    with pytest.raises(FrameError):
        session.receive(HEARTBEAT, 0.0)


def test_pending_station_may_send_what_we_triggered_once() -> None:
    session = new()
    session.apply(Trigger.BOOT_PENDING)
    session.triggered("Heartbeat")
    assert isinstance(session.receive(HEARTBEAT, 0.0), Call)
    with pytest.raises(FrameError):
        session.receive(HEARTBEAT, 0.0)


def test_previously_accepted_station_reconnects_without_boot() -> None:
    assert isinstance(new(accepted=True).receive(HEARTBEAT, 0.0), Call)


def test_responses_only_when_expected() -> None:
    session = new(accepted=True)
    assert session.receive('[3,"x",{}]', 0.0) is None  # nobody waits: dropped, not an error
    assert session.errors == 0
    session.expect("x")
    assert isinstance(session.receive('[3,"x",{}]', 0.0), CallResult)
    session.done("x")
    assert session.receive('[3,"x",{}]', 0.0) is None


def test_error_budget_closes_with_1008() -> None:
    session = new(accepted=True)
    for _ in range(ERROR_BUDGET):
        with pytest.raises(FrameError):
            session.receive("garbage", 1.0)
        assert not session.closing
    with pytest.raises(FrameError):
        session.receive("garbage", 1.0)
    assert session.closing and session.close_code == CLOSE_POLICY_VIOLATION
    assert session.state is Registration.CLOSED


def test_error_budget_is_per_window() -> None:
    session = new(accepted=True)
    for t in range(ERROR_BUDGET * 3):
        session.protocol_error(t * 10.0)  # one every 10 s: 6 per minute, never more than the budget
    assert not session.closing


def test_rate_limit_holds_a_burst_then_paces() -> None:
    bucket = TokenBucket(CALL_RATE_PER_S, CALL_BURST, now=0.0)
    delays = [bucket.take(0.0) for _ in range(CALL_BURST + 10)]
    assert all(d == 0 for d in delays[:CALL_BURST])
    assert delays[-1] == pytest.approx(10 / CALL_RATE_PER_S)
    later = TokenBucket(CALL_RATE_PER_S, CALL_BURST, now=0.0)
    for _ in range(CALL_BURST):
        later.take(0.0)
    assert later.take(1.0) == 0  # refilled with time


def test_unknown_version_refused() -> None:
    with pytest.raises(ValueError):
        Session(identity="x", version="1.5", accepted=False, now=0.0)
