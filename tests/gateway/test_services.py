from __future__ import annotations

import pytest
import voluptuous as vol

from gateway.bus import Event, EventBus
from gateway.context import Context, Role
from gateway.errors import DuplicateRegistration, ServiceNotFound, ServiceValidationError, Unauthorized
from gateway.services import EVENT_SERVICE_CALLED, ServiceCall, ServiceRegistry


@pytest.fixture
def registry() -> ServiceRegistry:
    return ServiceRegistry(EventBus())


async def test_call_validates_coerces_and_returns(registry: ServiceRegistry) -> None:
    calls: list[ServiceCall] = []

    async def handler(call: ServiceCall) -> dict[str, float]:
        calls.append(call)
        return {"applied": call.data["limit_a"]}

    registry.register("charger", "set_current_limit", handler,
                      schema={vol.Required("charger"): str, vol.Required("limit_a"): vol.Coerce(float)})
    ctx = Context(origin="mqtt", principal="dash", role=Role.OPERATOR)
    result = await registry.call("charger", "set_current_limit", {"charger": "cp01", "limit_a": "16"}, ctx)
    assert result == {"applied": 16.0}
    assert calls[0].context is ctx and calls[0].data["limit_a"] == 16.0


async def test_sync_handlers_work_too(registry: ServiceRegistry) -> None:
    registry.register("x", "y", lambda call: 42)
    assert await registry.call("x", "y") == 42


async def test_unknown_service(registry: ServiceRegistry) -> None:
    with pytest.raises(ServiceNotFound, match="charger.nope"):
        await registry.call("charger", "nope")


async def test_bad_data_names_key_and_problem(registry: ServiceRegistry) -> None:
    registry.register("charger", "set_current_limit", lambda c: None,
                      schema={vol.Required("limit_a"): vol.All(vol.Coerce(float), vol.Range(min=0, max=80))})
    with pytest.raises(ServiceValidationError, match=r"limit_a: value must be at most 80"):
        await registry.call("charger", "set_current_limit", {"limit_a": 500})
    with pytest.raises(ServiceValidationError, match=r"limit_a: required key not provided"):
        await registry.call("charger", "set_current_limit", {})
    with pytest.raises(ServiceValidationError, match=r"extra: extra keys not allowed"):
        await registry.call("charger", "set_current_limit", {"limit_a": 1, "extra": 2})


async def test_role_is_checked_before_anything_runs(registry: ServiceRegistry) -> None:
    ran: list[int] = []
    registry.register("user", "delete", lambda c: ran.append(1), role=Role.ADMIN)
    viewer = Context(origin="web", principal="bob", role=Role.VIEWER)
    with pytest.raises(Unauthorized) as info:
        await registry.call("user", "delete", {}, viewer)
    assert info.value.context is viewer and ran == []


async def test_every_call_is_announced_with_its_context(registry: ServiceRegistry) -> None:
    bus = EventBus()
    reg = ServiceRegistry(bus)
    seen: list[Event] = []
    bus.subscribe(EVENT_SERVICE_CALLED, seen.append)
    reg.register("a", "b", lambda c: None, schema={vol.Optional("v"): int})
    ctx = Context(origin="web", principal="ann", role=Role.ADMIN)
    await reg.call("a", "b", {"v": 1}, ctx)
    assert seen[0].data == {"domain": "a", "service": "b", "data": {"v": 1}} and seen[0].context is ctx


def test_duplicate_registration_fails_loudly(registry: ServiceRegistry) -> None:
    registry.register("a", "b", lambda c: None, owner="one")
    with pytest.raises(DuplicateRegistration, match="already registered by one"):
        registry.register("a", "b", lambda c: None, owner="two")


async def test_capability_services_route_to_the_plugin_owning_the_device() -> None:
    from gateway.states import StateMachine

    bus = EventBus()
    states = StateMachine(bus)
    reg = ServiceRegistry(bus, owner_of=states.owner)
    got: list[tuple[str, float]] = []
    schema = {vol.Required("charger"): str, vol.Required("limit_a"): vol.Coerce(float)}
    reg.register("charger", "set_current_limit", lambda c: got.append(("ocpp", c.data["limit_a"])),
                 schema=schema, owner="ocpp", route_by="charger")
    reg.register("charger", "set_current_limit", lambda c: got.append(("eebus", c.data["limit_a"])),
                 schema=schema, owner="eebus", route_by="charger")
    states.set("charger.cp01", "charging", owner="ocpp")
    states.set("charger.wallbox", "charging", owner="eebus")
    await reg.call("charger", "set_current_limit", {"charger": "cp01", "limit_a": 6})
    await reg.call("charger", "set_current_limit", {"charger": "wallbox", "limit_a": 10})
    assert got == [("ocpp", 6.0), ("eebus", 10.0)]
    with pytest.raises(ServiceValidationError, match="no charger named 'nope'"):
        await reg.call("charger", "set_current_limit", {"charger": "nope", "limit_a": 6})
    with pytest.raises(DuplicateRegistration):
        reg.register("charger", "set_current_limit", lambda c: None, owner="ocpp", route_by="charger")
