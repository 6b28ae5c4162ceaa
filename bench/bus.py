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


def python_handler(sink: list[Any]) -> Callable[[Any], None]:
    """A subscriber as plugins write them: a Python function that looks at the event and keeps it."""

    def handler(event: Any) -> None:
        sink.append(event)

    return handler


# Two kinds of subscriber: a C builtin (list.append, the cheapest call Python has, so the bus's own fixed
# cost shows at its largest) and a Python function (what real subscribers are).
KINDS: dict[str, Callable[[list[Any]], Callable[[Any], None]]] = {
    "c-builtin": lambda sink: sink.append,
    "python": python_handler,
}


def baseline(subscribers: int, kind: str) -> Callable[[int], None]:
    sink: list[Any] = []
    callbacks = [KINDS[kind](sink) for _ in range(subscribers)]
    payload = {"entity_id": "sensor.x", "value": 1}

    def run(n: int) -> None:
        for _ in range(n):
            for cb in callbacks:
                cb(payload)
        sink.clear()

    return run


def through_bus(subscribers: int, kind: str) -> Callable[[int], None]:
    bus = EventBus()
    sink: list[Any] = []
    for _ in range(subscribers):
        bus.subscribe("state_changed", KINDS[kind](sink))
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
    for kind in KINDS:
        for subs in (1, 10, 100):
            n = EVENTS // max(1, subs // 10)
            base = best_rate(baseline(subs, kind), n)
            bus = best_rate(through_bus(subs, kind), n)
            results["bus"].append({"subscriber": kind, "subscribers": subs, "baseline_per_s": base,
                                   "bus_per_s": bus, "cost_ratio": base / bus})
    for subs in (0, 1):
        results["states"][f"{subs}_subscribers"] = best_rate(states_set(subs), EVENTS)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"{'subscriber':>10}  {'count':>5}  {'baseline ev/s':>14}  {'bus ev/s':>12}  {'bus cost vs baseline':>20}")
    for row in results["bus"]:
        print(f"{row['subscriber']:>10}  {row['subscribers']:>5}  {row['baseline_per_s']:>14,.0f}  "
              f"{row['bus_per_s']:>12,.0f}  {row['cost_ratio']:>19.2f}x")
    for name, rate in results["states"].items():
        print(f"states.set (every call a change, {name.replace('_', ' ')}): {rate:,.0f}/s")
    ten = {r["subscriber"]: r["cost_ratio"] for r in results["bus"] if r["subscribers"] == 10}
    verdict = ", ".join(f"{k} {'met' if v < 3 else 'NOT met'} ({v:.2f}x)" for k, v in ten.items())
    print(f"goal: bus < 3x baseline at 10 subscribers: {verdict}; "
          f"states.set > 200,000/s: {'met' if results['states']['1_subscribers'] > 200_000 else 'NOT met'}")


if __name__ == "__main__":
    main()
