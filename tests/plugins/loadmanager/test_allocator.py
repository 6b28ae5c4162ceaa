"""allocator.allocate: the contract's guarantees as hypothesis properties over random sites, plus examples.

Each property recomputes what it checks from the inputs, independently of the allocator's own bookkeeping:
the non-EV load per phase, the capacities, who is paused and who charges.
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plugins.loadmanager.allocator import allocate, step_up
from plugins.loadmanager.const import PV_DISABLE_DELAY_S, PV_ENABLE_DELAY_S
from plugins.loadmanager.model import (
    ACTIVE_STATUSES,
    ALL_STATUSES,
    PAUSED,
    AllocationResult,
    ChargerInput,
    ChargerMemory,
    ExternalCap,
    Measurements,
    Memory,
    Mode,
    Reason,
    Site,
    parse_rotation,
)

TOL = 1e-6
STATUSES = [*sorted(ALL_STATUSES), "bogus"]


@st.composite
def sites(draw: st.DrawFn) -> Site:
    fuse = draw(st.lists(st.floats(6, 60), min_size=3, max_size=3))
    return Site(
        fuse_a=(fuse[0], fuse[1], fuse[2]),
        margin_a=draw(st.floats(0, 3)),
        voltage_v=draw(st.sampled_from([220.0, 230.0, 240.0])),
        import_limit_w=draw(st.one_of(st.none(), st.floats(1000, 80000))),
        margin_w=draw(st.floats(0, 1000)),
        min_run_s=draw(st.sampled_from([0.0, 60.0, 900.0])),
    )


@st.composite
def chargers(draw: st.DrawFn, index: int) -> ChargerInput:
    phases = draw(st.sampled_from([1, 3]))
    rotation = draw(st.sampled_from(["L1", "L2", "L3"] if phases == 1 else ["L1L2L3", "L2L3L1", "L3L1L2", "L1L3L2"]))
    min_a = draw(st.floats(1, 16))
    max_a = draw(st.floats(min_a - 2, 40))
    return ChargerInput(
        id=f"c{index}",
        phases=phases,
        grid_phases=parse_rotation(rotation, phases),
        min_a=min_a,
        max_a=max_a,
        priority=draw(st.integers(0, 3)),
        # Mostly chargers that want current, so that the constraints bind often.
        mode=draw(st.one_of(st.sampled_from([Mode.FAST, Mode.MIN, Mode.FAST]), st.sampled_from(list(Mode)))),
        status=draw(st.one_of(st.sampled_from(["charging", "preparing", "charging"]), st.sampled_from(STATUSES))),
        connected=draw(st.booleans()) if draw(st.booleans()) else True,
        measured_a=tuple(draw(st.lists(st.floats(-1, 45), min_size=0, max_size=3))),
        requested_a=draw(st.one_of(st.none(), st.floats(0, 40))),
    )


@st.composite
def cases(draw: st.DrawFn) -> tuple[Site, list[ChargerInput], Measurements, ExternalCap | None, float, Memory]:
    site = draw(sites())
    n = draw(st.integers(0, 10))
    cs = [draw(chargers(i)) for i in range(n)]
    grid = draw(st.one_of(st.lists(st.floats(0, 60), min_size=3, max_size=3), st.none()))
    meas = Measurements(
        grid_a=None if grid is None else (grid[0], grid[1], grid[2]),
        grid_w=draw(st.one_of(st.none(), st.floats(-30000, 90000))),
        surplus_w=draw(st.one_of(st.none(), st.floats(-5000, 30000))),
    )
    cap = draw(st.one_of(
        st.none(),
        st.builds(ExternalCap, limit_w=st.one_of(st.none(), st.floats(0, 50000)),
                  limit_a=st.one_of(st.none(), st.floats(0, 60)),
                  label=st.sampled_from([Reason.EXTERNAL_LIMIT, Reason.FAILSAFE])),
    ))
    now = draw(st.floats(0, 1e6))
    mem = {}
    for c in cs:
        if draw(st.booleans()):
            mem[c.id] = ChargerMemory(running=draw(st.booleans()), since=draw(st.one_of(st.none(), st.floats(0, now))),
                                      pv_on=draw(st.booleans()), pv_since=draw(st.one_of(st.none(), st.floats(0, now))))
    return site, cs, meas, cap, now, Memory(mem)


def non_ev(site: Site, cs: list[ChargerInput], meas: Measurements) -> list[float]:
    """Grid current minus what charging chargers draw (readings capped at the requested limit), never < 0."""
    if meas.grid_a is None:
        return [0.0, 0.0, 0.0]
    draw = [0.0, 0.0, 0.0]
    for c in cs:
        if c.status != "charging":
            continue
        ceiling = c.max_a if c.requested_a is None else min(c.requested_a, c.max_a)
        for k, g in enumerate(c.grid_phases):
            if k < len(c.measured_a):
                draw[g] += min(max(c.measured_a[k], 0.0), ceiling)
    return [max(0.0, meas.grid_a[p] - draw[p]) for p in range(3)]


def capacities(site: Site, cs: list[ChargerInput], meas: Measurements, cap: ExternalCap | None
               ) -> tuple[list[float], float]:
    base = non_ev(site, cs, meas)
    phase = [site.fuse_a[p] - site.margin_a - base[p] for p in range(3)]
    if cap is not None and cap.limit_a is not None:
        phase = [min(x, cap.limit_a) for x in phase]
    power = math.inf
    if site.import_limit_w is not None:
        if meas.grid_w is not None:
            drawn = 0.0
            for c in cs:
                if c.status == "charging":
                    ceiling = c.max_a if c.requested_a is None else min(c.requested_a, c.max_a)
                    drawn += sum(min(max(c.measured_a[k], 0.0), ceiling)
                                 for k in range(len(c.grid_phases)) if k < len(c.measured_a))
            non_ev_w = meas.grid_w - drawn * site.voltage_v
        else:
            non_ev_w = sum(base) * site.voltage_v
        power = site.import_limit_w - site.margin_w - non_ev_w
    if cap is not None and cap.limit_w is not None:
        power = min(power, cap.limit_w)
    return phase, power


def load(cs: list[ChargerInput], result: AllocationResult, voltage: float, skip: set[str] = frozenset()
         ) -> tuple[list[float], float]:
    per_phase = [0.0, 0.0, 0.0]
    watts = 0.0
    for c in cs:
        if c.id in skip:
            continue
        amps = result.currents[c.id]
        for g in c.grid_phases:
            per_phase[g] += amps
        watts += amps * c.phases * voltage
    return per_phase, watts


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_never_more_than_the_fuse_and_limits_allow(case) -> None:  # type: ignore[no-untyped-def]
    """Per phase: Σ currents ≤ max(0, fuse - margin - non-EV load) and ≤ the external per-phase cap; in total:
    Σ power ≤ the import limit minus margin minus non-EV power, and ≤ the external power cap."""
    site, cs, meas, cap, now, mem = case
    result = allocate(site, cs, meas, cap, now, mem)
    phase_cap, power_cap = capacities(site, cs, meas, cap)
    per_phase, watts = load(cs, result, site.voltage_v)
    for p in range(3):
        assert per_phase[p] <= max(0.0, phase_cap[p]) + TOL, (p, per_phase, phase_cap)
    assert watts <= max(0.0, power_cap) + 1e-3


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_zero_or_between_minimum_and_maximum(case) -> None:  # type: ignore[no-untyped-def]
    """Each charger gets 0 or [min, max] (min rounded up, max down to 0.1 A), in 0.1 A steps, within its mode."""
    site, cs, meas, cap, now, mem = case
    result = allocate(site, cs, meas, cap, now, mem)
    for c in cs:
        amps = result.currents[c.id]
        assert amps >= 0
        if amps == 0:
            continue
        assert step_up(c.min_a) - TOL <= amps <= c.max_a + TOL
        assert abs(amps * 10 - round(amps * 10)) < 1e-6
        assert c.status in ACTIVE_STATUSES and c.connected
        assert c.mode is not Mode.OFF
        if c.mode is Mode.MIN or c.status == "suspended_ev":
            assert amps == pytest.approx(step_up(c.min_a))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_higher_priority_never_paused_while_a_lower_one_charges(case) -> None:  # type: ignore[no-untyped-def]
    """A paused charger's minimum does not fit even with every lower-priority charger set to 0."""
    site, cs, meas, cap, now, mem = case
    result = allocate(site, cs, meas, cap, now, mem)
    phase_cap, power_cap = capacities(site, cs, meas, cap)
    for c in cs:
        if result.reasons[c.id] not in PAUSED:
            continue
        lower = {d.id for d in cs if d.priority < c.priority}
        if not any(result.currents[d] > 0 for d in lower):
            continue
        per_phase, watts = load(cs, result, site.voltage_v, skip=lower | {c.id})
        need = step_up(c.min_a)
        fits = watts + need * c.phases * site.voltage_v <= max(0.0, power_cap) + 1e-3 and all(
            per_phase[g] + need <= max(0.0, phase_cap[g]) + TOL for g in c.grid_phases)
        assert not fits, f"{c.id} (priority {c.priority}) paused while a lower priority charges"


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_pure_input_untouched_and_deterministic(case) -> None:  # type: ignore[no-untyped-def]
    site, cs, meas, cap, now, mem = case
    before = dict(mem.chargers)
    first = allocate(site, cs, meas, cap, now, mem)
    second = allocate(site, cs, meas, cap, now, mem)
    assert mem.chargers == before
    assert first == second


