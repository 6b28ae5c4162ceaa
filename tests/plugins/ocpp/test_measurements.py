"""Meter values (1.6 strings, 2.0.1 numbers with unitOfMeasure) and statuses to the charger vocabulary.

Fuzz contract: ``parse_meter_values`` never raises, whatever list of dicts it is given, and never yields a
non-finite number.
"""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from plugins.ocpp.measurements import parse_meter_values, station_status


def sv(value: object, measurand: str | None = None, unit: str | None = None, phase: str | None = None,
       **extra: object) -> dict[str, object]:
    sample: dict[str, object] = {"value": value, **extra}
    if measurand:
        sample["measurand"] = measurand
    if unit:
        sample["unit"] = unit
    if phase:
        sample["phase"] = phase
    return sample


def test_16_defaults_and_units() -> None:
    readings = parse_meter_values([{"timestamp": "2026-01-01T00:00:00Z", "sampled_value": [
        sv("1234.5"),  # default measurand: energy register in Wh
        sv("7.2", "Power.Active.Import", "kW"),
        sv("16.1", "Current.Import", "A", "L1"), sv("15.9", "Current.Import", "A", "L2"),
        sv("231", "Voltage", "V", "L1-N"),
        sv("55", "SoC", "Percent", location="EV"),
        sv("30", "Temperature", "Celsius", location="Body"),
    ]}], "1.6")
    assert readings.energy_wh == 1234.5 and readings.power_w == 7200
    assert readings.current_a == {"L1": 16.1, "L2": 15.9} and readings.voltage_v == {"L1": 231}
    assert readings.soc_pct == 55


def test_201_numbers_and_multipliers() -> None:
    readings = parse_meter_values([{"timestamp": "t", "sampled_value": [
        {"value": 12.5, "measurand": "Energy.Active.Import.Register", "unit_of_measure": {"unit": "kWh"}},
        {"value": 11, "measurand": "Power.Active.Import", "unit_of_measure": {"unit": "W", "multiplier": 3}},
    ]}], "2.0.1")
    assert readings.energy_wh == 12500 and readings.power_w == 11000


def test_power_from_phases_or_currents() -> None:
    phases = parse_meter_values([{"sampled_value": [
        sv("1000", "Power.Active.Import", "W", "L1"), sv("2000", "Power.Active.Import", "W", "L2")]}], "1.6")
    assert phases.power_w == 3000
    currents = parse_meter_values([{"sampled_value": [sv("10", "Current.Import", "A", "L1")]}], "1.6")
    assert currents.power_w == 2300  # 10 A x 230 V nominal


def test_newest_sample_wins_and_garbage_is_skipped() -> None:
    readings = parse_meter_values([
        {"timestamp": "2026-01-01T00:00:10Z", "sampled_value": [sv("200")]},
        {"timestamp": "2026-01-01T00:00:00Z", "sampled_value": [sv("100")]},
        {"timestamp": "x", "sampled_value": [sv("NaN"), sv("inf"), sv("abc"), sv("5", unit="A"), "junk"]},
    ], "1.6")
    assert readings.energy_wh == 200


def test_statuses_fold() -> None:
    assert station_status({1: "available"}, connected=False) == "unavailable"
    assert station_status({}, connected=True) == "unavailable"
    assert station_status({0: "available"}, connected=True) == "available"
    assert station_status({0: "faulted", 1: "charging"}, connected=True) == "faulted"
    assert station_status({1: "available", 2: "charging"}, connected=True) == "charging"
    assert station_status({1: "suspended_ev", 2: "preparing"}, connected=True) == "suspended_ev"


scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=10))
samples = st.dictionaries(st.sampled_from(["value", "measurand", "unit", "phase", "location", "unit_of_measure"]),
                          scalars | st.dictionaries(st.text(max_size=5), scalars, max_size=3), max_size=6)
entries = st.dictionaries(st.sampled_from(["timestamp", "sampled_value"]),
                          scalars | st.lists(samples | scalars, max_size=5), max_size=2)


@given(st.one_of(scalars, st.lists(entries | scalars, max_size=4)), st.sampled_from(["1.6", "2.0.1"]))
@settings(max_examples=300, deadline=None)
def test_fuzz_never_raises(meter_value: object, version: str) -> None:
    r = parse_meter_values(meter_value, version)
    for value in [r.power_w, r.energy_wh, r.soc_pct, *r.current_a.values(), *r.voltage_v.values()]:
        assert value is None or math.isfinite(value)
