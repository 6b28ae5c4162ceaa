"""The simulated day (sans-IO): house load and PV per phase at a simulated time, and what the grid meter reads.

Time runs ``SPEEDUP`` times faster than the wall clock from ``START_HOUR``, so a visitor sees morning and
evening peaks, the PV bell at noon and an oven that runs on L2 for 45 simulated minutes every 3 hours (22 s of
every 90 s in real time, the first 30 s after the start): each oven cycle makes the load manager cut the cars
and restore them afterwards.
The grid meter reads house + cars - PV per phase (currents as magnitudes, power signed, import positive); a
second meter on the PV inverter's output reads the production.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

SPEEDUP = 120.0  # 1 real minute = 2 simulated hours: a whole day in 12 minutes
START_HOUR = 11.0  # late morning: low house load, PV rising, room for both cars; the oven comes on after 30 s
VOLTAGE = 230.0
PHASE_SHARE = (1.0, 0.8, 0.6)  # houses are never balanced: L1 carries most of the small loads
NIGHT_A = 1.0  # fridge, standby, router
MORNING_A = 3.0  # extra at the 07:30 peak (kettle, coffee, showers)
EVENING_A = 5.0  # extra at the 19:00 peak (cooking, lights, TV)
OVEN_A = 10.0  # a 2.3 kW oven on L2
OVEN_EVERY_H = 3.0
OVEN_FOR_H = 0.75
PV_PEAK_W = 6000.0  # a 6 kWp roof at noon on a clear day
PV_FROM_H, PV_TO_H = 6.0, 20.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Reading:
    """What the SDM630 shows: per-phase voltage (V), current (A) and power (W), total power (W)."""

    voltage: tuple[float, float, float]
    current: tuple[float, float, float]
    power: tuple[float, float, float]
    total_w: float


def sim_hour(elapsed_s: float) -> float:
    """Simulated hour of day (0-24) after ``elapsed_s`` real seconds."""
    return (START_HOUR + elapsed_s * SPEEDUP / 3600.0) % 24.0


def _bump(hour: float, centre: float, width: float) -> float:
    """A smooth bump of height 1 at ``centre`` and zero beyond ``width`` hours either side."""
    distance = min(abs(hour - centre), 24.0 - abs(hour - centre))
    return 0.5 * (1 + math.cos(math.pi * distance / width)) if distance < width else 0.0


def oven_on(hour: float) -> bool:
    return hour % OVEN_EVERY_H < OVEN_FOR_H


def house_a(hour: float) -> tuple[float, float, float]:
    """Non-EV load per phase (A)."""
    base = NIGHT_A + MORNING_A * _bump(hour, 7.5, 2.0) + EVENING_A * _bump(hour, 19.0, 3.0)
    l1, l2, l3 = (base * share for share in PHASE_SHARE)
    return l1, l2 + (OVEN_A if oven_on(hour) else 0.0), l3


def pv_w(hour: float) -> float:
    if not PV_FROM_H < hour < PV_TO_H:
        return 0.0
    return PV_PEAK_W * math.sin(math.pi * (hour - PV_FROM_H) / (PV_TO_H - PV_FROM_H)) ** 2


def pv_reading(hour: float) -> Reading:
    """The meter on the PV inverter's output: production as positive power."""
    watts = pv_w(hour)
    amps = watts / 3 / VOLTAGE
    volts = tuple(VOLTAGE + 4.0 * math.sin(hour + i) + 0.5 for i in range(3))
    return Reading(voltage=(volts[0], volts[1], volts[2]), current=(amps, amps, amps),
                   power=(watts / 3, watts / 3, watts / 3), total_w=watts)


def reading(hour: float, cars_a: tuple[float, float, float]) -> Reading:
    """The grid meter at ``hour`` with the cars drawing ``cars_a`` per phase."""
    pv_phase_a = pv_w(hour) / 3 / VOLTAGE  # a three-phase inverter feeds the phases evenly
    net = [h + c - pv_phase_a for h, c in zip(house_a(hour), cars_a, strict=True)]
    volts = tuple(VOLTAGE + 4.0 * math.sin(hour + i) - 0.08 * n for i, n in enumerate(net))
    power = tuple(v * n for v, n in zip(volts, net, strict=True))
    return Reading(voltage=(volts[0], volts[1], volts[2]), current=(abs(net[0]), abs(net[1]), abs(net[2])),
                   power=(power[0], power[1], power[2]), total_w=sum(power))
