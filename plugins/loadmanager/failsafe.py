"""External limits and the failsafe, modelled on EEBUS LPC (§14a EnWG): who may cap the chargers, and what
happens when they or the grid meter fall silent. Sans-IO: time is passed in as ``now`` (monotonic seconds),
nothing sleeps; ``next_deadline()`` says when to call ``advance()`` again.

Everything that changes a state lives in this file, in two tables (after h11's ``_state.py``):

* ``TRANSITIONS``: one machine per limit source (an EEBUS control box, a SEMP energy manager, a user in the UI).
  States and rules follow LPC as quoted in ``shared/design/protocols/eebus.md`` §9.1:

  - a source that has ever sent a heartbeat is *supervised*: 120 s without one -> ``failsafe`` [LPC-911/912];
  - ``failsafe`` is left only on a heartbeat **and** a limit statement (a limit, or its release) made after
    failsafe began, in either order [LPC-916] (evcc stayed stuck in failsafe, evcc #25545; EVerest leaves on the
    heartbeat alone: both bugs are tests here);
  - after a restart a supervised source starts in ``init`` at the failsafe limit until it confirms the same
    way; its heartbeat clock starts with ``init``, so no failsafe fires right after start or connect (evcc
    #21675 entered failsafe 10 s after start); 120 s without confirmation -> ``autonomous`` [LPC-906];
  - after the failsafe minimum duration (2 h by default, 2-24 h [LPC-022]) ``failsafe`` -> ``autonomous``
    [LPC-922]. LPC lets the device run unlimited there; we keep applying the failsafe limit unless
    ``release_after_minimum`` is set (evcc PR #29705: "we never silently unlimit on prolonged outage");
  - a limit with a duration reverts by itself (``limited`` -> ``unlimited``); one without never expires (evcc PR
    #32492 fixed treating "no duration" as "expired");
  - a source that never sent a heartbeat (a user) is not supervised: its limit just applies until it expires
    or is released.

* ``METER_TRANSITIONS``: the grid meter. Until its first reading (``waiting``) and whenever its newest reading is
  older than the configured age (``stale``) the failsafe limit applies: without the meter the load manager
  cannot see the house, so it caps the chargers as if a control box had gone silent.

Limits: negative ones are refused [LPC-001]; ones below the §14a minimum (4.2 kW) are raised to it and the
caller is told (``clamped``). The effective cap on the chargers is the lowest of everything that applies.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from .const import HEARTBEAT_TIMEOUT_S, INIT_TIMEOUT_S, PHASES
from .model import ExternalCap, Reason


class SourceState(StrEnum):
    INIT = "init"  # after a restart: failsafe limit until the source confirms [LPC-901]
    LIMITED = "limited"  # the source's limit applies
    UNLIMITED = "unlimited"  # the source is there and sets no limit ("unlimited/controlled")
    FAILSAFE = "failsafe"  # heartbeat lost: failsafe limit
    AUTONOMOUS = "autonomous"  # failsafe outlasted its minimum, or init was never confirmed ("unlimited/autonomous")


class SourceEvent(StrEnum):
    HEARTBEAT = "heartbeat"
    LIMIT = "limit"  # an active limit was written
    RELEASE = "release"  # the limit was deactivated
    HEARTBEAT_LOST = "heartbeat_lost"  # HEARTBEAT_TIMEOUT_S without a heartbeat
    INIT_TIMEOUT = "init_timeout"  # INIT_TIMEOUT_S in init without confirmation
    LIMIT_EXPIRED = "limit_expired"  # the limit's duration is over
    MINIMUM_ELAPSED = "minimum_elapsed"  # the failsafe minimum duration is over


class MeterState(StrEnum):
    WAITING = "waiting"  # no reading yet since start
    FRESH = "fresh"
    STALE = "stale"


class MeterEvent(StrEnum):
    FRESH = "fresh"  # the newest reading is younger than the configured age
    STALE = "stale"  # it is older
    GRACE_OVER = "grace_over"  # no first reading within the configured age after start


# States in which the failsafe limit applies and that are left only on a heartbeat plus a new statement.
WAITING_STATES = frozenset({SourceState.INIT, SourceState.FAILSAFE, SourceState.AUTONOMOUS})

S, E = SourceState, SourceEvent
_CONFIRM = (("confirmed_limit", S.LIMITED), ("confirmed_release", S.UNLIMITED))

# (state, event) -> rules tried in order: (guard name or None, next state). A missing pair means the event is
# recorded (a heartbeat's time, a written limit) but the state stays. Staying in the same state is not a
# transition: no entry action runs.
TRANSITIONS: dict[tuple[SourceState, SourceEvent], tuple[tuple[str | None, SourceState], ...]] = {
    # [LPC-901] init applies the failsafe limit; a heartbeat and a statement make it controlled
    (S.INIT, E.HEARTBEAT): _CONFIRM,
    (S.INIT, E.LIMIT): _CONFIRM,
    (S.INIT, E.RELEASE): _CONFIRM,
    (S.INIT, E.INIT_TIMEOUT): ((None, S.AUTONOMOUS),),  # [LPC-906]
    # [LPC-914] a controlled source changes its limit at will
    (S.LIMITED, E.LIMIT): ((None, S.LIMITED),),
    (S.LIMITED, E.RELEASE): ((None, S.UNLIMITED),),
    (S.LIMITED, E.LIMIT_EXPIRED): ((None, S.UNLIMITED),),
    (S.LIMITED, E.HEARTBEAT_LOST): ((None, S.FAILSAFE),),  # [LPC-911/912]
    (S.UNLIMITED, E.LIMIT): ((None, S.LIMITED),),
    (S.UNLIMITED, E.HEARTBEAT_LOST): ((None, S.FAILSAFE),),
    # [LPC-916] failsafe ends on a heartbeat and a statement made after it began, nothing less
    (S.FAILSAFE, E.HEARTBEAT): _CONFIRM,
    (S.FAILSAFE, E.LIMIT): _CONFIRM,
    (S.FAILSAFE, E.RELEASE): _CONFIRM,
    (S.FAILSAFE, E.MINIMUM_ELAPSED): ((None, S.AUTONOMOUS),),  # [LPC-922]
    # [LPC-918/919/920] from autonomous, the same confirmation returns to control
    (S.AUTONOMOUS, E.HEARTBEAT): _CONFIRM,
    (S.AUTONOMOUS, E.LIMIT): _CONFIRM,
    (S.AUTONOMOUS, E.RELEASE): _CONFIRM,
}

M, ME = MeterState, MeterEvent
METER_TRANSITIONS: dict[tuple[MeterState, MeterEvent], MeterState] = {
    (M.WAITING, ME.FRESH): M.FRESH,
    (M.WAITING, ME.GRACE_OVER): M.STALE,  # no reading at all: now it is a fault, and audited as one
    (M.FRESH, ME.STALE): M.STALE,
    (M.STALE, ME.FRESH): M.FRESH,
}
del S, E, M, ME


class LimitRefused(ValueError):
    """A limit that cannot be applied (negative [LPC-001], or neither watts nor amperes)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Limit:
    """One statement from a source: a cap on the chargers in W (total) and/or A (per phase)."""

    limit_w: float | None = None
    limit_a: float | None = None
    expires_at: float | None = None  # monotonic; None = until changed

    def as_w(self, voltage_v: float) -> float:
        values = [v for v in (self.limit_w, None if self.limit_a is None else self.limit_a * voltage_v * PHASES)
                  if v is not None]
        return min(values)


