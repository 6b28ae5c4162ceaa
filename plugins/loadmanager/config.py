"""Configuration of the load manager: the site, the grid meter, the failsafe and per-charger overrides.

Each validator coerces or raises ``vol.Invalid`` saying what to write instead (gateway.config.validation).
``ampgate simulate`` reuses the same validators for its scenario files.
"""

from __future__ import annotations

import re
from typing import Any

import voluptuous as vol

from gateway.config import validation as cv

from .const import (
    DEFAULT_FAILSAFE_LIMIT_W,
    DEFAULT_FAILSAFE_MIN_DURATION_S,
    DEFAULT_MARGIN_A,
    DEFAULT_MARGIN_W,
    DEFAULT_METER_MAX_AGE_S,
    DEFAULT_MIN_RUN_S,
    DEFAULT_VOLTAGE_V,
    FAILSAFE_MIN_DURATION_RANGE_S,
    MAX_CURRENT_A,
    MIN_EXTERNAL_LIMIT_W,
)
from .model import Mode, parse_rotation

_ID = re.compile(r"^[a-z0-9_]+$")
_ENTITY = re.compile(r"^[a-z0-9_]+\.[a-z0-9_]+$")
MODES = tuple(m.value for m in Mode)


def _entity(value: Any) -> str:
    text = str(value)
    if not _ENTITY.match(text):
        raise cv.invalid("expected an entity id", value, "write for example sensor.grid_current_l1")
    return text


def _charger_id(value: Any) -> str:
    text = str(value)
    if not _ID.match(text):
        raise cv.invalid("expected a charger id (the part after charger.)", value,
                         "write the id of entity charger.<id>, e.g. cp01")
    return text


def _number(low: float, high: float, unit: str) -> Any:
    def validate(value: Any) -> float:
        if isinstance(value, bool):
            raise cv.invalid(f"expected a number in {unit}", value, f"write a number between {low:g} and {high:g}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise cv.invalid(f"expected a number in {unit}", value,
                             f"write a number between {low:g} and {high:g}") from None
        if not low <= number <= high:
            raise cv.invalid(f"expected {low:g} to {high:g} {unit}", value,
                             f"write a number between {low:g} and {high:g}")
        return number

    return validate


def _fuse(value: Any) -> list[float]:
    """One rating for all three phases, or a list of three (a site may have one weaker phase)."""
    amps = _number(1, 4000, "A")
    if isinstance(value, list):
        if len(value) != 3:
            raise cv.invalid("expected one fuse rating or three (L1, L2, L3)", value, "write 35 or [35, 35, 25]")
        return [amps(v) for v in value]
    rating = amps(value)
    return [rating, rating, rating]


def _rotation(value: Any) -> str:
    text = str(value).upper()
    try:
        parse_rotation(text, 3)
    except ValueError as err:
        raise cv.invalid("expected a phase rotation", value, str(err).split(": ", 1)[-1]) from None
    return text


def _positive_duration(value: Any) -> float:
    seconds = cv.duration(value)
    if seconds <= 0:
        raise cv.invalid("expected a duration above zero", value, "write for example 10s")
    return seconds


_CURRENT = _number(0.1, MAX_CURRENT_A, "A")

CHARGER_SCHEMA = vol.Schema({
    vol.Optional("phases"): vol.All(vol.Coerce(int), vol.In([1, 3], msg="expected 1 or 3")),
    vol.Optional("rotation"): _rotation,
    vol.Optional("min_current_a"): _CURRENT,
    vol.Optional("max_current_a"): _CURRENT,
    vol.Optional("priority", default=0): vol.All(vol.Coerce(int), vol.Range(min=-100, max=100)),
    vol.Optional("mode"): cv.one_of(*MODES),
})

GRID_METER_SCHEMA = vol.Schema({
    vol.Required("current_l1"): _entity,
    vol.Required("current_l2"): _entity,
    vol.Required("current_l3"): _entity,
    vol.Optional("power"): _entity,  # signed W, import positive: needed for PV modes and import_limit_w
    vol.Optional("max_age", default=DEFAULT_METER_MAX_AGE_S): _positive_duration,
})

FAILSAFE_SCHEMA = vol.Schema({
    vol.Optional("limit_w", default=DEFAULT_FAILSAFE_LIMIT_W): _number(0, 1e7, "W"),
    vol.Optional("min_duration", default=DEFAULT_FAILSAFE_MIN_DURATION_S): cv.duration_between(
        *FAILSAFE_MIN_DURATION_RANGE_S),
    vol.Optional("release_after_minimum", default=False): cv.boolean,
})


def _check(conf: dict[str, Any]) -> dict[str, Any]:
    meter = conf["grid_meter"]
    modes = {conf["default_mode"], *(c.get("mode", conf["default_mode"]) for c in conf["chargers"].values())}
    if conf.get("import_limit_w") is not None and "power" not in meter:
        raise vol.Invalid(f"import_limit_w needs the grid meter's power{cv.FIX}set grid_meter.power: "
                          "sensor.grid_power", path=["grid_meter"])
    if modes & {Mode.PV.value, Mode.MIN_PV.value} and "power" not in meter and "surplus" not in conf["pv"]:
        raise vol.Invalid(f"PV modes need the grid meter's power or a surplus entity{cv.FIX}set "
                          "grid_meter.power or pv.surplus", path=["grid_meter"])
    failsafe = conf["failsafe"]
    if failsafe["limit_w"] < conf["min_external_limit_w"]:
        raise vol.Invalid(f"failsafe limit {failsafe['limit_w']:g} W is below the guaranteed minimum "
                          f"{conf['min_external_limit_w']:g} W{cv.FIX}raise failsafe.limit_w, or lower "
                          "min_external_limit_w where §14a EnWG does not apply", path=["failsafe", "limit_w"])
    for cid, charger in conf["chargers"].items():
        low, high = charger.get("min_current_a"), charger.get("max_current_a")
        if low is not None and high is not None and low > high:
            raise vol.Invalid(f"min_current_a above max_current_a{cv.FIX}swap them",
                              path=["chargers", cid, "min_current_a"])
    return conf


CONFIG_SCHEMA = vol.Schema(vol.All(cv.plugin_schema({
    vol.Required("fuse_a"): _fuse,
    vol.Optional("margin_a", default=DEFAULT_MARGIN_A): _number(0, 100, "A"),
    vol.Optional("voltage", default=DEFAULT_VOLTAGE_V): _number(100, 400, "V"),
    vol.Optional("import_limit_w"): _number(100, 1e7, "W"),
    vol.Optional("margin_w", default=DEFAULT_MARGIN_W): _number(0, 1e6, "W"),
    vol.Required("grid_meter"): GRID_METER_SCHEMA,
    vol.Optional("pv", default={}): vol.Schema({vol.Optional("surplus"): _entity}),
    vol.Optional("failsafe", default={}): FAILSAFE_SCHEMA,
    vol.Optional("min_external_limit_w", default=MIN_EXTERNAL_LIMIT_W): _number(0, 1e7, "W"),
    vol.Optional("limit_sources", default=[]): cv.ensure_list(vol.All(str, vol.Length(min=1, max=128))),
    vol.Optional("min_run_time", default=DEFAULT_MIN_RUN_S): cv.duration,
    vol.Optional("default_mode", default=Mode.FAST.value): cv.one_of(*MODES),
    vol.Optional("default_priority", default=0): vol.All(vol.Coerce(int), vol.Range(min=-100, max=100)),
    vol.Optional("chargers", default={}): {_charger_id: CHARGER_SCHEMA},
}), _check))
