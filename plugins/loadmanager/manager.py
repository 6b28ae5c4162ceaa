"""The gateway adapter: reads states, runs the controller, sends ``charger.set_current_limit``, publishes states.

Contract:
- Inputs come only from states: ``charger.<id>`` (status; attributes phases, min/max_current_a, connected,
  limit_a), ``sensor.<id>_current_l1..3`` (A) or else ``sensor.<id>_power`` (W), and the configured grid meter
  entities. A charger appears when its entity does and leaves when it is removed.
- A grid meter or charger status change, a service call or a due deadline wakes one control step at once;
  events that arrive together are handled in one step. The loop also wakes every ``MAX_SLEEP_S`` to see the
  meter's age (a repeated reading fires no event).
- Commands go out through ``charger.set_current_limit`` with a SYSTEM context of origin ``loadmanager`` whose
  parent is the context that triggered the step. At most one command per charger is in flight; a newer target
  replaces a queued one, so a slow station never delays the others and never receives stale values.
- States: ``sensor.loadmanager_available_current_l1..3`` (A for all chargers on that phase),
  ``sensor.loadmanager_<id>_allocation`` (A; attributes reason, requested_a, priority, mode) and
  ``sensor.loadmanager_site_limit`` (W or None; attributes source, failsafe, reasons, expires, limit_a,
  sources). Failsafe entry and exit and every limit statement are logged and audited.
- Time: monotonic for the controller; state ages are converted from wall-clock ``last_updated``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from gateway.context import Context, Role
from gateway.errors import ServiceValidationError
from gateway.states import EVENT_STATE_CHANGED, State

from .const import (
    AUDIT_FAILSAFE,
    AUDIT_SITE_LIMIT,
    AUDIT_SOURCE_FORGOTTEN,
    CHARGER_DOMAIN,
    CHARGER_MEASUREMENT_MAX_AGE_S,
    CONTEXT_ORIGIN,
    DOMAIN,
    MAX_CONCURRENT_COMMANDS,
    MAX_SLEEP_S,
    PHASES,
    RETRY_S,
)
from .controller import ChargerConfig, Controller, Decision, charger_input
from .failsafe import Change, LimitRefused, Supervisor
from .model import ChargerInput, Measurements, Mode, Site
from .services import register_services

if TYPE_CHECKING:
    from gateway.bus import Event
    from gateway.core import Gateway

_LOGGER = logging.getLogger(__name__)

MIGRATIONS = [
    """
    CREATE TABLE loadmanager_sources (
        source TEXT PRIMARY KEY,
        first_heartbeat REAL NOT NULL
    );
    """,
]
_CHARGER_PREFIX = CHARGER_DOMAIN + "."
# Charger attributes the allocation reads; a change of any other (session energy, firmware) wakes no step.
_RELEVANT_ATTRIBUTES = ("phases", "min_current_a", "max_current_a", "connected")


def _float(state: State | None) -> float | None:
    if state is None:
        return None
    value = state.value
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        return None
    return float(value)


class LoadManager:
    def __init__(self, gw: Gateway, config: dict[str, Any]) -> None:
        self.gw = gw
        self.config = config
        meter = config["grid_meter"]
        self._meter_currents = (meter["current_l1"], meter["current_l2"], meter["current_l3"])
        self._meter_power: str | None = meter.get("power")
        self._surplus: str | None = config["pv"].get("surplus")
        self._meter_entities = frozenset(e for e in (*self._meter_currents, self._meter_power, self._surplus) if e)
        self._required = tuple(e for e in (*self._meter_currents, self._meter_power) if e)
        self.site = Site(
            fuse_a=(config["fuse_a"][0], config["fuse_a"][1], config["fuse_a"][2]),
            margin_a=config["margin_a"],
            voltage_v=config["voltage"],
            import_limit_w=config.get("import_limit_w"),
            margin_w=config["margin_w"],
            min_run_s=config["min_run_time"],
        )
        self._default = ChargerConfig(priority=config["default_priority"], mode=Mode(config["default_mode"]))
        self._charger_configs = {
            cid: ChargerConfig(
                phases=c.get("phases"), rotation=c.get("rotation"), min_current_a=c.get("min_current_a"),
                max_current_a=c.get("max_current_a"), priority=c.get("priority", config["default_priority"]),
                mode=Mode(c.get("mode", config["default_mode"])),
            )
            for cid, c in config["chargers"].items()
        }
        self.controller: Controller | None = None
        self.chargers: set[str] = set()
        self.last: Decision | None = None
        self._persisted: set[str] = set()
        self._held: tuple[tuple[float, float, float] | None, float | None] = (None, None)
        self._wake = asyncio.Event()
        self._trigger: Context | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._queued: dict[str, tuple[float, Context]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._limit = asyncio.Semaphore(MAX_CONCURRENT_COMMANDS)
        self._undo: list[Callable[[], None]] = []
        self.steps = 0
        self._published: set[str] = set()
        self._stopping = False
        self._problems: dict[str, str] = {}

    @staticmethod
    def now() -> float:
        return time.monotonic()

    # -- lifecycle ----------------------------------------------------------------------------------------

    async def async_start(self) -> None:
        await self.gw.storage.async_migrate(DOMAIN, MIGRATIONS)
        rows = await self.gw.storage.execute("SELECT source FROM loadmanager_sources")
        self._persisted = {row["source"] for row in rows}
        supervised = sorted({*self.config["limit_sources"], *self._persisted})
        failsafe = self.config["failsafe"]
        supervisor = Supervisor.create(
            failsafe_limit_w=failsafe["limit_w"], min_duration_s=failsafe["min_duration"],
            min_limit_w=self.config["min_external_limit_w"], voltage_v=self.site.voltage_v,
            meter_max_age_s=self.config["grid_meter"]["max_age"], now=self.now(), supervised=supervised,
            release_after_minimum=failsafe["release_after_minimum"],
        )
        self.controller = Controller(self.site, supervisor)
        for state in self.gw.states.all(CHARGER_DOMAIN):
            self.chargers.add(state.object_id)
        if supervised:
            # [LPC-901] after a restart: the failsafe limit until each supervised source confirms.
            _LOGGER.warning("load manager starts at the failsafe limit (%g W) until %s confirm%s",
                            failsafe["limit_w"], ", ".join(supervised), "s" if len(supervised) == 1 else "")
            await self.gw.audit.append(AUDIT_FAILSAFE, {"entered": True, "cause": "restart", "sources": supervised,
                                                        "limit_w": failsafe["limit_w"]})
        self._undo.append(self.gw.bus.subscribe(EVENT_STATE_CHANGED, self._on_state_changed, owner=DOMAIN))
        self._undo.extend(register_services(self))
        self._loop_task = asyncio.get_running_loop().create_task(self._run(), name="loadmanager")

    async def stop(self) -> None:
        self._stopping = True
        for undo in self._undo:
            undo()
        self._undo.clear()
        tasks = [t for t in (self._loop_task, *self._inflight.values(), *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- triggers -----------------------------------------------------------------------------------------

    def _on_state_changed(self, event: Event) -> None:
        entity_id: str = event.data["entity_id"]
        if entity_id.startswith(_CHARGER_PREFIX):
            new: State | None = event.data["new_state"]
            old: State | None = event.data["old_state"]
            if new is None:
                self.chargers.discard(entity_id[len(_CHARGER_PREFIX):])
            else:
                self.chargers.add(entity_id[len(_CHARGER_PREFIX):])
                if old is not None and old.value == new.value and all(
                        old.attributes.get(k) == new.attributes.get(k) for k in _RELEVANT_ATTRIBUTES):
                    return  # e.g. the session energy moved: nothing the allocation reads
        elif entity_id not in self._meter_entities:
            return  # charger sensors are read at the next step; they alone do not need one
        self.wake(event.context)

    def wake(self, context: Context | None = None) -> None:
        if context is not None:
            self._trigger = context
        self._wake.set()

    async def _run(self) -> None:
        while not self._stopping:
            deadline = self.last.next_deadline if self.last is not None else None
            timeout = MAX_SLEEP_S if deadline is None else min(MAX_SLEEP_S, max(0.0, deadline - self.now()))
            # asyncio.timeout rather than wait_for: Python 3.11's wait_for can swallow a cancellation that
            # arrives while the inner wait completes (CPython gh-86296), and stop() would then hang.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            self._wake.clear()
            trigger, self._trigger = self._trigger, None
            try:
                self.step(trigger)
            except Exception:
                _LOGGER.exception("load manager step failed")
                await asyncio.sleep(MAX_SLEEP_S)

    # -- one step -----------------------------------------------------------------------------------------

    def step(self, trigger: Context | None = None) -> Decision:
        assert self.controller is not None
        now = self.now()
        wall = time.time()
        measurements, updated_at = self._measurements(now, wall)
        inputs, reported = self._inputs(wall)
        decision = self.controller.step(inputs, measurements, updated_at, now, reported)
        self.last = decision
        self.steps += 1
        if decision.commands:
            context = Context(origin=CONTEXT_ORIGIN, role=Role.SYSTEM,
                              parent_id=trigger.id if trigger is not None else None)
            for charger, value in decision.commands.items():
                self._dispatch(charger, value, context)
        for change in decision.changes:
            self._report(change)
        self._publish(decision, inputs)
        return decision

    def _measurements(self, now: float, wall: float) -> tuple[Measurements, float | None]:
        get = self.gw.states.get
        states = [get(e) for e in self._meter_currents]
        currents = [_float(s) for s in states]
        power_state = get(self._meter_power) if self._meter_power else None
        power = _float(power_state)
        oldest: float | None = None
        fresh = all(c is not None for c in currents) and (self._meter_power is None or power is not None)
        if fresh:
            stamps = [s.last_updated for s in (*states, power_state) if s is not None]
            oldest = now - (wall - min(stamps))
            grid_a = (currents[0], currents[1], currents[2])
            self._held = (grid_a, power)  # type: ignore[assignment]
        grid_held, power_held = self._held
        surplus = _float(get(self._surplus)) if self._surplus else None
        # A stale or unavailable meter: keep steering with the last readings (under the failsafe cap).
        return Measurements(grid_a=grid_held, grid_w=power_held, surplus_w=surplus), oldest

    def _inputs(self, wall: float) -> tuple[list[ChargerInput], dict[str, float | None]]:
        assert self.controller is not None
        get = self.gw.states.get
        inputs: list[ChargerInput] = []
        reported: dict[str, float | None] = {}
        oldest = wall - CHARGER_MEASUREMENT_MAX_AGE_S
        voltage = self.site.voltage_v
        for cid in sorted(self.chargers):
            state = get(_CHARGER_PREFIX + cid)
            if state is None:
                continue
            attributes = state.attributes
            config = self._charger_configs.get(cid, self._default)
            measured = self._measured(cid, oldest)
            if measured is None:
                power = get(f"sensor.{cid}_power")
                watts = _float(power)
                phases: int = config.phases or (3 if attributes.get("phases") != 1 else 1)
                if power is not None and watts is not None and power.last_updated >= oldest:
                    per_phase = max(0.0, watts) / (voltage * phases)
                    measured = (per_phase,) * phases
                else:
                    measured = (0.0, 0.0, 0.0)
            reported_limit = attributes.get("limit_a")
            reported[cid] = float(reported_limit) if isinstance(reported_limit, int | float) else None
            try:
                inputs.append(charger_input(cid, config, status=str(state.value), attributes=attributes,
                                            measured_a=measured, requested_a=self.controller.requested(cid)))
            except ValueError as err:
                _LOGGER.error("charger %s skipped: %s", cid, err)
        return inputs, reported

    def _measured(self, cid: str, oldest: float) -> tuple[float, ...] | None:
        get = self.gw.states.get
        values: list[float] = []
        for k in range(1, PHASES + 1):
            state = get(f"sensor.{cid}_current_l{k}")
            value = _float(state)
            if state is None or value is None or state.last_updated < oldest:
                if k == 1:
                    return None
                value = 0.0
            values.append(value)
        return tuple(values)

    # -- commands -----------------------------------------------------------------------------------------

    def _dispatch(self, charger: str, value: float, context: Context) -> None:
        if charger in self._inflight:
            self._queued[charger] = (value, context)  # the newest replaces anything still waiting
            return
        task = asyncio.get_running_loop().create_task(self._send(charger, value, context),
                                                      name=f"loadmanager-{charger}")
        self._inflight[charger] = task

    async def _send(self, charger: str, value: float, context: Context) -> None:
        assert self.controller is not None
        try:
            while True:
                ok = False
                try:
                    async with self._limit:
                        result = await self.gw.services.call(
                            CHARGER_DOMAIN, "set_current_limit", {"charger": charger, "limit_a": value},
                            context=context)
                    ok = bool(result.get("accepted")) if isinstance(result, dict) else bool(result)
                    if not ok:
                        self._problem(charger, f"did not accept {value:.1f} A: "
                                               f"{result.get('status') if isinstance(result, dict) else result}")
                except ServiceValidationError as err:
                    self._problem(charger, str(err))
                except Exception as err:
                    _LOGGER.debug("charger %s: set_current_limit failed", charger, exc_info=True)
                    self._problem(charger, f"set_current_limit failed: {type(err).__name__}: {err}")
                if ok:
                    self._problems.pop(charger, None)
                self.controller.damper.result(charger, value, ok, self.now())
                queued = self._queued.pop(charger, None)
                if queued is None:
                    return
                value, context = queued
        finally:
            self._inflight.pop(charger, None)

    def _problem(self, charger: str, text: str) -> None:
        # Once per kind of problem, not at every retry (RETRY_S): a rejecting station must not flood the log.
        if self._problems.get(charger) != text:
            self._problems[charger] = text
            _LOGGER.warning("charger %s %s (retrying every %g s)", charger, text, RETRY_S)

    # -- limits (services.py calls these) -----------------------------------------------------------------

    async def set_site_limit(
        self, source: str, *, limit_w: float | None, limit_a: float | None, duration_s: float | None,
        active: bool, context: Context,
    ) -> dict[str, Any]:
        assert self.controller is not None
        supervisor = self.controller.supervisor
        record: dict[str, Any] = {"source": source, "active": active, "limit_w": limit_w, "limit_a": limit_a,
                                  "duration_s": duration_s, "context_id": context.id}
        try:
            limit, clamped, changes = supervisor.set_limit(
                source, self.now(), limit_w=limit_w, limit_a=limit_a, duration_s=duration_s, active=active,
                context=context.as_dict())
        except LimitRefused as err:
            await self.gw.audit.append(AUDIT_SITE_LIMIT, {**record, "accepted": False, "reason": str(err)},
                                       context=context)
            raise ServiceValidationError(f"{DOMAIN}.set_site_limit: {err}") from None
        if clamped:
            _LOGGER.warning("limit from %s raised to the guaranteed minimum (%g W; asked %s)", source,
                            self.config["min_external_limit_w"],
                            f"{limit_w:g} W" if limit_w is not None else f"{limit_a:g} A")
        machine = supervisor.sources.get(source)
        state = str(machine.state) if machine is not None else "unlimited"
        await self.gw.audit.append(AUDIT_SITE_LIMIT, {
            **record, "accepted": True, "clamped": clamped, "state": state,
            "applied_w": limit.limit_w if limit else None, "applied_a": limit.limit_a if limit else None,
        }, context=context)
        for change in changes:
            self._report(change)
        self.wake(context)
        return {"accepted": True, "limit_w": limit.limit_w if limit else None,
                "limit_a": limit.limit_a if limit else None, "clamped": clamped, "state": state,
                "expires_in_s": duration_s or None}

    async def heartbeat(self, source: str, *, context: Context) -> dict[str, Any]:
        assert self.controller is not None
        changes = self.controller.supervisor.heartbeat(source, self.now())
        if source not in self._persisted:
            # Remembered: after a restart this source's limit starts at the failsafe until it confirms.
            self._persisted.add(source)
            await self.gw.storage.execute(
                "INSERT OR IGNORE INTO loadmanager_sources (source, first_heartbeat) VALUES (?, ?)",
                (source, time.time()))
        for change in changes:
            self._report(change)
        if changes:
            self.wake(context)
        return {"state": str(self.controller.supervisor.sources[source].state)}

    async def forget_source(self, source: str, *, context: Context) -> dict[str, Any]:
        assert self.controller is not None
        known = self.controller.supervisor.forget(source) or source in self._persisted
        self._persisted.discard(source)
        await self.gw.storage.execute("DELETE FROM loadmanager_sources WHERE source = ?", (source,))
        await self.gw.audit.append(AUDIT_SOURCE_FORGOTTEN, {"source": source, "known": known}, context=context)
        self.wake(context)
        return {"forgotten": known}

    # -- output -------------------------------------------------------------------------------------------

    def _report(self, change: Change) -> None:
        if change.enters_failsafe:
            _LOGGER.warning("failsafe: %s %s -> %s (%s)", change.name, change.old, change.new, change.event)
        elif change.leaves_failsafe:
            _LOGGER.warning("failsafe ended: %s %s -> %s (%s)", change.name, change.old, change.new, change.event)
        else:
            _LOGGER.info("limit source %s: %s -> %s (%s)", change.name, change.old, change.new, change.event)
            return
        data = {"entered": change.enters_failsafe, "cause": f"{change.name}: {change.event}",
                "source": change.name, "state": str(change.new), "previous": str(change.old),
                "limit_w": self.config["failsafe"]["limit_w"]}
        task = asyncio.get_running_loop().create_task(self.gw.audit.append(AUDIT_FAILSAFE, data))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _publish(self, decision: Decision, inputs: list[ChargerInput]) -> None:
        assert self.controller is not None
        states = self.gw.states
        result = decision.result
        for p in range(PHASES):
            states.set(f"sensor.{DOMAIN}_available_current_l{p + 1}", round(result.available_a[p], 1), "A",
                       {"non_ev_a": round(result.non_ev_a[p], 1), "fuse_a": self.site.fuse_a[p]}, owner=DOMAIN)
        requested = self.controller.requested
        published: set[str] = set()
        for charger in inputs:
            cid = charger.id
            entity = f"sensor.{DOMAIN}_{cid}_allocation"
            states.set(entity, result.currents[cid], "A",
                       {"reason": str(result.reasons[cid]), "requested_a": requested(cid),
                        "priority": charger.priority, "mode": str(charger.mode)}, owner=DOMAIN)
            published.add(entity)
        for gone in self._published - published:
            states.remove(gone, owner=DOMAIN)
        self._published = published
        eff = decision.effective
        expires = None
        if eff.expires_at is not None:
            expires = dt.datetime.fromtimestamp(time.time() + eff.expires_at - self.now(), dt.UTC).isoformat(
                timespec="seconds")
        sources = {name: str(m.state) for name, m in self.controller.supervisor.sources.items()}
        states.set(f"sensor.{DOMAIN}_site_limit", None if eff.limit_w is None else round(eff.limit_w), "W", {
            "source": eff.source, "failsafe": eff.failsafe, "reasons": list(eff.reasons), "expires": expires,
            "limit_a": eff.cap.limit_a if eff.cap is not None else None, "sources": sources,
            "meter": str(self.controller.supervisor.meter.state),
        }, owner=DOMAIN)
