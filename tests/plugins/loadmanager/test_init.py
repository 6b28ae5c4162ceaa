"""Config schema, exposures, plugin order and the LOAD policy rules: the unsafe variant refused or warned, the
safe one passes, the accepted variant passes where the rule may be accepted."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.errors import ConfigError
from gateway.loader import discover, setup_order
from gateway.security.policy import Status
from plugins import loadmanager
from tests.helpers import plan_for

BASE = """
loadmanager:
  enabled: true
  fuse_a: {fuse}
  grid_meter:
    current_l1: sensor.grid_current_l1
    current_l2: sensor.grid_current_l2
    current_l3: sensor.grid_current_l3
{meter_extra}
{extra}
"""


def config(fuse: str = "35", meter_extra: str = "    power: sensor.grid_power", extra: str = "") -> str:
    return BASE.format(fuse=fuse, meter_extra=meter_extra, extra=extra)


def statuses(tmp_path: Path, text: str, rule: str) -> list[Status]:
    return [r.status for r in plan_for(tmp_path, text).report.rows if r.rule.id == rule]


def test_defaults_and_normalisation(tmp_path: Path) -> None:
    plan = plan_for(tmp_path, config(fuse="[35, 35, 25]", extra="""
  chargers:
    cp01: {phases: 1, rotation: l2, max_current_a: 32}
"""))
    conf = plan.config.plugins["loadmanager"]
    assert conf["fuse_a"] == [35.0, 35.0, 25.0]
    assert conf["margin_a"] == 1.0 and conf["voltage"] == 230.0
    assert conf["grid_meter"]["max_age"] == 10.0
    assert conf["failsafe"] == {"limit_w": 4200.0, "min_duration": 7200.0, "release_after_minimum": False}
    assert conf["chargers"]["cp01"]["rotation"] == "L2" and conf["chargers"]["cp01"]["priority"] == 0
    assert plan.exposures == []
    assert not plan.report.rows  # opens nothing, and NET-004 knows it needs nothing


@pytest.mark.parametrize(("extra", "meter_extra", "fuse", "message"), [
    ("", "", "[35, 35]", "three"),
    ("", "", "0", "1 to 4000"),
    ("  import_limit_w: 20000", "", "35", "import_limit_w needs the grid meter's power"),
    ("  default_mode: pv", "", "35", "PV modes need"),
    ("  failsafe: {limit_w: 3000}", "    power: sensor.grid_power", "35", "below the guaranteed minimum"),
    ("  failsafe: {min_duration: 1h}", "    power: sensor.grid_power", "35", "between 7200 s and 86400 s"),
    ("  chargers: {cp01: {rotation: L4}}", "", "35", "phase rotation"),
    ("  chargers: {cp01: {min_current_a: 16, max_current_a: 10}}", "", "35", "swap them"),
    ("  chargers: {CP-01: {}}", "", "35", "charger id"),
    ("  chargers: {cp01: {mode: turbo}}", "", "35", "expected one of"),
])
def test_invalid_configs_say_what_to_write(tmp_path: Path, extra: str, meter_extra: str, fuse: str,
                                           message: str) -> None:
    with pytest.raises(ConfigError) as err:
        plan_for(tmp_path, config(fuse=fuse, meter_extra=meter_extra, extra=extra))
    assert message in str(err.value)


def test_grid_meter_is_required(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        plan_for(tmp_path, "loadmanager:\n  enabled: true\n  fuse_a: 35\n")
    assert "grid_meter" in str(err.value)


def test_pv_with_a_surplus_entity_needs_no_grid_power(tmp_path: Path) -> None:
    plan = plan_for(tmp_path, config(meter_extra="", extra="  default_mode: pv\n  pv: {surplus: sensor.surplus}"))
    assert plan.config.plugins["loadmanager"]["pv"] == {"surplus": "sensor.surplus"}


def test_load_001_meter_age_refused_then_accepted(tmp_path: Path) -> None:
    old = config(meter_extra="    max_age: 2m")
    assert statuses(tmp_path, old, "LOAD-001") == [Status.REFUSED]
    accepted = old + """
gateway:
  accept_risk:
    - rule: LOAD-001
      reason: "the meter is polled once a minute and the site has a 63 A fuse for 20 A of load"
"""
    assert statuses(tmp_path, accepted, "LOAD-001") == [Status.ACCEPTED]
    assert statuses(tmp_path, config(meter_extra="    max_age: 60s"), "LOAD-001") == []


def test_load_002_no_margin_warned(tmp_path: Path) -> None:
    assert statuses(tmp_path, config(extra="  margin_a: 0"), "LOAD-002") == [Status.WARNING]
    assert statuses(tmp_path, config(extra="  margin_a: 0.5"), "LOAD-002") == []


def test_disabled_plugin_is_not_checked(tmp_path: Path) -> None:
    plan = plan_for(tmp_path, "loadmanager:\n  enabled: false\n")
    assert not [r for r in plan.report.rows if r.rule.id.startswith("LOAD")]


def test_order_with_the_plugins_that_call_it() -> None:
    """OCPP and Modbus set up after the load manager; it declares nothing back (that would be a cycle)."""
    manifests = {name: spec.manifest for name, spec in discover().plugins.items()}
    enabled = [n for n in ("loadmanager", "ocpp", "modbus") if n in manifests]
    order = setup_order(enabled, manifests)
    assert order[0] == "loadmanager"
    assert loadmanager.MANIFEST.needs_exposure is False
