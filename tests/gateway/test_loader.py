from __future__ import annotations

import logging
from types import ModuleType
from typing import Any

import pytest

from gateway.errors import PluginError
from gateway.loader import PluginRunner, check_module, discover, setup_order
from gateway.plugin import Manifest
from tests.gateway import fakeplugins
from tests.gateway.fakeplugins import _common


@pytest.fixture(autouse=True)
def _reset() -> None:
    _common.STARTED.clear()
    _common.STOPPED.clear()


def manifests(**deps: tuple[tuple[str, ...], tuple[str, ...]]) -> dict[str, Manifest]:
    return {n: Manifest(name=n, title=n, dependencies=d, after=a) for n, (d, a) in deps.items()}


def test_discover_finds_the_packages_of_a_plugin_package() -> None:
    registry = discover(package=fakeplugins)
    assert sorted(registry.plugins) == ["alpha", "beta", "broken", "exposer", "hangs", "needs_broken"]


def test_order_puts_dependencies_and_after_first() -> None:
    m = manifests(a=((), ()), b=(("a",), ()), c=((), ("b", "zzz")), d=(("c",), ()))
    assert setup_order(["d", "c", "b", "a"], m) == ["a", "b", "c", "d"]
    # "after" only matters when the other plugin is enabled
    assert setup_order(["c"], m) == ["c"]


def test_missing_dependency_is_an_error() -> None:
    with pytest.raises(PluginError, match="plugin b needs plugin a: enable 'a' too"):
        setup_order(["b"], manifests(a=((), ()), b=(("a",), ())))


def test_cycle_is_named() -> None:
    m = manifests(a=(("c",), ()), b=(("a",), ()), c=((), ("b",)))
    with pytest.raises(PluginError, match=r"cycle: a -> c -> b -> a"):
        setup_order(["a", "b", "c"], m)


def test_module_without_the_contract_is_refused() -> None:
    module = ModuleType("x")
    with pytest.raises(PluginError, match="lacks MANIFEST, CONFIG_SCHEMA, exposures, async_setup"):
        check_module(module, "x")
    module.MANIFEST = Manifest(name="y", title="y")  # type: ignore[attr-defined]
    module.CONFIG_SCHEMA = module.exposures = module.async_setup = None  # type: ignore[attr-defined]
    with pytest.raises(PluginError, match="MANIFEST.name is 'y'"):
        check_module(module, "x")


async def test_failed_plugin_is_reported_and_only_its_dependents_skipped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = discover(package=fakeplugins)
    names = ["alpha", "beta", "broken", "needs_broken"]
    order = setup_order(names, {n: registry.plugins[n].manifest for n in names})
    runner = PluginRunner(gw=None, registry=registry)  # type: ignore[arg-type]
    configs: dict[str, Any] = {n: {"enabled": True} for n in names}
    with caplog.at_level(logging.ERROR):
        await runner.async_setup_all(order, configs)
    assert _common.STARTED == ["alpha", "beta"]
    assert "plugin broken failed to set up" in caplog.text and "cannot reach the device" in caplog.text
    assert runner.failed["needs_broken"] == "dependency broken failed"
    await runner.async_stop_all()
    assert _common.STOPPED == ["beta", "alpha"], "stopped in reverse order"


async def test_a_hanging_stop_does_not_hold_up_the_others(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("gateway.loader.STOP_TIMEOUT_S", 0.1)
    registry = discover(package=fakeplugins)
    runner = PluginRunner(gw=None, registry=registry)  # type: ignore[arg-type]
    await runner.async_setup_all(["alpha", "hangs"], {"alpha": {}, "hangs": {}})
    await runner.async_stop_all()
    assert _common.STOPPED == ["alpha"]