@dataclass(frozen=True, slots=True, kw_only=True)
class Change:
    """A state change, for the log, the audit and the published state."""

    kind: str  # "source" or "meter"
    name: str  # the source, or "grid_meter"
    old: str
    new: str
    event: str
    at: float

    @property
    def enters_failsafe(self) -> bool:
        """A fault that the log and the audit must show: a source lost, the meter gone stale. (The meter's start-up
        wait and a restart's ``init`` apply the failsafe limit too, but are no fault: they are reported once at
        start.)"""
        faults = _METER_FAULTS if self.kind == "meter" else _SOURCE_FAILSAFE
        return self.new in faults and self.old not in faults

    @property
    def leaves_failsafe(self) -> bool:
        faults = _METER_FAULTS if self.kind == "meter" else _SOURCE_FAILSAFE
        return self.old in faults and self.new not in faults


_SOURCE_FAILSAFE = frozenset({SourceState.FAILSAFE, SourceState.INIT, SourceState.AUTONOMOUS})
_METER_FAULTS = frozenset({MeterState.STALE})


def check_limit(
    *, limit_w: float | None, limit_a: float | None, min_limit_w: float, voltage_v: float
) -> tuple[float | None, float | None, bool]:
    """Refuse negative limits, raise ones below the §14a minimum. Returns (limit_w, limit_a, clamped)."""
    if limit_w is None and limit_a is None:
        raise LimitRefused("give limit_w or limit_a")
    for name, value in (("limit_w", limit_w), ("limit_a", limit_a)):
        if value is not None and not value >= 0:  # also refuses NaN
            raise LimitRefused(f"{name}: a negative consumption limit is refused ([LPC-001])")
    clamped = False
    if limit_w is not None and limit_w < min_limit_w:
        limit_w, clamped = min_limit_w, True
    min_a = min_limit_w / (voltage_v * PHASES)
    if limit_a is not None and limit_a < min_a:
        limit_a, clamped = min_a, True
    return limit_w, limit_a, clamped


