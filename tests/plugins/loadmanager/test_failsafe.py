"""failsafe.py: every row of TRANSITIONS and METER_TRANSITIONS, the LPC rules, and the bugs peers shipped.

Time is a plain number here: every test drives the machines with explicit ``now`` values.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plugins.loadmanager.const import HEARTBEAT_TIMEOUT_S, INIT_TIMEOUT_S, MIN_EXTERNAL_LIMIT_W
from plugins.loadmanager.failsafe import (
    METER_TRANSITIONS,
    TRANSITIONS,
    Limit,
    LimitRefused,
    MeterEvent,
    MeterState,
    MeterWatch,
    SourceEvent,
    SourceMachine,
    SourceState,
    Supervisor,
    check_limit,
)
from plugins.loadmanager.model import Reason

S, E = SourceState, SourceEvent
TWO_HOURS = 7200.0
FAILSAFE_W = 4200.0
LIMIT = Limit(limit_w=8000.0)


def supervisor(*sources: str, now: float = 0.0, release: bool = False, max_age: float = 10.0) -> Supervisor:
    sup = Supervisor.create(failsafe_limit_w=FAILSAFE_W, min_duration_s=TWO_HOURS, min_limit_w=MIN_EXTERNAL_LIMIT_W,
                            voltage_v=230.0, meter_max_age_s=max_age, now=now, supervised=sources,
                            release_after_minimum=release)
    sup.advance(now, now)  # the meter reads fresh from the start unless a test says otherwise
    return sup


# -- a machine in each state, reached the way it is reached in the field ---------------------------------------


def machine_in(state: SourceState, now: float = 1000.0) -> SourceMachine:
    if state is S.INIT:
        return SourceMachine("eg", supervised=True, now=now)
    m = SourceMachine("eg", supervised=True, now=now - 500)
    m.handle(E.HEARTBEAT, now - 400)
    m.handle(E.LIMIT, now - 400, LIMIT)
    assert m.state is S.LIMITED
    if state is S.LIMITED:
        return m
    if state is S.UNLIMITED:
        m.handle(E.RELEASE, now - 300)
        assert m.state is S.UNLIMITED
        return m
    m.handle(E.HEARTBEAT_LOST, now - 300)
    assert m.state is S.FAILSAFE
    if state is S.FAILSAFE:
        return m
    m.handle(E.MINIMUM_ELAPSED, now - 200)
    assert m.state is S.AUTONOMOUS
    return m


def confirm(m: SourceMachine, now: float, *, release: bool = False) -> None:
    m.handle(E.HEARTBEAT, now)
    if release:
        m.handle(E.RELEASE, now)
    else:
        m.handle(E.LIMIT, now, LIMIT)


# Expected target for each table row when its guard holds (for guarded rows: after a heartbeat and a statement).
EXPECTED = {
    (S.INIT, E.INIT_TIMEOUT): S.AUTONOMOUS,
    (S.LIMITED, E.LIMIT): S.LIMITED,
    (S.LIMITED, E.RELEASE): S.UNLIMITED,
    (S.LIMITED, E.LIMIT_EXPIRED): S.UNLIMITED,
    (S.LIMITED, E.HEARTBEAT_LOST): S.FAILSAFE,
    (S.UNLIMITED, E.LIMIT): S.LIMITED,
    (S.UNLIMITED, E.HEARTBEAT_LOST): S.FAILSAFE,
    (S.FAILSAFE, E.MINIMUM_ELAPSED): S.AUTONOMOUS,
}


@pytest.mark.parametrize(("state", "event"), sorted(TRANSITIONS, key=str))
def test_every_transition(state: SourceState, event: SourceEvent) -> None:
    m = machine_in(state)
    if (state, event) in EXPECTED:
        change = m.handle(event, 1000.0, LIMIT if event is E.LIMIT else None)
        assert m.state is EXPECTED[(state, event)]
        assert (change is None) == (EXPECTED[(state, event)] is state)
        return
    # A guarded row: the event alone (no confirmation yet) keeps the waiting state ...
    assert state in (S.INIT, S.FAILSAFE, S.AUTONOMOUS)
    m.handle(event, 1000.0, LIMIT if event is E.LIMIT else None)
    assert m.state is state
    # ... and the missing half of the confirmation completes it (in either order).
    if event is E.HEARTBEAT:
        m.handle(E.LIMIT, 1001.0, LIMIT)
        assert m.state is S.LIMITED and m.active == LIMIT
    else:
        m.handle(E.HEARTBEAT, 1001.0)
        assert m.state is (S.LIMITED if event is E.LIMIT else S.UNLIMITED)


def test_events_outside_the_table_change_nothing() -> None:
    for state in SourceState:
        for event in SourceEvent:
            if (state, event) in TRANSITIONS:
                continue
            m = machine_in(state)
            assert m.handle(event, 1000.0, LIMIT if event is E.LIMIT else None) is None
            assert m.state is state


def test_failsafe_needs_heartbeat_and_new_limit_not_heartbeat_alone() -> None:
    """EVerest's LpcUseCaseHandler leaves failsafe on a heartbeat alone: here it must stay."""
    m = machine_in(S.FAILSAFE)
    for k in range(10):
        m.handle(E.HEARTBEAT, 1000.0 + 30 * k)
    assert m.state is S.FAILSAFE
    assert m.active is None  # the old limit was dropped on entry; it must be stated again


