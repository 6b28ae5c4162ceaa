"""plugins/mqtt/discovery.py: Home Assistant discovery topics and payloads."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plugins.mqtt.discovery import DeviceInfo, classes_for, config_payload, config_topic
from plugins.mqtt.topics import Topics

DEVICE = DeviceInfo(node_id="site1", name="Site 1", sw_version="0.1.0")
TOPICS = Topics("ampgate/site1")


@pytest.mark.parametrize(("entity_id", "unit", "expected"), [
    ("sensor.cp01_power", "W", ("power", "measurement")),
    ("sensor.pv_power", "kW", ("power", "measurement")),
    ("sensor.cp01_energy", "Wh", ("energy", "total_increasing")),
    ("sensor.grid_import", "kWh", ("energy", "total_increasing")),
    ("sensor.cp01_current_l1", "A", ("current", "measurement")),
    ("sensor.grid_voltage_l1", "V", ("voltage", "measurement")),
    ("sensor.grid_frequency", "Hz", ("frequency", "measurement")),
    ("sensor.battery_soc", "%", ("battery", "measurement")),
    ("sensor.ev_state_of_charge", "%", ("battery", "measurement")),
    ("sensor.pv_share", "%", (None, "measurement")),
    ("sensor.cp01_status", None, (None, None)),
    ("sensor.odd", "furlongs", (None, None)),
])
def test_classes_from_units(entity_id: str, unit: str | None, expected: tuple[str | None, str | None]) -> None:
    assert classes_for(entity_id, unit) == expected


def test_topic_depends_on_entity_id_only() -> None:
    assert config_topic("homeassistant", "site1", "sensor.cp01_power") == \
        "homeassistant/sensor/site1/sensor_cp01_power/config"
    assert config_topic("homeassistant", "site1", "binary_sensor.cp01_plugged") == \
        "homeassistant/binary_sensor/site1/binary_sensor_cp01_plugged/config"


def test_payload() -> None:
    payload = config_payload("sensor.cp01_power", "W", {"friendly_name": "CP01 power"}, topics=TOPICS, device=DEVICE)
    assert payload == {
        "name": "CP01 power",
        "unique_id": "ampgate_site1_sensor_cp01_power",
        "default_entity_id": "sensor.site1_sensor_cp01_power",
        "state_topic": "ampgate/site1/sensor.cp01_power/state",
        "json_attributes_topic": "ampgate/site1/sensor.cp01_power/attributes",
        "json_attributes_template": "{{ value_json.attributes | tojson }}",
        "availability_topic": "ampgate/site1/status",
        "payload_available": "online",
        "payload_not_available": "offline",
        "device": {"identifiers": ["ampgate_site1"], "name": "Site 1", "manufacturer": "Ampgate",
                   "model": "Ampgate gateway", "sw_version": "0.1.0"},
        "origin": {"name": "Ampgate", "sw_version": "0.1.0"},
        "unit_of_measurement": "W",
        "device_class": "power",
        "state_class": "measurement",
    }


@given(st.from_regex(r"[a-z0-9_]{1,10}\.[a-z0-9_]{1,20}", fullmatch=True), st.none() | st.text(max_size=8),
       st.dictionaries(st.text(max_size=10), st.none() | st.integers() | st.text(max_size=10), max_size=4))
def test_payload_never_raises(entity_id: str, unit: str | None, attributes: dict[str, Any]) -> None:
    """Contract: every valid entity id with any unit and attributes gets a payload with a unique id."""
    payload = config_payload(entity_id, unit, attributes, topics=TOPICS, device=DEVICE)
    assert payload["unique_id"].startswith("ampgate_site1_") and payload["name"]
