"""What a plugin module is: the contract the loader checks (like Home Assistant's ``ComponentProtocol``).

A plugin module defines, at module level:

- ``MANIFEST``: a ``Manifest`` (name, title, dependencies, after, discovery matchers);
- ``CONFIG_SCHEMA``: a voluptuous schema for its section (build it with ``validation.plugin_schema``);
- ``exposures(config) -> list[Exposure]``: pure; what it will open, before anything opens;
- ``rules() -> list[Rule]`` (optional): policy rules only this plugin knows;
- ``async_setup(gw, config) -> PluginInstance``: starts it; the result has ``async stop()``.
- ``register_commands(sub)`` (optional): adds ``ampgate`` sub-commands, as ``gateway.commands`` modules do.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import voluptuous as vol

    from gateway.core import Gateway
    from gateway.security.exposure import Exposure
    from gateway.security.policy import Rule


@dataclass(frozen=True, slots=True, kw_only=True)
class Manifest:
    name: str
    title: str
    dependencies: tuple[str, ...] = ()  # must be enabled and set up first
    after: tuple[str, ...] = ()  # set up first when enabled too
    zeroconf: tuple[str, ...] = ()  # mDNS service types this plugin wants routed to it
    ssdp: tuple[str, ...] = ()  # SSDP search targets likewise
    needs_exposure: bool = True  # False for plugins that only compute (NET-004 leaves them alone)
    extra: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class PluginInstance(Protocol):
    async def stop(self) -> None: ...


@runtime_checkable
class PluginModule(Protocol):
    MANIFEST: Manifest
    CONFIG_SCHEMA: vol.Schema

    def exposures(self, config: dict[str, Any]) -> Sequence[Exposure]: ...

    def async_setup(self, gw: Gateway, config: dict[str, Any]) -> Awaitable[PluginInstance]: ...


RulesFactory = Callable[[], "Sequence[Rule]"]
