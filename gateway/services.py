"""The service registry: how commands go down.

Contract:
- ``register(domain, name, handler, schema=..., role=...)``; a second registration of the same name raises.
- ``await call(domain, name, data, context)`` checks the caller's role, validates and coerces ``data`` with
  the service's voluptuous schema, then runs the handler and returns its result.
- Unknown service -> ``ServiceNotFound``; bad data -> ``ServiceValidationError`` naming the key and the
  problem; a caller whose role is too low -> ``Unauthorized`` (with the context, for the audit log).
- Every call fires ``service_called`` so the audit log and the UI can see who steered what.
- Capability services (``charger.set_current_limit``) may have several providers, one per plugin: each
  registers with ``route_by="charger"`` and a call goes to the plugin that owns the entity
  ``charger.<data["charger"]>``. The caller never learns which protocol the device speaks.
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
    route_by: str | None = None


def humanize_invalid(err: vol.Invalid) -> str:
    """``limit_a: expected float`` rather than voluptuous's ``expected float for dictionary value @ ...``."""
    errors = err.errors if isinstance(err, vol.MultipleInvalid) else [err]
    parts = []
    for e in errors:
        path = ".".join(str(p) for p in e.path) or "data"
        parts.append(f"{path}: {e.msg}")
    return "; ".join(parts)


class ServiceRegistry:
    def __init__(self, bus: EventBus, owner_of: Callable[[str], str | None] | None = None) -> None:
        self._bus = bus
        self._services: dict[tuple[str, str], Service] = {}
        # Routed capability services: (domain, name) -> {owning plugin: service}
        self._routed: dict[tuple[str, str], dict[str, Service]] = {}
        self._owner_of = owner_of or (lambda entity_id: None)

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
        route_by: str | None = None,
    ) -> Callable[[], None]:
        key = (domain, name)
        if route_by is not None:
            return self._register_routed(key, handler, schema, role, owner, description, route_by)
        if key in self._services or key in self._routed:
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

    def _register_routed(
        self,
        key: tuple[str, str],
        handler: ServiceHandler,
        schema: vol.Schema | dict[Any, Any] | None,
        role: Role,
        owner: str,
        description: str,
        route_by: str,
    ) -> Callable[[], None]:
        if key in self._services:
            raise DuplicateRegistration(f"service {key[0]}.{key[1]} is already registered unrouted")
        providers = self._routed.setdefault(key, {})
        if owner in providers:
            raise DuplicateRegistration(f"service {key[0]}.{key[1]} is already registered by {owner}")
        if not isinstance(schema, vol.Schema):
            schema = vol.Schema(schema or {})
        providers[owner] = Service(key[0], key[1], handler, schema, role, owner, description, route_by)

        def unregister() -> None:
            providers.pop(owner, None)

        return unregister

    def has(self, domain: str, name: str) -> bool:
        return (domain, name) in self._services or bool(self._routed.get((domain, name)))

    def get(self, domain: str, name: str) -> Service | None:
        service = self._services.get((domain, name))
        if service is None and self._routed.get((domain, name)):
            service = next(iter(self._routed[(domain, name)].values()))
        return service

    def all(self) -> list[Service]:
        found = [*self._services.values(), *(next(iter(p.values())) for p in self._routed.values() if p)]
        return sorted(found, key=lambda s: (s.domain, s.name))

    def _route(self, domain: str, name: str, data: dict[str, Any] | None) -> Service:
        providers = self._routed.get((domain, name))
        if not providers:
            raise ServiceNotFound(domain, name)
        route_by = next(iter(providers.values())).route_by
        assert route_by is not None
        target = (data or {}).get(route_by)
        if not isinstance(target, str) or not target:
            raise ServiceValidationError(f"{domain}.{name}: {route_by}: required key not provided")
        owner = self._owner_of(f"{domain}.{target}")
        if owner is None or owner not in providers:
            raise ServiceValidationError(f"{domain}.{name}: {route_by}: no {domain} named '{target}'")
        return providers[owner]

    async def call(
        self,
        domain: str,
        name: str,
        data: dict[str, Any] | None = None,
        context: Context = SYSTEM,
    ) -> Any:
        service = self._services.get((domain, name))
        if service is None:
            service = self._route(domain, name, data)
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
