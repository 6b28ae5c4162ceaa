"""End to end with real peers: OCPP stations (the ``ocpp`` library's ChargePoint over TLS WebSockets on
loopback, 1.6 and 2.0.1) and a pymodbus grid meter polled by the Modbus plugin. Meter registers and site limits
change; the test asserts the SetChargingProfile each station actually receives."""

from __future__ import annotations

import asyncio
import contextlib
import textwrap
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from ocpp.v16 import call as call16
from ocpp.v201 import call as call201

from gateway.context import Context, Role
from gateway.core import Gateway
from gateway.security import certs, tls
from tests.helpers import free_port, running_gateway
from tests.peers.modbus_meter import MeterServer, device, fill, meter_server, put, words
from tests.peers.ocpp_station import Station16, Station201, station

pytestmark = pytest.mark.peer

PASSWORDS = {"CP1": "cp1-Secret-Passw0rd-ab", "CP2": "cp2-Secret-Passw0rd-cd"}
SECRETS = "".join(f'{k.lower()}: "{v}"\n' for k, v in PASSWORDS.items())
ENERGY_MANAGER = Context(origin="eebus", principal="ski-0123", role=Role.OPERATOR)

# Eastron SDM630 input registers (vendor manual addresses, written out here, not taken from the plugin's map).
SDM630 = {"current_l1": 0x06, "current_l2": 0x08, "current_l3": 0x0A, "power": 0x34}


@dataclass
class Site:
    gw: Gateway
    meter: MeterServer
    url: str
    ca: Path

    async def set_meter(self, l1: float, l2: float, l3: float, power: float) -> None:
        server = self.meter.server
        assert server is not None
        for key, value in (("current_l1", l1), ("current_l2", l2), ("current_l3", l3), ("power", power)):
            await server.async_setValues(1, 4, SDM630[key], words(">f", value))


def meter_registers(l1: float, l2: float, l3: float, power: float) -> dict[int, int]:
    regs: dict[int, int] = {}
    fill(regs, 0x0000, 0x004F)
    for key, value in (("current_l1", l1), ("current_l2", l2), ("current_l3", l3), ("power", power)):
        put(regs, SDM630[key], words(">f", value))
    return regs


def config(ocpp_port: int, meter_port: int, pki: Path) -> str:
    return textwrap.dedent(f"""
    ocpp:
      enabled: true
      port: {ocpp_port}
      tls:
        cert: {pki / "server.pem"}
        key: {pki / "server.key"}
        ca: {pki / "ca.pem"}
      stations:
        - id: CP1
          password: !secret cp1
          version: "1.6"
          phases: 3
          max_current_a: 16
        - id: CP2
          password: !secret cp2
          version: "2.0.1"
          phases: 1
          max_current_a: 32
    modbus:
      enabled: true
      meters:
        - name: grid
          model: eastron_sdm630
          host: 127.0.0.1
          port: {meter_port}
          poll_interval: 0.1s
          timeout: 0.5s
    loadmanager:
      enabled: true
      fuse_a: 25
      margin_a: 1
      grid_meter:
        current_l1: sensor.grid_current_l1
        current_l2: sensor.grid_current_l2
        current_l3: sensor.grid_current_l3
        power: sensor.grid_power
        max_age: 3s
      chargers:
        cp2: {{rotation: L2, priority: 1}}
    """)


@contextlib.asynccontextmanager
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    pki = tmp_path / "pki"
    pki.mkdir()
    ca = certs.create_ca("Test CSMS CA")
    server = certs.issue_server(ca, common_name="localhost", hosts=["localhost", "127.0.0.1"])
    certs.write_pair(server, pki / "server.pem", pki / "server.key", chain=[ca])
    certs.write_cert(pki / "ca.pem", [ca])
    ocpp_port, meter_port = free_port(), free_port()
    async with meter_server([device(1, inputs=meter_registers(2.0, 2.0, 2.0, 1380.0))], meter_port) as meter, \
            running_gateway(tmp_path, config(ocpp_port, meter_port, pki), SECRETS) as gw:
        assert not gw.failed_plugins, gw.failed_plugins
        yield Site(gw=gw, meter=meter, url=f"wss://127.0.0.1:{ocpp_port}/ocpp", ca=pki / "ca.pem")


@contextlib.asynccontextmanager
async def charging_station(s: Site, identity: str, version: str) -> AsyncIterator[Station16 | Station201]:
    async with station(s.url, identity, version, password=PASSWORDS[identity],
                       ssl_context=tls.client_context(ca=s.ca)) as cp:
        if isinstance(cp, Station16):
            await cp.call(call16.BootNotification(charge_point_vendor="ACME", charge_point_model="W"))
            await cp.call(call16.StatusNotification(connector_id=1, error_code="NoError", status="Charging"))
        else:
            await cp.call(call201.BootNotification(charging_station={"model": "W", "vendor_name": "ACME"},
                                                   reason="PowerUp"))
            await cp.call(call201.StatusNotification(timestamp="2026-01-01T10:00:00Z", connector_status="Occupied",
                                                     evse_id=1, connector_id=1))
        yield cp