@settings(max_examples=60, deadline=None)
@given(n=st.integers(2, 7), slots=st.integers(1, 3), min_run=st.sampled_from([60.0, 300.0]),
       three_phase=st.booleans())
def test_equal_priorities_take_turns_and_none_starves(n: int, slots: int, min_run: float, three_phase: bool) -> None:
    """With room for ``slots`` of ``n`` equal chargers at their minimum: a started charger keeps its slot for the
    minimum run time, and every charger charges within (n / slots + 1) run times."""
    slots = min(slots, n - 1)
    phases = 3 if three_phase else 1
    site = Site(fuse_a=(6.0 * slots + 1.5, 6.0 * slots + 1.5, 6.0 * slots + 1.5), margin_a=1.0, voltage_v=230.0,
                min_run_s=min_run)
    cs = [ChargerInput(id=f"c{i}", phases=phases, grid_phases=(0, 1, 2) if three_phase else (0,), min_a=6.0,
                       max_a=16.0) for i in range(n)]
    meas = Measurements(grid_a=(0.0, 0.0, 0.0))
    mem = Memory()
    started: dict[str, float] = {}
    last_charged: dict[str, float] = dict.fromkeys((c.id for c in cs), 0.0)
    longest_wait = 0.0
    step = 10.0
    t = 0.0
    while t < min_run * (n + 3) * 2:
        result = allocate(site, cs, meas, None, t, mem)
        mem = result.memory
        charging = [c.id for c in cs if result.currents[c.id] > 0]
        assert len(charging) == slots
        for cid in cs:
            cid = cid.id
            if cid in charging:
                started.setdefault(cid, t)
                last_charged[cid] = t
            elif cid in started:
                assert t - started.pop(cid) >= min_run - step, "preempted before its minimum run time"
                assert result.reasons[cid] is Reason.PAUSED_TURN
            longest_wait = max(longest_wait, t - last_charged[cid])
        t += step
    assert longest_wait <= (n / slots + 1) * min_run + 2 * step


