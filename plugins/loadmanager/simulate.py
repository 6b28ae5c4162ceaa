"""``ampgate simulate SCENARIO.yaml [--plot out.png]``: a day of one site, run through the real controller.

The scenario (YAML, see ``scenarios/*.yaml``) gives the site, the chargers, a base load per phase over the day,
PV, cars arriving and leaving with the energy they want, external limits and meter outages. Every ``step`` the
simulation builds the grid readings the meter would report, calls ``Controller.step`` (the same object the
gateway runs: limits and failsafe, allocation, damping) and lets each car follow its station's limit one step
later, as a car needs up to 5 s to follow (IEC 61851-1 A.2.3). It prints a summary (peak load per phase against
the fuse, energy per car, PV share, commands sent, time in failsafe) and, with ``--plot``, draws per-phase load
against the fuse and each car's current (matplotlib: the optional ``plot`` extra).

Sans-IO apart from reading the scenario and writing the picture; the simulated clock is the scenario's.
"""

from __future__ import annotations

import argparse
import itertools
import math
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import voluptuous as vol
import yaml

from gateway.config import validation as cv

from .config import CHARGER_SCHEMA, FAILSAFE_SCHEMA, _fuse, _number
from .const import (
    DEFAULT_MARGIN_A,
    DEFAULT_MARGIN_W,
    DEFAULT_MIN_RUN_S,
    DEFAULT_VOLTAGE_V,
    MIN_EXTERNAL_LIMIT_W,
    PHASES,
)
from .controller import ChargerConfig, Controller, charger_input
from .failsafe import LimitRefused, Supervisor
from .model import ChargerInput, Measurements, Mode, Site, parse_rotation

PLOT_HINT = "matplotlib is not installed: pip install 'ampgate[plot]' (or: pip install matplotlib)"
DAY_S = 24 * 3600.0
# Overshoot smaller than one command step (0.1 A) is the house load creeping up between two readings.
OVERSHOOT_TOLERANCE_A = 0.1
_CLOCK = re.compile(r"^(\d{1,2}):(\d{2})$")


def clock(value: Any) -> float:
    """``"07:30"`` -> seconds after midnight (``"24:00"`` is the end of the day)."""
    match = _CLOCK.match(str(value).strip())
    if not match or int(match.group(1)) > 24 or int(match.group(2)) > 59:
        raise cv.invalid("expected a time of day", value, "write HH:MM, e.g. 07:30")
    return int(match.group(1)) * 3600.0 + int(match.group(2)) * 60.0


def _phase(value: Any) -> int:
    text = str(value).upper()
    if text not in ("L1", "L2", "L3"):
        raise cv.invalid("expected a phase", value, "write L1, L2 or L3")
    return int(text[1]) - 1


_AMPS3 = vol.All([_number(0, 4000, "A")], vol.Length(min=3, max=3, msg="expected three currents [L1, L2, L3]"))

