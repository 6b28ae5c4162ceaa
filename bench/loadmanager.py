"""Load manager benchmarks (run by hand: ``.venv/bin/python bench/loadmanager.py [--quick]``).

1. Allocation cost for 10, 100 and 1,000 chargers (``allocator.allocate``, mixed single- and three-phase,
   three priorities, a binding fuse and power cap, turn-taking memory) against a trivial baseline measured in the
   same run: the available current split equally over the chargers. Goal: 1,000 chargers under 5 ms.
2. End-to-end reaction with 100 OCPP 1.6 stations over real TLS WebSockets (the ``ocpp`` library's ChargePoint,
   in a separate process so that they do not share the gateway's event loop): from a new grid reading
   (``states.set`` of the meter entities, as the Modbus plugin does) or a ``loadmanager.set_site_limit`` call to
   the moment the *last* station has received its SetChargingProfile. Decreases only: increases are held on
   purpose (INCREASE_HOLD_S). Baseline in the same run: the same 100 commands sent directly with
   ``charger.set_current_limit`` (no load manager). Goal: p99 under 250 ms.

Clocks: ``time.monotonic`` (CLOCK_MONOTONIC, shared by both processes on Linux).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from plugins.loadmanager.allocator import allocate
from plugins.loadmanager.model import ChargerInput, ExternalCap, Measurements, Memory, Mode, Site

# -- 1. allocation cost ----------------------------------------------------------------------------------------


def make_site(n: int, seed: int = 1) -> tuple[Site, list[ChargerInput], Measurements, ExternalCap]:
    rnd = random.Random(seed)
    site = Site(fuse_a=(n * 7.0, n * 7.0, n * 7.0), margin_a=1.0, voltage_v=230.0, import_limit_w=n * 9000.0,
                margin_w=500.0, min_run_s=900.0)
    chargers = []
    for i in range(n):
        phases = rnd.choice([1, 3, 3])
        grid = (rnd.randrange(3),) if phases == 1 else rnd.choice([(0, 1, 2), (1, 2, 0), (2, 0, 1)])
        chargers.append(ChargerInput(
            id=f"c{i:04d}", phases=phases, grid_phases=grid, min_a=6.0, max_a=rnd.choice([16.0, 32.0]),
            priority=rnd.choice([0, 0, 1, 2]), mode=rnd.choice([Mode.FAST, Mode.FAST, Mode.MIN, Mode.MIN_PV]),
            status=rnd.choice(["charging", "charging", "preparing", "suspended_ev", "available"]),
            measured_a=(5.0, 5.0, 5.0), requested_a=8.0))
    return site, chargers, Measurements(grid_a=(n * 3.0, n * 3.2, n * 2.8), grid_w=n * 1500.0), \
        ExternalCap(limit_w=n * 6000.0)


def equal_split(site: Site, chargers: list[ChargerInput], meas: Measurements) -> dict[str, float]:
    """The trivial baseline: what is left per phase, split equally, clamped to each charger's range."""
    assert meas.grid_a is not None
    room = min(site.fuse_a[p] - site.margin_a - meas.grid_a[p] for p in range(3))
    share = room / max(1, len(chargers))
    return {c.id: (min(share, c.max_a) if share >= c.min_a else 0.0) for c in chargers}


