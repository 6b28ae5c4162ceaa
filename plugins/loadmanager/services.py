"""The load manager's services: how energy managers, the UI and MQTT steer what the chargers may draw.

Contract (modelled on EEBUS LPC, ``failsafe.py``):
- ``loadmanager.set_site_limit {limit_w | limit_a, duration?, source?, active?}`` caps all chargers together:
  ``limit_w`` their total power (W), ``limit_a`` their current per phase (A). ``duration`` makes it revert by
  itself; ``active: false`` releases the source's limit. ``source`` names the caller's channel (e.g.
  ``eebus:<ski>``); default: the caller's context (``web:alice``). A negative limit is refused
  (``ServiceValidationError``, audited); one below the §14a minimum is raised to it, logged and reported as
  ``clamped``. Every accepted or refused statement is audited with the caller's context. Returns
  ``{"accepted", "limit_w", "limit_a", "clamped", "state", "expires_in_s"}``.
- ``loadmanager.heartbeat {source}``: the source is alive; from its first heartbeat on it is supervised
  (120 s silence -> failsafe) and remembered across restarts. Returns ``{"state"}``.
- ``loadmanager.forget_source {source}`` (admin): stop supervising a source that is gone for good (else every
  restart begins in failsafe until it confirms). Audited.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import voluptuous as vol

from gateway.config import validation as cv
from gateway.context import Context, Role
from gateway.services import ServiceCall

from .const import DOMAIN, MAX_LIMIT_DURATION_S

if TYPE_CHECKING:
    from .manager import LoadManager

_SOURCE = vol.All(str, vol.Length(min=1, max=128))


def _duration(value: Any) -> float:
    seconds = cv.duration(value)
    if seconds > MAX_LIMIT_DURATION_S:
        raise cv.invalid(f"expected a duration up to {MAX_LIMIT_DURATION_S / 86400:g} days", value,
                         "leave duration out for a limit that stays until changed")
    return seconds


def _number(value: Any) -> float:
    # A number only: negative values pass here so that the handler can refuse *and audit* them.
    if isinstance(value, bool):
        raise vol.Invalid("expected a number")
    number = float(value)
    if number != number or number in (float("inf"), float("-inf")):
        raise vol.Invalid("expected a finite number")
    return number


SET_SITE_LIMIT_SCHEMA = vol.Schema({
    vol.Exclusive("limit_w", "limit", msg="give limit_w or limit_a, not both"): _number,
    vol.Exclusive("limit_a", "limit", msg="give limit_w or limit_a, not both"): _number,
    vol.Optional("duration"): _duration,
    vol.Optional("source"): _SOURCE,
    vol.Optional("active", default=True): cv.boolean,
})
HEARTBEAT_SCHEMA = vol.Schema({vol.Required("source"): _SOURCE})
FORGET_SCHEMA = vol.Schema({vol.Required("source"): _SOURCE})


def default_source(context: Context) -> str:
    """The caller's channel when it names no source: ``web:alice``, ``mqtt:dashboard``, ``internal``."""
    return f"{context.origin}:{context.principal}" if context.principal else context.origin


def register_services(manager: LoadManager) -> list[Callable[[], None]]:
    services = manager.gw.services

    async def set_site_limit(call: ServiceCall) -> dict[str, Any]:
        data = call.data
        source = data.get("source") or default_source(call.context)
        return await manager.set_site_limit(
            source, limit_w=data.get("limit_w"), limit_a=data.get("limit_a"), duration_s=data.get("duration"),
            active=data["active"], context=call.context,
        )

    async def heartbeat(call: ServiceCall) -> dict[str, Any]:
        return await manager.heartbeat(call.data["source"], context=call.context)

    async def forget_source(call: ServiceCall) -> dict[str, Any]:
        return await manager.forget_source(call.data["source"], context=call.context)

    return [
        services.register(DOMAIN, "set_site_limit", set_site_limit, schema=SET_SITE_LIMIT_SCHEMA,
                          role=Role.OPERATOR, owner=DOMAIN,
                          description="cap all chargers together (W total or A per phase), optionally for a time"),
        services.register(DOMAIN, "heartbeat", heartbeat, schema=HEARTBEAT_SCHEMA, role=Role.OPERATOR,
                          owner=DOMAIN, description="a limit source is alive (at least every 60 s)"),
        services.register(DOMAIN, "forget_source", forget_source, schema=FORGET_SCHEMA, role=Role.ADMIN,
                          owner=DOMAIN, description="stop supervising a limit source that is gone"),
    ]