SCENARIO_SCHEMA = vol.Schema({
    vol.Optional("title", default="simulation"): cv.string,
    vol.Required("site"): vol.Schema({
        vol.Required("fuse_a"): _fuse,
        vol.Optional("margin_a", default=DEFAULT_MARGIN_A): _number(0, 100, "A"),
        vol.Optional("voltage", default=DEFAULT_VOLTAGE_V): _number(100, 400, "V"),
        vol.Optional("import_limit_w"): _number(100, 1e7, "W"),
        vol.Optional("margin_w", default=DEFAULT_MARGIN_W): _number(0, 1e6, "W"),
        vol.Optional("min_run_time", default=DEFAULT_MIN_RUN_S): cv.duration,
        vol.Optional("failsafe", default={}): FAILSAFE_SCHEMA,
        vol.Optional("min_external_limit_w", default=MIN_EXTERNAL_LIMIT_W): _number(0, 1e7, "W"),
        vol.Optional("meter_max_age", default=10.0): cv.duration,
        vol.Optional("default_mode", default="fast"): cv.one_of(*(m.value for m in Mode)),
    }),
    vol.Optional("start", default="00:00"): clock,
    vol.Optional("end", default="24:00"): clock,
    vol.Optional("step", default=5.0): vol.All(cv.duration, vol.Range(min=0.5, max=300)),
    vol.Required("chargers"): {cv.string: CHARGER_SCHEMA},
    vol.Optional("base_load", default=[]): [{vol.Required("at"): clock, vol.Required("a"): _AMPS3}],
    vol.Optional("loads", default=[]): [{
        vol.Required("from"): clock, vol.Required("to"): clock, vol.Required("phase"): _phase,
        vol.Required("a"): _number(0, 4000, "A"), vol.Optional("name", default="load"): cv.string,
    }],
    vol.Optional("pv"): {
        vol.Required("peak_w"): _number(0, 1e7, "W"),
        vol.Optional("sunrise", default="06:00"): clock,
        vol.Optional("sunset", default="20:00"): clock,
        vol.Optional("clouds", default=[]): [{
            vol.Required("from"): clock, vol.Required("to"): clock,
            vol.Required("factor"): _number(0, 1, ""),
        }],
    },
    vol.Optional("cars", default=[]): [{
        vol.Required("charger"): cv.string,
        vol.Required("arrive"): clock,
        vol.Required("leave"): clock,
        vol.Required("need_kwh"): _number(0, 500, "kWh"),
        vol.Optional("phases", default=3): vol.In([1, 3]),
        vol.Optional("max_current_a", default=32.0): _number(1, 80, "A"),
        vol.Optional("name"): cv.string,
    }],
    vol.Optional("limits", default=[]): [{
        vol.Required("at"): clock,
        vol.Optional("limit_w"): _number(-1e7, 1e7, "W"),
        vol.Optional("limit_a"): _number(-4000, 4000, "A"),
        vol.Optional("duration"): cv.duration,
        vol.Optional("active", default=True): cv.boolean,
        vol.Optional("source", default="energy_manager"): cv.string,
    }],
    vol.Optional("meter_outages", default=[]): [{vol.Required("from"): clock, vol.Required("to"): clock}],
})


@dataclass(slots=True)
class Car:
    name: str
    charger: str
    arrive: float
    leave: float
    need_wh: float
    phases: int
    max_a: float
    charged_wh: float = 0.0
    pv_wh: float = 0.0


@dataclass(slots=True)
class Trace:
    """Everything recorded per step (for the plot and the summary)."""

    times: list[float] = field(default_factory=list)
    grid_a: list[tuple[float, float, float]] = field(default_factory=list)  # signed: import positive
    pv_w: list[float] = field(default_factory=list)
    base_w: list[float] = field(default_factory=list)
    cap_w: list[float | None] = field(default_factory=list)
    failsafe: list[bool] = field(default_factory=list)
    car_a: dict[str, list[float]] = field(default_factory=dict)  # per charger: what the car draws (per phase)
    reasons: dict[str, list[str]] = field(default_factory=dict)


@dataclass(slots=True)
class Summary:
    title: str
    fuse_a: tuple[float, float, float]
    margin_a: float
    peak_a: tuple[float, float, float]
    over_fuse_s: tuple[float, float, float]
    over_fuse_by_ev_s: float
    base_over_limit_s: float
    cars: list[Car]
    commands: int
    failsafe_s: float
    ev_wh: float
    ev_pv_wh: float
    refused_limits: list[str]

    def lines(self) -> list[str]:
        out = [f"scenario: {self.title}"]
        for p in range(PHASES):
            out.append(f"  L{p + 1}: peak {self.peak_a[p]:5.1f} A of fuse {self.fuse_a[p]:g} A (margin "
                       f"{self.margin_a:g} A); above the fuse for {self.over_fuse_s[p]:.0f} s")
        out.append(f"  time above fuse - margin (by > 0.1 A) while chargers load that phase: "
                   f"{self.over_fuse_by_ev_s:.0f} s "
                   f"(house load alone above it: {self.base_over_limit_s:.0f} s)")
        for car in self.cars:
            pct = 100 * car.charged_wh / car.need_wh if car.need_wh else 100.0
            pv = 100 * car.pv_wh / car.charged_wh if car.charged_wh else 0.0
            out.append(f"  {car.name} on {car.charger}: {car.charged_wh / 1000:.1f} of {car.need_wh / 1000:.1f} kWh "
                       f"({pct:.0f} %), {pv:.0f} % from PV")
        share = 100 * self.ev_pv_wh / self.ev_wh if self.ev_wh else 0.0
        out.append(f"  EV energy {self.ev_wh / 1000:.1f} kWh, {share:.0f} % from PV surplus")
        out.append(f"  limit changes sent: {self.commands}; time in failsafe: {self.failsafe_s / 60:.0f} min")
        for refused in self.refused_limits:
            out.append(f"  refused limit: {refused}")
        return out