def limits(cp: Station16 | Station201) -> list[float]:
    """The limits (A) of every SetChargingProfile the station received, in order."""
    out = []
    for payload in cp.got("SetChargingProfile"):
        if isinstance(cp, Station16):
            schedule = payload["cs_charging_profiles"]["charging_schedule"]
        else:
            schedule = payload["charging_profile"]["charging_schedule"][0]
        assert schedule["charging_rate_unit"] == "A"
        out.append(float(schedule["charging_schedule_period"][0]["limit"]))
    return out


async def until(check: Callable[[], bool], within: float = 8.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def last(cp: Any) -> float | None:
    got = limits(cp)
    return got[-1] if got else None


async def test_meter_and_site_limit_reach_the_stations(tmp_path: Path) -> None:
    async with site(tmp_path) as s, charging_station(s, "CP1", "1.6") as cp1, \
            charging_station(s, "CP2", "2.0.1") as cp2:
        # 25 A fuse, 1 A margin, 2 A of house load per phase: 22 A per phase for the cars. CP2 (priority 1,
        # single-phase on L2, up to 32 A) takes all 22 A of L2; CP1 (three-phase) needs L2 too: paused.
        await until(lambda: last(cp2) == 22.0 and last(cp1) == 0.0)
        assert s.gw.states.get("sensor.loadmanager_cp1_allocation").attributes["reason"] == "paused_priority"

        # The house load on L2 rises by 6 A (the meter now reads 8 A there): CP2 comes down at once.
        await s.set_meter(2.0, 8.0, 2.0, 2760.0)
        await until(lambda: last(cp2) == 16.0)

        # An energy manager caps all chargers at 3 kW: raised to the §14a minimum of 4.2 kW. On CP2's one
        # phase that is 18.2 A, above the 16 A it has now: nothing to lower.
        result = await s.gw.services.call("loadmanager", "set_site_limit", {"limit_w": 3000, "duration": "1h"},
                                          context=ENERGY_MANAGER)
        assert result["clamped"] and result["limit_w"] == 4200.0
        # A second source caps the chargers at 8 A per phase: the lowest of all limits applies, CP2 at 8 A.
        result = await s.gw.services.call("loadmanager", "set_site_limit", {"limit_a": 8, "source": "dso"},
                                          context=ENERGY_MANAGER)
        assert result["limit_a"] == 8.0 and not result["clamped"]
        await until(lambda: last(cp2) == 8.0)
        attributes = s.gw.states.get("sensor.loadmanager_site_limit").attributes
        assert attributes["sources"] == {"eebus:ski-0123": "limited", "dso": "limited"}
        assert attributes["limit_a"] == 8.0
        assert s.gw.states.get("sensor.loadmanager_cp2_allocation").attributes["reason"] == "external_limit"

        # The meter stops answering: after max_age the failsafe (4.2 kW) applies on top.
        await s.meter.stop()
        await until(lambda: s.gw.states.get("sensor.loadmanager_site_limit").attributes["failsafe"] is True)
        assert s.gw.states.get("sensor.loadmanager_site_limit").attributes["meter"] == "stale"
        assert last(cp2) == 8.0  # 8 A on one phase (1.8 kW) is under the failsafe's 4.2 kW: unchanged
        assert last(cp1) == 0.0


async def test_first_commands_pause_an_idle_station_and_start_the_car(tmp_path: Path) -> None:
    async with site(tmp_path) as s, charging_station(s, "CP1", "1.6") as cp1:
        # Only CP1: the whole 22 A per phase, capped at its 16 A maximum.
        await until(lambda: last(cp1) == 16.0)
        profile = cp1.got("SetChargingProfile")[-1]["cs_charging_profiles"]
        assert profile["charging_schedule"]["charging_schedule_period"][0]["number_phases"] == 3
        # House load on L3 up to 12 A (room 12 A): CP1 lowered to 12 A at once.
        await s.set_meter(2.0, 2.0, 12.0, 4000.0)
        await until(lambda: last(cp1) == 12.0)
        # The car is done: the station says SuspendedEV; it keeps its minimum so that it can resume.
        await cp1.call(call16.StatusNotification(connector_id=1, error_code="NoError", status="SuspendedEV"))
        await until(lambda: last(cp1) == 6.0)
