"""Load manager: from the site's fuse, limits and meter readings to a safe current for every charger.

Knows chargers only through the ``charger`` capability (entities ``charger.<id>``, sensors
``sensor.<id>_current_l1..3`` / ``_power``, service ``charger.set_current_limit``), never a protocol. The logic is
sans-IO (``allocator.py``, ``failsafe.py``, ``damper.py``, ``controller.py``); ``manager.py`` wires it to the
gateway; ``services.py`` holds ``loadmanager.set_site_limit`` / ``heartbeat`` / ``forget_source``;
``simulate.py`` adds ``ampgate simulate``. It opens no port and makes no connection. Policy: LOAD-001, LOAD-002.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from gateway.plugin import Manifest
from gateway.security.exposure import Exposure
from gateway.security.policy import Finding, PolicyInput, Rule, Severity

from .config import CONFIG_SCHEMA
from .const import DOMAIN, MAX_SAFE_METER_AGE_S

if TYPE_CHECKING:
    from gateway.core import Gateway

    from .manager import LoadManager

# The load manager opens nothing (NET-004 leaves it alone). It comes first: its services must exist when the
# plugins that call them start (the Modbus server's holding registers, SEMP, EEBUS), and it listens for the
# first readings. Those plugins declare after=("loadmanager",); declaring the reverse here would be a cycle.
MANIFEST = Manifest(name=DOMAIN, title="Load manager", needs_exposure=False)

def exposures(config: dict[str, Any]) -> list[Exposure]:
    return []  # it computes; every byte it moves goes through other plugins' services


# -- policy ---------------------------------------------------------------------------------------------------


def _enabled(data: PolicyInput) -> dict[str, Any] | None:
    conf = data.config.plugins.get(DOMAIN)
    return conf if conf and conf.get("enabled") else None


def check_meter_age(data: PolicyInput) -> Iterator[Finding]:
    conf = _enabled(data)
    if conf is None:
        return
    age = conf["grid_meter"]["max_age"]
    if age > MAX_SAFE_METER_AGE_S:
        yield Finding(rule_id="LOAD-001", plugin=DOMAIN, config_path=(DOMAIN, "grid_meter", "max_age"),
                      actual=f"{age:g} s",
                      message=f"the load manager trusts grid readings up to {age:g} s old",
                      fix=f"set grid_meter.max_age to {MAX_SAFE_METER_AGE_S:g}s or less and poll the meter faster")


def check_margin(data: PolicyInput) -> Iterator[Finding]:
    conf = _enabled(data)
    if conf is None:
        return
    if conf["margin_a"] < 0.5:
        yield Finding(rule_id="LOAD-002", plugin=DOMAIN, config_path=(DOMAIN, "margin_a"),
                      actual=f"{conf['margin_a']:g} A", message="no safety margin under the main fuse",
                      fix="set margin_a: 1")


def rules() -> list[Rule]:
    return [
        Rule(id="LOAD-001", title="Grid meter readings trusted for too long", severity=Severity.REFUSE,
             recommended=f"grid_meter.max_age {MAX_SAFE_METER_AGE_S:g} s or less",
             why="the load manager steers blind while readings are old: a new load can overload the main fuse "
                 "before the failsafe starts", check=check_meter_age, plugin=DOMAIN),
        Rule(id="LOAD-002", title="No safety margin under the main fuse", severity=Severity.WARN,
             recommended="margin_a 1 A or more",
             why="readings are seconds old and cars need up to 5 s to follow a lower current; without a margin "
                 "the fuse runs at its rating during every change", check=check_margin, plugin=DOMAIN),
    ]


__all__ = ["CONFIG_SCHEMA", "MANIFEST", "async_setup", "exposures", "register_commands", "rules"]


async def async_setup(gw: Gateway, config: dict[str, Any]) -> LoadManager:
    from .manager import LoadManager

    manager = LoadManager(gw, config)
    await manager.async_start()
    return manager


def register_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``ampgate simulate SCENARIO.yaml [--plot out.png]``."""
    from .simulate import register

    register(sub)
