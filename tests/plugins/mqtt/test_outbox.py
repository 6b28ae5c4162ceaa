"""plugins/mqtt/outbox.py: coalescing per entity, the minimum interval, the bound and its drop counter."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from plugins.mqtt.outbox import Outbox


def test_one_slot_per_key_latest_wins() -> None:
    box = Outbox(min_interval=0, max_pending=10)
    for _ in range(5):
        box.mark("sensor.a", 0.0)
    box.mark("sensor.b", 0.0)
    assert box.take(0.0, 10) == ["sensor.a", "sensor.b"]
    assert box.coalesced == 4 and box.take(0.0, 10) == []


def test_min_interval_delays_the_next_publish() -> None:
    box = Outbox(min_interval=1.0, max_pending=10)
    box.mark("sensor.a", 0.0)
    assert box.take(0.0, 10) == ["sensor.a"]
    box.mark("sensor.a", 0.2)
    box.mark("sensor.a", 0.5)
    assert box.take(0.5, 10) == []
    assert box.next_due() == 1.0
    assert box.take(1.0, 10) == ["sensor.a"]
    box.mark("sensor.a", 5.0)  # long after: out at once
    assert box.take(5.0, 10) == ["sensor.a"]


def test_force_ignores_the_interval() -> None:
    box = Outbox(min_interval=10.0, max_pending=10)
    box.mark("sensor.a", 0.0)
    box.take(0.0, 1)
    box.mark("sensor.a", 1.0)
    box.mark("sensor.a", 1.0, force=True)
    assert box.take(1.0, 10) == ["sensor.a"]
    assert box.next_due() is None


def test_bound_drops_and_counts() -> None:
    box = Outbox(min_interval=0, max_pending=3)
    assert all(box.mark(f"sensor.e{i}", 0.0) for i in range(3))
    assert not box.mark("sensor.e3", 0.0)
    assert box.mark("sensor.e0", 0.0)  # already held: coalesced, not dropped
    assert (box.dropped, len(box)) == (1, 3)


def test_take_respects_the_limit_and_order() -> None:
    box = Outbox(min_interval=0, max_pending=100)
    for i in range(10):
        box.mark(f"sensor.e{i}", 0.0)
    assert box.take(0.0, 3) == ["sensor.e0", "sensor.e1", "sensor.e2"]
    assert len(box.take(0.0, 100)) == 7


def test_a_large_drain_stays_linear() -> None:
    box = Outbox(min_interval=0, max_pending=200_000)
    for i in range(100_000):
        box.mark(f"sensor.e{i}", 0.0)
    taken = 0
    while batch := box.take(0.0, 1_000):
        taken += len(batch)
    assert taken == 100_000


ops = st.lists(st.tuples(st.sampled_from(["mark", "force", "take"]), st.integers(0, 5), st.floats(0, 0.7)),
               max_size=80)


@settings(max_examples=200)
@given(ops, st.sampled_from([0.0, 0.5, 1.0]))
def test_model(operations: list[tuple[str, int, float]], interval: float) -> None:
    """Contract: a key comes out at most once per interval (unless forced), never twice while pending, and
    every key marked and not dropped comes out eventually."""
    box = Outbox(min_interval=interval, max_pending=4)
    now = 0.0
    last: dict[str, float] = {}
    forced: set[str] = set()
    owed: set[str] = set()
    for op, n, step in operations:
        now += step
        key = f"sensor.e{n}"
        if op in ("mark", "force"):
            if box.mark(key, now, force=op == "force"):
                owed.add(key)
                if op == "force":
                    forced.add(key)
        else:
            out = box.take(now, 3)
            assert len(out) == len(set(out))
            for k in out:
                if k not in forced and k in last:
                    assert now - last[k] >= interval - 1e-9
                last[k] = now
                forced.discard(k)
                owed.discard(k)
        assert len(box) <= 4
    now += 10
    while out := box.take(now, 100):
        owed -= set(out)
    assert not owed
