"""Bus and state throughput against a baseline measured in the same run.

Baseline: the same number of plain callbacks called in a loop with the same payload, which is the least a
publish/subscribe mechanism can cost. Goals (issue "Core"): the bus under 3x the baseline at 10 subscribers;
``states.set`` above 200,000/s on one core.

Run: ``.venv/bin/python bench/bus.py`` (add ``--json`` for machine-readable output).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

from gateway.bus import EventBus
from gateway.states import EVENT_STATE_CHANGED, StateMachine

EVENTS = 200_000
REPEAT = 5


def best_rate(fn: Callable[[int], None], n: int) -> float:
    """Events per second of the best of REPEAT runs (the least disturbed by the machine)."""
    best = float("inf")
    for _ in range(REPEAT):
        start = time.perf_counter()
        fn(n)
        best = min(best, time.perf_counter() - start)
    return n / best


def baseline(subscribers: int) -> Callable[[int], None]:
    sink: list[Any] = []
    callbacks = [sink.append for _ in range(subscribers)]
    payload = {"entity_id": "sensor.x", "value": 1}

    def run(n: int) -> None:
        for _ in range(n):
            for cb in callbacks:
                cb(payload)
        sink.clear()

    return run


def through_bus(subscribers: int) -> Callable[[int], None]:
    bus = EventBus()
    sink: list[Any] = []
    for _ in range(subscribers):
        bus.subscribe("state_changed", sink.append)
    payload = {"entity_id": "sensor.x", "value": 1}

    def run(n: int) -> None:
        fire = bus.fire
        for _ in range(n):
            fire("state_changed", payload)
        sink.clear()

    return run


def states_set(subscribers: int) -> Callable[[int], None]:
    bus = EventBus()
    sink: list[Any] = []
    for _ in range(subscribers):
        bus.subscribe(EVENT_STATE_CHANGED, sink.append)
    states = StateMachine(bus)

    def run(n: int) -> None:
        set_ = states.set
        for i in range(n):
            set_("sensor.cp01_power", i, "W")  # every call is a change, so every call fires
        sink.clear()

    return run


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results: dict[str, Any] = {"events": EVENTS, "repeat": REPEAT, "bus": [], "states": {}}
    for subs in (1, 10, 100):
        n = EVENTS // max(1, subs // 10)
        base = best_rate(baseline(subs), n)
        bus = best_rate(through_bus(subs), n)
        results["bus"].append({"subscribers": subs, "baseline_per_s": base, "bus_per_s": bus,
                               "cost_ratio": base / bus})
    for subs in (0, 1):
        results["states"][f"{subs}_subscribers"] = best_rate(states_set(subs), EVENTS)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"{'subscribers':>11}  {'baseline ev/s':>14}  {'bus ev/s':>12}  {'bus cost vs baseline':>20}")
    for row in results["bus"]:
        print(f"{row['subscribers']:>11}  {row['baseline_per_s']:>14,.0f}  {row['bus_per_s']:>12,.0f}  "
              f"{row['cost_ratio']:>19.2f}x")
    for name, rate in results["states"].items():
        print(f"states.set (every call a change, {name.replace('_', ' ')}): {rate:,.0f}/s")
    ten = next(r for r in results["bus"] if r["subscribers"] == 10)
    print(f"goal: bus < 3x baseline at 10 subscribers: {'met' if ten['cost_ratio'] < 3 else 'NOT met'}; "
          f"states.set > 200,000/s: {'met' if results['states']['1_subscribers'] > 200_000 else 'NOT met'}")


if __name__ == "__main__":
    main()
