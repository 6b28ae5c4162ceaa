"""The service registry: how commands go down.

Contract:
- ``register(domain, name, handler, schema=..., role=...)``; a second registration of the same name raises.
- ``await call(domain, name, data, context)`` checks the caller's role, validates and coerces ``data`` with
  the service's voluptuous schema, then runs the handler and returns its result.
- Unknown service -> ``ServiceNotFound``; bad data -> ``ServiceValidationError`` naming the key and the
  problem; a caller whose role is too low -> ``Unauthorized`` (with the context, for the audit log).
- Every call fires ``service_called`` so the audit log and the UI can see who steered what.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import voluptuous as vol

from gateway.bus import EventBus
from gateway.context import SYSTEM, Context, Role
from gateway.errors import DuplicateRegistration, ServiceNotFound, ServiceValidationError, Unauthorized

EVENT_SERVICE_CALLED = "service_called"

ServiceHandler = Callable[["ServiceCall"], Awaitable[Any] | Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceCall:
    domain: str
    service: str
    data: dict[str, Any]
    context: Context


@dataclass(frozen=True, slots=True)
class Service:
    domain: str
    name: str
    handler: ServiceHandler
    schema: vol.Schema
    role: Role
    owner: str
    description: str


def humanize_invalid(err: vol.Invalid) -> str:
    """``limit_a: expected float`` rather than voluptuous's ``expected float for dictionary value @ ...``."""
    errors = err.errors if isinstance(err, vol.MultipleInvalid) else [err]
    parts = []
    for e in errors:
        path = ".".join(str(p) for p in e.path) or "data"
        parts.append(f"{path}: {e.msg}")
    return "; ".join(parts)


class ServiceRegistry:
    def __init__(self, bus: EventBus) -> None:
        self._bus = bus
        self._services: dict[tuple[str, str], Service] = {}

    def register(
        self,
        domain: str,
        name: str,
        handler: ServiceHandler,
        *,
        schema: vol.Schema | dict[Any, Any] | None = None,
        role: Role = Role.OPERATOR,
        owner: str = "core",
        description: str = "",
    ) -> Callable[[], None]:
        key = (domain, name)
        if key in self._services:
            raise DuplicateRegistration(
                f"service {domain}.{name} is already registered by {self._services[key].owner}"
            )
        if schema is None:
            schema = vol.Schema({})
        elif not isinstance(schema, vol.Schema):
            schema = vol.Schema(schema)
        self._services[key] = Service(domain, name, handler, schema, role, owner, description)

        def unregister() -> None:
            self._services.pop(key, None)

        return unregister

    def has(self, domain: str, name: str) -> bool:
        return (domain, name) in self._services

    def get(self, domain: str, name: str) -> Service | None:
        return self._services.get((domain, name))

    def all(self) -> list[Service]:
        return sorted(self._services.values(), key=lambda s: (s.domain, s.name))

    async def call(
        self,
        domain: str,
        name: str,
        data: dict[str, Any] | None = None,
        context: Context = SYSTEM,
    ) -> Any:
        service = self._services.get((domain, name))
        if service is None:
            raise ServiceNotFound(domain, name)
        if context.role < service.role:
            raise Unauthorized(context, f"call {domain}.{name}")
        try:
            validated = service.schema(dict(data or {}))
        except vol.Invalid as err:
            raise ServiceValidationError(f"{domain}.{name}: {humanize_invalid(err)}") from None
        self._bus.fire(
            EVENT_SERVICE_CALLED,
            {"domain": domain, "service": name, "data": validated},
            origin=service.owner,
            context=context,
        )
        result = service.handler(ServiceCall(domain=domain, service=name, data=validated, context=context))
        if inspect.isawaitable(result):
            result = await result
        return result
