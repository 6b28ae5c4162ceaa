"""Entity states: the gateway's picture of the site.

Contract (after Home Assistant's ``StateMachine``):
- Ids are ``<domain>.<object_id>``, lower-case letters, digits and underscores; anything else raises.
- ``set()`` fires ``state_changed`` (with ``old_state`` and ``new_state``) only when the value, unit or
  attributes change; otherwise only ``last_updated`` moves and nothing is fired.
- The first plugin that sets an entity owns it; another plugin setting the same id is a registration error,
  so two plugins can never fight over one entity.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any

from gateway.bus import EventBus
from gateway.context import SYSTEM, Context
from gateway.errors import DuplicateRegistration

EVENT_STATE_CHANGED = "state_changed"
UNAVAILABLE = "unavailable"

_ENTITY_ID = re.compile(r"^[a-z0-9_]+\.[a-z0-9_]+$")
_EMPTY: Mapping[str, Any] = MappingProxyType({})


def valid_entity_id(entity_id: str) -> bool:
    return bool(_ENTITY_ID.match(entity_id))


class State:
    """An immutable snapshot of one entity. Build new ones; never change one."""

    __slots__ = ("attributes", "entity_id", "last_changed", "last_updated", "unit", "value")

    entity_id: str
    value: Any
    unit: str | None
    attributes: Mapping[str, Any]
    last_changed: float
    last_updated: float

    def __init__(
        self,
        entity_id: str,
        value: Any,
        unit: str | None = None,
        attributes: Mapping[str, Any] | None = None,
        last_changed: float | None = None,
        last_updated: float | None = None,
    ) -> None:
        now = time.time()
        # object.__setattr__ keeps the instance read-only to ordinary code while staying cheap:
        # states.set() is the hottest path in the gateway (see bench/bus.py).
        setter = object.__setattr__
        setter(self, "entity_id", entity_id)
        setter(self, "value", value)
        setter(self, "unit", unit)
        setter(self, "attributes", MappingProxyType(dict(attributes)) if attributes else _EMPTY)
        setter(self, "last_changed", now if last_changed is None else last_changed)
        setter(self, "last_updated", now if last_updated is None else last_updated)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("State is immutable; call states.set() instead")

    @property
    def domain(self) -> str:
        return self.entity_id.split(".", 1)[0]

    @property
    def object_id(self) -> str:
        return self.entity_id.split(".", 1)[1]

    def as_dict(self) -> dict[str, Any]:
        return {
            "entity_id": self.entity_id,
            "value": self.value,
            "unit": self.unit,
            "attributes": dict(self.attributes),
            "last_changed": self.last_changed,
            "last_updated": self.last_updated,
        }

    def __eq__(self, other: object) -> bool:
        return isinstance(other, State) and self.as_dict() == other.as_dict()

    __hash__ = None  # type: ignore[assignment]  # mutable-looking value object: not hashable

    def __repr__(self) -> str:
        unit = f" {self.unit}" if self.unit else ""
        return f"<State {self.entity_id}={self.value!r}{unit}>"


class StateMachine:
    """The entity registry. Reads are plain dict lookups; writes fire ``state_changed`` on change."""

    def __init__(self, bus: EventBus) -> None:
        self._bus = bus
        self._states: dict[str, State] = {}
        self._owners: dict[str, str] = {}

    def get(self, entity_id: str) -> State | None:
        return self._states.get(entity_id)

    def __iter__(self) -> Iterator[State]:
        return iter(list(self._states.values()))

    def __len__(self) -> int:
        return len(self._states)

    def all(self, domain: str | None = None) -> list[State]:
        if domain is None:
            return list(self._states.values())
        prefix = domain + "."
        return [s for s in self._states.values() if s.entity_id.startswith(prefix)]

    def owner(self, entity_id: str) -> str | None:
        return self._owners.get(entity_id)

    def set(
        self,
        entity_id: str,
        value: Any,
        unit: str | None = None,
        attributes: Mapping[str, Any] | None = None,
        *,
        owner: str = "core",
        context: Context = SYSTEM,
    ) -> State:
        old = self._states.get(entity_id)
        if old is None:
            if not _ENTITY_ID.match(entity_id):
                raise ValueError(
                    f"invalid entity id {entity_id!r}: use <domain>.<object_id> with a-z, 0-9 and _"
                )
            self._owners[entity_id] = owner
        elif self._owners[entity_id] != owner:
            raise DuplicateRegistration(
                f"entity {entity_id} belongs to {self._owners[entity_id]}; {owner} may not set it"
            )
        elif old.value == value and old.unit == unit and old.attributes == (attributes or _EMPTY):
            new = State(entity_id, value, unit, old.attributes, old.last_changed)
            self._states[entity_id] = new
            return new
        new = State(entity_id, value, unit, attributes)
        self._states[entity_id] = new
        self._bus.fire(
            EVENT_STATE_CHANGED,
            {"entity_id": entity_id, "old_state": old, "new_state": new},
            origin=owner,
            context=context,
        )
        return new

    def remove(self, entity_id: str, *, owner: str = "core", context: Context = SYSTEM) -> bool:
        old = self._states.get(entity_id)
        if old is None:
            return False
        if self._owners[entity_id] != owner:
            raise DuplicateRegistration(f"entity {entity_id} belongs to {self._owners[entity_id]}")
        del self._states[entity_id]
        del self._owners[entity_id]
        self._bus.fire(
            EVENT_STATE_CHANGED,
            {"entity_id": entity_id, "old_state": old, "new_state": None},
            origin=owner,
            context=context,
        )
        return True
