"""What the overview and charger pages show, computed from states alone (no protocol, no I/O).

Contract:
- ``power_flow`` reads the grid meter (``sensor.grid_power`` unless configured; positive = import, the meter
  convention at the grid connection), the PV inverters (every ``sensor.pv*_power`` unless configured) and the
  chargers (``sensor.<id>_power`` of every ``charger.<id>``), and derives the rest of the house as
  grid + PV - chargers. A value that is missing or not a number is ``None``, never 0: "no meter" must not
  read as "no power".
- ``chargers`` lists the ``charger.<id>`` entities with their attributes and their ``sensor.<id>_*`` values.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.states import State

DEFAULT_GRID_ENTITY = "sensor.grid_power"
PV_PREFIX = "sensor.pv"
POWER_SUFFIX = "_power"
CHARGER_DOMAIN = "charger"


def number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        try:
            value = float(value)
        except (TypeError, ValueError):
            return None
    value = float(value)
    return value if math.isfinite(value) else None


@dataclass(frozen=True, slots=True, kw_only=True)
class ChargerView:
    id: str
    entity_id: str
    status: Any
    attributes: Mapping[str, Any]
    power_entity: str
    power_w: float | None
    sensors: tuple[State, ...]  # sensor.<id>_* states, sorted by id


@dataclass(frozen=True, slots=True, kw_only=True)
class PowerFlow:
    grid_entity: str
    pv_entities: tuple[str, ...]
    charger_entities: tuple[str, ...]  # their power sensors
    grid_w: float | None
    pv_w: float | None
    chargers_w: float | None
    home_w: float | None

    def as_dict(self) -> dict[str, Any]:
        return {"grid_entity": self.grid_entity, "pv_entities": list(self.pv_entities),
                "charger_entities": list(self.charger_entities), "grid_w": self.grid_w, "pv_w": self.pv_w,
                "chargers_w": self.chargers_w, "home_w": self.home_w}


def _sum(values: Iterable[float | None]) -> float | None:
    found = [v for v in values if v is not None]
    return sum(found) if found else None


def chargers(states: Sequence[State]) -> list[ChargerView]:
    by_id = {s.entity_id: s for s in states}
    out: list[ChargerView] = []
    for state in sorted((s for s in states if s.domain == CHARGER_DOMAIN), key=lambda s: s.entity_id):
        object_id = state.object_id
        power_entity = f"sensor.{object_id}{POWER_SUFFIX}"
        prefix = f"sensor.{object_id}_"
        sensors = tuple(sorted((s for s in states if s.entity_id.startswith(prefix)), key=lambda s: s.entity_id))
        power = by_id.get(power_entity)
        out.append(ChargerView(id=object_id, entity_id=state.entity_id, status=state.value,
                               attributes=state.attributes, power_entity=power_entity,
                               power_w=number(power.value) if power else None, sensors=sensors))
    return out


def power_flow(states: Sequence[State], *, grid_entity: str | None = None,
               pv_entities: Sequence[str] | None = None) -> PowerFlow:
    by_id = {s.entity_id: s for s in states}
    grid_entity = grid_entity or DEFAULT_GRID_ENTITY
    if pv_entities:
        pv = tuple(pv_entities)
    else:
        pv = tuple(sorted(s.entity_id for s in states
                          if s.entity_id.startswith(PV_PREFIX) and s.entity_id.endswith(POWER_SUFFIX)))
    charger_power = tuple(c.power_entity for c in chargers(states))

    def value(entity_id: str) -> float | None:
        state = by_id.get(entity_id)
        return number(state.value) if state is not None else None

    grid = value(grid_entity)
    pv_w = _sum(value(e) for e in pv)
    chargers_w = _sum(value(e) for e in charger_power)
    home = None
    if grid is not None:
        home = grid + (pv_w or 0.0) - (chargers_w or 0.0)
    return PowerFlow(grid_entity=grid_entity, pv_entities=pv, charger_entities=charger_power, grid_w=grid,
                     pv_w=pv_w, chargers_w=chargers_w, home_w=home)