def three(fuse: float) -> Site:
    return Site(fuse_a=(fuse, fuse, fuse), margin_a=1.0, voltage_v=230.0)


def charger(cid: str, phases: int = 3, rotation: str = "L1L2L3", **kw: object) -> ChargerInput:
    base: dict[str, object] = dict(id=cid, phases=phases, grid_phases=parse_rotation(rotation, phases), min_a=6.0,
                                   max_a=16.0)
    base.update(kw)
    return ChargerInput(**base)  # type: ignore[arg-type]


def test_single_phase_chargers_share_only_their_phase() -> None:
    # L2 carries 20 A of house load: the L2 charger gets what is left there, the L1 and L3 ones their maximum.
    cs = [charger("a", 1, "L1", max_a=32.0), charger("b", 1, "L2", max_a=32.0), charger("c", 1, "L3", max_a=32.0)]
    result = allocate(three(35), cs, Measurements(grid_a=(2.0, 20.0, 3.0)), None, 0.0)
    assert result.currents == {"a": 32.0, "b": 14.0, "c": 31.0}
    assert result.reasons == {"a": Reason.MAX_CURRENT, "b": Reason.FUSE_L2, "c": Reason.FUSE_L3}
    assert result.available_a == (32.0, 14.0, 31.0)


def test_three_phase_held_by_its_fullest_phase_with_rotation() -> None:
    # A single-phase charger wired to L2 through rotation L2L3L1 (its L1 is the grid's L2) measures 10 A on its
    # own L1: that is grid L2's draw, and the non-EV load there is 4 A, not 14 A.
    cs = [charger("three"), charger("one", 1, "L2L3L1", status="charging", measured_a=(10.0,), requested_a=10.0)]
    result = allocate(three(25), cs, Measurements(grid_a=(3.0, 14.0, 2.0)), None, 0.0)
    assert result.non_ev_a == (3.0, 4.0, 2.0)
    # L2: 24 - 4 = 20 A for both; equal shares above the minimum: 10 A each.
    assert result.currents == {"three": 10.0, "one": 10.0}
    assert result.reasons["three"] is Reason.FUSE_L2


