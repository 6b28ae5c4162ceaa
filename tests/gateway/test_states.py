from __future__ import annotations

import pytest

from gateway.bus import Event, EventBus
from gateway.errors import DuplicateRegistration
from gateway.states import EVENT_STATE_CHANGED, StateMachine


@pytest.fixture
def setup() -> tuple[StateMachine, list[Event]]:
    bus = EventBus()
    events: list[Event] = []
    bus.subscribe(EVENT_STATE_CHANGED, events.append)
    return StateMachine(bus), events


def test_set_fires_only_on_change(setup: tuple[StateMachine, list[Event]]) -> None:
    states, events = setup
    first = states.set("sensor.cp01_power", 7200, "W", {"phase": "L1"}, owner="ocpp")
    again = states.set("sensor.cp01_power", 7200, "W", {"phase": "L1"}, owner="ocpp")
    assert len(events) == 1
    assert again.last_changed == first.last_changed and again.last_updated >= first.last_updated
    states.set("sensor.cp01_power", 7300, "W", {"phase": "L1"}, owner="ocpp")
    assert len(events) == 2
    assert events[1].data["old_state"].value == 7200 and events[1].data["new_state"].value == 7300
    states.set("sensor.cp01_power", 7300, "W", {"phase": "L2"}, owner="ocpp")
    assert len(events) == 3, "an attribute change is a change"


@pytest.mark.parametrize("bad", ["power", "Sensor.x", "sensor.", ".x", "sensor.x-y", "sensor.x.y", "a b.c"])
def test_invalid_entity_ids_are_refused(setup: tuple[StateMachine, list[Event]], bad: str) -> None:
    states, events = setup
    with pytest.raises(ValueError, match="invalid entity id"):
        states.set(bad, 1)
    assert events == []


def test_state_is_immutable(setup: tuple[StateMachine, list[Event]]) -> None:
    states, _ = setup
    state = states.set("sensor.a", 1)
    with pytest.raises(AttributeError):
        state.value = 2  # type: ignore[misc]
    with pytest.raises(TypeError):
        state.attributes["x"] = 1  # type: ignore[index]


def test_another_plugin_cannot_take_over_an_entity(setup: tuple[StateMachine, list[Event]]) -> None:
    states, _ = setup
    states.set("sensor.grid_power", 1, owner="modbus")
    with pytest.raises(DuplicateRegistration, match="belongs to modbus"):
        states.set("sensor.grid_power", 2, owner="ocpp")
    assert states.get("sensor.grid_power").value == 1  # type: ignore[union-attr]


def test_remove_fires_with_no_new_state(setup: tuple[StateMachine, list[Event]]) -> None:
    states, events = setup
    states.set("sensor.a", 1, owner="p")
    assert states.remove("sensor.a", owner="p")
    assert events[-1].data["new_state"] is None and states.get("sensor.a") is None
    assert not states.remove("sensor.a", owner="p")


def test_queries(setup: tuple[StateMachine, list[Event]]) -> None:
    states, _ = setup
    states.set("sensor.a", 1)
    states.set("switch.b", True)
    assert [s.entity_id for s in states.all("sensor")] == ["sensor.a"]
    assert len(states) == 2
    assert states.get("switch.b").as_dict()["value"] is True  # type: ignore[union-attr]
