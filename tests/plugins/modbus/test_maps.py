"""Register maps: every shipped file loads, the planner makes the fewest valid reads, decoding is exact."""

from __future__ import annotations

import math
import struct

import pytest
import voluptuous as vol
from hypothesis import given, settings
from hypothesis import strategies as st

from plugins.modbus.const import MAX_READ_REGISTERS
from plugins.modbus.maps import (
    QUANTITIES,
    Block,
    Point,
    decode,
    known_models,
    load_map,
    parse_map,
    plan_reads,
    split_block,
)
from tests.peers.modbus_meter import words

SHIPPED = {"abb_b23", "abb_b24", "carlo_gavazzi_em24", "carlo_gavazzi_em24_e1", "eastron_sdm630",
           "eastron_sdm72", "eastron_sdm72v1", "sunspec_201", "sunspec_202", "sunspec_203", "sunspec_204"}


def test_every_required_model_ships_and_loads() -> None:
    assert set(known_models()) >= SHIPPED
    for model in known_models():
        device = load_map(model)
        assert device.source, f"{model}: cite the source document"
        assert "power" in {p.key for p in device.points}
        for p in device.points:
            assert p.key in QUANTITIES and p.unit == QUANTITIES[p.key]


def test_shipped_maps_cite_their_source_in_the_header() -> None:
    from importlib import resources

    for model in known_models():
        text = resources.files("plugins.modbus").joinpath("devices", f"{model}.yaml").read_text()
        assert text.startswith("#") and "Source:" in text.split("\n\n")[0], model


def test_b23_and_b24_share_one_map() -> None:
    assert load_map("abb_b23").points == load_map("abb_b24").points


def test_known_layouts_plan_into_few_reads() -> None:
    def plan(model: str) -> list[tuple[int, int, int]]:
        d = load_map(model)
        return [(b.function, b.address, b.count) for b in plan_reads(d.points, max_gap=d.max_gap,
                                                                     max_block=d.max_block)]

    assert plan("eastron_sdm630") == [(4, 0x0000, 0x4C)]
    assert plan("abb_b23") == [(3, 0x5000, 8), (3, 0x5B00, 0x2D)]
    assert plan("eastron_sdm72v1") == [(4, 0x34, 2), (4, 0x48, 4)]
    sunspec = load_map("sunspec_203").at_base(40069)
    assert [(b.address, b.count) for b in plan_reads(sunspec.points)] == [(40069 + 3, 52)]


def test_unknown_model_and_bad_points_are_refused_with_the_reason() -> None:
    with pytest.raises(vol.Invalid, match="unknown meter model"):
        load_map("acme_9000")
    with pytest.raises(vol.Invalid, match="must be in W"):
        parse_map({"points": {"power": {"address": 0, "unit": "kW"}}})
    with pytest.raises(vol.Invalid, match="give its unit"):
        parse_map({"points": {"temperature": {"address": 0}}})
    with pytest.raises(vol.Invalid, match="function 3"):
        parse_map({"function": 1, "points": {"power": {"address": 0}}})
    with pytest.raises(vol.Invalid):
        parse_map({"points": {"power": {"address": 70000}}})
    with pytest.raises(vol.Invalid, match="runs past"):
        parse_map({"type": "float64", "points": {"power": {"address": 65534}}})
    custom = parse_map({"points": {"temperature": {"address": 3, "unit": "°C", "scale": 0.1}}})
    assert custom.points[0].unit == "°C"


def _point(key: str, address: int, type_: str = "float32", **kw: object) -> Point:
    return Point(key=key, address=address, function=kw.pop("function", 4), type=type_,  # type: ignore[arg-type]
                 unit=kw.pop("unit", QUANTITIES.get(key, "x")), **kw)  # type: ignore[arg-type]


def test_decode_float_both_word_orders_and_byte_swap() -> None:
    big = _point("power", 0)
    little = _point("power_l1", 2, word_order="little")
    swapped = _point("power_l2", 4, byte_swap=True)
    regs = words(">f", 7200.5) + words(">f", -1234.25, "little")
    raw = struct.pack(">f", 42.0)
    regs += [int.from_bytes(bytes([raw[1], raw[0]]), "big"), int.from_bytes(bytes([raw[3], raw[2]]), "big")]
    out = decode(Block(4, 0, 6, (big, little, swapped)), regs)
    assert out.values == {"power": 7200.5, "power_l1": -1234.25, "power_l2": 42.0}