def test_limit_written_before_failsafe_does_not_count() -> None:
    m = machine_in(S.LIMITED)
    m.handle(E.HEARTBEAT_LOST, 1000.0)
    m.handle(E.HEARTBEAT, 1010.0)
    assert m.state is S.FAILSAFE  # the limit it had was written before failsafe began


def test_not_stuck_in_failsafe_when_the_source_returns() -> None:
    """evcc #25545: heartbeat and limit came back during the failsafe duration, evcc stayed in failsafe until
    restarted. Here heartbeat + new limit end it at once, long before the minimum duration."""
    sup = supervisor("eg")
    confirm(sup.sources["eg"], 1.0)
    sup.advance(1.0 + HEARTBEAT_TIMEOUT_S, 1.0 + HEARTBEAT_TIMEOUT_S)
    assert sup.sources["eg"].state is S.FAILSAFE
    assert sup.effective().failsafe
    t = 300.0
    sup.heartbeat("eg", t)
    sup.set_limit("eg", t + 1, limit_w=9000.0)
    assert sup.sources["eg"].state is S.LIMITED
    eff = sup.effective()
    assert not eff.failsafe and eff.limit_w == 9000.0 and eff.source == "eg"


def test_no_false_failsafe_right_after_start() -> None:
    """evcc #21675 entered failsafe 10 s after start: the heartbeat clock started at zero. Here it starts with
    init; a source that heartbeats within 120 s never sees failsafe."""
    start = 50_000.0  # a monotonic clock is far from zero
    sup = supervisor("eg", now=start)
    for t in (start + 10, start + 60, start + 119):
        assert sup.advance(t, t) == []
        assert sup.sources["eg"].state is S.INIT
    sup.heartbeat("eg", start + 100)
    sup.set_limit("eg", start + 101, limit_w=6000.0)
    assert sup.sources["eg"].state is S.LIMITED
    for t in (start + 150, start + 200):
        sup.advance(t, t)
    assert sup.sources["eg"].state is S.LIMITED


def test_no_false_failsafe_when_a_new_source_connects() -> None:
    sup = supervisor(now=0.0)
    sup.advance(10_000.0, 10_000.0)
    sup.heartbeat("eg", 10_000.0)  # first contact after hours of running
    assert sup.sources["eg"].state is S.UNLIMITED
    assert sup.advance(10_050.0, 10_050.0) == []
    assert sup.sources["eg"].state is S.UNLIMITED
    changes = sup.advance(10_000.0 + HEARTBEAT_TIMEOUT_S, 10_000.0 + HEARTBEAT_TIMEOUT_S)
    assert [c.new for c in changes] == [S.FAILSAFE]


def test_restart_starts_in_failsafe_until_confirmed() -> None:
    sup = supervisor("eg")
    eff = sup.effective()
    assert eff.failsafe and eff.limit_w == FAILSAFE_W and eff.cap is not None and eff.cap.label is Reason.FAILSAFE
    sup.heartbeat("eg", 5.0)
    assert sup.effective().failsafe  # a heartbeat alone does not confirm
    sup.set_limit("eg", 6.0, active=False)
    assert sup.sources["eg"].state is S.UNLIMITED
    assert sup.effective().cap is None