def load_scenario(path: Path) -> dict[str, Any]:
    raw = yaml.safe_load(Path(path).read_text())
    try:
        scenario: dict[str, Any] = SCENARIO_SCHEMA(raw)
    except vol.Invalid as err:
        where = ".".join(str(p) for p in err.path) or "scenario"
        raise ValueError(f"{path}: {where}: {err.msg}") from None
    for car in scenario["cars"]:
        if car["charger"] not in scenario["chargers"]:
            raise ValueError(f"{path}: cars: charger {car['charger']!r} is not in chargers")
    return scenario


def _interp(points: list[dict[str, Any]], t: float) -> tuple[float, float, float]:
    """Base load at ``t``: linear between the (sorted) points, flat before the first and after the last."""
    if not points:
        return (0.0, 0.0, 0.0)
    values: list[float] = list(points[-1]["a"])
    if t <= points[0]["at"]:
        values = list(points[0]["a"])
    else:
        for a, b in itertools.pairwise(points):
            if a["at"] <= t <= b["at"]:
                f = (t - a["at"]) / (b["at"] - a["at"]) if b["at"] > a["at"] else 0.0
                values = [x + f * (y - x) for x, y in zip(a["a"], b["a"], strict=True)]
                break
    return (values[0], values[1], values[2])


def _pv_w(pv: dict[str, Any] | None, t: float) -> float:
    if not pv or not pv["sunrise"] < t < pv["sunset"]:
        return 0.0
    w = pv["peak_w"] * math.sin(math.pi * (t - pv["sunrise"]) / (pv["sunset"] - pv["sunrise"])) ** 1.5
    for cloud in pv["clouds"]:
        if cloud["from"] <= t < cloud["to"]:
            w *= cloud["factor"]
    return float(w)


