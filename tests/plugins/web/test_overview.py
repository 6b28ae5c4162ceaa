"""Power flow and charger views from states alone; service forms from voluptuous schemas."""

from __future__ import annotations

import voluptuous as vol

from gateway.states import State
from plugins.web.fields import form_value, service_fields
from plugins.web.overview import chargers, power_flow


def states() -> list[State]:
    return [State("sensor.grid_power", 1200.0, "W"), State("sensor.pv_roof_power", 3000.0, "W"),
            State("sensor.pv_garage_power", "unavailable", "W"), State("charger.cp1", "Charging", None,
                                                                        {"limit_a": 16}),
            State("sensor.cp1_power", 4000.0, "W"), State("sensor.cp1_energy", 10.0, "Wh"),
            State("charger.cp2", "Available"), State("sensor.cp10_power", 1.0, "W")]


def test_power_flow_by_naming_convention() -> None:
    flow = power_flow(states())
    assert flow.grid_w == 1200.0 and flow.pv_w == 3000.0 and flow.chargers_w == 4000.0
    assert flow.home_w == 200.0
    assert flow.pv_entities == ("sensor.pv_garage_power", "sensor.pv_roof_power")
    assert flow.charger_entities == ("sensor.cp1_power", "sensor.cp2_power")


def test_missing_meter_is_none_not_zero() -> None:
    flow = power_flow([State("charger.cp1", "Available")])
    assert flow.grid_w is None and flow.pv_w is None and flow.chargers_w is None and flow.home_w is None


def test_configured_entities() -> None:
    flow = power_flow(states(), grid_entity="sensor.cp10_power", pv_entities=["sensor.cp1_energy"])
    assert flow.grid_w == 1.0 and flow.pv_w == 10.0


def test_chargers_group_their_sensors() -> None:
    [cp1, cp2] = chargers(states())
    assert cp1.id == "cp1" and cp1.power_w == 4000.0 and cp1.attributes["limit_a"] == 16
    assert [s.entity_id for s in cp1.sensors] == ["sensor.cp1_energy", "sensor.cp1_power"]  # not cp10
    assert cp2.power_w is None and cp2.sensors == ()


def test_service_fields_and_form_values() -> None:
    schema = vol.Schema({vol.Required("charger"): str, vol.Required("limit_a"): vol.All(vol.Coerce(float),
                                                                                         vol.Range(min=0)),
                         vol.Optional("hard", default=False): bool, vol.Optional("connector"): int,
                         vol.Optional("mode", default="fast"): vol.In(["fast", "eco"])})
    fields = {f.name: f for f in service_fields(schema)}
    assert (fields["limit_a"].type, fields["limit_a"].required) == ("number", True)
    assert (fields["hard"].type, fields["hard"].default) == ("boolean", False)
    assert fields["connector"].type == "integer" and fields["mode"].choices == ("fast", "eco")
    assert form_value(fields["limit_a"], "10.5") == (True, 10.5)
    assert form_value(fields["connector"], "") == (False, None)
    assert form_value(fields["hard"], None) == (True, False)
    assert form_value(fields["connector"], "x") == (True, "x")  # the service schema refuses it
