"""Configuration: one YAML file, validated by the core schema and each enabled plugin's schema.

``load_config(path, plugin_schemas)`` returns a ``Config`` or raises ``ConfigError`` listing every problem
(file:line: key: problem — fix). Nothing starts on a broken config.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import voluptuous as vol

from gateway.config import validation as cv
from gateway.config.errors import format_invalid, locate
from gateway.config.yaml_loader import Mark, NodeDict, YamlError, load_yaml
from gateway.errors import ConfigError

CORE_SECTION = "gateway"
LOG_LEVELS = ("debug", "info", "warning", "error")

_RULE_ID = re.compile(r"^[A-Z]+-\d{3}$")


def rule_id(value: Any) -> str:
    text = str(value).upper()
    if not _RULE_ID.match(text):
        raise cv.invalid("expected a rule id", value, "name a rule such as OCPP-005 (see `ampgate check`)")
    return text


def reason(value: Any) -> str:
    text = str(value or "").strip()
    if len(text) < 10:
        raise cv.invalid("expected a reason of at least 10 characters", value,
                         "say why this risk is acceptable on this site; it is written to the audit log")
    return text


def date(value: Any) -> dt.date:
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise cv.invalid("expected a date", value, "write YYYY-MM-DD") from None


ACCEPT_RISK_SCHEMA = vol.Schema(
    {
        vol.Required("rule"): rule_id,
        vol.Optional("plugin"): cv.string,
        vol.Required("reason"): reason,
        vol.Optional("expires"): date,
    }
)

CORE_SCHEMA = vol.Schema(
    {
        vol.Optional("name", default="ampgate"): cv.string,
        vol.Optional("data_dir"): cv.path,
        vol.Optional("log_level", default="info"): cv.one_of(*LOG_LEVELS),
        vol.Optional("accept_risk", default=[]): [ACCEPT_RISK_SCHEMA],
        vol.Optional("allow_plugins", default=[]): [cv.string],
        vol.Optional("diagnostics", default=False): cv.boolean,
    }
)


@dataclass(slots=True)
class Config:
    """A validated configuration. ``raw`` keeps the loaded YAML with its positions for later messages."""

    path: Path
    core: dict[str, Any]
    plugins: dict[str, dict[str, Any]]  # every plugin section present, validated if enabled
    raw: NodeDict = field(default_factory=NodeDict)

    def enabled(self) -> list[str]:
        return [name for name, conf in self.plugins.items() if conf.get("enabled")]

    def where(self, *path: str | int) -> Mark | None:
        """The file:line of a config key, for findings and errors."""
        return locate(self.raw, path)[0]


def load_raw(path: Path | str) -> NodeDict:
    """The YAML as loaded (with positions), before any schema; raises ``ConfigError``."""
    path = Path(path)
    try:
        raw = load_yaml(path)
    except YamlError as err:
        raise ConfigError([str(err)]) from None
    if raw is None:
        raw = NodeDict()
    if not isinstance(raw, NodeDict):
        raise ConfigError([f"{path.name}:1: the top level must be a mapping of sections"
                           f"{cv.FIX}start with 'gateway:' and one section per plugin"])
    return raw


def load_config(
    path: Path | str, plugin_schemas: Mapping[str, vol.Schema], blocked: Collection[str] = ()
) -> Config:
    return validate(load_raw(path), plugin_schemas, Path(path), blocked)


def validate(
    raw: NodeDict, plugin_schemas: Mapping[str, vol.Schema], path: Path, blocked: Collection[str] = ()
) -> Config:
    errors: list[str] = []
    core: dict[str, Any] = {}
    try:
        core = CORE_SCHEMA(raw.get(CORE_SECTION) or {})
    except vol.Invalid as err:
        errors += format_invalid(err, raw.get(CORE_SECTION), CORE_SCHEMA, [CORE_SECTION], raw.mark)

    plugins: dict[str, dict[str, Any]] = {}
    for section, body in raw.items():
        if section == CORE_SECTION or section in blocked:
            continue  # blocked third-party plugins are refused by policy (PLUG-001), not parsed
        mark = raw.key_marks.get(section)
        schema = plugin_schemas.get(section)
        if schema is None:
            near = difflib.get_close_matches(section, [*plugin_schemas, CORE_SECTION], n=1, cutoff=0.5)
            hint = f"did you mean '{near[0]}'?" if near else "remove it, or install the plugin"
            errors.append(f"{mark}: {section}: no plugin named '{section}'{cv.FIX}{hint} "
                          f"(plugins: {', '.join(sorted(plugin_schemas))})")
            continue
        body = body if body is not None else NodeDict()
        if not isinstance(body, dict):
            errors.append(f"{mark}: {section}: expected a mapping of settings{cv.FIX}write 'enabled: false' "
                          "and the plugin's keys, indented below it")
            continue
        try:
            enabled = cv.boolean(body.get("enabled", False))
        except vol.Invalid as err:
            errors += format_invalid(vol.Invalid(err.msg, path=["enabled"]), body, schema, [section], mark)
            continue
        if not enabled:
            plugins[section] = {"enabled": False}
            continue
        try:
            plugins[section] = schema(body)
        except vol.Invalid as err:
            errors += format_invalid(err, body, schema, [section], mark)
    if errors:
        raise ConfigError(errors)
    return Config(path=path, core=core, plugins=plugins, raw=raw)


def section_mark(config: Config, section: str, keys: Sequence[str | int] = ()) -> Mark | None:
    return config.where(section, *keys)