class SourceMachine:
    """The LPC state of one limit source. Feed it events with ``handle``; ``due(now)`` yields the time events."""

    def __init__(self, name: str, *, supervised: bool, now: float) -> None:
        self.name = name
        self.supervised = supervised
        self.state = SourceState.INIT if supervised else SourceState.UNLIMITED
        self.entered_at = now
        # Seeded at start: the heartbeat clock runs from init, never from the epoch (evcc #21675).
        self.last_heartbeat = now
        self.active: Limit | None = None  # the limit in force in ``limited``
        self.written: Limit | None = None  # the newest statement (None = a release)
        self.context: dict[str, Any] | None = None  # who made the newest statement
        self._seq = 0
        self._entry_seq = 0
        self._heartbeat_seq = -1
        self._written_seq = -1

    # guards, named in TRANSITIONS
    def _confirmed(self) -> bool:
        return self._heartbeat_seq > self._entry_seq and self._written_seq > self._entry_seq

    def confirmed_limit(self) -> bool:
        return self._confirmed() and self.written is not None

    def confirmed_release(self) -> bool:
        return self._confirmed() and self.written is None

    def handle(self, event: SourceEvent, now: float, limit: Limit | None = None) -> Change | None:
        """Record the event, then take the first transition whose guard holds. Returns the change, if any."""
        self._seq += 1
        if event is SourceEvent.HEARTBEAT:
            self.last_heartbeat = now
            self._heartbeat_seq = self._seq
            self.supervised = True
        elif event is SourceEvent.LIMIT:
            self.written = limit
            self._written_seq = self._seq
        elif event is SourceEvent.RELEASE:
            self.written = None
            self._written_seq = self._seq
        for guard, target in TRANSITIONS.get((self.state, event), ()):
            if guard is None or _GUARDS[guard](self):
                return self._enter(target, event, now)
        return None

    def _enter(self, target: SourceState, event: SourceEvent, now: float) -> Change | None:
        old = self.state
        if target is SourceState.LIMITED:
            self.active = self.written  # the newest statement is the limit (also for limited -> limited)
        elif target is SourceState.UNLIMITED:
            self.active = None
        if target is old:
            return None
        self.state = target
        self.entered_at = now
        if target in WAITING_STATES:
            # EVerest drops the cached limit on entering failsafe: a later heartbeat must come with a new one.
            self.active = None
            self._entry_seq = self._seq
        return Change(kind="source", name=self.name, old=old, new=target, event=event, at=now)

    def due(self, now: float, min_duration_s: float) -> list[SourceEvent]:
        """Time events whose deadline has passed (fed back through ``handle`` by the supervisor)."""
        found = []
        deadline = self.deadline(min_duration_s)
        if deadline is not None and now >= deadline:
            found.append(self._deadline_event())
        return found

    def deadline(self, min_duration_s: float) -> float | None:
        state = self.state
        if state is SourceState.INIT:
            return self.entered_at + INIT_TIMEOUT_S
        if state is SourceState.FAILSAFE:
            return self.entered_at + min_duration_s
        if state in (SourceState.LIMITED, SourceState.UNLIMITED):
            times = []
            if self.supervised:
                times.append(self.last_heartbeat + HEARTBEAT_TIMEOUT_S)
            if state is SourceState.LIMITED and self.active is not None and self.active.expires_at is not None:
                times.append(self.active.expires_at)
            return min(times) if times else None
        return None

    def _deadline_event(self) -> SourceEvent:
        state = self.state
        if state is SourceState.INIT:
            return SourceEvent.INIT_TIMEOUT
        if state is SourceState.FAILSAFE:
            return SourceEvent.MINIMUM_ELAPSED
        if state is SourceState.LIMITED and self.active is not None and self.active.expires_at is not None and (
            not self.supervised or self.active.expires_at <= self.last_heartbeat + HEARTBEAT_TIMEOUT_S
        ):
            return SourceEvent.LIMIT_EXPIRED
        return SourceEvent.HEARTBEAT_LOST

    def pending(self) -> Limit | None:
        """A limit written since the current waiting state began (not yet confirmed by a heartbeat)."""
        return self.written if self._written_seq > self._entry_seq else None

    def applied(self, *, release_after_minimum: bool) -> tuple[Limit | None, bool]:
        """(the limit this source imposes, whether it is the failsafe limit)."""
        if self.state is SourceState.LIMITED:
            return self.active, False
        if self.state is SourceState.UNLIMITED:
            return None, False
        if self.state is SourceState.AUTONOMOUS and release_after_minimum:
            return None, False
        return None, True  # init, failsafe, autonomous: the failsafe limit (the supervisor supplies it)

    def describe(self) -> dict[str, Any]:
        return {"state": str(self.state), "supervised": self.supervised}


