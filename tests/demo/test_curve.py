"""The demo's simulated day (sans-IO): what the meters read is house + cars - PV, and the day has the events
the demo promises (an oven cycle on L2, PV only by day)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from demo import curve, meter

ROOT = Path(__file__).resolve().parents[2]
amps = st.floats(min_value=0, max_value=63, allow_nan=False)


@given(st.floats(min_value=0, max_value=23.999), st.tuples(amps, amps, amps))
def test_grid_reading_is_house_plus_cars_minus_pv(hour: float, cars: tuple[float, float, float]) -> None:
    """Contract: per phase |house + cars - pv/3/V|; total power is the signed sum; values are finite."""
    r = curve.reading(hour, cars)
    pv_a = curve.pv_w(hour) / 3 / curve.VOLTAGE
    for house, car, current in zip(curve.house_a(hour), cars, r.current, strict=True):
        assert current == pytest.approx(abs(house + car - pv_a))
    assert r.total_w == pytest.approx(sum(r.power))
    assert all(200 < v < 260 for v in r.voltage)


def test_the_day_has_its_events() -> None:
    assert curve.pv_w(3.0) == 0 and curve.pv_w(13.0) > 5000
    assert curve.oven_on(12.2) and not curve.oven_on(11.0)
    assert curve.house_a(12.2)[1] - curve.house_a(11.0)[1] > curve.OVEN_A - 1  # the oven is on L2
    assert curve.house_a(19.0)[0] > curve.house_a(3.0)[0] + curve.EVENING_A / 2
    # The demo starts with room for both cars on L2 (fuse 25 A, margin 1 A, two cars at 6 A at least).
    assert curve.house_a(curve.START_HOUR)[1] < 25 - 1 - 12
    assert curve.sim_hour(30) == pytest.approx(curve.START_HOUR + 1.0)  # the oven comes on after 30 s


def test_meter_image_encodes_float32_high_word_first() -> None:
    r = curve.reading(12.0, (10.0, 10.0, 10.0))
    regs = meter.image(r, 1.0, 2.0)
    assert len(regs) == meter.LAST - meter.FIRST + 1
    assert regs[meter.FREQUENCY:meter.FREQUENCY + 2] == [0x4248, 0x0000]  # 50.0
    assert regs[meter.EXPORT_KWH:meter.EXPORT_KWH + 2] == [0x4000, 0x0000]  # 2.0


def test_the_demo_imports_no_plugin() -> None:
    """The demo drives the gateway through its configuration and the protocols, never a plugin's code."""
    offenders = []
    for path in (ROOT / "demo").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
            offenders += [f"{path.name}: {n}" for n in names if n == "plugins" or n.startswith("plugins.")]
    assert not offenders
