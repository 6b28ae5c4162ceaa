"""The load manager's data: the site, the chargers as the allocator sees them, measurements, external caps and
the allocation it answers with. Plain immutable values; no I/O, no gateway objects.

Units are in the names (``_a`` amperes per phase, ``_w`` watts, ``_s`` seconds). Grid phases are indexed 0, 1, 2
for L1, L2, L3. A charger's ``grid_phases`` lists, in the charger's own phase order, the grid phase each of its
phases is wired to: ``(1,)`` is a single-phase charger on L2; ``(1, 2, 0)`` a three-phase charger whose L1 is
the grid's L2 (phase rotation, used to stagger single-phase cars across the grid's phases).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum

from .const import PHASES


class Mode(StrEnum):
    """What a charger should do (evcc's loadpoint modes, plus ``fast`` = as much as the site allows)."""

    OFF = "off"  # never charge
    MIN = "min"  # charge at the charger's minimum current, from the grid if need be
    MIN_PV = "min+pv"  # minimum from the grid, more from PV surplus
    PV = "pv"  # only from PV surplus; wait when there is not enough for the minimum
    FAST = "fast"  # the charger's maximum, as far as fuse and limits allow


class Reason(StrEnum):
    """Why a charger got the current it got (the ``reason`` attribute of its allocation entity)."""

    # charging
    MAX_CURRENT = "max_current"  # at the charger's (or car's) maximum
    MIN_MODE = "min_mode"  # mode min: at its minimum by choice
    PV_SURPLUS = "pv_surplus"  # as much as the PV surplus gives
    FUSE_L1 = "fuse_l1"  # held by the main fuse on that phase
    FUSE_L2 = "fuse_l2"
    FUSE_L3 = "fuse_l3"
    POWER_LIMIT = "power_limit"  # held by the site's import limit or an external power limit
    EXTERNAL_LIMIT = "external_limit"  # held by an external limit set through loadmanager.set_site_limit
    FAILSAFE = "failsafe"  # held by the failsafe limit
    EV_SUSPENDED = "ev_suspended"  # the car paused itself; kept at its minimum so it can resume
    # not charging
    NOT_CONNECTED = "not_connected"
    UNAVAILABLE = "unavailable"  # charger faulted, unavailable or unknown
    MODE_OFF = "mode_off"
    PV_WAITING = "pv_waiting"  # PV mode, not enough surplus (yet)
    PAUSED_PRIORITY = "paused_priority"  # a higher-priority charger holds the capacity it needs
    PAUSED_TURN = "paused_turn"  # an equal-priority charger holds it; this one waits its turn
    PAUSED_CAPACITY = "paused_capacity"  # not even its minimum fits, whoever else charges
    MISCONFIGURED = "misconfigured"  # minimum above maximum


PAUSED = frozenset({Reason.PAUSED_PRIORITY, Reason.PAUSED_TURN, Reason.PAUSED_CAPACITY})

# Statuses (the charger capability's entity value) in which a car is plugged in and may draw current.
ACTIVE_STATUSES = frozenset({"preparing", "charging", "suspended_ev", "suspended_evse"})
FAULT_STATUSES = frozenset({"faulted", "unavailable"})
ALL_STATUSES = frozenset({
    "available", "preparing", "charging", "suspended_ev", "suspended_evse", "finishing", "reserved", "faulted",
    "unavailable",
})

_ROTATION = re.compile(r"^(L[123])(L[123])?(L[123])?$")


def parse_rotation(text: str, phases: int) -> tuple[int, ...]:
    """``"L2"`` -> ``(1,)``; ``"L2L3L1"`` -> ``(1, 2, 0)``. For a single-phase charger only the first phase counts,
    so a three-phase rotation also works there. Raises ``ValueError`` on anything else."""
    match = _ROTATION.match(text.upper().replace(" ", "").replace(",", ""))
    if not match:
        raise ValueError(f"phase rotation {text!r}: write L1, L2 or L3, or a permutation such as L1L2L3 or L2L3L1")
    grid = tuple(int(g[1]) - 1 for g in match.groups() if g)
    if len(grid) == 2 or len(set(grid)) != len(grid):
        raise ValueError(f"phase rotation {text!r}: name one phase or all three, each once")
    if phases == 1:
        return grid[:1]
    if len(grid) == 1:
        # A three-phase charger given only its L1: the other two follow in the usual clockwise order.
        first = grid[0]
        return (first, (first + 1) % PHASES, (first + 2) % PHASES)
    return grid


@dataclass(frozen=True, slots=True, kw_only=True)
class Site:
    """The grid connection. ``fuse_a`` per grid phase; ``import_limit_w`` caps the whole site's net import."""

    fuse_a: tuple[float, float, float]
    margin_a: float
    voltage_v: float
    import_limit_w: float | None = None
    margin_w: float = 0.0
    min_run_s: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class ChargerInput:
    """One charger as the allocator sees it: configuration merged with what the charger reports.

    ``measured_a`` is its current per *charger* phase as last measured (fresh readings only; stale ones are
    passed as zeros). ``requested_a`` is the limit we last asked for (``None`` before the first command): a
    reading above it is not believed when the non-EV load is computed, so a stale or lagging reading can only
    make the house look heavier, never lighter.
    """

    id: str
    phases: int
    grid_phases: tuple[int, ...]
    min_a: float
    max_a: float
    priority: int = 0
    mode: Mode = Mode.FAST
    status: str = "charging"
    connected: bool = True
    measured_a: tuple[float, ...] = (0.0, 0.0, 0.0)
    requested_a: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Measurements:
    """Grid meter readings: per-phase current magnitudes (A) and signed net power (W, import positive).

    ``grid_a`` ``None`` means unknown: the fuse check then assumes no non-EV load, which is why an unknown
    meter always comes with the failsafe cap (``failsafe.py``). ``surplus_w`` overrides the surplus derived from
    the grid power (a PV system or energy manager that publishes it directly).
    """

    grid_a: tuple[float, float, float] | None = None
    grid_w: float | None = None
    surplus_w: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ExternalCap:
    """What outside limits allow the chargers together: total power (W) and/or current per phase (A).

    ``label`` becomes the reason of the chargers it holds back (``external_limit`` or ``failsafe``).
    """

    limit_w: float | None = None
    limit_a: float | None = None
    label: Reason = Reason.EXTERNAL_LIMIT


@dataclass(frozen=True, slots=True)
class ChargerMemory:
    """What the allocator remembers about one charger between calls (turn-taking and PV hysteresis)."""

    running: bool = False
    since: float | None = None  # running since, or waiting since (when it wants current but has none)
    pv_on: bool = False
    pv_since: float | None = None  # since when the PV condition opposite to ``pv_on`` has held


@dataclass(slots=True)
class Memory:
    chargers: dict[str, ChargerMemory] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Allocation:
    charger: str
    current_a: float
    reason: Reason


@dataclass(frozen=True, slots=True, kw_only=True)
class AllocationResult:
    """Per charger its current and reason; per grid phase what the chargers may draw in total.

    ``currents`` and ``reasons`` are keyed by charger id (two plain dicts rather than one object per charger:
    building 1,000 small objects costs more than the whole allocation, see bench/loadmanager.py).
    ``available_a[p]`` is the current all chargers on grid phase ``p`` may draw together (fuse minus margin minus
    non-EV load, or the external per-phase cap if lower); ``non_ev_a`` the non-EV load it assumed.
    """

    currents: dict[str, float]
    reasons: dict[str, Reason]
    available_a: tuple[float, float, float]
    non_ev_a: tuple[float, float, float]
    available_w: float | None  # for all chargers together, when a power limit applies
    surplus_w: float | None
    memory: Memory

    def allocation(self, charger: str) -> Allocation:
        return Allocation(charger=charger, current_a=self.currents[charger], reason=self.reasons[charger])