def test_init_goes_autonomous_and_keeps_the_failsafe_limit_by_default() -> None:
    sup = supervisor("eg")
    changes = sup.advance(INIT_TIMEOUT_S, INIT_TIMEOUT_S)
    assert [(c.old, c.new) for c in changes] == [(S.INIT, S.AUTONOMOUS)]
    assert sup.effective().limit_w == FAILSAFE_W


def test_release_after_minimum_follows_lpc_922() -> None:
    sup = supervisor("eg", release=True)
    confirm(sup.sources["eg"], 1.0)
    sup.advance(200.0, 200.0)
    assert sup.sources["eg"].state is S.FAILSAFE and sup.effective().limit_w == FAILSAFE_W
    sup.advance(200.0 + TWO_HOURS - 1, 200.0 + TWO_HOURS - 1)
    assert sup.sources["eg"].state is S.FAILSAFE
    sup.advance(200.0 + TWO_HOURS, 200.0 + TWO_HOURS)
    assert sup.sources["eg"].state is S.AUTONOMOUS
    assert sup.effective().cap is None


def test_stricter_statement_while_waiting_applies_at_once() -> None:
    sup = supervisor("eg")
    sup.set_limit("eg", 1.0, limit_a=7.0)  # 7 A x 3 x 230 = 4830 W: above the failsafe, no effect
    assert sup.effective().limit_w == FAILSAFE_W
    sup.set_limit("eg", 2.0, limit_w=MIN_EXTERNAL_LIMIT_W)
    assert sup.effective().limit_w == MIN_EXTERNAL_LIMIT_W


def test_limit_with_duration_reverts_by_itself_and_without_never_expires() -> None:
    sup = supervisor()
    sup.set_limit("web:alice", 0.0, limit_w=5000.0, duration_s=600.0)
    assert sup.next_deadline() == 10.0  # the meter's age comes first
    sup.advance(599.0, 599.0)
    assert sup.effective().limit_w == 5000.0 and sup.effective().expires_at == 600.0
    sup.advance(600.0, 600.0)
    assert sup.effective().cap is None
    assert "web:alice" not in sup.sources  # an unsupervised source with nothing to say is forgotten
    sup.set_limit("web:bob", 700.0, limit_w=6000.0)
    sup.advance(1e7, 700.0)
    assert sup.effective().limit_w == FAILSAFE_W  # (the meter is stale by now) ...
    assert sup.sources["web:bob"].state is S.LIMITED  # ... but the limit itself never expired


def test_supervised_limit_expiry_and_heartbeat_deadlines() -> None:
    sup = supervisor("eg")
    confirm(sup.sources["eg"], 1.0)
    sup.set_limit("eg", 2.0, limit_w=5000.0, duration_s=60.0)
    assert sup.sources["eg"].deadline(TWO_HOURS) == 62.0
    sup.advance(62.0, 62.0)
    assert sup.sources["eg"].state is S.UNLIMITED
    assert sup.sources["eg"].deadline(TWO_HOURS) == 1.0 + HEARTBEAT_TIMEOUT_S


def test_lowest_limit_wins_and_a_limits_combine() -> None:
    sup = supervisor()
    sup.set_limit("a", 0.0, limit_w=9000.0)
    sup.set_limit("b", 0.0, limit_a=10.0)  # 6900 W
    eff = sup.effective()
    assert eff.limit_w == pytest.approx(6900.0) and eff.source == "b"
    assert eff.cap is not None and eff.cap.limit_w == 9000.0 and eff.cap.limit_a == 10.0
    assert eff.cap.label is Reason.EXTERNAL_LIMIT


