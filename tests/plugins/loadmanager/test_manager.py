"""manager.LoadManager on a real gateway: meter states in, ``charger.set_current_limit`` out, services, states,
audit and the persisted limit sources. A test-only charger provider stands in for the OCPP plugin: it owns
``charger.<id>`` entities and registers the routed capability service, exactly as a charger plugin does."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import voluptuous as vol

from gateway.context import Context, Role
from gateway.core import Gateway
from gateway.errors import ServiceValidationError, Unauthorized
from gateway.services import ServiceCall
from plugins.loadmanager.const import AUDIT_FAILSAFE, AUDIT_SITE_LIMIT, AUDIT_SOURCE_FORGOTTEN
from tests.helpers import running_gateway

CONFIG = """
loadmanager:
  enabled: true
  fuse_a: 25
  margin_a: 1
  grid_meter:
    current_l1: sensor.grid_current_l1
    current_l2: sensor.grid_current_l2
    current_l3: sensor.grid_current_l3
    power: sensor.grid_power
    max_age: {max_age}
  failsafe: {{limit_w: 5000}}
  chargers:
    cp2: {{phases: 1, rotation: L2, priority: 1}}
"""

ALICE = Context(origin="web", principal="alice", role=Role.OPERATOR, address="192.0.2.5")
ADMIN = Context(origin="cli", principal="root", role=Role.ADMIN)


class FakeChargers:
    """A charger plugin in miniature: entities owned by 'fakecharger' and the routed capability service."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.calls: list[tuple[str, float, Context]] = []
        self.accept = True
        self.undo = gw.services.register(
            "charger", "set_current_limit", self.handle, owner="fakecharger", route_by="charger",
            schema=vol.Schema({vol.Required("charger"): str, vol.Required("limit_a"): vol.Coerce(float)}))

    async def handle(self, call: ServiceCall) -> dict[str, Any]:
        self.calls.append((call.data["charger"], call.data["limit_a"], call.context))
        return {"accepted": self.accept, "status": "Accepted" if self.accept else "Rejected"}

    def add(self, cid: str, status: str = "charging", **attributes: Any) -> None:
        attrs = {"phases": 3, "min_current_a": 6.0, "max_current_a": 16.0, "connected": True, **attributes}
        self.gw.states.set(f"charger.{cid}", status, attributes=attrs, owner="fakecharger")

    def last(self, cid: str) -> float | None:
        values = [v for c, v, _ in self.calls if c == cid]
        return values[-1] if values else None


def meter(gw: Gateway, l1: float, l2: float, l3: float, power: float | None = None) -> None:
    for k, value in enumerate((l1, l2, l3), start=1):
        gw.states.set(f"sensor.grid_current_l{k}", value, "A", owner="fakemeter")
    gw.states.set("sensor.grid_power", power if power is not None else (l1 + l2 + l3) * 230, "W",
                  owner="fakemeter")