_GUARDS: dict[str, Callable[[SourceMachine], bool]] = {
    "confirmed_limit": SourceMachine.confirmed_limit,
    "confirmed_release": SourceMachine.confirmed_release,
}


class MeterWatch:
    """The grid meter's freshness (``METER_TRANSITIONS``)."""

    def __init__(self, *, max_age_s: float, now: float) -> None:
        self.max_age_s = max_age_s
        self.state = MeterState.WAITING
        self.started = now
        self.updated_at: float | None = None

    def observe(self, updated_at: float | None, now: float) -> Change | None:
        self.updated_at = updated_at
        if updated_at is not None and now - updated_at <= self.max_age_s:
            event = MeterEvent.FRESH
        elif self.state is MeterState.WAITING:
            if now - self.started < self.max_age_s:
                return None  # grace: the meter has had less than one max age to report
            event = MeterEvent.GRACE_OVER
        else:
            event = MeterEvent.STALE
        target = METER_TRANSITIONS.get((self.state, event))
        if target is None or target is self.state:
            return None
        old, self.state = self.state, target
        return Change(kind="meter", name="grid_meter", old=old, new=target, event=event, at=now)

    def deadline(self) -> float | None:
        if self.state is MeterState.WAITING:
            return self.started + self.max_age_s
        if self.state is MeterState.FRESH and self.updated_at is not None:
            return self.updated_at + self.max_age_s
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class Effective:
    """What the chargers may draw together, and why: published as ``sensor.loadmanager_site_limit``."""

    cap: ExternalCap | None
    limit_w: float | None  # the cap in W (an A cap converted at the nominal voltage), None = no external cap
    source: str | None  # who set the binding cap ("failsafe" when the failsafe limit binds)
    failsafe: bool  # whether any failsafe applies
    reasons: tuple[str, ...]  # why the failsafe applies ("eebus: heartbeat_lost", "grid_meter: stale")
    expires_at: float | None  # when the binding limit ends by itself (monotonic)


