"""The server's register map: reads from states, holes, not-available patterns, write resolution."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plugins.modbus.const import FC_READ_HOLDING, FC_READ_INPUT
from plugins.modbus.servermap import Entry, ServerMap

STATES = {"sensor.grid_power": 7200.5, "sensor.grid_energy": 123456789.0, "sensor.limit": 32.0,
          "sensor.text": "unavailable"}


def smap(*entries: Entry) -> ServerMap:
    return ServerMap(list(entries), 1)


def f32(value: float) -> list[int]:
    return list(struct.unpack(">HH", struct.pack(">f", value)))


def test_reads_encode_types_orders_and_scales() -> None:
    m = smap(
        Entry(table=FC_READ_INPUT, address=0, entity="sensor.grid_power"),
        Entry(table=FC_READ_INPUT, address=2, entity="sensor.grid_power", type="int32", scale=0.1),
        Entry(table=FC_READ_INPUT, address=4, entity="sensor.grid_energy", type="uint32", scale=1000,
              word_order="little"),
        Entry(table=FC_READ_INPUT, address=6, entity="sensor.limit", type="int16", scale=0.1),
    )
    regs = m.read(FC_READ_INPUT, 0, 7, STATES.get)
    assert regs == [*f32(7200.5), 1, 72005 - 65536, 123457 & 65535, 123457 >> 16, 320]
    assert m.read(FC_READ_INPUT, 1, 2, STATES.get) == [f32(7200.5)[1], 1]  # a read may start mid-value
    assert m.read(FC_READ_INPUT, 0, 8, STATES.get) == 2  # register 7 is a hole
    assert m.read(FC_READ_HOLDING, 0, 1, STATES.get) == 2  # the holding table is empty


def test_missing_or_non_numeric_states_read_as_not_available_never_as_errors() -> None:
    m = smap(Entry(table=FC_READ_INPUT, address=0, entity="sensor.text"),
             Entry(table=FC_READ_INPUT, address=2, entity="sensor.nothing", type="int16"),
             Entry(table=FC_READ_INPUT, address=3, entity="sensor.nothing", type="uint32"),
             Entry(table=FC_READ_INPUT, address=5, entity="sensor.grid_energy", type="int16"))  # overflows
    regs = m.read(FC_READ_INPUT, 0, 6, STATES.get)
    assert isinstance(regs, list)
    assert math.isnan(struct.unpack(">f", struct.pack(">HH", *regs[:2]))[0])
    assert regs[2:] == [0x8000, 0xFFFF, 0xFFFF, 0x8000]


def test_overlapping_entries_are_refused() -> None:
    with pytest.raises(ValueError, match="used by both"):
        smap(Entry(table=FC_READ_INPUT, address=0, entity="sensor.a"),
             Entry(table=FC_READ_INPUT, address=1, entity="sensor.b"))


def test_write_resolution_exception_codes() -> None:
    read_only = smap(Entry(table=FC_READ_HOLDING, address=0, entity="sensor.limit"))
    assert read_only.resolve_write(0, (1,)) == 1  # a read-only server: illegal function
    limit = Entry(table=FC_READ_HOLDING, address=10, entity="sensor.limit", type="uint16", scale=0.1,
                  writable=True, service="loadmanager.set_site_limit", field="limit_a")
    power = Entry(table=FC_READ_HOLDING, address=11, entity="sensor.limit", writable=True,
                  service="x.y", field="w")
    m = smap(Entry(table=FC_READ_HOLDING, address=0, entity="sensor.limit"), limit, power)
    assert m.resolve_write(0, (1,)) == 2  # mapped but read-only
    assert m.resolve_write(5, (1,)) == 2  # unmapped
    assert m.resolve_write(11, (1,)) == 2  # half a float
    assert m.resolve_write(12, (1,)) == 2  # second half of a float
    assert m.resolve_write(9, (1, 2)) == 2  # spans a hole
    assert m.resolve_write(10, (250,)) == [(limit, 25.0)]
    ok = m.resolve_write(10, (250, *f32(11000.0)))
    assert ok == [(limit, 25.0), (power, 11000.0)]
    assert m.resolve_write(10, (0xFFFF,)) == [(limit, None)]  # the not-available pattern is no value


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["int16", "uint16", "int32", "uint32", "float32"]), st.sampled_from(["big", "little"]),
       st.floats(-1e6, 1e6, allow_nan=False), st.sampled_from([1.0, 0.1, 0.01, 10.0]))
def test_encode_decode_round_trip(type_: str, order: str, value: float, scale: float) -> None:
    """Contract: what a client writes back from a read is the value read (within the type's resolution);
    values a type cannot hold read as not available, never wrapped."""
    entry = Entry(table=FC_READ_HOLDING, address=0, entity="x.y", type=type_, word_order=order, scale=scale)
    back = entry.decode(entry.encode(value))
    if back is None:
        raw = value / scale
        limits = {"int16": 32767, "uint16": 65534, "int32": 2**31 - 1, "uint32": 2**32 - 2}
        assert type_ != "float32" and (abs(round(raw)) > limits[type_] or (type_.startswith("u") and raw < -0.5)
                                       or round(raw) == -limits[type_] - 1)
    elif type_ == "float32":
        assert back == pytest.approx(value, rel=1e-6, abs=1e-3 * scale)
    else:
        assert abs(back - value) <= scale / 2 + 1e-9 * abs(value)