async def until(check: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


def site_limit(gw: Gateway) -> tuple[Any, dict[str, Any]]:
    state = gw.states.get("sensor.loadmanager_site_limit")
    return (None, {}) if state is None else (state.value, dict(state.attributes))


def allocation(gw: Gateway, cid: str) -> tuple[Any, Any]:
    state = gw.states.get(f"sensor.loadmanager_{cid}_allocation")
    return (None, None) if state is None else (state.value, state.attributes["reason"])


async def test_meter_limits_and_failsafe_drive_the_chargers(tmp_path: Path) -> None:
    async with running_gateway(tmp_path, CONFIG.format(max_age="2s")) as gw:
        chargers = FakeChargers(gw)
        chargers.add("cp1")
        chargers.add("cp2", phases=1, max_current_a=32.0)
        meter(gw, 2.0, 2.0, 2.0)
        # 24 A per phase minus 2 A of house: cp2 (priority 1, on L2) takes 16 A... up to 22 on L2; cp1 gets the rest.
        await until(lambda: chargers.last("cp1") is not None and chargers.last("cp2") is not None)
        assert chargers.last("cp2") == 16.0 or chargers.last("cp2") == 22.0
        await until(lambda: allocation(gw, "cp2")[0] == 22.0)
        await until(lambda: chargers.last("cp1") == 0.0 or allocation(gw, "cp1")[0] == 0.0)
        assert allocation(gw, "cp1") == (0.0, "paused_priority")  # L2 is full with cp2
        _, _, context = chargers.calls[0]
        assert context.origin == "loadmanager" and context.role is Role.SYSTEM
        assert gw.states.get("sensor.loadmanager_available_current_l2").value == 22.0

        # An energy manager caps the chargers at 3 kW: raised to the §14a minimum (4.2 kW), audited, applied.
        result = await gw.services.call("loadmanager", "set_site_limit", {"limit_w": 3000, "source": "dso"},
                                        context=ALICE)
        assert result["accepted"] and result["clamped"] and result["limit_w"] == 4200.0
        # 4200 W on cp2's one phase: 18.2 A, sent as 18.0 (decreases go in 0.5 A steps); the command's context
        # names the service call as its parent.
        await until(lambda: chargers.last("cp2") == 18.0)
        assert [c.parent_id for cid, v, c in chargers.calls if cid == "cp2" and v == 18.0] == [ALICE.id]
        site = gw.states.get("sensor.loadmanager_site_limit")
        assert site.value == 4200 and site.attributes["source"] == "dso" and site.attributes["failsafe"] is False
        assert allocation(gw, "cp2") == (18.2, "external_limit")
        records = await gw.audit.list(event_prefix=AUDIT_SITE_LIMIT)
        assert records[-1].actor == "web:alice@192.0.2.5"
        assert records[-1].data["clamped"] is True and records[-1].data["limit_w"] == 3000

        # The house load on L2 rises by 8 A: cp2 comes down at once (no hold on decreases).
        meter(gw, 2.0, 10.0, 2.0)
        await until(lambda: chargers.last("cp2") == 14.0)
        assert allocation(gw, "cp2") == (14.0, "fuse_l2")

        # A negative limit is refused, and the refusal is audited too.
        with pytest.raises(ServiceValidationError, match="negative"):
            await gw.services.call("loadmanager", "set_site_limit", {"limit_w": -10}, context=ALICE)
        records = await gw.audit.list(event_prefix=AUDIT_SITE_LIMIT)
        assert records[-1].data["accepted"] is False and records[-1].data["source"] == "web:alice"

        # The meter falls silent: after max_age the failsafe limit applies, is published and audited.
        await until(lambda: gw.states.get("sensor.loadmanager_site_limit").attributes["failsafe"], within=4)
        site = gw.states.get("sensor.loadmanager_site_limit")
        assert site.attributes["reasons"] == ["grid_meter: stale"] and site.attributes["meter"] == "stale"
        failsafe = [r async for r in _records(gw, AUDIT_FAILSAFE)]
        assert failsafe and failsafe[-1].data["entered"] is True and failsafe[-1].data["source"] == "grid_meter"
        # ... and readings coming back end it.
        meter(gw, 2.0, 10.0, 2.0, power=3000.0)  # (3 kW: a new value, so the states fire)
        await until(lambda: not gw.states.get("sensor.loadmanager_site_limit").attributes["failsafe"])


async def _records(gw: Gateway, event: str):  # type: ignore[no-untyped-def]
    for _ in range(100):
        records = await gw.audit.list(event_prefix=event)
        if records:
            for record in records:
                yield record
            return
        await asyncio.sleep(0.02)


async def test_refused_commands_are_retried(tmp_path: Path) -> None:
    async with running_gateway(tmp_path, CONFIG.format(max_age="10s")) as gw:
        chargers = FakeChargers(gw)
        chargers.accept = False
        chargers.add("cp1")
        meter(gw, 0.0, 0.0, 0.0)
        await until(lambda: len(chargers.calls) >= 1)
        chargers.accept = True
        # RETRY_S later the same value goes out again, without any new reading.
        await until(lambda: len(chargers.calls) >= 2, within=8)
        assert chargers.calls[0][1] == chargers.calls[1][1] == 16.0


async def test_heartbeat_source_is_remembered_and_restart_starts_in_failsafe(tmp_path: Path) -> None:
    conf = CONFIG.format(max_age="10s")
    async with running_gateway(tmp_path, conf) as gw:
        result = await gw.services.call("loadmanager", "heartbeat", {"source": "eebus:ski1"}, context=ALICE)
        assert result == {"state": "unlimited"}
        await gw.services.call("loadmanager", "set_site_limit", {"limit_w": 6000, "source": "eebus:ski1"},
                               context=ALICE)
        meter(gw, 1.0, 1.0, 1.0)
        await until(lambda: site_limit(gw)[0] == 6000)

    async with running_gateway(tmp_path, conf) as gw:
        meter(gw, 1.0, 1.0, 1.0)
        await until(lambda: site_limit(gw)[0] is not None)
        value, attributes = site_limit(gw)
        assert value == 5000 and attributes["failsafe"] is True
        assert attributes["sources"] == {"eebus:ski1": "init"}
        restart = [r for r in await gw.audit.list(event_prefix=AUDIT_FAILSAFE) if r.data["cause"] == "restart"]
        assert restart and restart[-1].data["sources"] == ["eebus:ski1"]
        # A heartbeat alone does not end it; heartbeat + a new limit does.
        await gw.services.call("loadmanager", "heartbeat", {"source": "eebus:ski1"}, context=ALICE)
        assert gw.states.get("sensor.loadmanager_site_limit").attributes["failsafe"] is True
        await gw.services.call("loadmanager", "set_site_limit", {"limit_w": 7000, "source": "eebus:ski1"},
                               context=ALICE)
        await until(lambda: site_limit(gw)[0] == 7000)
        assert gw.states.get("sensor.loadmanager_site_limit").attributes["failsafe"] is False

        # Forgetting a source is for administrators only, and audited.
        with pytest.raises(Unauthorized):
            await gw.services.call("loadmanager", "forget_source", {"source": "eebus:ski1"}, context=ALICE)
        assert await gw.services.call("loadmanager", "forget_source", {"source": "eebus:ski1"},
                                      context=ADMIN) == {"forgotten": True}
        assert (await gw.audit.list(event_prefix=AUDIT_SOURCE_FORGOTTEN))[-1].data["source"] == "eebus:ski1"

    async with running_gateway(tmp_path, conf) as gw:
        meter(gw, 1.0, 1.0, 1.0)
        await until(lambda: site_limit(gw)[1] != {})
        assert site_limit(gw)[1]["failsafe"] is False


async def test_charger_measurements_and_removal(tmp_path: Path) -> None:
    async with running_gateway(tmp_path, CONFIG.format(max_age="10s")) as gw:
        chargers = FakeChargers(gw)
        chargers.add("cp1", limit_a=10.0)
        # cp1 draws 10 A per phase of the 15 A the meter sees: the house is 5 A, so 19 A are free for cp1,
        # capped at its 16 A maximum.
        for k in (1, 2, 3):
            gw.states.set(f"sensor.cp1_current_l{k}", 10.0, "A", owner="fakecharger")
        meter(gw, 15.0, 15.0, 15.0)
        await until(lambda: allocation(gw, "cp1")[0] == 16.0)
        assert gw.states.get("sensor.loadmanager_available_current_l1").attributes["non_ev_a"] == 5.0
        # A power reading alone (no per-phase currents) is spread over the charger's phases.
        for k in (1, 2, 3):
            gw.states.remove(f"sensor.cp1_current_l{k}", owner="fakecharger")
        gw.states.set("sensor.cp1_power", 6900.0, "W", owner="fakecharger")
        meter(gw, 15.0, 15.0, 15.1)
        await until(lambda: gw.states.get("sensor.loadmanager_available_current_l1").attributes["non_ev_a"] == 5.0)
        # A charger that disappears leaves the allocation (and its entity goes too).
        gw.states.remove("charger.cp1", owner="fakecharger")
        meter(gw, 15.0, 15.0, 15.0)
        await until(lambda: gw.states.get("sensor.loadmanager_cp1_allocation") is None)


async def test_only_relevant_charger_changes_wake_a_step(tmp_path: Path) -> None:
    async with running_gateway(tmp_path, CONFIG.format(max_age="10s")) as gw:
        runner = gw._runner  # tests look inside the running plugin
        assert runner is not None
        manager = next(r.instance for r in runner.running if r.name == "loadmanager")
        chargers = FakeChargers(gw)
        chargers.add("cp1", session_energy_wh=1.0)
        await until(lambda: allocation(gw, "cp1")[0] is not None)
        await asyncio.sleep(0)
        # The bus calls the load manager inline: whether it asked for a step is visible at once.
        manager._wake.clear()
        chargers.add("cp1", session_energy_wh=2.0, limit_a=16.0)  # energy and the echo of our own command
        assert not manager._wake.is_set()
        chargers.add("cp1", "suspended_ev", session_energy_wh=2.0, limit_a=16.0)
        assert manager._wake.is_set()
        manager._wake.clear()
        chargers.add("cp1", "suspended_ev", session_energy_wh=2.0, limit_a=16.0, max_current_a=10.0)
        assert manager._wake.is_set()
