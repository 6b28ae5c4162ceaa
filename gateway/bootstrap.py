"""From a config file to a checked plan: what ``run``, ``check`` and ``ports`` share.

``prepare()`` loads the YAML, discovers plugins (third-party ones only when allowed), validates the core
and every enabled plugin section, collects every exposure and evaluates the policy. It opens nothing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import voluptuous as vol

from gateway.config import CORE_SCHEMA, CORE_SECTION, Config, load_raw, validate
from gateway.errors import ConfigError, PluginError
from gateway.loader import Registry, discover, setup_order
from gateway.security.exposure import Exposure
from gateway.security.netaddr import HostInfo
from gateway.security.policy import PolicyInput, Report, Rule, catalogue, evaluate
from gateway.security.rules import CORE_RULES


@dataclass(slots=True)
class Plan:
    config: Config
    registry: Registry
    order: list[str]
    exposures: list[Exposure]
    rules: dict[str, Rule]
    report: Report


def all_rules(registry: Registry) -> dict[str, Rule]:
    sets: list[Sequence[Rule]] = [CORE_RULES]
    for spec in registry.plugins.values():
        rules = getattr(spec.module, "rules", None)
        if rules is not None:
            sets.append(rules())
    return catalogue(sets)


def _allowed_plugins(raw: object) -> list[str]:
    core = raw.get(CORE_SECTION) if isinstance(raw, dict) else None
    try:
        return list(CORE_SCHEMA(core or {})["allow_plugins"])
    except vol.Invalid:
        return []  # validate() reports it with its line


def prepare(
    config_path: Path | str,
    *,
    data_dir: Path | None = None,
    host: HostInfo | None = None,
    today: dt.date | None = None,
    registry: Registry | None = None,
) -> Plan:
    raw = load_raw(config_path)
    registry = registry or discover(_allowed_plugins(raw))
    config = validate(raw, registry.schemas(), Path(config_path), blocked=registry.not_allowed)
    manifests = {name: spec.manifest for name, spec in registry.plugins.items()}
    enabled = config.enabled()
    try:
        order = setup_order(enabled, manifests)
    except PluginError as err:
        raise ConfigError([f"{config.path.name}: {err}"]) from None

    exposures: list[Exposure] = []
    errors: list[str] = []
    for name in order:
        try:
            exposures.extend(registry.plugins[name].module.exposures(config.plugins[name]))
        except (ValueError, KeyError, vol.Invalid) as err:
            errors.append(f"{config.where(name)}: {name}: {err}")
    if errors:
        raise ConfigError(errors)

    dependents: dict[str, set[str]] = {}
    for name in enabled:
        for dep in (*manifests[name].dependencies, *manifests[name].after):
            dependents.setdefault(dep, set()).add(name)
    rules = all_rules(registry)
    data = PolicyInput(
        config=config,
        exposures=exposures,
        host=host or HostInfo.read(),
        today=today or dt.date.today(),
        data_dir=data_dir,
        blocked_plugins=registry.not_allowed,
        dependents=dependents,
        silent_plugins={n for n, m in manifests.items() if not m.needs_exposure},
    )
    return Plan(config, registry, order, exposures, rules, evaluate(rules, data))
