"""Meters against real pymodbus peers: every shipped model over TCP, RTU over a socat pty pair with two meters
sharing the bus, Modbus/TCP Security, a meter that stops answering and comes back, a silent meter, and a
meter that refuses merged reads. The simulated registers are written here by hand (addresses from the
vendor manuals), independently of the plugin's map files."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.core import Gateway
from gateway.states import UNAVAILABLE
from tests.helpers import free_port, running_gateway
from tests.peers.modbus_meter import (
    MeterServer,
    Registers,
    device,
    fill,
    meter_server,
    pty_pair,
    put,
    serial_meter_server,
    silent_server,
    words,
)

pytestmark = pytest.mark.peer

FAST = "poll_interval: 0.1s\n      timeout: 0.3s\n      retries: 1"


async def wait_until(check: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


def values(gw: Gateway, name: str) -> dict[str, Any]:
    prefix = f"sensor.{name}_"
    return {s.entity_id.removeprefix(prefix): s.value for s in gw.states.all("sensor")
            if s.entity_id.startswith(prefix)}


def units(gw: Gateway, name: str) -> dict[str, str | None]:
    prefix = f"sensor.{name}_"
    return {s.entity_id.removeprefix(prefix): s.unit for s in gw.states.all("sensor")
            if s.entity_id.startswith(prefix)}


def meter_yaml(meters: str) -> str:
    return f"modbus:\n  enabled: true\n  meters:\n{meters}"


def tcp_meter(name: str, model: str, port: int, unit_id: int = 1, extra: str = "") -> str:
    return (f"    - name: {name}\n      model: {model}\n      host: 127.0.0.1\n      port: {port}\n"
            f"      unit_id: {unit_id}\n      {FAST}\n{extra}")


# -- simulated meters: (holding, inputs, expected states) ----------------------------------------------------

def sdm(sdm72: bool = False) -> tuple[Registers, Registers, dict[str, float]]:
    ir: Registers = {}
    fill(ir, 0x0000, 0x004F)
    expected = {"voltage_l1": 230.5, "voltage_l2": 231.25, "voltage_l3": 229.75, "current_l1": 10.25,
                "current_l2": 9.5, "current_l3": 8.0, "power_l1": 2300.0, "power_l2": 2100.0, "power_l3": 1800.0,
                "power": 6200.0, "frequency": 50.0, "energy_import": 12345.5 * 1000, "energy_export": 678.25 * 1000}
    if sdm72:
        expected = {k: v * 2 if k.startswith("power") else v for k, v in expected.items()}
    for address, key in [(0x00, "voltage_l1"), (0x02, "voltage_l2"), (0x04, "voltage_l3"), (0x06, "current_l1"),
                         (0x08, "current_l2"), (0x0A, "current_l3"), (0x0C, "power_l1"), (0x0E, "power_l2"),
                         (0x10, "power_l3"), (0x34, "power"), (0x46, "frequency")]:
        put(ir, address, words(">f", expected[key]))
    put(ir, 0x48, words(">f", 12345.5))  # kWh on the wire
    put(ir, 0x4A, words(">f", 678.25))
    return {}, ir, expected


def sdm72v1() -> tuple[Registers, Registers, dict[str, float]]:
    ir: Registers = {}  # only the three registers V1 has: any read across a hole fails
    put(ir, 0x34, words(">f", -1500.0))
    put(ir, 0x48, words(">f", 100.0))
    put(ir, 0x4A, words(">f", 2.5))
    return {}, ir, {"power": -1500.0, "energy_import": 100000.0, "energy_export": 2500.0}


def abb() -> tuple[Registers, Registers, dict[str, Any]]:
    hr: Registers = {}
    fill(hr, 0x5000, 0x5007)
    fill(hr, 0x5B00, 0x5B3D)
    put(hr, 0x5000, words(">Q", 1234567))  # 0.01 kWh
    put(hr, 0x5004, [0xFFFF] * 4)  # not available
    for i, v in enumerate((2305, 2312, 2298)):
        put(hr, 0x5B00 + 2 * i, words(">I", v))  # 0.1 V
    for i, v in enumerate((1025, 950, 800)):
        put(hr, 0x5B0C + 2 * i, words(">I", v))  # 0.01 A
    put(hr, 0x5B14, words(">i", -450000))  # 0.01 W
    for i, v in enumerate((-150000, -150000, -150000)):
        put(hr, 0x5B16 + 2 * i, words(">i", v))
    hr[0x5B2C] = 5001  # 0.01 Hz
    return hr, {}, {"energy_import": 12345670.0, "energy_export": UNAVAILABLE, "voltage_l1": 230.5,
                    "voltage_l2": 231.2, "voltage_l3": 229.8, "current_l1": 10.25, "current_l2": 9.5,
                    "current_l3": 8.0, "power": -4500.0, "power_l1": -1500.0, "power_l2": -1500.0,
                    "power_l3": -1500.0, "frequency": 50.01}


def em24(e1: bool = False) -> tuple[Registers, Registers, dict[str, Any]]:
    ir: Registers = {}
    fill(ir, 0x00, 0x5D)
    for i, v in enumerate((2305, 2312, 2298)):
        put(ir, 0x00 + 2 * i, words(">i", v, "little"))  # V x10, low word first
    for i, v in enumerate((10250, 9500, 8000)):
        put(ir, 0x0C + 2 * i, words(">i", v, "little"))  # A x1000
    for i, v in enumerate((23000, 21000, -18000)):
        put(ir, 0x12 + 2 * i, words(">i", v, "little"))  # W x10
    put(ir, 0x28, words(">i", 26000, "little"))
    ir[0x33 if e1 else 0x37] = 500  # Hz x10
    put(ir, 0x34 if e1 else 0x42, words(">i", 123456, "little"))  # kWh x10
    put(ir, 0x4E if e1 else 0x5C, words(">i", 789, "little"))
    return {}, ir, {"voltage_l1": 230.5, "voltage_l2": 231.2, "voltage_l3": 229.8, "current_l1": 10.25,
                    "current_l2": 9.5, "current_l3": 8.0, "power_l1": 2300.0, "power_l2": 2100.0,
                    "power_l3": -1800.0, "power": 2600.0, "frequency": 50.0, "energy_import": 12345600.0,
                    "energy_export": 78900.0}


def sunspec(model: int, base: int = 40000) -> tuple[Registers, Registers, dict[str, Any]]:
    hr: Registers = {}
    put(hr, base, [0x5375, 0x6E53])  # "SunS"
    common = base + 2
    put(hr, common, [1, 66] + [0] * 66)  # model 1 (common), L = 66
    start = common + 2 + 66
    block = [0] * 105
    phases = {201: 1, 202: 2, 203: 3, 204: 3}[model]
    block[0] = 2800  # A total
    block[1:4] = [1025, 950 if phases > 1 else 0x8000, 800 if phases > 2 else 0x8000]  # AphA..C
    block[4] = (-2) & 0xFFFF  # A_SF
    block[6:9] = [2305, 2312 if phases > 1 else 0x8000, 2298 if phases > 2 else 0x8000]  # PhVphA..C
    block[13] = (-1) & 0xFFFF  # V_SF
    block[14], block[15] = 5000, (-2) & 0xFFFF  # Hz, Hz_SF
    block[16] = 6200  # W
    block[17:20] = [2300, 2100, 1800]
    block[20] = 0  # W_SF
    block[36:38] = words(">I", 1000)  # TotWhExp
    block[44:46] = words(">I", 123456)  # TotWhImp
    block[52] = 1  # TotWh_SF
    put(hr, start, [model, 105, *block])
    put(hr, start + 2 + 105, [0xFFFF, 0])
    expected: dict[str, Any] = {"current_l1": 10.25, "voltage_l1": 230.5, "frequency": 50.0, "power": 6200.0,
                                "power_l1": 2300.0, "energy_export": 10000.0, "energy_import": 1234560.0}
    if phases > 1:
        expected.update(current_l2=9.5, voltage_l2=231.2, power_l2=2100.0)
    if phases > 2:
        expected.update(current_l3=8.0, voltage_l3=229.8, power_l3=1800.0)
    return hr, {}, expected


MODELS: dict[str, Callable[[], tuple[Registers, Registers, dict[str, Any]]]] = {
    "eastron_sdm630": sdm,
    "eastron_sdm72": lambda: sdm(sdm72=True),
    "eastron_sdm72v1": sdm72v1,
    "abb_b23": abb,
    "abb_b24": abb,
    "carlo_gavazzi_em24": em24,
    "carlo_gavazzi_em24_e1": lambda: em24(e1=True),
    "sunspec_201": lambda: sunspec(201),
    "sunspec_202": lambda: sunspec(202, base=0),
    "sunspec_203": lambda: sunspec(203, base=50000),
    "sunspec_204": lambda: sunspec(204),
}

UNITS = {"power": "W", "voltage_l1": "V", "current_l1": "A", "energy_import": "Wh", "frequency": "Hz"}


def assert_matches(got: dict[str, Any], expected: dict[str, Any]) -> None:
    assert set(got) == set(expected)
    for key, value in expected.items():
        if isinstance(value, float):
            assert got[key] == pytest.approx(value, rel=1e-6), key
        else:
            assert got[key] == value, key


@pytest.mark.parametrize("model", sorted(MODELS))
async def test_every_model_over_tcp_reads_the_simulated_values(tmp_path: Path, model: str) -> None:
    holding, inputs, expected = MODELS[model]()
    port = free_port()
    async with meter_server([device(3, holding=holding, inputs=inputs)], port), \
            running_gateway(tmp_path, meter_yaml(tcp_meter("m", model, port, unit_id=3))) as gw:
        await wait_until(lambda: values(gw, "m").get("power") not in (None, UNAVAILABLE))
        assert_matches(values(gw, "m"), expected)
        got_units = units(gw, "m")
        assert all(got_units[k] == u for k, u in UNITS.items() if k in got_units)


async def test_custom_map_from_yaml(tmp_path: Path) -> None:
    hr: Registers = {}
    put(hr, 100, words(">i", -42000, "little"))
    hr[102] = 215  # a temperature in 0.1 °C
    port = free_port()
    custom = ("      custom:\n        function: 3\n        word_order: little\n        points:\n"
              "          power: {address: 100, type: int32, scale: 0.1}\n"
              "          temperature: {address: 102, type: int16, scale: 0.1, unit: °C}\n")
    async with meter_server([device(1, holding=hr)], port), \
            running_gateway(tmp_path, meter_yaml(tcp_meter("heat", "custom", port, extra=custom))) as gw:
        await wait_until(lambda: values(gw, "heat").get("power") not in (None, UNAVAILABLE))
        assert values(gw, "heat") == {"power": -4200.0, "temperature": 21.5}
        assert gw.states.get("sensor.heat_temperature").unit == "°C"  # type: ignore[union-attr]


async def test_two_rtu_meters_share_one_bus_over_a_socat_pty_pair(tmp_path: Path) -> None:
    _, sdm_ir, sdm_expected = sdm()
    abb_hr, _, abb_expected = abb()
    with pty_pair(tmp_path) as (tty_sim, tty_gw):
        devices = [device(1, inputs=sdm_ir), device(2, holding=abb_hr)]
        meters = "".join(
            f"    - name: {name}\n      model: {model}\n      transport: rtu\n      device: {tty_gw}\n"
            f"      unit_id: {unit}\n      poll_interval: 0.2s\n      timeout: 0.5s\n"
            for name, model, unit in (("grid", "eastron_sdm630", 1), ("ev", "abb_b23", 2)))
        async with serial_meter_server(devices, tty_sim), running_gateway(tmp_path, meter_yaml(meters)) as gw:
            def both() -> bool:
                return all(values(gw, n).get("power") not in (None, UNAVAILABLE) for n in ("grid", "ev"))
            await wait_until(both, within=10)
            assert_matches(values(gw, "grid"), sdm_expected)
            assert_matches(values(gw, "ev"), abb_expected)
            # Both pollers use one link (one serial port, one lock): they take turns on the bus.
            plugin = gw._runner.running[0].instance  # type: ignore[union-attr]
            assert len(plugin.links) == 1
            link = next(iter(plugin.links.values()))
            assert all(p._link is link for p in plugin.pollers)


async def test_meter_that_stops_answering_goes_unavailable_and_comes_back(tmp_path: Path) -> None:
    _, ir, _ = sdm()
    port = free_port()
    sim = await MeterServer([device(1, inputs=ir)], port).start()
    try:
        async with running_gateway(tmp_path, meter_yaml(tcp_meter("grid", "eastron_sdm630", port))) as gw:
            await wait_until(lambda: values(gw, "grid").get("power") == 6200.0)
            await sim.stop()
            await wait_until(lambda: set(values(gw, "grid").values()) == {UNAVAILABLE})
            assert gw.states.get("sensor.grid_power").unit == "W"  # type: ignore[union-attr]
            await sim.start()
            await wait_until(lambda: values(gw, "grid").get("power") == 6200.0, within=10)
    finally:
        await sim.stop()


async def test_a_silent_meter_times_out_to_unavailable_without_broadcast(tmp_path: Path) -> None:
    port = free_port()
    async with silent_server(port) as received, \
            running_gateway(tmp_path, meter_yaml(tcp_meter("grid", "eastron_sdm630", port))) as gw:
        await wait_until(lambda: len(received) >= 2)
        await asyncio.sleep(0.5)
        assert set(values(gw, "grid").values()) == {UNAVAILABLE}
        frame = received[0]
        assert frame[6] == 1 and frame[7] == 4  # unit id 1 (never 0), function 4 (a read)


async def test_a_meter_refusing_merged_reads_is_read_in_contiguous_blocks(tmp_path: Path) -> None:
    ir: Registers = {}  # only the defined points; the registers between them answer 0x02
    _, full, expected = sdm()
    for address in (*range(0x00, 0x12), 0x34, 0x35, *range(0x46, 0x4C)):
        ir[address] = full[address]
    port = free_port()
    async with meter_server([device(1, inputs=ir)], port), \
            running_gateway(tmp_path, meter_yaml(tcp_meter("grid", "eastron_sdm630", port))) as gw:
        await wait_until(lambda: values(gw, "grid").get("power") not in (None, UNAVAILABLE))
        assert_matches(values(gw, "grid"), expected)


async def test_rtu_over_tcp_through_a_serial_gateway(tmp_path: Path) -> None:
    from pymodbus import FramerType

    holding, inputs, expected = em24()
    port = free_port()
    extra = "      transport: rtu_over_tcp\n"
    async with meter_server([device(5, holding=holding, inputs=inputs)], port, framer=FramerType.RTU), \
            running_gateway(tmp_path, meter_yaml(tcp_meter("m", "carlo_gavazzi_em24", port, 5, extra))) as gw:
        await wait_until(lambda: values(gw, "m").get("power") not in (None, UNAVAILABLE))
        assert_matches(values(gw, "m"), expected)