def timed(fn: Any, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def bench_allocation(quick: bool) -> None:
    print("1. allocation cost (ms): allocate() against an equal split, same run")
    print(f"   {'chargers':>8} {'allocate min':>12} {'median':>8} {'p95':>8} {'equal split':>11} "
          f"{'ratio':>6} {'per charger':>11}")
    previous = None
    for n in (10, 100, 1000):
        site, chargers, meas, cap = make_site(n)
        state = {"mem": Memory(), "t": 0.0}

        def run(site: Site = site, chargers: list[ChargerInput] = chargers, meas: Measurements = meas,
                cap: ExternalCap = cap, state: dict[str, Any] = state) -> None:
            state["t"] += 10.0
            result = allocate(site, chargers, meas, cap, state["t"], state["mem"])
            state["mem"] = result.memory

        repeat = 30 if quick else (300 if n < 1000 else 100)
        run()  # warm up
        got = sorted(timed(run, repeat))
        base = sorted(timed(lambda s=site, c=chargers, m=meas: equal_split(s, c, m), repeat))
        median = statistics.median(got)
        growth = f"  x{median / previous:.1f} for x10 chargers" if previous else ""
        previous = median
        print(f"   {n:>8} {got[0] * 1e3:>12.3f} {median * 1e3:>8.3f} {got[int(len(got) * 0.95)] * 1e3:>8.3f} "
              f"{statistics.median(base) * 1e3:>11.3f} {median / statistics.median(base):>6.1f} "
              f"{median / n * 1e6:>9.2f} us{growth}")


# -- 2. end to end over real WebSockets ------------------------------------------------------------------------

STATIONS = 100
PASSWORD = "bench-station-password-{:03d}"


async def fleet(url: str, count: int, ca: str) -> None:
    """The station side (a separate process): ``count`` OCPP 1.6 stations; one JSON line per received profile."""
    from ocpp.routing import on
    from ocpp.v16 import ChargePoint, call, call_result
    from ocpp.v16.enums import Action

    from gateway.security import tls
    from tests.peers.ocpp_station import open_ws

    out = sys.stdout

    class Station(ChargePoint):  # type: ignore[misc]
        @on(Action.set_charging_profile)
        def on_profile(self, **kw: Any) -> Any:
            period = kw["cs_charging_profiles"]["charging_schedule"]["charging_schedule_period"][0]
            out.write(json.dumps({"id": self.id, "t": time.monotonic(), "limit": float(period["limit"])}) + "\n")
            out.flush()
            return call_result.SetChargingProfile(status="Accepted")

        @on(Action.get_configuration)
        def on_get_configuration(self, **kw: Any) -> Any:
            return call_result.GetConfiguration(configuration_key=[
                {"key": "ChargingScheduleAllowedChargingRateUnit", "readonly": True, "value": "Current"}])

        @on(Action.trigger_message)
        def on_trigger(self, **kw: Any) -> Any:
            return call_result.TriggerMessage(status="Rejected")

    context = tls.client_context(ca=Path(ca))

    async def one(k: int) -> None:
        identity = f"CP{k:03d}"
        ws = await open_ws(f"{url}/{identity}", subprotocols=["ocpp1.6"], password=PASSWORD.format(k),
                           identity=identity, ssl_context=context, ping_interval=None)
        cp = Station(identity, ws, response_timeout=30)
        task = asyncio.create_task(cp.start())
        await cp.call(call.BootNotification(charge_point_vendor="Bench", charge_point_model="B"))
        await cp.call(call.StatusNotification(connector_id=1, error_code="NoError", status="Charging"))
        await task

    await asyncio.gather(*(one(k) for k in range(1, count + 1)))


def gateway_config(port: int, pki: Path) -> tuple[str, str]:
    stations = "\n".join(
        f"    - id: CP{k:03d}\n      password: !secret cp{k:03d}\n      version: \"1.6\"\n      max_current_a: 16"
        for k in range(1, STATIONS + 1))
    yaml_text = f"""
ocpp:
  enabled: true
  port: {port}
  tls:
    cert: {pki / "server.pem"}
    key: {pki / "server.key"}
    ca: {pki / "ca.pem"}
  stations:
{stations}
loadmanager:
  enabled: true
  fuse_a: 1700
  margin_a: 1
  grid_meter:
    current_l1: sensor.grid_current_l1
    current_l2: sensor.grid_current_l2
    current_l3: sensor.grid_current_l3
    power: sensor.grid_power
"""
    secrets = "".join(f'cp{k:03d}: "{PASSWORD.format(k)}"\n' for k in range(1, STATIONS + 1))
    return yaml_text, secrets


def sent_after_decrease(room_a: float) -> float:
    """What each station receives when ``room_a`` per phase is shared by all: the allocation (0.1 A steps),
    lowered to the damper's 0.5 A decrease steps."""
    allocation = math.floor(room_a / STATIONS * 10 + 1e-9) / 10
    return max(6.0, math.floor(allocation / 0.5 + 1e-9) * 0.5)


def percentiles(samples: list[float]) -> str:
    s = sorted(samples)
    pick = lambda q: s[min(len(s) - 1, int(q * len(s)))] * 1e3  # noqa: E731
    return (f"n={len(s)} p50 {pick(0.5):.1f} ms, p95 {pick(0.95):.1f} ms, p99 {pick(0.99):.1f} ms, "
            f"max {s[-1] * 1e3:.1f} ms")


async def bench_end_to_end(cycles: int) -> None:
    from gateway.context import Context, Role
    from gateway.security import certs
    from tests.helpers import free_port, running_gateway

    print(f"2. end to end, {STATIONS} OCPP 1.6 stations over TLS WebSockets (stations in a separate process)")
    with tempfile.TemporaryDirectory() as tmp:
        pki = Path(tmp) / "pki"
        pki.mkdir()
        ca = certs.create_ca("Bench CA")
        server = certs.issue_server(ca, common_name="localhost", hosts=["localhost", "127.0.0.1"])
        certs.write_pair(server, pki / "server.pem", pki / "server.key", chain=[ca])
        certs.write_cert(pki / "ca.pem", [ca])
        port = free_port()
        yaml_text, secrets = gateway_config(port, pki)
        async with running_gateway(Path(tmp), yaml_text, secrets) as gw:
            assert not gw.failed_plugins, gw.failed_plugins
            received: dict[str, list[tuple[float, float]]] = {}
            proc = await asyncio.create_subprocess_exec(
                sys.executable, __file__, "--fleet", f"wss://127.0.0.1:{port}/ocpp", str(STATIONS),
                str(pki / "ca.pem"), stdout=asyncio.subprocess.PIPE, cwd=str(ROOT))

            async def read() -> None:
                assert proc.stdout is not None
                while line := await proc.stdout.readline():
                    event = json.loads(line)
                    received.setdefault(event["id"].lower(), []).append((event["t"], event["limit"]))

            reader = asyncio.create_task(read())
            grid = {"a": 0.0}

            def set_meter(amps: float) -> None:
                grid["a"] = amps
                for k in (1, 2, 3):
                    gw.states.set(f"sensor.grid_current_l{k}", amps, "A", owner="benchmeter")
                gw.states.set("sensor.grid_power", amps * 690.0, "W", owner="benchmeter")

            async def keep_fresh() -> None:
                while True:  # the meter repeats its reading every second, as a polled meter does
                    set_meter(grid["a"])
                    await asyncio.sleep(1.0)

            fresher = asyncio.create_task(keep_fresh())
            ids = [f"cp{k:03d}" for k in range(1, STATIONS + 1)]

            async def all_reached(since: float, limit: float, within: float = 30.0) -> float:
                deadline = time.monotonic() + within
                while True:
                    last = []
                    for cid in ids:
                        hits = [t for t, v in received.get(cid, []) if t >= since and abs(v - limit) < 1e-6]
                        if not hits:
                            break
                        last.append(hits[0])
                    else:
                        return max(last) - since
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"not every station received {limit} A")
                    await asyncio.sleep(0.002)

            set_meter(0.0)
            await all_reached(0.0, 16.0, within=120)  # every station connected and at its maximum
            meter_samples: list[float] = []
            limit_samples: list[float] = []
            direct_samples: list[float] = []
            context = Context(origin="bench", principal="energy-manager", role=Role.OPERATOR)
            for _ in range(cycles):
                # Grid readings: 100 A more house load per phase per step = 1 A less for each station.
                for step in range(1, 10):
                    t0 = time.monotonic()
                    set_meter(100.0 * step)
                    expected = sent_after_decrease(1699 - 100.0 * step)
                    meter_samples.append(await all_reached(t0, expected))
                set_meter(0.0)
                await all_reached(time.monotonic(), 16.0, within=60)
                # Site limits: 1 A per station less each step (3 x 230 V x 100 stations = 69 kW per ampere).
                for step in range(1, 10):
                    amps = 16 - step
                    t0 = time.monotonic()
                    await gw.services.call("loadmanager", "set_site_limit", {"limit_w": amps * 69000.0 + 100},
                                           context=context)
                    limit_samples.append(await all_reached(t0, float(amps)))
                await gw.services.call("loadmanager", "set_site_limit", {"active": False}, context=context)
                await all_reached(time.monotonic(), 16.0, within=60)
            # Baseline: the same commands straight to charger.set_current_limit, all at once, no load manager.
            await gw.services.call("loadmanager", "set_site_limit", {"limit_w": 7 * 69000.0 + 100},
                                   context=context)
            await all_reached(time.monotonic(), 7.0)
            for k in range(cycles * 9):
                value = 12.0 if k % 2 == 0 else 11.0
                t0 = time.monotonic()
                await asyncio.gather(*(gw.services.call("charger", "set_current_limit",
                                                        {"charger": cid, "limit_a": value}) for cid in ids))
                direct_samples.append(await all_reached(t0, value))
            fresher.cancel()
            proc.terminate()
            await proc.wait()
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(fresher, reader)
        meter = statistics.median(meter_samples)
        direct = statistics.median(direct_samples)
        print(f"   grid reading -> last SetChargingProfile: {percentiles(meter_samples)}")
        print(f"   site limit   -> last SetChargingProfile: {percentiles(limit_samples)}")
        print(f"   baseline, 100 direct set_current_limit calls -> last profile: {percentiles(direct_samples)}")
        print(f"   ratio (median) load manager path / direct commands: {meter / direct:.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--no-e2e", action="store_true", help="allocation cost only")
    parser.add_argument("--fleet", nargs=3, metavar=("URL", "COUNT", "CA"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.fleet:
        asyncio.run(fleet(args.fleet[0], int(args.fleet[1]), args.fleet[2]))
        return 0
    bench_allocation(args.quick)
    if not args.no_e2e:
        asyncio.run(bench_end_to_end(cycles=1 if args.quick else 3))
    return 0


if __name__ == "__main__":
    sys.exit(main())