def run(scenario: dict[str, Any]) -> tuple[Summary, Trace]:
    site_conf = scenario["site"]
    fuse = (site_conf["fuse_a"][0], site_conf["fuse_a"][1], site_conf["fuse_a"][2])
    voltage = site_conf["voltage"]
    site = Site(fuse_a=fuse, margin_a=site_conf["margin_a"], voltage_v=voltage,
                import_limit_w=site_conf.get("import_limit_w"), margin_w=site_conf["margin_w"],
                min_run_s=site_conf["min_run_time"])
    start, end, step = scenario["start"], scenario["end"], scenario["step"]
    failsafe = site_conf["failsafe"]
    supervisor = Supervisor.create(
        failsafe_limit_w=failsafe["limit_w"], min_duration_s=failsafe["min_duration"],
        min_limit_w=site_conf["min_external_limit_w"], voltage_v=voltage,
        meter_max_age_s=site_conf["meter_max_age"], now=start,
        release_after_minimum=failsafe["release_after_minimum"])
    controller = Controller(site, supervisor)
    default_mode = Mode(site_conf["default_mode"])
    configs = {
        cid: ChargerConfig(phases=c.get("phases", 3), rotation=c.get("rotation"),
                           min_current_a=c.get("min_current_a"), max_current_a=c.get("max_current_a"),
                           priority=c.get("priority", 0), mode=Mode(c.get("mode", default_mode)))
        for cid, c in scenario["chargers"].items()
    }
    cars = [Car(name=c.get("name") or f"car{k + 1}", charger=c["charger"], arrive=c["arrive"], leave=c["leave"],
                need_wh=c["need_kwh"] * 1000, phases=c["phases"], max_a=c["max_current_a"])
            for k, c in enumerate(scenario["cars"])]
    rotations = {cid: parse_rotation(c.rotation or ("L1" if c.phases == 1 else "L1L2L3"), c.phases or 3)
                 for cid, c in configs.items()}
    base_points = sorted(scenario["base_load"], key=lambda p: p["at"])
    limits = sorted(scenario["limits"], key=lambda e: e["at"])
    in_force: dict[str, float] = dict.fromkeys(configs, 0.0)  # what each station applies now
    draw: dict[str, tuple[float, ...]] = {cid: (0.0, 0.0, 0.0) for cid in configs}
    trace = Trace(car_a={cid: [] for cid in configs}, reasons={cid: [] for cid in configs})
    commands = 0
    refused: list[str] = []
    meter_updated = start
    fuse_limit = [f - site.margin_a for f in fuse]
    over_fuse = [0.0, 0.0, 0.0]
    over_by_ev = 0.0
    base_over = 0.0
    peak = [0.0, 0.0, 0.0]
    failsafe_s = ev_wh = ev_pv_wh = 0.0

    t = start
    while t < end:
        while limits and limits[0]["at"] <= t:
            event = limits.pop(0)
            try:
                supervisor.set_limit(event["source"], t, limit_w=event.get("limit_w"), limit_a=event.get("limit_a"),
                                     duration_s=event.get("duration"), active=event["active"])
            except LimitRefused as err:
                refused.append(f"{_hhmm(t)} {event['source']}: {err}")
        # The world: house, PV, cars drawing what their station allowed at the previous step.
        base = list(_interp(base_points, t))
        for load in scenario["loads"]:
            if load["from"] <= t < load["to"]:
                base[load["phase"]] += load["a"]
        pv_w = _pv_w(scenario.get("pv"), t)
        pv_a = pv_w / (voltage * PHASES)
        present = {car.charger: car for car in cars if car.arrive <= t < car.leave}
        statuses: dict[str, str] = {}
        for cid, conf in configs.items():
            car = present.get(cid)
            if car is None:
                statuses[cid] = "available"
                draw[cid] = (0.0, 0.0, 0.0)
                continue
            limit = in_force[cid]
            if car.charged_wh >= car.need_wh:
                statuses[cid], draw[cid] = "suspended_ev", (0.0, 0.0, 0.0)
            elif limit <= 0.0:
                statuses[cid], draw[cid] = "suspended_evse", (0.0, 0.0, 0.0)
            else:
                amps = min(limit, car.max_a)
                phases = min(car.phases, conf.phases or 3)
                statuses[cid] = "charging"
                draw[cid] = tuple(amps if k < phases else 0.0 for k in range(PHASES))
        ev_phase = [0.0, 0.0, 0.0]
        for cid in configs:
            for k, g in enumerate(rotations[cid]):
                ev_phase[g] += draw[cid][k]
        grid = tuple(base[p] + ev_phase[p] - pv_a for p in range(PHASES))
        outage = any(o["from"] <= t < o["to"] for o in scenario["meter_outages"])
        if not outage:
            meter_updated = t
        measurements = Measurements(grid_a=(abs(grid[0]), abs(grid[1]), abs(grid[2])),
                                    grid_w=sum(grid) * voltage)
        inputs: list[ChargerInput] = [
            charger_input(cid, conf, status=statuses[cid], attributes={"connected": statuses[cid] != "available"},
                          measured_a=draw[cid], requested_a=controller.requested(cid))
            for cid, conf in configs.items()
        ]
        decision = controller.step(inputs, measurements, meter_updated, t)
        minimum = {c.id: c.min_a for c in inputs}
        for cid, value in decision.commands.items():
            if abs(value - in_force[cid]) > 1e-9:
                commands += 1  # a change; refreshes of an unchanged value are not counted
            # A station pauses below its minimum (what the OCPP plugin's clamp does).
            in_force[cid] = 0.0 if value < minimum[cid] else value
            controller.damper.result(cid, value, True, t)

        # Record and account.
        trace.times.append(t)
        trace.grid_a.append((grid[0], grid[1], grid[2]))
        trace.pv_w.append(pv_w)
        trace.base_w.append(sum(base) * voltage)
        trace.cap_w.append(decision.effective.limit_w)
        trace.failsafe.append(decision.effective.failsafe)
        for cid in configs:
            trace.car_a[cid].append(max(draw[cid]))
            trace.reasons[cid].append(str(decision.result.reasons[cid]))
        for p in range(PHASES):
            load = abs(grid[p])
            peak[p] = max(peak[p], load)
            if load > fuse[p] + 1e-9:
                over_fuse[p] += step
        base_exceeds = any(base[p] > fuse_limit[p] for p in range(PHASES))
        if base_exceeds:
            base_over += step
        elif any(abs(grid[p]) > fuse_limit[p] + OVERSHOOT_TOLERANCE_A and ev_phase[p] > 0 for p in range(PHASES)):
            over_by_ev += step
        if decision.effective.failsafe:
            failsafe_s += step
        ev_w = sum(ev_phase) * voltage
        surplus_w = max(0.0, pv_w - sum(base) * voltage)
        for cid, car in present.items():
            car_w = sum(draw[cid]) * voltage
            car.charged_wh += car_w * step / 3600
            share = min(car_w, surplus_w * car_w / ev_w) if ev_w else 0.0
            car.pv_wh += share * step / 3600
        ev_wh += ev_w * step / 3600
        ev_pv_wh += min(ev_w, surplus_w) * step / 3600
        t += step

    summary = Summary(
        title=scenario["title"], fuse_a=fuse, margin_a=site.margin_a, peak_a=(peak[0], peak[1], peak[2]),
        over_fuse_s=(over_fuse[0], over_fuse[1], over_fuse[2]), over_fuse_by_ev_s=over_by_ev,
        base_over_limit_s=base_over, cars=cars, commands=commands, failsafe_s=failsafe_s, ev_wh=ev_wh,
        ev_pv_wh=ev_pv_wh, refused_limits=refused)
    return summary, trace