def test_readings_above_the_requested_limit_are_not_believed() -> None:
    # The charger claims 30 A but was asked for 10 A: only 10 A are taken off the grid reading.
    cs = [charger("a", status="charging", measured_a=(30.0, 30.0, 30.0), requested_a=10.0)]
    result = allocate(three(35), cs, Measurements(grid_a=(35.0, 35.0, 35.0)), None, 0.0)
    assert result.non_ev_a == (25.0, 25.0, 25.0)
    assert result.currents["a"] == 9.0


def test_strict_priority_and_reasons() -> None:
    cs = [charger("high", priority=2, max_a=32.0), charger("low", priority=0), charger("other", 1, "L3")]
    result = allocate(three(33), cs, Measurements(grid_a=(0.0, 0.0, 0.0)), None, 0.0)
    assert result.currents["high"] == 32.0
    assert result.reasons["low"] is Reason.PAUSED_PRIORITY
    assert result.reasons["other"] is Reason.PAUSED_PRIORITY


def test_paused_capacity_when_the_house_alone_fills_the_phase() -> None:
    result = allocate(three(25), [charger("a")], Measurements(grid_a=(10.0, 24.5, 3.0)), None, 0.0)
    assert result.currents["a"] == 0.0 and result.reasons["a"] is Reason.PAUSED_CAPACITY
    assert result.available_a[1] == 0.0


def test_external_power_cap_and_failsafe_label() -> None:
    cs = [charger("a"), charger("b")]
    result = allocate(three(63), cs, Measurements(grid_a=(0.0, 0.0, 0.0)), ExternalCap(limit_w=4200,
                                                                                      label=Reason.FAILSAFE), 0.0)
    # 4200 W = one car at 6 A on three phases (4140 W); the second does not fit.
    assert sorted(result.currents.values()) == [0.0, 6.0]
    assert Reason.FAILSAFE in result.reasons.values() or Reason.PAUSED_TURN in result.reasons.values()
    assert result.available_w == 4200


def test_import_limit_uses_signed_grid_power() -> None:
    site = replace(three(63), import_limit_w=11000.0, margin_w=0.0)
    cs = [charger("a", max_a=32.0)]
    # PV exports 5 kW: the car may take 16 kW while the site imports at most 11 kW.
    result = allocate(site, cs, Measurements(grid_a=(5.0, 5.0, 5.0), grid_w=-5000.0), None, 0.0)
    assert result.currents["a"] == math.floor(16000 / 690 * 10) / 10
    assert result.reasons["a"] is Reason.POWER_LIMIT


