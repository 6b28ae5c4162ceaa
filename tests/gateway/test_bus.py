from __future__ import annotations

import asyncio
import logging

import pytest

from gateway.bus import Event, EventBus
from gateway.context import Context, Role


def test_exact_and_prefix_subscriptions_receive_matching_events() -> None:
    bus = EventBus()
    exact: list[str] = []
    prefix: list[str] = []
    everything: list[str] = []
    bus.subscribe("state_changed", lambda e: exact.append(e.type))
    bus.subscribe("ocpp.*", lambda e: prefix.append(e.type))
    bus.subscribe("*", lambda e: everything.append(e.type))
    for t in ("state_changed", "ocpp.boot", "ocpp.status", "other"):
        bus.fire(t)
    assert exact == ["state_changed"]
    assert prefix == ["ocpp.boot", "ocpp.status"]
    assert everything == ["state_changed", "ocpp.boot", "ocpp.status", "other"]


def test_event_carries_data_origin_time_and_context() -> None:
    bus = EventBus()
    got: list[Event] = []
    bus.subscribe("x", got.append)
    ctx = Context(origin="mqtt", principal="dash", role=Role.OPERATOR)
    bus.fire("x", {"a": 1}, origin="mqtt", context=ctx)
    (event,) = got
    assert event.data == {"a": 1} and event.origin == "mqtt" and event.context is ctx
    assert event.time_fired > 0


def test_failing_sync_subscriber_is_logged_and_others_still_run(caplog: pytest.LogCaptureFixture) -> None:
    bus = EventBus()
    seen: list[int] = []

    def broken(event: Event) -> None:
        raise RuntimeError("boom")

    bus.subscribe("x", broken, owner="plugin_broken")
    bus.subscribe("x", lambda e: seen.append(1))
    with caplog.at_level(logging.ERROR):
        bus.fire("x")
    assert seen == [1]
    assert "plugin_broken" in caplog.text and "boom" in caplog.text


def test_unsubscribe_stops_delivery() -> None:
    bus = EventBus()
    seen: list[str] = []
    unsub = bus.subscribe("x", lambda e: seen.append("x"))
    bus.fire("x")
    unsub()
    bus.fire("x")
    assert seen == ["x"]


def test_bad_patterns_are_refused() -> None:
    bus = EventBus()
    with pytest.raises(ValueError):
        bus.subscribe("a*b", lambda e: None)
    with pytest.raises(ValueError):
        bus.subscribe("", lambda e: None)


async def test_coroutine_subscriber_is_scheduled_in_order_without_blocking() -> None:
    bus = EventBus()
    got: list[int] = []
    release = asyncio.Event()

    async def slow(event: Event) -> None:
        await release.wait()
        got.append(event.data["n"])

    bus.subscribe("x", slow)
    for n in range(5):
        bus.fire("x", {"n": n})  # returns at once although the subscriber is blocked
    assert got == []
    release.set()
    for _ in range(50):
        await asyncio.sleep(0)
    assert got == [0, 1, 2, 3, 4]
    await bus.async_stop()


async def test_slow_subscriber_gets_a_bounded_queue_and_counts_drops() -> None:
    bus = EventBus(queue_size=10)
    release = asyncio.Event()
    got: list[int] = []

    async def stuck(event: Event) -> None:
        await release.wait()
        got.append(event.data["n"])

    fast: list[int] = []
    bus.subscribe("x", stuck, owner="stuck")
    bus.subscribe("x", lambda e: fast.append(e.data["n"]))
    for n in range(100):
        bus.fire("x", {"n": n})
    assert len(fast) == 100  # the fast subscriber lost nothing
    stats = {s["owner"]: s for s in bus.stats()}
    # The worker took the first event out of the queue before blocking, so 1 + 10 queued were kept.
    assert stats["stuck"]["dropped"] >= 89
    release.set()
    await asyncio.sleep(0.05)
    assert got == list(range(len(got))) and 10 <= len(got) <= 11
    await bus.async_stop()


async def test_failing_coroutine_subscriber_keeps_its_worker_alive(caplog: pytest.LogCaptureFixture) -> None:
    bus = EventBus()
    got: list[int] = []

    async def flaky(event: Event) -> None:
        if event.data["n"] == 0:
            raise RuntimeError("first one fails")
        got.append(event.data["n"])

    bus.subscribe("x", flaky, owner="flaky")
    bus.fire("x", {"n": 0})
    bus.fire("x", {"n": 1})
    await asyncio.sleep(0.01)
    assert got == [1]
    assert "flaky" in caplog.text
    await bus.async_stop()
