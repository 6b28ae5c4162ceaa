"""OCPP central system under many stations, against a bare baseline measured in the same run.

Simulated stations run in a separate process on the same machine, connect over TLS (security profile 2:
Basic Auth over TLS for Ampgate) and send OCPP 1.6 MeterValues. Two servers are measured one after the
other with the same load:

- ``baseline``: a bare central system built like the ``ocpp`` library's own example
  (``examples/v16/central_system.py``: ``websockets.serve`` + a ``ChargePoint`` subclass answering
  BootNotification, plus MeterValues), over the same TLS certificate, without authentication, persistence or
  states. Its logging is set to WARNING (the example logs every frame at INFO, which would measure the
  terminal, not the server).
- ``ampgate``: a real ``Gateway`` with the OCPP plugin (policy-checked configuration, one configured station
  with its own password per simulated station, SQLite, the audit log, entity states and the bus).

Per server and number of stations it reports: connect rate (TLS + HTTP upgrade + auth, 64 in flight),
messages/s handled with every station sending as fast as it is answered (closed loop, one outstanding CALL
per station as OCPP-J requires), CALL -> CALLRESULT latency p50/p99 at the paced rate (each station every
``--interval`` s) and under that saturation, and server RSS per connected idle station (RSS after all
stations connected and booted, minus RSS before the first connection, divided by the stations).

Run (raises RLIMIT_NOFILE itself):
    .venv/bin/python bench/ocpp_stations.py --sizes 100,1000,3000 --interval 10 --paced 30 --saturate 10
Add ``--small-ssl-buffer`` to repeat with asyncio's per-connection TLS read buffer cut from 256 KiB to
17 KiB in both servers (an experiment, see docs/plugins/ocpp.md "Performance"), ``--json`` for raw figures.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import datetime as dt
import gc
import json
import logging
import os
import resource
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CONNECT_CONCURRENCY = 64
METER_VALUES = {"connectorId": 1, "meterValue": [{"timestamp": "2026-01-01T10:00:00Z", "sampledValue": [
    {"value": "12345.6", "measurand": "Energy.Active.Import.Register", "unit": "Wh"},
    {"value": "7360", "measurand": "Power.Active.Import", "unit": "W"},
    {"value": "10.6", "measurand": "Current.Import", "unit": "A", "phase": "L1"},
    {"value": "10.7", "measurand": "Current.Import", "unit": "A", "phase": "L2"},
    {"value": "10.5", "measurand": "Current.Import", "unit": "A", "phase": "L3"},
    {"value": "230.1", "measurand": "Voltage", "unit": "V", "phase": "L1-N"},
]}]}
BOOT = {"chargePointVendor": "Bench", "chargePointModel": "Sim"}


def identity(n: int) -> str:
    return f"SIM{n:06d}"


def password(n: int) -> str:
    return f"bench-pw-{n:06d}-Xq7Zr2Lk"  # 25 bytes, unique per station (OCPP-009)


def rss_bytes(pid: int | str = "self") -> int:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def raise_fd_limit(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(max(soft, wanted), hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def small_ssl_buffer() -> None:
    # asyncio's SSLProtocol allocates (and zero-fills) a 256 KiB read buffer per TLS connection; a TLS record
    # is at most 16 KiB + overhead, so 17 KiB loses nothing but throughput on bulk transfers.
    import asyncio.sslproto as sslproto

    sslproto.SSLProtocol.max_size = 17 * 1024


# -- the PKI ------------------------------------------------------------------------------------------------


def make_pki(directory: Path) -> tuple[Path, Path, Path]:
    from gateway.security import certs

    ca = certs.create_ca("Bench CA")
    server = certs.issue_server(ca, common_name="localhost", hosts=["127.0.0.1", "localhost"])
    certs.write_pair(server, directory / "server.pem", directory / "server.key", chain=[ca])
    certs.write_cert(directory / "ca.pem", [ca])
    return directory / "server.pem", directory / "server.key", directory / "ca.pem"


# -- servers (each runs in its own process) -----------------------------------------------------------------


async def serve_baseline(port: int, directory: Path) -> None:
    """After the library's examples/v16/central_system.py (websockets >= 14 handler signature)."""
    from ocpp.routing import on
    from ocpp.v16 import ChargePoint as cp
    from ocpp.v16 import call_result
    from ocpp.v16.enums import Action, RegistrationStatus
    from websockets.asyncio.server import serve

    logging.basicConfig(level=logging.WARNING)

    class ChargePoint(cp):  # type: ignore[misc]
        @on(Action.boot_notification)
        def on_boot_notification(self, charge_point_vendor: str, charge_point_model: str, **kwargs: Any) -> Any:
            return call_result.BootNotification(current_time=dt.datetime.now(dt.UTC).isoformat(), interval=10,
                                                status=RegistrationStatus.accepted)

        @on(Action.meter_values)
        def on_meter_values(self, **kwargs: Any) -> Any:
            return call_result.MeterValues()

    async def on_connect(websocket: Any) -> None:
        if not websocket.subprotocol:
            await websocket.close()
            return
        charge_point_id = websocket.request.path.strip("/")
        with contextlib.suppress(Exception):
            await ChargePoint(charge_point_id, websocket).start()

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)  # bench baseline only: the same cert, default settings
    ctx.load_cert_chain(directory / "server.pem", directory / "server.key")
    async with serve(on_connect, "127.0.0.1", port, subprotocols=["ocpp1.6"], ssl=ctx, compression=None):
        print(f"READY {rss_bytes()}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGUSR1, freeze_heap)
        await stop.wait()


def ampgate_config(directory: Path, port: int, stations: int) -> Path:
    lines = ["gateway:", "  log_level: warning", "ocpp:", "  enabled: true", f"  port: {port}",
             "  heartbeat_interval: 300", "  tls:", f"    cert: {directory / 'server.pem'}",
             f"    key: {directory / 'server.key'}", f"    ca: {directory / 'ca.pem'}", "  stations:"]
    secrets = []
    for n in range(stations):
        lines += [f"    - id: {identity(n)}", f"      password: !secret p{n}", '      version: "1.6"',
                  "      rate_unit: A"]
        secrets.append(f'p{n}: "{password(n)}"')
    (directory / "secrets.yaml").write_text("\n".join(secrets) + "\n")
    (directory / "secrets.yaml").chmod(0o600)
    path = directory / "config.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


async def serve_ampgate(port: int, directory: Path, stations: int) -> None:
    from gateway.bootstrap import prepare
    from gateway.core import Gateway
    from gateway.log import setup_logging
    from gateway.security.netaddr import HostInfo

    setup_logging("warning")
    config = ampgate_config(directory, port, stations)
    host = HostInfo({"lo": ("127.0.0.1", "::1")})
    plan = prepare(config, data_dir=directory / "data", host=host, today=dt.date.today())
    if plan.report.refused:
        raise SystemExit(f"policy refused the bench config: {[r.rule.id for r in plan.report.refused]}")
    gw = Gateway(plan.config, directory / "data")
    await gw.async_start(plan)
    if gw.failed_plugins:
        raise SystemExit(f"plugins failed: {gw.failed_plugins}")
    print(f"READY {rss_bytes()}", flush=True)
    pauses = watch_gc() if os.environ.get("BENCH_GC") else None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, freeze_heap)
    try:
        await stop.wait()
    finally:
        await gw.async_stop()
        if pauses is not None:
            print(f"gc pauses >10 ms: {sorted(pauses)[-10:]}", file=sys.stderr)