@dataclass(slots=True)
class Supervisor:
    """All limit sources and the grid meter; the one object the controller asks for the effective cap."""

    failsafe_limit_w: float
    min_duration_s: float
    min_limit_w: float
    voltage_v: float
    meter: MeterWatch
    release_after_minimum: bool = False
    sources: dict[str, SourceMachine] = field(default_factory=dict)

    @classmethod
    def create(cls, *, failsafe_limit_w: float, min_duration_s: float, min_limit_w: float, voltage_v: float,
               meter_max_age_s: float, now: float, supervised: Iterable[str] = (),
               release_after_minimum: bool = False) -> Supervisor:
        sup = cls(failsafe_limit_w=failsafe_limit_w, min_duration_s=min_duration_s, min_limit_w=min_limit_w,
                  voltage_v=voltage_v, meter=MeterWatch(max_age_s=meter_max_age_s, now=now),
                  release_after_minimum=release_after_minimum)
        for name in supervised:
            sup.sources[name] = SourceMachine(name, supervised=True, now=now)
        return sup

    def _source(self, name: str, now: float) -> SourceMachine:
        machine = self.sources.get(name)
        if machine is None:
            machine = self.sources[name] = SourceMachine(name, supervised=False, now=now)
        return machine

    def heartbeat(self, source: str, now: float) -> list[Change]:
        machine = self._source(source, now)
        return _listed(machine.handle(SourceEvent.HEARTBEAT, now))

    def set_limit(
        self, source: str, now: float, *, limit_w: float | None = None, limit_a: float | None = None,
        duration_s: float | None = None, active: bool = True, context: dict[str, Any] | None = None,
    ) -> tuple[Limit | None, bool, list[Change]]:
        """Apply one statement. Returns (the limit as applied or None for a release, clamped, changes).
        Raises ``LimitRefused`` for a negative or empty limit (nothing is recorded then)."""
        if not active:
            machine = self._source(source, now)
            machine.context = context
            return None, False, self._gc(machine, _listed(machine.handle(SourceEvent.RELEASE, now)))
        limit_w, limit_a, clamped = check_limit(limit_w=limit_w, limit_a=limit_a, min_limit_w=self.min_limit_w,
                                                voltage_v=self.voltage_v)
        expires = now + duration_s if duration_s else None  # no duration (or 0): never expires (evcc #32492)
        limit = Limit(limit_w=limit_w, limit_a=limit_a, expires_at=expires)
        machine = self._source(source, now)
        machine.context = context
        return limit, clamped, _listed(machine.handle(SourceEvent.LIMIT, now, limit))

    def forget(self, source: str) -> bool:
        return self.sources.pop(source, None) is not None

    def advance(self, now: float, meter_updated_at: float | None) -> list[Change]:
        """Fire every time event that is due and observe the meter's age."""
        changes: list[Change] = []
        for machine in list(self.sources.values()):
            # A machine may pass several deadlines at once after a long pause (init timeout, then nothing more).
            for _ in range(4):
                events = machine.due(now, self.min_duration_s)
                if not events:
                    break
                for event in events:
                    change = machine.handle(event, now)
                    if change is not None:
                        changes.append(change)
                        self._gc(machine, [])
        meter_change = self.meter.observe(meter_updated_at, now)
        if meter_change is not None:
            changes.append(meter_change)
        return changes

    def _gc(self, machine: SourceMachine, changes: list[Change]) -> list[Change]:
        # An unsupervised source without a limit has nothing left to say: forget it.
        if not machine.supervised and machine.state is SourceState.UNLIMITED:
            self.sources.pop(machine.name, None)
        return changes

    def next_deadline(self) -> float | None:
        times = [d for d in (m.deadline(self.min_duration_s) for m in self.sources.values()) if d is not None]
        meter = self.meter.deadline()
        if meter is not None:
            times.append(meter)
        return min(times) if times else None

    def effective(self) -> Effective:
        candidates: list[tuple[float, str, Limit, bool]] = []  # (as W, source, limit, failsafe)
        reasons: list[str] = []
        failsafe = Limit(limit_w=self.failsafe_limit_w)
        for name, machine in self.sources.items():
            limit, is_failsafe = machine.applied(release_after_minimum=self.release_after_minimum)
            if is_failsafe:
                reasons.append(f"{name}: {machine.state}")
                candidates.append((self.failsafe_limit_w, name, failsafe, True))
                # A stricter statement made while waiting is honoured at once (stricter is always allowed).
                limit = machine.pending()
            if limit is not None:
                candidates.append((limit.as_w(self.voltage_v), name, limit, False))
        if self.meter.state is not MeterState.FRESH:
            reasons.append(f"grid_meter: {self.meter.state}")
            candidates.append((self.failsafe_limit_w, "grid_meter", failsafe, True))
        if not candidates:
            return Effective(cap=None, limit_w=None, source=None, failsafe=False, reasons=(), expires_at=None)
        limit_w = min(c[0] for c in candidates)
        binding = min(candidates, key=lambda c: (c[0], not c[3]))
        watts = [c[2].limit_w for c in candidates if c[2].limit_w is not None]
        amps = [c[2].limit_a for c in candidates if c[2].limit_a is not None]
        cap = ExternalCap(limit_w=min(watts) if watts else None, limit_a=min(amps) if amps else None,
                          label=Reason.FAILSAFE if binding[3] else Reason.EXTERNAL_LIMIT)
        return Effective(cap=cap, limit_w=limit_w, source=binding[1], failsafe=bool(reasons),
                         reasons=tuple(reasons), expires_at=binding[2].expires_at)


def _listed(change: Change | None) -> list[Change]:
    return [] if change is None else [change]
