"""The meter session: availability, back-off and the fallback for devices that refuse merged reads."""

from __future__ import annotations

from plugins.modbus.const import MAX_BACKOFF_S
from plugins.modbus.maps import load_map, parse_map
from plugins.modbus.meter import MeterSession, MeterSpec, sunspec_header, sunspec_marker

SPEC = MeterSpec(name="grid", unit_id=1, poll_interval_s=1.0, timeout_s=0.5, retries=2)


def test_availability_changes_are_reported_once_and_back_off_doubles_up_to_the_cap() -> None:
    s = MeterSession(SPEC, load_map("eastron_sdm630"))
    assert s.poll_succeeded() is True and s.poll_succeeded() is False
    assert s.next_delay() == 1.0
    assert s.poll_failed() is True and s.poll_failed() is False
    assert s.next_delay() == 4.0
    for _ in range(20):
        s.poll_failed()
    assert s.next_delay() == MAX_BACKOFF_S
    assert s.poll_succeeded() is True and s.next_delay() == 1.0  # comes back by itself


def test_retry_delays_stay_inside_the_poll_interval() -> None:
    s = MeterSession(SPEC, load_map("eastron_sdm630"))
    assert [s.retry_delay(n) for n in (1, 2, 3)] == [0.05, 0.1, 0.2]
    assert s.retry_delay(10) == 0.5


def test_a_refused_merged_block_is_split_once_into_contiguous_reads() -> None:
    s = MeterSession(SPEC, load_map("eastron_sdm630"))
    [merged] = s.blocks
    assert s.block_refused(merged) is True
    assert [(b.address, b.count) for b in s.blocks] == [(0x00, 0x12), (0x34, 2), (0x46, 6)]
    assert all(s.block_refused(b) is False for b in list(s.blocks)[1:2])


def test_sunspec_sessions_wait_for_their_base() -> None:
    s = MeterSession(SPEC, load_map("sunspec_203"))
    assert s.needs_base and s.blocks == []
    s.set_base(40070)
    assert not s.needs_base and [(b.address, b.count) for b in s.blocks] == [(40073, 52)]
    assert sunspec_marker([0x5375, 0x6E53]) and not sunspec_marker([0, 0])
    assert sunspec_header([203, 105]) == (203, 105) and sunspec_header([0xFFFF, 0]) is None


def test_custom_map_session() -> None:
    s = MeterSession(SPEC, parse_map({"function": 3, "type": "int32", "points": {"power": {"address": 100}}}))
    assert [(b.function, b.address, b.count) for b in s.blocks] == [(3, 100, 2)]
    assert s.entity_id("power") == "sensor.grid_power"
