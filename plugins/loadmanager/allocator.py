"""Allocation: from the site, the chargers and the latest measurements to a current for every charger.

Contract (``allocate`` is sans-IO and deterministic; tests/plugins/loadmanager/test_allocator.py checks each
line with hypothesis over random sites):

1. Per grid phase, the chargers' currents together never exceed ``fuse - margin - non-EV load`` (and the
   external per-phase cap), where non-EV load = grid meter current minus what the chargers draw, never below 0:
   PV feeding in on a phase is not counted on to carry cars, because a cloud removes it faster than we react.
2. The chargers' power together never exceeds the site's import limit (minus margin and non-EV power) or the
   external power cap. Power is current x phases x nominal voltage, as OCPP converts it.
3. A charger gets 0 or a current between its minimum and its maximum (and never more than its mode asks).
4. Priorities are strict: the highest priority is served first (admitted at the minimum, then raised towards
   what its mode asks), then the next one gets what is left. So a charger is never paused while a lower-priority
   one charges unless its minimum would not fit even with every lower-priority charger paused.
5. Equal priorities take turns: among chargers of one priority that do not all fit, one that started less than
   ``site.min_run_s`` ago keeps its slot; then the one that has waited longest goes first; chargers that have run
   past their minimum run time yield, longest-running last. No charger waits forever while its level gets room.
6. Within a priority, what is left above the minimums is shared: every charger gets the same increment above
   its minimum (water-filling), each held by its demand or by the first constraint it meets, which becomes its
   reason.
7. Single-phase chargers load only their grid phase (after rotation); three-phase chargers load all three.

The only state is ``Memory`` (turn-taking and PV hysteresis): the input is not modified, the result carries
the new memory. Currents are rounded down to 0.1 A (OCPP 1.6 ``multipleOf 0.1``), so rounding never adds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from .const import (
    CURRENT_STEP_A,
    EPSILON_A,
    PHASES,
    PV_DISABLE_DELAY_S,
    PV_ENABLE_DELAY_S,
)
from .model import (
    ACTIVE_STATUSES,
    ALL_STATUSES,
    FAULT_STATUSES,
    AllocationResult,
    ChargerInput,
    ChargerMemory,
    ExternalCap,
    Measurements,
    Memory,
    Mode,
    Reason,
    Site,
)

_FUSE_REASONS = (Reason.FUSE_L1, Reason.FUSE_L2, Reason.FUSE_L3)
_MAX_CURRENT = Reason.MAX_CURRENT
_EPS_W = 1e-6
_STEPS_PER_A = round(1 / CURRENT_STEP_A)
_IDLE = ChargerMemory()


def step_up(current_a: float) -> float:
    """Round up to the command step: a minimum must never be rounded below itself."""
    return math.ceil(current_a * _STEPS_PER_A - 1e-9) / _STEPS_PER_A


def _turn_key(mem: ChargerMemory, now: float, min_run_s: float) -> tuple[int, float]:
    """Admission order inside one priority (contract line 5)."""
    since = now if mem.since is None else mem.since
    if mem.running:
        if now - since < min_run_s:
            return (0, since)  # protected: started recently, keeps its slot
        return (2, -since)  # ran its minimum: the longest-running yields first
    return (1, since)  # waiting: the longest wait goes first


def allocate(
    site: Site,
    chargers: Sequence[ChargerInput],
    measurements: Measurements,
    cap: ExternalCap | None,
    now: float,
    memory: Memory | None = None,
) -> AllocationResult:
    old_mem = memory.chargers if memory is not None else {}
    voltage = site.voltage_v
    n = len(chargers)
    steps = _STEPS_PER_A

    # -- one pass: what each charger draws now (for the non-EV load) and what its mode asks for ------------
    draw = [0.0, 0.0, 0.0]
    drawn_w = [0.0] * n
    lo = [0.0] * n  # minimum current (0 for chargers that want nothing)
    hi = [0.0] * n  # what the mode asks for
    reason = [Reason.NOT_CONNECTED] * n
    pv_candidates: list[int] = []
    ceil, floor = math.ceil, math.floor
    active_statuses, fast, min_mode, off = ACTIVE_STATUSES, Mode.FAST, Mode.MIN, Mode.OFF
    for i, c in enumerate(chargers):
        status = c.status
        if status == "charging":
            # A charger that is not charging draws ~nothing: counting 0 for it is the safe direction.
            ceiling = c.max_a if c.requested_a is None else min(c.requested_a, c.max_a)
            total = 0.0
            measured = c.measured_a
            for k, g in enumerate(c.grid_phases):
                if k < len(measured):
                    amps = measured[k]
                    amps = 0.0 if amps < 0.0 else ceiling if amps > ceiling else amps
                    draw[g] += amps
                    total += amps
            drawn_w[i] = total * voltage
        elif status not in active_statuses:
            if status in FAULT_STATUSES or status not in ALL_STATUSES:
                reason[i] = Reason.UNAVAILABLE
            continue
        if not c.connected:
            continue
        # Rounded to the command step inwards: a minimum up, a maximum down (contract line 3 after rounding).
        min_a = ceil(c.min_a * steps - 1e-9) / steps
        max_a = floor(c.max_a * steps + 1e-9) / steps
        mode = c.mode
        if min_a > max_a or min_a <= 0.0:
            reason[i] = Reason.MISCONFIGURED
            continue
        if mode is off:
            reason[i] = Reason.MODE_OFF
            continue
        lo[i] = min_a
        if mode is fast:
            hi[i], reason[i] = max_a, _MAX_CURRENT
        elif mode is min_mode:
            hi[i], reason[i] = min_a, Reason.MIN_MODE
        else:
            hi[i], reason[i] = max_a, Reason.PV_SURPLUS
            pv_candidates.append(i)
        if status == "suspended_ev":
            hi[i], reason[i] = min_a, Reason.EV_SUSPENDED

    grid_a = measurements.grid_a
    if grid_a is None:
        non_ev = (0.0, 0.0, 0.0)
    else:
        non_ev = (max(0.0, grid_a[0] - draw[0]), max(0.0, grid_a[1] - draw[1]), max(0.0, grid_a[2] - draw[2]))

    # -- shared constraints: three phase capacities and one power capacity -------------------------------
    phase_cap = [0.0, 0.0, 0.0]
    phase_label = list(_FUSE_REASONS)
    for p in range(PHASES):
        headroom = site.fuse_a[p] - site.margin_a - non_ev[p]
        if cap is not None and cap.limit_a is not None and cap.limit_a < headroom:
            headroom = cap.limit_a
            phase_label[p] = cap.label
        phase_cap[p] = max(0.0, headroom)

    power_cap = math.inf
    power_label = Reason.POWER_LIMIT
    if site.import_limit_w is not None:
        if measurements.grid_w is not None:
            non_ev_w = measurements.grid_w - sum(drawn_w)
        else:
            non_ev_w = (non_ev[0] + non_ev[1] + non_ev[2]) * voltage
        power_cap = site.import_limit_w - site.margin_w - non_ev_w
    if cap is not None and cap.limit_w is not None and cap.limit_w < power_cap:
        power_cap = cap.limit_w
        power_label = cap.label
    power_cap = max(0.0, power_cap)

    new_mem: dict[str, ChargerMemory] = {}
    surplus_w: float | None = None
    if pv_candidates:
        surplus_w = _share_pv(chargers, pv_candidates, lo, hi, reason, drawn_w, measurements, voltage,
                              now, old_mem, new_mem)

    # -- priority by priority: admit at the minimum, then fill (contract lines 4 to 6) -----------------------
    levels: dict[int, list[int]] = {}
    for i in range(n):
        if hi[i] > 0.0:
            levels.setdefault(chargers[i].priority, []).append(i)

    room = list(phase_cap)  # what is left per phase
    room_w = power_cap
    current = [0.0] * n
    min_run_s = site.min_run_s
    for priority in sorted(levels, reverse=True):
        members = levels[priority]
        # Cheap first: when the whole level fits at its minimum, order does not matter.
        need = [0.0, 0.0, 0.0]
        need_w = 0.0
        for i in members:
            c = chargers[i]
            for g in c.grid_phases:
                need[g] += lo[i]
            need_w += lo[i] * c.phases * voltage
        if need_w <= room_w + _EPS_W and all(need[p] <= room[p] + EPSILON_A for p in range(PHASES)):
            for i in members:
                current[i] = lo[i]
            for p in range(PHASES):
                room[p] = max(0.0, room[p] - need[p])
            room_w = max(0.0, room_w - need_w)
            admitted = members
        else:
            members.sort(key=lambda i: _turn_key(old_mem.get(chargers[i].id, _IDLE), now, min_run_s))
            higher_room, higher_room_w = list(room), room_w  # what the higher priorities left
            admitted = []
            for i in members:
                c = chargers[i]
                amps = lo[i]
                amps_w = amps * c.phases * voltage
                fits = amps_w <= room_w + _EPS_W
                if fits:
                    for g in c.grid_phases:
                        if amps > room[g] + EPSILON_A:
                            fits = False
                            break
                if fits:
                    for g in c.grid_phases:
                        room[g] = max(0.0, room[g] - amps)
                    room_w = max(0.0, room_w - amps_w)
                    current[i] = amps
                    admitted.append(i)
                else:
                    reason[i] = _pause_reason(c, amps, amps_w, phase_cap, power_cap, higher_room, higher_room_w)
        if admitted:
            room_w = _water_fill(chargers, admitted, lo, hi, current, reason, room, room_w, phase_label,
                                 power_label, voltage)

    # -- results and memory ------------------------------------------------------------------------------
    currents: dict[str, float] = {}
    reasons: dict[str, Reason] = {}
    memory_out = dict(old_mem)
    memory_out.update(new_mem)
    for i, c in enumerate(chargers):
        cid = c.id
        amps = current[i]
        if amps > 0.0:
            stepped = math.floor(amps * steps + 1e-9) / steps
            amps = stepped if stepped > lo[i] else lo[i]
        currents[cid] = amps
        reasons[cid] = reason[i]
        mem = memory_out.get(cid, _IDLE)
        if hi[i] <= 0.0:
            if mem.running or mem.since is not None:
                if mem.pv_on or mem.pv_since is not None:
                    memory_out[cid] = ChargerMemory(pv_on=mem.pv_on, pv_since=mem.pv_since)
                else:
                    del memory_out[cid]
        elif amps > 0.0:
            if not mem.running:
                memory_out[cid] = ChargerMemory(running=True, since=now, pv_on=mem.pv_on, pv_since=mem.pv_since)
        elif mem.running or mem.since is None:
            memory_out[cid] = ChargerMemory(running=False, since=now, pv_on=mem.pv_on, pv_since=mem.pv_since)

    if len(memory_out) > n:  # chargers that are gone leave no memory behind
        memory_out = {cid: m for cid, m in memory_out.items() if cid in currents}
    return AllocationResult(
        currents=currents,
        reasons=reasons,
        available_a=(phase_cap[0], phase_cap[1], phase_cap[2]),
        non_ev_a=non_ev,
        available_w=None if math.isinf(power_cap) else power_cap,
        surplus_w=surplus_w,
        memory=Memory(memory_out),
    )


def _pause_reason(
    c: ChargerInput, need: float, need_w: float, phase_cap: list[float], power_cap: float,
    higher_room: list[float], higher_room_w: float,
) -> Reason:
    """Paused: because nothing fits it at all, because a higher priority holds the room, or because an equal
    priority does (its turn comes)."""
    if need_w > power_cap + _EPS_W or any(need > phase_cap[g] + EPSILON_A for g in c.grid_phases):
        return Reason.PAUSED_CAPACITY
    if need_w > higher_room_w + _EPS_W or any(need > higher_room[g] + EPSILON_A for g in c.grid_phases):
        return Reason.PAUSED_PRIORITY
    return Reason.PAUSED_TURN


def _water_fill(
    chargers: Sequence[ChargerInput], members: list[int], lo: list[float], hi: list[float],
    current: list[float], reason: list[Reason], room: list[float], room_w: float,
    phase_label: list[Reason], power_label: Reason, voltage: float,
) -> float:
    """Raise every member by the same increment ``t`` above its minimum until it reaches its demand or a shared
    constraint (a phase, the power cap) runs out; that constraint freezes all its members. One sweep over the
    members in order of headroom, plus one pass per binding constraint: O(n log n + n x constraints).

    Updates ``current``, ``reason`` and ``room`` in place; returns the power room left.
    """
    spare = [hi[i] - lo[i] for i in members]
    positions = sorted(range(len(members)), key=spare.__getitem__)
    order = [members[k] for k in positions]
    headroom = [spare[k] for k in positions]
    count = len(order)
    phases_of = [chargers[i].grid_phases for i in order]
    watts = [chargers[i].phases * voltage for i in order]
    active = [True] * count
    slope = [0.0, 0.0, 0.0]  # how fast each phase's use grows per unit of t
    for gp in phases_of:
        for g in gp:
            slope[g] += 1.0
    slope_w = sum(watts)
    t = 0.0
    ptr = 0
    left = count
    while left:
        while not active[ptr]:
            ptr += 1
        dt = headroom[ptr] - t
        binding = -1  # -1: a demand is reached; 0..2: a phase runs out; 3: the power cap does
        for p in range(PHASES):
            if slope[p] > 0.5 and room[p] < dt * slope[p]:
                dt = room[p] / slope[p]
                binding = p
        if slope_w > _EPS_W and room_w < dt * slope_w:
            dt = room_w / slope_w
            binding = PHASES
        if dt < 0.0:
            dt = 0.0
        t += dt
        if dt > 0.0:
            for p in range(PHASES):
                room[p] = max(0.0, room[p] - slope[p] * dt)
            room_w = max(0.0, room_w - slope_w * dt)
        if binding < 0:
            # Every charger whose demand is reached at this t (equal demands are common: all at their maximum).
            frozen = []
            k = ptr
            while k < count and headroom[k] <= t + 1e-12:
                if active[k]:
                    frozen.append(k)
                k += 1
            why: Reason | None = None
        elif binding == PHASES:
            room_w = 0.0
            frozen = [k for k in range(ptr, count) if active[k]]
            why = power_label
        else:
            room[binding] = 0.0
            frozen = [k for k in range(ptr, count) if active[k] and binding in phases_of[k]]
            why = phase_label[binding]
        for k in frozen:
            i = order[k]
            active[k] = False
            left -= 1
            current[i] = lo[i] + (t if t < headroom[k] else headroom[k])
            if why is not None:
                reason[i] = why
            for g in phases_of[k]:
                slope[g] -= 1.0
            slope_w -= watts[k]
    return room_w


def _share_pv(
    chargers: Sequence[ChargerInput], candidates: list[int], lo: list[float], hi: list[float],
    reason: list[Reason], drawn_w: list[float], measurements: Measurements, voltage: float, now: float,
    old_mem: dict[str, ChargerMemory], new_mem: dict[str, ChargerMemory],
) -> float:
    """Turn the PV surplus into demands for the PV-mode chargers (updates ``hi``/``lo``/``reason``).

    Surplus = what is fed into the grid plus what the PV-mode chargers draw now (they may keep it), or the
    published surplus. ``min+pv`` chargers take their minimum first (from the grid if need be); ``pv`` chargers
    switch on after the surplus has covered their minimum for ``PV_ENABLE_DELAY_S`` and off after it has fallen
    short for ``PV_DISABLE_DELAY_S``; what remains raises them, highest priority first. Returns the surplus.
    """
    if measurements.surplus_w is not None:
        surplus = measurements.surplus_w
    elif measurements.grid_w is not None:
        surplus = -measurements.grid_w + sum(drawn_w[i] for i in candidates)
    else:
        surplus = 0.0
    order = sorted(candidates, key=lambda i: -chargers[i].priority)
    budget = surplus
    for i in order:
        if chargers[i].mode is Mode.MIN_PV:
            budget -= lo[i] * chargers[i].phases * voltage
    enabled: list[int] = []
    for i in order:
        c = chargers[i]
        min_w = lo[i] * c.phases * voltage
        if c.mode is Mode.MIN_PV:
            enabled.append(i)
            continue
        mem = new_mem.get(c.id) or old_mem.get(c.id, _IDLE)
        enough = budget >= min_w
        on, since = mem.pv_on, mem.pv_since
        if on == enough:
            since = None
        elif since is None:
            since = now
        elif now - since >= (PV_DISABLE_DELAY_S if on else PV_ENABLE_DELAY_S):
            on, since = enough, None
        if (on, since) != (mem.pv_on, mem.pv_since):
            new_mem[c.id] = ChargerMemory(running=mem.running, since=mem.since, pv_on=on, pv_since=since)
        if on:
            budget -= min_w
            enabled.append(i)
        else:
            hi[i] = 0.0
            lo[i] = 0.0
            reason[i] = Reason.PV_WAITING
    # What is left raises the enabled chargers: highest priority first, an equal share within one priority.
    levels: dict[int, list[int]] = {}
    for i in enabled:
        if reason[i] is not Reason.EV_SUSPENDED:
            levels.setdefault(chargers[i].priority, []).append(i)
    for priority in sorted(levels, reverse=True):
        members = sorted(levels[priority], key=lambda i: (hi[i] - lo[i]) * chargers[i].phases)
        for k, i in enumerate(members):
            per_amp_w = chargers[i].phases * voltage
            share_w = max(0.0, budget) / (len(members) - k)
            want = min(hi[i], lo[i] + share_w / per_amp_w)
            budget -= (want - lo[i]) * per_amp_w
            if want < hi[i]:
                hi[i] = want
            else:
                reason[i] = Reason.MAX_CURRENT
    return surplus