def test_statuses_modes_and_misconfiguration() -> None:
    cs = [charger("idle", status="available"), charger("broken", status="faulted"),
          charger("weird", status="exploding"), charger("off", mode=Mode.OFF), charger("min", mode=Mode.MIN),
          charger("full", status="suspended_ev"), charger("bad", min_a=20.0, max_a=10.0),
          charger("unplugged", connected=False)]
    result = allocate(three(63), cs, Measurements(grid_a=(0.0, 0.0, 0.0)), None, 0.0)
    assert result.reasons == {
        "idle": Reason.NOT_CONNECTED, "broken": Reason.UNAVAILABLE, "weird": Reason.UNAVAILABLE,
        "off": Reason.MODE_OFF, "min": Reason.MIN_MODE, "full": Reason.EV_SUSPENDED, "bad": Reason.MISCONFIGURED,
        "unplugged": Reason.NOT_CONNECTED,
    }
    assert result.currents["min"] == 6.0 and result.currents["full"] == 6.0
    assert sum(result.currents.values()) == 12.0


def test_pv_mode_starts_after_the_enable_delay_and_stops_after_the_disable_delay() -> None:
    cs = [charger("pv", mode=Mode.PV)]
    sunny = Measurements(grid_a=(0.0, 0.0, 0.0), grid_w=-5000.0)  # 5 kW export: enough for 6 A x 3 (4140 W)
    mem = Memory()
    times = [0.0, PV_ENABLE_DELAY_S - 1, PV_ENABLE_DELAY_S]
    got = []
    for t in times:
        result = allocate(three(35), cs, sunny, None, t, mem)
        mem = result.memory
        got.append((result.currents["pv"], result.reasons["pv"]))
    assert got[0] == (0.0, Reason.PV_WAITING) and got[1] == (0.0, Reason.PV_WAITING)
    assert got[2][0] == math.floor(5000 / 690 * 10) / 10
    cloudy = Measurements(grid_a=(3.0, 3.0, 3.0), grid_w=2000.0)  # the car's 4140 W now partly from the grid
    charging = [charger("pv", mode=Mode.PV, status="charging", measured_a=(7.2, 7.2, 7.2), requested_a=7.2)]
    start = PV_ENABLE_DELAY_S + 10
    result = allocate(three(35), charging, cloudy, None, start, mem)
    mem = result.memory
    assert result.currents["pv"] == 6.0  # keeps its minimum during the disable delay
    result = allocate(three(35), charging, cloudy, None, start + PV_DISABLE_DELAY_S, mem)
    assert result.currents["pv"] == 0.0 and result.reasons["pv"] is Reason.PV_WAITING


def test_min_pv_takes_the_minimum_from_the_grid_and_the_rest_from_surplus() -> None:
    cs = [charger("mp", mode=Mode.MIN_PV, max_a=16.0)]
    night = allocate(three(35), cs, Measurements(grid_a=(1.0, 1.0, 1.0), grid_w=600.0), None, 0.0)
    assert night.currents["mp"] == 6.0 and night.reasons["mp"] is Reason.PV_SURPLUS
    noon = allocate(three(35), cs, Measurements(grid_a=(10.0, 10.0, 10.0), grid_w=-6900.0), None, 0.0)
    assert noon.currents["mp"] == 10.0  # 6900 W / 690 W per A


def test_gone_chargers_leave_no_memory() -> None:
    tight = three(8)
    cs = [charger("a"), charger("b")]
    result = allocate(tight, cs, Measurements(grid_a=(0.0, 0.0, 0.0)), None, 0.0)
    assert set(result.memory.chargers) == {"a", "b"}
    later = allocate(tight, cs[:1], Measurements(grid_a=(0.0, 0.0, 0.0)), None, 10.0, result.memory)
    assert set(later.memory.chargers) == {"a"}


@pytest.mark.parametrize(("text", "phases", "expected"), [
    ("L2", 1, (1,)), ("l3", 1, (2,)), ("L2L3L1", 3, (1, 2, 0)), ("L2", 3, (1, 2, 0)), ("L1L3L2", 1, (0,)),
])
def test_parse_rotation(text: str, phases: int, expected: tuple[int, ...]) -> None:
    assert parse_rotation(text, phases) == expected


@pytest.mark.parametrize("text", ["L4", "L1L1L2", "L1L2", "", "phase1"])
def test_parse_rotation_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_rotation(text, 3)