@pytest.mark.parametrize(("limit_w", "limit_a", "expected"), [
    (3000.0, None, (MIN_EXTERNAL_LIMIT_W, None, True)),
    (0.0, None, (MIN_EXTERNAL_LIMIT_W, None, True)),
    (4200.0, None, (4200.0, None, False)),
    (None, 2.0, (None, MIN_EXTERNAL_LIMIT_W / 690, True)),
    (None, 16.0, (None, 16.0, False)),
])
def test_limits_below_the_14a_minimum_are_clamped(limit_w: float | None, limit_a: float | None,
                                                   expected: tuple[float | None, float | None, bool]) -> None:
    assert check_limit(limit_w=limit_w, limit_a=limit_a, min_limit_w=MIN_EXTERNAL_LIMIT_W, voltage_v=230.0) == \
        pytest.approx(expected)


@pytest.mark.parametrize(("limit_w", "limit_a"), [(-1.0, None), (None, -0.1), (float("nan"), None), (None, None)])
def test_negative_and_empty_limits_are_refused(limit_w: float | None, limit_a: float | None) -> None:
    sup = supervisor("eg")
    with pytest.raises(LimitRefused):
        sup.set_limit("eg", 1.0, limit_w=limit_w, limit_a=limit_a)
    assert sup.sources["eg"].written is None and sup.sources["eg"].state is S.INIT


# -- the grid meter --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("state", "event"), sorted(METER_TRANSITIONS, key=str))
def test_every_meter_transition(state: MeterState, event: MeterEvent) -> None:
    watch = MeterWatch(max_age_s=10.0, now=0.0)
    if state is MeterState.FRESH:
        watch.observe(0.0, 0.0)
    elif state is MeterState.STALE:
        watch.observe(None, 10.0)
    assert watch.state is state
    now = 100.0
    updated = {MeterEvent.FRESH: now, MeterEvent.STALE: now - 11, MeterEvent.GRACE_OVER: None}[event]
    change = watch.observe(updated, now)
    assert watch.state is METER_TRANSITIONS[(state, event)]
    assert change is not None and change.event is event


def test_meter_grace_at_start_then_stale_then_back() -> None:
    sup = Supervisor.create(failsafe_limit_w=FAILSAFE_W, min_duration_s=TWO_HOURS,
                            min_limit_w=MIN_EXTERNAL_LIMIT_W, voltage_v=230.0, meter_max_age_s=10.0, now=0.0)
    assert sup.advance(5.0, None) == []  # within the grace: waiting, no fault reported yet
    assert sup.meter.state is MeterState.WAITING and sup.effective().failsafe
    assert sup.effective().reasons == ("grid_meter: waiting",)
    changes = sup.advance(10.0, None)
    assert changes[0].enters_failsafe and sup.meter.state is MeterState.STALE
    changes = sup.advance(12.0, 11.5)
    assert changes[0].leaves_failsafe and not sup.effective().failsafe
    assert sup.next_deadline() == 21.5
    changes = sup.advance(21.6, 11.5)
    assert changes[0].enters_failsafe and sup.effective().source == "grid_meter"


@settings(max_examples=150, deadline=None)
@given(max_age=st.floats(0.5, 60), updated=st.one_of(st.none(), st.floats(0, 1000)), now=st.floats(0, 2000),
       started=st.floats(0, 100))
def test_stale_inputs_lead_to_the_failsafe(max_age: float, updated: float | None, now: float,
                                           started: float) -> None:
    """Whatever the timing: if the newest reading is older than max_age (or missing), the chargers are capped at
    the failsafe limit; if it is fresh and nothing else limits, they are not capped."""
    now = max(now, started)
    if updated is not None:
        updated = min(updated, now)
    sup = Supervisor.create(failsafe_limit_w=FAILSAFE_W, min_duration_s=TWO_HOURS,
                            min_limit_w=MIN_EXTERNAL_LIMIT_W, voltage_v=230.0, meter_max_age_s=max_age,
                            now=started)
    sup.advance(now, updated)
    eff = sup.effective()
    if updated is None or now - updated > max_age:
        assert eff.failsafe and eff.cap is not None and eff.cap.limit_w == FAILSAFE_W
        assert eff.cap.label is Reason.FAILSAFE
    else:
        assert not eff.failsafe and eff.cap is None


def test_forget_source() -> None:
    sup = supervisor("eg")
    assert sup.forget("eg") and not sup.forget("eg")
    assert sup.effective().cap is None
