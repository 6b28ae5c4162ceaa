"""plugins/mqtt/limits.py: the token bucket and the jittered exponential back-off."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plugins.mqtt.const import BACKOFF_FACTOR, BACKOFF_INITIAL_S, BACKOFF_JITTER, BACKOFF_MAX_S
from plugins.mqtt.limits import Backoff, TokenBucket


def test_bucket_burst_then_rate() -> None:
    bucket = TokenBucket(rate=2.0, burst=3, now=0.0)
    assert [bucket.allow(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.allow(0.5) and not bucket.allow(0.5)
    assert [bucket.allow(10.0) for _ in range(4)] == [True, True, True, False]  # refills to burst, not beyond


def test_bucket_clock_going_back_creates_nothing() -> None:
    bucket = TokenBucket(rate=100.0, burst=1, now=10.0)
    assert bucket.allow(10.0)
    assert not bucket.allow(5.0) and not bucket.allow(9.0)


@given(st.lists(st.floats(0, 2), max_size=100))
def test_bucket_never_exceeds_rate_times_time_plus_burst(steps: list[float]) -> None:
    bucket = TokenBucket(rate=5.0, burst=4, now=0.0)
    now, allowed = 0.0, 0
    for step in steps:
        now += step
        allowed += bucket.allow(now)
    assert allowed <= 4 + 5.0 * now + 1e-6


def test_backoff_grows_caps_and_resets() -> None:
    backoff = Backoff(initial=1.0, factor=2.0, maximum=8.0, jitter=0.0)
    assert [backoff.next_delay() for _ in range(6)] == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    backoff.reset()
    assert backoff.next_delay() == 1.0


def test_backoff_jitter_stays_within_bounds() -> None:
    values = iter([0.0, 1.0, 0.5])
    backoff = Backoff(initial=4.0, factor=1.0, maximum=4.0, jitter=0.5, rng=lambda: next(values))
    assert [backoff.next_delay() for _ in range(3)] == [4.0, 2.0, 3.0]


def test_production_constants_give_a_sane_schedule() -> None:
    backoff = Backoff(initial=BACKOFF_INITIAL_S, factor=BACKOFF_FACTOR, maximum=BACKOFF_MAX_S, jitter=BACKOFF_JITTER)
    delays = [backoff.next_delay() for _ in range(20)]
    assert all(0 < d <= BACKOFF_MAX_S for d in delays)
    assert max(delays[-5:]) >= BACKOFF_MAX_S * (1 - BACKOFF_JITTER)


def test_backoff_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        Backoff(initial=0, factor=2, maximum=1, jitter=0.5)
    with pytest.raises(ValueError):
        Backoff(initial=1, factor=2, maximum=1, jitter=1.5)
