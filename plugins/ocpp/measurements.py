"""Meter values and connector statuses to the protocol-free charger vocabulary. No I/O.

Contract:
- ``parse_meter_values(meter_value, version)`` reads the ``meterValue`` list as the ``ocpp`` library hands it
  to a handler (snake_case keys) and returns one ``Readings`` with the newest value of each measurand:
  power (W), energy register (Wh), current and voltage per phase, SoC (%). It never raises: a sample it
  cannot read (not a number, unknown unit, infinite) is skipped.
- 1.6 ``value`` is a string, 2.0.1 a number with ``unitOfMeasure{unit, multiplier}`` (ocpp.md §2.4). Defaults
  per 1.6 §7.31: measurand ``Energy.Active.Import.Register``, location ``Outlet``, unit Wh for energy.
- Power: ``Power.Active.Import`` (sum of phases when only per-phase values came); otherwise the sum of the
  phase currents x the nominal voltage. Never derived from energy deltas (ocpp.md §2.4).
- ``STATUS_16``/``STATUS_201``/``CHARGING_STATE_201`` map wire statuses to the capability statuses;
  ``station_status`` folds the connectors into the one status of the ``charger.<id>`` entity.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from plugins.ocpp.const import (
    NOMINAL_VOLTAGE_V,
    STATUS_AVAILABLE,
    STATUS_CHARGING,
    STATUS_FAULTED,
    STATUS_FINISHING,
    STATUS_PREPARING,
    STATUS_RESERVED,
    STATUS_SUSPENDED_EV,
    STATUS_SUSPENDED_EVSE,
    STATUS_UNAVAILABLE,
    VERSION_16,
)

ENERGY_REGISTER: Final = "Energy.Active.Import.Register"
POWER: Final = "Power.Active.Import"
CURRENT: Final = "Current.Import"
VOLTAGE: Final = "Voltage"
SOC: Final = "SoC"
PHASES: Final = ("L1", "L2", "L3")
# Readings beyond these are garbage (a 1 GW station or a 1 TWh register does not exist on a site).
MAX_ABS_VALUE: Final = 1e12
# Measurement locations we read: the outlet (what the vehicle gets), the inlet (what the station draws),
# the EV (SoC). Body and Cable carry temperatures and are ignored.
LOCATIONS: Final = frozenset({"Outlet", "Inlet", "EV"})

# unit -> (quantity, factor to our unit). 1.6 §7.45 UnitOfMeasure; 2.0.1 Appendices "Standardized units".
UNITS: Final[dict[str, tuple[str, float]]] = {
    "Wh": ("energy", 1.0), "kWh": ("energy", 1000.0),
    "W": ("power", 1.0), "kW": ("power", 1000.0),
    "A": ("current", 1.0), "V": ("voltage", 1.0),
    "Percent": ("percent", 1.0),
}
DEFAULT_UNIT: Final = {ENERGY_REGISTER: "Wh", POWER: "W", CURRENT: "A", VOLTAGE: "V", SOC: "Percent"}
QUANTITY: Final = {ENERGY_REGISTER: "energy", POWER: "power", CURRENT: "current", VOLTAGE: "voltage",
                   SOC: "percent"}


@dataclass(slots=True)
class Readings:
    power_w: float | None = None
    energy_wh: float | None = None
    current_a: dict[str, float] = field(default_factory=dict)  # "L1".."L3"
    voltage_v: dict[str, float] = field(default_factory=dict)
    soc_pct: float | None = None
    timestamp: str | None = None  # of the newest meterValue

    def empty(self) -> bool:
        return (self.power_w is None and self.energy_wh is None and not self.current_a and not self.voltage_v
                and self.soc_pct is None)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(number) or abs(number) > MAX_ABS_VALUE:
        return None
    return number


def _phase(text: Any) -> str | None:
    # "L1", "L1-N", "L1-L2" -> "L1": the voltage of L1-L2 is a line voltage; we keep the first conductor.
    if not isinstance(text, str):
        return None
    head = text.split("-", 1)[0]
    return head if head in PHASES else None


def _text(value: Any, default: str) -> str | None:
    """A field that must be text: the default when absent, None (skip the sample) when not text."""
    if value is None or value == "":
        return default
    return value if isinstance(value, str) else None


def _sample_value(sample: Mapping[str, Any], measurand: str, version: str) -> float | None:
    if version == VERSION_16:
        unit = _text(sample.get("unit"), DEFAULT_UNIT.get(measurand, ""))
        multiplier = 0
    else:
        uom = sample.get("unit_of_measure")
        unit = _text(uom.get("unit") if isinstance(uom, Mapping) else None, DEFAULT_UNIT.get(measurand, ""))
        raw_multiplier = uom.get("multiplier", 0) if isinstance(uom, Mapping) else 0
        multiplier = raw_multiplier if isinstance(raw_multiplier, int) and -3 <= raw_multiplier <= 3 else 0
    value = _number(sample.get("value"))
    if value is None or unit not in UNITS:
        return None
    quantity, factor = UNITS[unit]
    if QUANTITY.get(measurand) != quantity:
        return None  # e.g. an energy measurand in A: a firmware bug we do not guess around
    return value * factor * (10.0 ** multiplier)


def parse_meter_values(meter_value: Any, version: str) -> Readings:
    """The newest reading of each measurand in a ``meterValue`` list (see the module contract)."""
    readings = Readings()
    power_phases: dict[str, float] = {}
    if not isinstance(meter_value, list):
        return readings
    entries = [e for e in meter_value if isinstance(e, Mapping)]
    # Oldest first, so that later samples overwrite earlier ones (ISO 8601 UTC strings sort in time order).
    entries.sort(key=lambda e: str(e.get("timestamp", "")))
    for entry in entries:
        samples = entry.get("sampled_value")
        if not isinstance(samples, list):
            continue
        if isinstance(entry.get("timestamp"), str):
            readings.timestamp = entry["timestamp"]
        for sample in samples:
            if not isinstance(sample, Mapping):
                continue
            location = _text(sample.get("location"), "Outlet")
            measurand = _text(sample.get("measurand"), ENERGY_REGISTER)
            if location not in LOCATIONS or measurand is None:
                continue
            value = _sample_value(sample, measurand, version)
            if value is None:
                continue
            phase = _phase(sample.get("phase"))
            if measurand == ENERGY_REGISTER and phase is None:
                readings.energy_wh = value
            elif measurand == POWER:
                if phase is None:
                    readings.power_w = value
                else:
                    power_phases[phase] = value
            elif measurand == CURRENT:
                readings.current_a[phase or "L1"] = value
            elif measurand == VOLTAGE:
                readings.voltage_v[phase or "L1"] = value
            elif measurand == SOC:
                readings.soc_pct = value
    if readings.power_w is None and power_phases:
        readings.power_w = sum(power_phases.values())
    if readings.power_w is None and readings.current_a:
        readings.power_w = sum(readings.current_a.values()) * NOMINAL_VOLTAGE_V
    return readings


def energy_register(meter_value: Any, version: str) -> float | None:
    """The energy register (Wh) in a ``meterValue`` list, if any (2.0.1 meter start/stop)."""
    return parse_meter_values(meter_value, version).energy_wh


# -- statuses ---------------------------------------------------------------------------------------------

# OCPP 1.6 §7.7 ChargePointStatus.
STATUS_16: Final = {
    "Available": STATUS_AVAILABLE,
    "Preparing": STATUS_PREPARING,
    "Charging": STATUS_CHARGING,
    "SuspendedEVSE": STATUS_SUSPENDED_EVSE,
    "SuspendedEV": STATUS_SUSPENDED_EV,
    "Finishing": STATUS_FINISHING,
    "Reserved": STATUS_RESERVED,
    "Unavailable": STATUS_UNAVAILABLE,
    "Faulted": STATUS_FAULTED,
}
# OCPP 2.0.1 ConnectorStatusEnumType: "Occupied" says only that a cable is in; the transaction's
# chargingState (below) says what happens on it.
STATUS_201: Final = {
    "Available": STATUS_AVAILABLE,
    "Occupied": STATUS_PREPARING,
    "Reserved": STATUS_RESERVED,
    "Unavailable": STATUS_UNAVAILABLE,
    "Faulted": STATUS_FAULTED,
}
# OCPP 2.0.1 ChargingStateEnumType in TransactionEvent.transactionInfo.
CHARGING_STATE_201: Final = {
    "Charging": STATUS_CHARGING,
    "EVConnected": STATUS_PREPARING,
    "SuspendedEV": STATUS_SUSPENDED_EV,
    "SuspendedEVSE": STATUS_SUSPENDED_EVSE,
    "Idle": STATUS_FINISHING,
}

# The station's one status: the most telling of its connectors'.
_PRIORITY: Final = (
    STATUS_CHARGING, STATUS_SUSPENDED_EVSE, STATUS_SUSPENDED_EV, STATUS_PREPARING, STATUS_FINISHING,
    STATUS_RESERVED, STATUS_AVAILABLE, STATUS_FAULTED, STATUS_UNAVAILABLE,
)


def station_status(connectors: Mapping[int, str], connected: bool) -> str:
    """Fold per-connector statuses (0 = the whole station) into the ``charger.<id>`` value."""
    if not connected:
        return STATUS_UNAVAILABLE
    whole = connectors.get(0)
    if whole in (STATUS_FAULTED, STATUS_UNAVAILABLE):
        return whole
    found: Iterable[str] = [s for c, s in connectors.items() if c != 0]
    if not found:
        return whole or STATUS_UNAVAILABLE
    return min(found, key=lambda s: _PRIORITY.index(s) if s in _PRIORITY else len(_PRIORITY))
