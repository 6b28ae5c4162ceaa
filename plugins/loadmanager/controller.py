"""One control step, sans-IO: limits and failsafe (``failsafe.py``) -> allocation (``allocator.py``) -> commands
(``damper.py``). The gateway adapter (``manager.py``) and ``ampgate simulate`` (``simulate.py``) both drive this
same object, so what the simulation shows is what the site does.

Contract: ``step()`` takes the chargers, the grid readings, the time of the meter's newest reading and ``now``
(monotonic seconds) and returns a ``Decision``: the allocation, the commands to send now, the effective cap,
the state changes of the limit sources and the meter, and when to step again at the latest.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .allocator import allocate, step_up
from .const import DEFAULT_MAX_CURRENT_A, DEFAULT_MIN_CURRENT_A, MAX_CURRENT_A
from .damper import Damper
from .failsafe import Change, Effective, Supervisor
from .model import ACTIVE_STATUSES, AllocationResult, ChargerInput, Measurements, Memory, Mode, Site, parse_rotation


@dataclass(frozen=True, slots=True, kw_only=True)
class ChargerConfig:
    """The site's settings for one charger; ``None`` = take what the charger reports, else the default."""

    phases: int | None = None
    rotation: str | None = None
    min_current_a: float | None = None
    max_current_a: float | None = None
    priority: int = 0
    mode: Mode = Mode.FAST


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        return None
    return float(value)


def charger_input(
    charger: str,
    config: ChargerConfig,
    *,
    status: str,
    attributes: Mapping[str, Any],
    measured_a: tuple[float, ...],
    requested_a: float | None,
) -> ChargerInput:
    """Merge the site's settings with what the charger reports (its ``charger.<id>`` entity).

    The stricter value wins: the higher minimum, the lower maximum. A charger that does not say how many phases
    it uses counts as three-phase, which reserves current on every phase (the safe assumption).
    """
    reported_phases = attributes.get("phases")
    phases = config.phases or (reported_phases if reported_phases in (1, 3) else 3)
    rotation = parse_rotation(config.rotation or ("L1" if phases == 1 else "L1L2L3"), phases)
    mins = [v for v in (config.min_current_a, _number(attributes.get("min_current_a"))) if v is not None]
    maxes = [v for v in (config.max_current_a, _number(attributes.get("max_current_a"))) if v is not None]
    min_a = max(mins) if mins else DEFAULT_MIN_CURRENT_A
    max_a = min([*maxes, MAX_CURRENT_A]) if maxes else DEFAULT_MAX_CURRENT_A
    connected = attributes.get("connected")
    return ChargerInput(
        id=charger,
        phases=phases,
        grid_phases=rotation,
        min_a=min_a,
        max_a=max_a,
        priority=config.priority,
        mode=config.mode,
        status=status,
        connected=bool(connected) if isinstance(connected, bool) else status in ACTIVE_STATUSES,
        measured_a=measured_a,
        requested_a=requested_a,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    result: AllocationResult
    commands: dict[str, float]
    effective: Effective
    changes: list[Change]
    next_deadline: float | None


class Controller:
    """Supervisor + allocator + damper, stepped with explicit time."""

    def __init__(self, site: Site, supervisor: Supervisor) -> None:
        self.site = site
        self.supervisor = supervisor
        self.damper = Damper()
        self.memory = Memory()

    def requested(self, charger: str) -> float | None:
        """The limit last asked of this charger (what the allocator trusts its readings up to)."""
        return self.damper.requested(charger)

    def step(
        self,
        chargers: Sequence[ChargerInput],
        measurements: Measurements,
        meter_updated_at: float | None,
        now: float,
        reported: Mapping[str, float | None] | None = None,
    ) -> Decision:
        changes = self.supervisor.advance(now, meter_updated_at)
        effective = self.supervisor.effective()
        result = allocate(self.site, chargers, measurements, effective.cap, now, self.memory)
        self.memory = result.memory
        minimums = {c.id: step_up(c.min_a) for c in chargers}
        # An unreachable charger gets no commands (they would only fail); it keeps whatever limit or fallback
        # profile it has, and its draw shows up in the non-EV load. Its track is dropped, so the first command
        # after it returns goes out at once.
        unreachable = {c.id for c in chargers if c.status == "unavailable"}
        targets = {cid: amps for cid, amps in result.currents.items() if cid not in unreachable}
        commands = self.damper.plan(targets, now, reported, minimums)
        if len(self.damper.tracks) > len(targets):
            for gone in set(self.damper.tracks) - targets.keys():
                self.damper.forget(gone)
        deadlines = [d for d in (self.supervisor.next_deadline(), self.damper.next_deadline()) if d is not None]
        return Decision(result=result, commands=commands, effective=effective, changes=changes,
                        next_deadline=min(deadlines) if deadlines else None)
