"""damper.Damper: decreases at once, increases held, rate-limited and damped; refresh and retry."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from plugins.loadmanager.const import (
    DECREASE_QUANTUM_A,
    INCREASE_HOLD_S,
    INCREASE_HYSTERESIS_A,
    INCREASE_INTERVAL_S,
    REFRESH_S,
    RESTART_DELAY_S,
    RETRY_S,
)
from plugins.loadmanager.damper import Damper

MIN = {"cp": 6.0}


def plan(d: Damper, target: float, now: float) -> float | None:
    return d.plan({"cp": target}, now, minimums=MIN).get("cp")


def test_first_command_is_sent_at_once_unless_it_raises_what_the_charger_reported() -> None:
    assert plan(Damper(), 16.0, 0.0) == 16.0
    d = Damper()
    assert d.plan({"cp": 16.0}, 0.0, reported={"cp": 10.0}) == {}  # an increase over what is in force: held
    d = Damper()
    assert d.plan({"cp": 10.0}, 1.0, reported={"cp": 16.0}, minimums=MIN) == {"cp": 10.0}


def test_decreases_go_out_at_once_in_half_amp_steps_but_never_below_the_minimum() -> None:
    d = Damper()
    plan(d, 16.0, 0.0)
    assert plan(d, 15.9, 0.1) == 15.5
    assert plan(d, 15.6, 0.2) is None  # still above what was sent
    assert plan(d, 6.3, 0.3) == 6.0
    assert plan(d, 0.0, 0.4) == 0.0  # a pause is exact and immediate
    d2 = Damper()
    plan(d2, 16.0, 0.0)
    assert plan(d2, 6.4, 1.0) == 6.0
    d3 = Damper()
    d3.plan({"cp": 16.0}, 0.0)
    assert d3.plan({"cp": 7.3}, 1.0, minimums={"cp": 7.2}) == {"cp": 7.2}


def test_increase_waits_for_the_hold_time_and_the_interval() -> None:
    d = Damper()
    plan(d, 6.0, 0.0)
    assert plan(d, 10.0, 1.0) is None
    assert d.next_deadline() == 1.0 + INCREASE_HOLD_S
    assert plan(d, 10.0, 1.0 + INCREASE_HOLD_S) == 10.0
    t = 1.0 + INCREASE_HOLD_S
    assert plan(d, 16.0, t + 0.1) is None
    assert plan(d, 16.0, t + INCREASE_HOLD_S + 0.1) is None  # held long enough, but the interval has not passed
    assert d.next_deadline() == t + INCREASE_INTERVAL_S
    assert plan(d, 16.0, t + INCREASE_INTERVAL_S) == 16.0


def test_a_dip_restarts_the_hold() -> None:
    d = Damper()
    plan(d, 6.0, 0.0)
    plan(d, 10.0, 1.0)
    plan(d, 6.0, 3.0)  # back down: the pending increase is dropped
    assert plan(d, 10.0, 1.0 + INCREASE_HOLD_S) is None  # the hold starts again here
    assert plan(d, 10.0, 1.0 + 2 * INCREASE_HOLD_S) == 10.0


def test_small_increases_are_not_sent() -> None:
    d = Damper()
    plan(d, 10.0, 0.0)
    for t in range(1, 200):
        assert plan(d, 10.0 + INCREASE_HYSTERESIS_A - 0.1, float(t)) in (None, 10.0)  # only refreshes
    assert d.next_deadline() is not None and d.next_deadline() >= 10.0  # no busy loop


def test_restart_after_a_pause_waits() -> None:
    d = Damper()
    plan(d, 10.0, 0.0)
    plan(d, 0.0, 1.0)
    assert plan(d, 10.0, 2.0 + INCREASE_HOLD_S) is None
    assert d.next_deadline() == 1.0 + RESTART_DELAY_S
    assert plan(d, 10.0, 1.0 + RESTART_DELAY_S) == 10.0


def test_refresh_and_retry() -> None:
    d = Damper()
    plan(d, 10.0, 0.0)
    assert plan(d, 10.0, REFRESH_S - 1) is None
    assert plan(d, 10.0, REFRESH_S) == 10.0
    d.result("cp", 10.0, False, REFRESH_S + 1)
    assert d.next_deadline() == REFRESH_S + 1 + RETRY_S
    assert plan(d, 10.0, REFRESH_S + 1 + RETRY_S) == 10.0
    d.result("cp", 9.0, False, 1000.0)  # the outcome of an older command: ignored
    assert not d.tracks["cp"].failed


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.floats(0.05, 30), st.one_of(st.just(0.0), st.floats(6, 32))), min_size=1,
                max_size=60))
def test_what_is_requested_never_exceeds_the_current_target(steps: list[tuple[float, float]]) -> None:
    """Damping only ever lowers: whatever the sequence of targets (0 or >= the minimum), after every step the
    requested value is at most the target of that moment, 0 or at least the minimum."""
    d = Damper()
    now = 0.0
    for dt, target in steps:
        now += dt
        command = plan(d, target, now)
        requested = d.requested("cp")
        assert requested is not None
        if command is not None:
            assert command == requested
        assert requested <= target + 1e-9
        assert requested == 0.0 or requested >= 6.0 - 1e-9
        assert target - requested < DECREASE_QUANTUM_A + 1e-9 or command is None