def freeze_heap() -> None:
    """``--gc-freeze`` experiment: move everything alive now (the connected stations) out of the collector's
    reach, so full collections only walk what was created since."""
    gc.collect()
    gc.freeze()
    PAUSES.clear()  # report the pauses after the freeze only


PAUSES: list[tuple[float, int]] = []


def watch_gc() -> list[tuple[float, int]]:
    """Record every garbage-collector pause over 10 ms (milliseconds, generation)."""
    pauses = PAUSES
    started: list[float] = [0.0]

    def callback(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        elif (ms := (time.perf_counter() - started[0]) * 1000) > 10:
            pauses.append((round(ms, 1), info["generation"]))

    gc.callbacks.append(callback)
    return pauses


# -- the simulated stations (their own process) --------------------------------------------------------------


class Sim:
    __slots__ = ("counter", "identity", "pending", "ws")

    def __init__(self, ident: str, ws: Any) -> None:
        self.identity = ident
        self.ws = ws
        self.counter = 0
        self.pending: dict[str, asyncio.Future[float]] = {}

    async def reader(self) -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(Exception):
            async for text in self.ws:
                frame = json.loads(text)
                if frame[0] == 2:  # the central system's CALLs (TriggerMessage): accept
                    await self.ws.send(json.dumps([3, frame[1], {"status": "Accepted"}]))
                    continue
                future = self.pending.pop(frame[1], None)
                if future is not None and not future.done():
                    future.set_result(loop.time())

    async def call(self, action: str, payload: dict[str, Any]) -> float:
        """Send one CALL and return its CALL -> CALLRESULT latency in seconds."""
        loop = asyncio.get_running_loop()
        self.counter += 1
        message_id = f"{self.identity}-{self.counter}"
        future: asyncio.Future[float] = loop.create_future()
        self.pending[message_id] = future
        sent = loop.time()
        await self.ws.send(json.dumps([2, message_id, action, payload], separators=(",", ":")))
        return await asyncio.wait_for(future, 30) - sent


async def run_load(kind: str, port: int, stations: int, ca: Path, interval: float, paced: float,
                   saturate: float) -> dict[str, Any]:
    from websockets.asyncio.client import connect

    from gateway.security.tls import client_context

    ctx = client_context(ca=ca)
    sims: list[Sim] = []
    readers: list[asyncio.Task[None]] = []
    semaphore = asyncio.Semaphore(CONNECT_CONCURRENCY)
    failures = 0

    async def open_one(n: int) -> None:
        nonlocal failures
        headers = {}
        if kind == "ampgate":
            token = base64.b64encode(f"{identity(n)}:{password(n)}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        async with semaphore:
            try:
                ws = await connect(f"wss://127.0.0.1:{port}/ocpp/{identity(n)}" if kind == "ampgate"
                                   else f"wss://127.0.0.1:{port}/{identity(n)}",
                                   ssl=ctx, subprotocols=["ocpp1.6"],  # type: ignore[list-item]
                                   additional_headers=headers, compression=None, open_timeout=60,
                                   ping_interval=None, max_queue=4)
            except Exception:
                failures += 1
                return
        sim = Sim(identity(n), ws)
        sims.append(sim)
        readers.append(asyncio.create_task(sim.reader()))

    started = time.perf_counter()
    await asyncio.gather(*(open_one(n) for n in range(stations)))
    connect_s = time.perf_counter() - started
    boots = await asyncio.gather(*(s.call("BootNotification", BOOT) for s in sims), return_exceptions=True)
    boot_failures = sum(1 for b in boots if isinstance(b, BaseException))
    await asyncio.sleep(1.0)  # let follow-up CALLs (TriggerMessage) settle before RSS is sampled
    print("IDLE", flush=True)
    sys.stdin.readline()  # the driver sampled the server's RSS
    # The load generator must not add its own pauses to the latencies: no collector runs while it measures
    # (with 3,000 connections a full collection takes tens of milliseconds).
    gc.collect()
    gc.freeze()
    gc.disable()

    paced_latencies: list[float] = []
    loop = asyncio.get_running_loop()

    async def paced_station(sim: Sim, offset: float, end: float) -> None:
        await asyncio.sleep(offset)
        while loop.time() < end:
            t0 = loop.time()
            with contextlib.suppress(Exception):
                paced_latencies.append(await sim.call("MeterValues", METER_VALUES))
            await asyncio.sleep(max(0.0, interval - (loop.time() - t0)))

    end = loop.time() + paced
    await asyncio.gather(*(paced_station(s, interval * i / max(1, len(sims)), end) for i, s in enumerate(sims)))

    saturated: list[float] = []

    async def flat_out(sim: Sim, end: float) -> None:
        while loop.time() < end:
            try:
                saturated.append(await sim.call("MeterValues", METER_VALUES))
            except Exception:
                return

    sat_start = loop.time()
    await asyncio.gather(*(flat_out(s, sat_start + saturate) for s in sims))
    sat_s = loop.time() - sat_start
    for sim in sims:
        with contextlib.suppress(Exception):
            await sim.ws.close()
    for task in readers:
        task.cancel()

    def pct(values: list[float], q: float) -> float | None:
        if not values:
            return None
        values = sorted(values)
        return values[min(len(values) - 1, int(q * len(values)))] * 1000

    return {
        "kind": kind, "stations": stations, "connected": len(sims), "connect_failures": failures,
        "boot_failures": boot_failures, "connect_s": round(connect_s, 2),
        "connect_rate": round(len(sims) / connect_s, 1) if connect_s else None,
        "paced_calls": len(paced_latencies), "paced_p50_ms": pct(paced_latencies, 0.50),
        "paced_p99_ms": pct(paced_latencies, 0.99),
        "saturated_msgs_per_s": round(len(saturated) / sat_s, 1) if sat_s else None,
        "saturated_p50_ms": pct(saturated, 0.50), "saturated_p99_ms": pct(saturated, 0.99),
        "mean_ms": round(statistics.fmean(paced_latencies) * 1000, 2) if paced_latencies else None,
    }


# -- the driver -------------------------------------------------------------------------------------------


def measure(kind: str, stations: int, args: argparse.Namespace, directory: Path) -> dict[str, Any]:
    from tests.helpers import free_port

    port = free_port()
    work = Path(tempfile.mkdtemp(dir=directory))
    for name in ("server.pem", "server.key", "ca.pem"):
        (work / name).write_bytes((directory / name).read_bytes())
        (work / name).chmod(0o600)
    flags = ["--small-ssl-buffer"] if args.small_ssl_buffer else []
    server = subprocess.Popen([sys.executable, __file__, "serve", kind, str(port), str(work), str(stations), *flags],
                              stdout=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline() if server.stdout else ""
        if not line.startswith("READY"):
            raise SystemExit(f"{kind} server did not start")
        before = rss_bytes(server.pid)
        load = subprocess.Popen([sys.executable, __file__, "load", kind, str(port), str(stations), str(work / "ca.pem"),
                                 str(args.interval), str(args.paced), str(args.saturate)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert load.stdout is not None and load.stdin is not None
        assert load.stdout.readline().strip() == "IDLE"
        idle = rss_bytes(server.pid)
        if args.gc_freeze:
            server.send_signal(signal.SIGUSR1)
            time.sleep(1.0)
        load.stdin.write("go\n")
        load.stdin.flush()
        result = json.loads(load.stdout.readline())
        load.wait(timeout=60)
        result["rss_before_mib"] = round(before / 2**20, 1)
        result["rss_idle_mib"] = round(idle / 2**20, 1)
        result["rss_per_station_kib"] = round((idle - before) / max(1, result["connected"]) / 1024, 1)
        result["rss_after_load_mib"] = round(rss_bytes(server.pid) / 2**20, 1)
        return result
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()


METRICS = ("connect_rate", "saturated_msgs_per_s", "paced_p50_ms", "paced_p99_ms", "saturated_p99_ms",
           "rss_per_station_kib")


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    merged = dict(runs[0])
    for key in METRICS:
        values = [r[key] for r in runs if r.get(key) is not None]
        merged[key] = statistics.median(values) if values else None
    merged["msgs_per_s_runs"] = [r["saturated_msgs_per_s"] for r in runs]
    return merged


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--sizes", default="100,1000,3000")
    parser.add_argument("--interval", type=float, default=10.0, help="s between MeterValues per station (paced)")
    parser.add_argument("--paced", type=float, default=30.0, help="s of paced load")
    parser.add_argument("--saturate", type=float, default=10.0, help="s of closed-loop load")
    parser.add_argument("--repeat", type=int, default=3, help="runs per server and size, interleaved; medians")
    parser.add_argument("--kinds", default="baseline,ampgate", help="servers to measure, in this order")
    parser.add_argument("--small-ssl-buffer", action="store_true",
                        help="experiment: asyncio TLS read buffer 17 KiB instead of 256 KiB, in both servers")
    parser.add_argument("--gc-freeze", action="store_true",
                        help="experiment: gc.freeze() in both servers once every station is connected")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    raise_fd_limit(2 * max(int(s) for s in args.sizes.split(",")) + 1024)
    kinds = args.kinds.split(",")
    load_before = os.getloadavg()
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        make_pki(directory)
        for size in (int(s) for s in args.sizes.split(",")):
            runs: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
            for _ in range(args.repeat):
                for kind in kinds:  # interleaved, so a busy moment of the machine hits both
                    run = measure(kind, size, args, directory)
                    runs[kind].append(run)
                    if not args.json:
                        print(json.dumps(run), flush=True)
            results += [median_of(runs[k]) for k in kinds]
    if args.json:
        print(json.dumps({"load_average": [load_before, os.getloadavg()], "results": results}, indent=2))
        return
    print(f"\nmedians of {args.repeat} interleaved runs; load average before {load_before[0]:.2f}, "
          f"after {os.getloadavg()[0]:.2f} (2 cores shared by stations and server)")
    print(f"{'stations':>8} {'server':<9} {'conn/s':>7} {'msg/s':>8} {'ratio':>6} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'sat p99':>8} {'KiB/st':>7}  msg/s runs")
    base = {r["stations"]: r["saturated_msgs_per_s"] or 0 for r in results if r["kind"] == "baseline"}
    for r in results:
        ratio = (r["saturated_msgs_per_s"] or 0) / base[r["stations"]] if base.get(r["stations"]) else 0
        print(f"{r['stations']:>8} {r['kind']:<9} {r['connect_rate'] or 0:>7.0f} "
              f"{r['saturated_msgs_per_s'] or 0:>8.0f} {ratio:>6.2f} {r['paced_p50_ms'] or 0:>7.1f} "
              f"{r['paced_p99_ms'] or 0:>7.1f} "
              f"{r['saturated_p99_ms'] or 0:>8.1f} {r['rss_per_station_kib']:>7.1f}  {r['msgs_per_s_runs']}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        _, _, kind, port, work, count, *rest = sys.argv
        raise_fd_limit(2 * int(count) + 1024)
        if "--small-ssl-buffer" in rest:
            small_ssl_buffer()
        if kind == "baseline":
            asyncio.run(serve_baseline(int(port), Path(work)))
        else:
            asyncio.run(serve_ampgate(int(port), Path(work), int(count)))
    elif len(sys.argv) > 1 and sys.argv[1] == "load":
        _, _, kind, port, count, ca, interval, paced, saturate = sys.argv
        raise_fd_limit(2 * int(count) + 1024)
        print(json.dumps(asyncio.run(run_load(kind, int(port), int(count), Path(ca), float(interval),
                                               float(paced), float(saturate)))), flush=True)
    else:
        main()