def _hhmm(t: float) -> str:
    return f"{int(t // 3600):02d}:{int(t % 3600 // 60):02d}"


def plot(summary: Summary, trace: Trace, out: Path) -> None:
    """Per-phase load against the fuse, each car's current, and PV, house load and the cap on the chargers."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.patches
    import matplotlib.pyplot as plt

    hours = [t / 3600 for t in trace.times]
    fig, axes = plt.subplots(4, 1, figsize=(12, 11), sharex=True, height_ratios=[3, 2, 1.6, 1.6])
    ax = axes[0]
    colours = ("tab:brown", "tab:gray", "black")
    for p in range(PHASES):
        ax.plot(hours, [abs(g[p]) for g in trace.grid_a], lw=0.9, color=colours[p], label=f"L{p + 1}")
    for p in range(PHASES):
        ax.axhline(summary.fuse_a[p], color="tab:red", lw=1.2, ls="-", label="fuse" if p == 0 else None)
        ax.axhline(summary.fuse_a[p] - summary.margin_a, color="tab:red", lw=0.8, ls="--",
                   label="fuse - margin" if p == 0 else None)
    ax.set_ylabel("grid current per phase (A)")
    ax.set_title(summary.title)
    ax.legend(loc="upper left", ncol=5, fontsize="small")
    ax.grid(alpha=0.3)

    ax = axes[1]
    for cid, series in trace.car_a.items():
        ax.plot(hours, series, lw=1.0, label=cid)
    ax.set_ylabel("car current (A per phase)")
    ax.legend(loc="upper left", fontsize="small", ncol=4)
    ax.grid(alpha=0.3)

    # One row per charger: when it charges, and why it waits.
    ax = axes[2]
    step_h = (hours[1] - hours[0]) if len(hours) > 1 else 1 / 720
    names = list(trace.car_a)
    for row, cid in enumerate(names):
        for state, colour in _TIMELINE:
            flags = [_timeline_state(a, r) == state for a, r in zip(trace.car_a[cid], trace.reasons[cid],
                                                                     strict=True)]
            spans = [(a, b - a + step_h) for a, b in _spans(hours, flags)]
            if spans:
                ax.broken_barh(spans, (row - 0.4, 0.8), color=colour, lw=0)
    ax.set_yticks(range(len(names)), names, fontsize="small")
    ax.set_ylim(-0.6, len(names) - 0.4)
    ax.invert_yaxis()
    handles = [matplotlib.patches.Patch(color=colour, label=state) for state, colour in _TIMELINE]
    ax.legend(handles=handles, loc="lower left", bbox_to_anchor=(0.0, 1.0), fontsize="x-small", ncol=4,
              frameon=False)
    ax.grid(alpha=0.3, axis="x")

    ax = axes[3]
    ax.plot(hours, [w / 1000 for w in trace.pv_w], color="tab:orange", lw=1.0, label="PV")
    ax.plot(hours, [w / 1000 for w in trace.base_w], color="tab:blue", lw=0.8, label="house load")
    ax.plot(hours, [(c / 1000) if c is not None else math.nan for c in trace.cap_w], color="tab:purple",
            lw=1.5, label="cap on all chargers (limit / failsafe)")
    failsafe_spans = _spans(hours, trace.failsafe)
    for k, (a, b) in enumerate(failsafe_spans):
        ax.axvspan(a, b, color="tab:red", alpha=0.12, label="failsafe" if k == 0 else None)
    ax.set_ylabel("kW")
    ax.set_xlabel("hour of day")
    ax.legend(loc="upper left", fontsize="small")
    ax.grid(alpha=0.3)
    ax.set_xlim(hours[0], hours[-1] if hours else 24)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


_TIMELINE = (("charging", "tab:green"), ("waiting its turn", "tab:orange"),
             ("paused for priority or capacity", "tab:red"), ("waiting for PV", "gold"))


def _timeline_state(amps: float, reason: str) -> str | None:
    if amps > 0:
        return "charging"
    if reason == "paused_turn":
        return "waiting its turn"
    if reason in ("paused_priority", "paused_capacity"):
        return "paused for priority or capacity"
    if reason == "pv_waiting":
        return "waiting for PV"
    return None


def _spans(xs: Sequence[float], flags: Sequence[bool]) -> list[tuple[float, float]]:
    spans: list[tuple[float, float]] = []
    begin: float | None = None
    for x, flag in zip(xs, flags, strict=True):
        if flag and begin is None:
            begin = x
        elif not flag and begin is not None:
            spans.append((begin, x))
            begin = None
    if begin is not None and xs:
        spans.append((begin, xs[-1]))
    return spans


def command(args: argparse.Namespace) -> int:
    try:
        scenario = load_scenario(Path(args.scenario))
    except (OSError, ValueError, yaml.YAMLError) as err:
        print(f"ampgate simulate: {err}", file=sys.stderr)
        return 2
    summary, trace = run(scenario)
    print("\n".join(summary.lines()))
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print(PLOT_HINT, file=sys.stderr)
            return 1
        plot(summary, trace, Path(args.plot))
        print(f"  picture: {args.plot}")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("simulate", help="run the load manager over a day of a scenario",
                            description="Run the load manager's allocation over a simulated day (base load, PV, "
                                        "cars arriving and leaving, limits) and summarise it.")
    parser.add_argument("scenario", help="scenario YAML (see plugins/loadmanager/scenarios/)")
    parser.add_argument("--plot", metavar="OUT.png", help="draw the day into this picture (needs matplotlib)")
    parser.set_defaults(func=command)

