"""Who asked: every event, state change and service call carries a ``Context``.

The context is what authorisation and the audit log read. ``origin`` names the channel (``cli``, ``web``,
``mqtt``, ``ocpp``, ``eebus``, ``internal``) and ``principal`` who on it (a user name, an MQTT client id, an
EEBUS SKI, a station id). ``role`` decides what the caller may do; internal callers are ``system``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from enum import IntEnum


class Role(IntEnum):
    """Ordered roles: a higher role may do everything a lower one may."""

    VIEWER = 10  # read only
    OPERATOR = 20  # read and call commands
    ADMIN = 30  # everything, including users, enrollments and risks
    SYSTEM = 40  # the gateway itself and its plugins


def _new_id() -> str:
    # Time-ordered like a ULID: 48 bits of milliseconds then 80 random bits, hex encoded.
    return f"{int(time.time() * 1000):012x}{os.urandom(10).hex()}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Context:
    """The caller of an action. Immutable; ``child()`` derives a context for the actions it triggers."""

    origin: str = "internal"
    principal: str | None = None
    role: Role = Role.SYSTEM
    address: str | None = None
    id: str = field(default_factory=_new_id)
    parent_id: str | None = None

    def child(self) -> Context:
        return Context(
            origin=self.origin,
            principal=self.principal,
            role=self.role,
            address=self.address,
            parent_id=self.id,
        )

    def describe(self) -> str:
        who = f"{self.origin}:{self.principal}" if self.principal else self.origin
        return f"{who}@{self.address}" if self.address else who

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "parent_id": self.parent_id,
            "origin": self.origin,
            "principal": self.principal,
            "role": self.role.name.lower(),
            "address": self.address,
        }


SYSTEM = Context(origin="internal", principal="gateway", role=Role.SYSTEM)