def test_decode_scaled_integers_sentinels_nan_and_plausibility() -> None:
    points = (
        _point("energy_import", 0, "uint64", scale=10, not_available=frozenset({"all_ones"})),
        _point("power", 4, "int32", scale=0.01, not_available=frozenset({"signed_max"})),
        _point("voltage_l1", 6, "int32", scale=0.1, word_order="little"),
        _point("frequency", 8, "float32"),
        _point("voltage_l2", 10, "float32"),
    )
    regs = words(">Q", 123456789) + words(">i", -250000) + words(">i", 2305, "little") \
        + words(">f", math.nan) + words(">f", 5000.0)
    out = decode(Block(4, 0, 12, points), regs)
    assert out.values["energy_import"] == 1234567890.0
    assert out.values["power"] == pytest.approx(-2500.0)
    assert out.values["voltage_l1"] == pytest.approx(230.5)
    assert out.values["frequency"] is None  # NaN is never published
    assert "voltage_l2" not in out.values and out.rejected == {"voltage_l2": 5000.0}
    na = [0xFFFF] * 4 + words(">i", 0x7FFFFFFF) + [0] * 6
    out = decode(Block(4, 0, 12, points), na)
    assert out.values["energy_import"] is None and out.values["power"] is None


def test_decode_sunspec_scale_factor_and_not_implemented() -> None:
    w = _point("power", 18, "int16", function=3, scale_factor=22, not_available=frozenset({"signed_min"}))
    e = _point("energy_import", 46, "acc32", function=3, scale_factor=54, not_available=frozenset({"zero"}))
    regs = [0] * 60
    regs[18] = 7200 & 0xFFFF
    regs[22] = 0  # W_SF = 0
    regs[46:48] = words(">I", 123456)
    regs[54] = (-1) & 0xFFFF  # TotWh_SF = -1
    [block] = plan_reads([w, e], max_gap=30)
    out = decode(block, regs[block.address:block.address + block.count])
    assert out.values == {"power": 7200.0, "energy_import": pytest.approx(12345.6)}
    regs[22] = 0x8000  # scale factor not implemented -> value not available
    regs[18] = 0x8000
    regs[46:48] = [0, 0]
    out = decode(block, regs[block.address:block.address + block.count])
    assert out.values == {"power": None, "energy_import": None}


def test_split_block_reads_each_point_alone() -> None:
    points = (_point("power", 0), _point("power_l1", 10))
    block = plan_reads(points, max_gap=20)[0]
    assert [(b.address, b.count) for b in split_block(block)] == [(0, 2), (10, 2)]


def _minimum_blocks(spans: list[tuple[int, int]], max_gap: int, max_block: int) -> int:
    """Brute force: dynamic programming over the sorted spans (the reference for the greedy planner)."""
    spans = sorted(spans)
    n = len(spans)
    best = [0] + [10**9] * n
    for j in range(1, n + 1):
        for i in range(j):  # spans i..j-1 in one block?
            first = spans[i][0]
            end = max(e for _, e in spans[i:j])
            ok = end - first <= max_block and all(
                spans[k + 1][0] - max(e for _, e in spans[i:k + 1]) <= max_gap for k in range(i, j - 1))
            if ok:
                best[j] = min(best[j], best[i] + 1)
    return best[n]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 40), st.sampled_from(["int16", "float32", "uint64"])), min_size=1,
             max_size=14),
    st.integers(0, 30),
    st.integers(4, MAX_READ_REGISTERS),
)
def test_planner_covers_every_point_within_limits_with_the_fewest_reads(
        spec: list[tuple[int, str]], max_gap: int, max_block: int) -> None:
    """Contract: every point lies inside exactly one block of its function; no block exceeds max_block (nor
    125) or reads across a hole wider than max_gap; and the number of blocks equals the brute-force minimum
    (points do not overlap, as in every real map, so the blocks of any plan are runs of sorted points)."""
    points = []
    address = 0
    for i, (gap, type_) in enumerate(spec):
        address += gap
        points.append(_point(f"p{i}", address, type_, unit="x"))
        address += points[-1].words
    blocks = plan_reads(points, max_gap=max_gap, max_block=max_block)
    seen = [p for b in blocks for p in b.points]
    assert sorted(seen, key=lambda p: p.key) == sorted(points, key=lambda p: p.key)
    for b in blocks:
        assert 1 <= b.count <= min(max_block, MAX_READ_REGISTERS)
        for p in b.points:
            assert b.address <= p.span[0] and p.span[1] <= b.address + b.count
        spans = sorted(p.span for p in b.points)
        reach = spans[0][1]
        for first, end in spans[1:]:
            assert first - reach <= max_gap
            reach = max(reach, end)
    assert len(blocks) == _minimum_blocks([p.span for p in points], max_gap, max_block)
