"""The fan-out hub: one encoding per change, bounded queues, slow clients cut off without blocking the bus."""

from __future__ import annotations

import asyncio
import json

import pytest

from gateway.bus import EventBus
from gateway.states import StateMachine
from plugins.web import stream as stream_module
from plugins.web.sse import parse
from plugins.web.stream import CLOSE, KEEPALIVE, StreamHub, to_json


async def test_changes_reach_every_interested_client() -> None:
    bus = EventBus()
    states = StateMachine(bus)
    hub = StreamHub(bus)
    everyone, chargers = hub.register(), hub.register(["charger.*"])
    states.set("sensor.a", 1, owner="t")
    states.set("charger.cp1", "Available", owner="t")
    assert everyone.queue.qsize() == 2 and chargers.queue.qsize() == 1
    [message] = parse(chargers.queue.get_nowait())
    assert message.event == "state" and json.loads(message.data)["entity_id"] == "charger.cp1"
    hub.close()
    assert everyone.queue.get_nowait() != CLOSE  # queued events stay in order, the close comes last
    await bus.async_stop()


async def test_a_slow_client_is_cut_off_not_the_publisher(monkeypatch: pytest.MonkeyPatch) -> None:
    bus = EventBus()
    states = StateMachine(bus)
    monkeypatch.setattr(stream_module, "STREAM_QUEUE_EVENTS", 5)
    hub = StreamHub(bus)
    slow, fast = hub.register(), hub.register()
    for value in range(10):
        states.set("sensor.a", value, owner="t")
        while not fast.queue.empty():
            fast.queue.get_nowait()
    assert slow.overflowed and len(hub) == 1 and hub.dropped_clients == 1
    items = [slow.queue.get_nowait() for _ in range(slow.queue.qsize())]
    assert items[-1] == CLOSE  # the slow one is told to close (its browser reconnects to a snapshot)
    hub.close()
    await bus.async_stop()


async def test_keepalive_tick_reaches_idle_clients() -> None:
    bus = EventBus()
    hub = StreamHub(bus)
    hub.keepalive_s = 0.01
    client = hub.register()
    item = await asyncio.wait_for(client.queue.get(), 1.0)
    assert item == KEEPALIVE
    hub.unregister(client)
    hub.close()


def test_json_for_browsers() -> None:
    assert to_json({"v": float("nan"), "w": [float("inf")], "x": object.__name__}) == '{"v":null,"w":[null],"x":"object"}'
