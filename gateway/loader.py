"""Finds plugins, orders them, sets them up, stops them in reverse order.

Contract:
- Built-in plugins are the sub-packages of ``plugins``. Third-party plugins come from the
  ``ampgate.plugins`` entry-point group and are *not even imported* unless named in
  ``gateway.allow_plugins`` (policy: PLUG-001): importing a module runs its code.
- A module that lacks part of the ``PluginModule`` contract, or a name used twice, fails loudly.
- Order: ``dependencies`` must be enabled and come first; ``after`` comes first when enabled. A cycle is
  an error naming the cycle.
- One plugin failing set-up is logged with its name; the plugins that depend on it are not started;
  every other plugin still starts.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.metadata
import logging
import pkgutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any, cast

import plugins as builtin_plugins
from gateway.errors import DuplicateRegistration, PluginError
from gateway.plugin import Manifest, PluginInstance, PluginModule

if TYPE_CHECKING:
    from gateway.core import Gateway

_LOGGER = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "ampgate.plugins"
REQUIRED_ATTRS = ("MANIFEST", "CONFIG_SCHEMA", "exposures", "async_setup")
# A plugin's stop() gets this long before we move on to the next: the whole shutdown must stay under 5 s.
STOP_TIMEOUT_S = 2.0


@dataclass(slots=True)
class PluginSpec:
    name: str
    module: PluginModule
    manifest: Manifest
    third_party: bool = False


@dataclass(slots=True)
class Registry:
    """What the loader found: importable plugins, and third-party names it did not import."""

    plugins: dict[str, PluginSpec] = field(default_factory=dict)
    not_allowed: dict[str, str] = field(default_factory=dict)  # entry-point name -> "module:attr"

    def schemas(self) -> dict[str, Any]:
        return {name: spec.module.CONFIG_SCHEMA for name, spec in self.plugins.items()}


def check_module(module: ModuleType, name: str) -> PluginModule:
    missing = [attr for attr in REQUIRED_ATTRS if not hasattr(module, attr)]
    if missing:
        raise PluginError(f"plugin {name} ({module.__name__}) lacks {', '.join(missing)}")
    manifest = module.MANIFEST
    if not isinstance(manifest, Manifest):
        raise PluginError(f"plugin {name}: MANIFEST must be a gateway.plugin.Manifest")
    if manifest.name != name:
        raise PluginError(f"plugin {name}: MANIFEST.name is {manifest.name!r}")
    return cast(PluginModule, module)


def discover(allow: Iterable[str] = (), *, package: ModuleType = builtin_plugins) -> Registry:
    registry = Registry()
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        if not info.ispkg or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        spec = check_module(module, info.name)
        registry.plugins[info.name] = PluginSpec(info.name, spec, spec.MANIFEST)
    allowed = set(allow)
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in registry.plugins:
            raise DuplicateRegistration(f"plugin {ep.name} from {ep.value} clashes with a built-in plugin")
        if ep.name not in allowed:
            registry.not_allowed[ep.name] = ep.value
            continue
        spec = check_module(ep.load(), ep.name)
        registry.plugins[ep.name] = PluginSpec(ep.name, spec, spec.MANIFEST, third_party=True)
    return registry


def setup_order(enabled: Iterable[str], manifests: Mapping[str, Manifest]) -> list[str]:
    """Topological order of the enabled plugins; raises ``PluginError`` on a missing dependency or a cycle."""
    wanted = sorted(set(enabled))
    for name in wanted:
        for dep in manifests[name].dependencies:
            if dep not in wanted:
                raise PluginError(f"plugin {name} needs plugin {dep}: enable '{dep}' too")
    order: list[str] = []
    state: dict[str, str] = {}  # "visiting" | "done"

    def visit(name: str, chain: list[str]) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "visiting":
            cycle = [*chain[chain.index(name):], name]
            raise PluginError(f"plugin dependency cycle: {' -> '.join(cycle)}")
        state[name] = "visiting"
        manifest = manifests[name]
        for dep in sorted({*manifest.dependencies, *(a for a in manifest.after if a in wanted)}):
            visit(dep, [*chain, name])
        state[name] = "done"
        order.append(name)

    for name in wanted:
        visit(name, [])
    return order


@dataclass(slots=True)
class Running:
    name: str
    instance: PluginInstance


class PluginRunner:
    """Sets plugins up in order and stops them in reverse."""

    def __init__(self, gw: Gateway, registry: Registry) -> None:
        self._gw = gw
        self._registry = registry
        self.running: list[Running] = []
        self.failed: dict[str, str] = {}

    async def async_setup_all(self, order: list[str], configs: Mapping[str, dict[str, Any]]) -> None:
        for name in order:
            spec = self._registry.plugins[name]
            broken = [d for d in spec.manifest.dependencies if d in self.failed]
            if broken:
                self.failed[name] = f"dependency {', '.join(broken)} failed"
                _LOGGER.error("plugin %s not started: dependency %s failed", name, ", ".join(broken))
                continue
            try:
                instance = await spec.module.async_setup(self._gw, configs[name])
            except Exception as err:
                self.failed[name] = f"{type(err).__name__}: {err}"
                _LOGGER.exception("plugin %s failed to set up", name)
                continue
            if not isinstance(instance, PluginInstance):
                self.failed[name] = "async_setup() returned an object without async stop()"
                _LOGGER.error("plugin %s: async_setup() returned an object without async stop()", name)
                continue
            self.running.append(Running(name, instance))
            _LOGGER.info("plugin %s started", name)

    async def async_stop_all(self) -> None:
        while self.running:
            running = self.running.pop()
            try:
                async with asyncio.timeout(STOP_TIMEOUT_S):
                    await running.instance.stop()
            except TimeoutError:
                _LOGGER.error("plugin %s did not stop within %.0f s", running.name, STOP_TIMEOUT_S)
            except Exception:
                _LOGGER.exception("plugin %s failed to stop", running.name)
            else:
                _LOGGER.info("plugin %s stopped", running.name)
