"""Home Assistant MQTT discovery: one retained config message per entity. Pure; no I/O.

Home Assistant reads ``<discovery prefix>/<component>/<node_id>/<object_id>/config`` (HA docs "MQTT
Discovery"; node and object ids only ``[a-zA-Z0-9_-]``, HA's ``TOPIC_MATCHER``). An empty retained payload
on the same topic deletes the entity. We use per-entity discovery (supported by every HA release with MQTT
discovery) rather than the newer device-based form (protocols/mqtt.md §6).

Contract: ``config_topic`` is a function of the discovery prefix, the node id and the entity id alone, so the
removal of an entity always hits the topic its config was published on; ``config_payload`` never raises for
any ``State``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .const import MANUFACTURER, PAYLOAD_OFFLINE, PAYLOAD_ONLINE
from .topics import Topics

# Units Home Assistant's sensor platform knows, with the device class and state class that make the entity
# usable in the energy dashboard and long-term statistics (HA developer docs, "Sensor entity": device
# classes and their units; state classes). Energy counters only grow, but a session counter restarts at 0:
# total_increasing treats a decrease as a reset, which is what both do.
UNIT_CLASSES: Mapping[str, tuple[str | None, str]] = {
    "W": ("power", "measurement"),
    "kW": ("power", "measurement"),
    "Wh": ("energy", "total_increasing"),
    "kWh": ("energy", "total_increasing"),
    "MWh": ("energy", "total_increasing"),
    "A": ("current", "measurement"),
    "mA": ("current", "measurement"),
    "V": ("voltage", "measurement"),
    "Hz": ("frequency", "measurement"),
    "VA": ("apparent_power", "measurement"),
    "var": ("reactive_power", "measurement"),
    "°C": ("temperature", "measurement"),
    "%": (None, "measurement"),  # battery only for a state of charge, see classes_for()
}
SOC_WORDS = frozenset({"soc", "battery"})  # whole words of the object id; "state_of_charge" is matched as text

# Our entity domain -> HA component. Everything that is not a yes/no is a sensor: commands reach the gateway
# through <prefix>/cmd topics, which HA entities (number, button) can target with their own command_topic
# configured by hand; discovery describes what we publish.
COMPONENTS: Mapping[str, str] = {"binary_sensor": "binary_sensor"}
DEFAULT_COMPONENT = "sensor"


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceInfo:
    """The gateway as one HA device; every entity points at it."""

    node_id: str  # [a-zA-Z0-9_-]
    name: str
    sw_version: str
    model: str = "Ampgate gateway"

    def as_dict(self) -> dict[str, Any]:
        return {
            "identifiers": [f"ampgate_{self.node_id}"],
            "name": self.name,
            "manufacturer": MANUFACTURER,
            "model": self.model,
            "sw_version": self.sw_version,
        }


def component_for(entity_id: str) -> str:
    return COMPONENTS.get(entity_id.split(".", 1)[0], DEFAULT_COMPONENT)


def object_id_for(entity_id: str) -> str:
    return entity_id.replace(".", "_")


def config_topic(discovery_prefix: str, node_id: str, entity_id: str) -> str:
    return f"{discovery_prefix}/{component_for(entity_id)}/{node_id}/{object_id_for(entity_id)}/config"


def classes_for(entity_id: str, unit: str | None) -> tuple[str | None, str | None]:
    """``(device_class, state_class)`` from the unit; a ``%`` is a battery only for a state of charge."""
    if not unit or unit not in UNIT_CLASSES:
        return None, None
    device_class, state_class = UNIT_CLASSES[unit]
    if unit == "%":
        object_id = entity_id.split(".", 1)[-1]
        if set(object_id.split("_")) & SOC_WORDS or "state_of_charge" in object_id:
            device_class = "battery"
    return device_class, state_class


def _name(entity_id: str, attributes: Mapping[str, Any]) -> str:
    friendly = attributes.get("friendly_name")
    if isinstance(friendly, str) and friendly.strip():
        return friendly.strip()[:255]
    return entity_id.split(".", 1)[-1].replace("_", " ")


def config_payload(entity_id: str, unit: str | None, attributes: Mapping[str, Any], *, topics: Topics,
                   device: DeviceInfo) -> dict[str, Any]:
    object_id = object_id_for(entity_id)
    component = component_for(entity_id)
    payload: dict[str, Any] = {
        "name": _name(entity_id, attributes),
        "unique_id": f"ampgate_{device.node_id}_{object_id}",
        # HA 2025.10 replaced object_id with default_entity_id (protocols/mqtt.md §6).
        "default_entity_id": f"{component}.{device.node_id.replace('-', '_')}_{object_id}".lower(),
        "state_topic": topics.state(entity_id),
        "json_attributes_topic": topics.attributes(entity_id),
        # Our attributes message wraps the entity's attributes next to its unit; HA should see the inner ones.
        "json_attributes_template": "{{ value_json.attributes | tojson }}",
        "availability_topic": topics.status,
        "payload_available": PAYLOAD_ONLINE,
        "payload_not_available": PAYLOAD_OFFLINE,
        "device": device.as_dict(),
        "origin": {"name": MANUFACTURER, "sw_version": device.sw_version},
    }
    if component == "binary_sensor":
        # codec.encode_value writes booleans as JSON: true / false.
        payload["payload_on"] = "true"
        payload["payload_off"] = "false"
        return payload
    if unit:
        payload["unit_of_measurement"] = unit
    device_class, state_class = classes_for(entity_id, unit)
    if device_class:
        payload["device_class"] = device_class
    if state_class:
        payload["state_class"] = state_class
    return payload
