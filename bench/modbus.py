"""Modbus plugin performance against pymodbus baselines measured in the same run.

1. Meters: N simulated SDM630 meters (pymodbus servers on N loopback ports, all in one separate process whose
   power registers change on every read) polled at 1 Hz by a real gateway running the modbus plugin. Reported:
   CPU of the gateway process (getrusage, user + system, as % of one core) and the p50/p99 read latency.
   Baseline: pymodbus's own AsyncModbusTcpClient polling the same servers, one plain loop per meter, the same
   read (one 76-register FC4 block per meter per second), in this process after the gateway stopped.
   Goal (issue 6): 100 meters at 1 Hz under 15 % of one core.
2. Server: requests answered per second by the gateway's Modbus server (a real gateway in its own process)
   against pymodbus's ModbusTcpServer (its own process) on the same map: 20 float32 input registers, FC4 reads
   of 40 registers, 12 connections (from 127.0.0.1-3: the server admits 4 per address) each doing
   request/response back to back (no pipelining: pymodbus's server answers only the first of pipelined
   requests, protocol note §6.1). Also the server process's CPU per answered request (/proc). Goal: at least
   0.8x pymodbus.

Run: ``.venv/bin/python bench/modbus.py`` (``--meters 100 --seconds 20 --server-seconds 5``, ``--json``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import random
import resource
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

READ_COUNT = 0x4C  # the SDM630 map is one 76-register block
SERVER_ENTRIES = 20


def free_ports(n: int) -> list[int]:
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def f32(value: float) -> list[int]:
    return list(struct.unpack(">HH", struct.pack(">f", value)))


# -- child processes -------------------------------------------------------------------------------------------


async def simulate_meters(ports: list[int]) -> None:
    from pymodbus.server import ModbusTcpServer
    from pymodbus.simulator import DataType, SimData, SimDevice

    base = [0] * 0x50
    for address, value in ((0x00, 230.1), (0x02, 231.0), (0x04, 229.4), (0x06, 10.2), (0x08, 9.8), (0x0A, 8.1),
                           (0x0C, 2300.0), (0x0E, 2100.0), (0x10, 1800.0), (0x34, 6200.0), (0x46, 50.0),
                           (0x48, 12345.6), (0x4A, 678.9)):
        base[address:address + 2] = f32(value)

    async def jitter(function_code: int, start_address: int, address: int, count: int,
                     current_registers: list[int], set_values: Any) -> None:
        # A live meter: total and phase power move on every read, so the gateway publishes real changes.
        power = 6200.0 + random.uniform(-50, 50)
        if start_address <= 0x34 < start_address + len(current_registers) - 1:
            current_registers[0x34 - start_address:0x36 - start_address] = f32(power)
        if start_address <= 0x0C < start_address + len(current_registers) - 1:
            current_registers[0x0C - start_address:0x0E - start_address] = f32(power / 3)
        return None

    servers = []
    for port in ports:
        bits = [SimData(address=0, values=[False] * 16, datatype=DataType.BITS)]
        ir = [SimData(address=0, values=list(base), datatype=DataType.REGISTERS)]
        hr = [SimData(address=60000, values=[0], datatype=DataType.REGISTERS)]
        dev = SimDevice(id=1, simdata=(bits, list(bits), hr, ir), action=jitter)
        server = ModbusTcpServer(dev, address=("127.0.0.1", port))
        await server.serve_forever(background=True)
        servers.append(server)
    print("ready", flush=True)
    await asyncio.Event().wait()


def server_map_yaml(port: int) -> str:
    lines = [f"modbus:\n  enabled: true\n  server:\n    enabled: true\n    port: {port}\n    input_registers:"]
    for i in range(SERVER_ENTRIES):
        lines.append(f"      - {{address: {2 * i}, entity: sensor.bench_{i}}}")
    return "\n".join(lines) + "\n"


def server_values() -> list[float]:
    return [1000.0 + i * 1.5 for i in range(SERVER_ENTRIES)]


async def serve_ours(port: int) -> None:
    gw, _ = await start_gateway(server_map_yaml(port))
    for i, value in enumerate(server_values()):
        gw.states.set(f"sensor.bench_{i}", value, "W", owner="bench")
    print("ready", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await gw.async_stop()


async def serve_pymodbus(port: int) -> None:
    from pymodbus.server import ModbusTcpServer
    from pymodbus.simulator import DataType, SimData, SimDevice

    regs: list[int] = []
    for value in server_values():
        regs += f32(value)
    bits = [SimData(address=0, values=[False] * 16, datatype=DataType.BITS)]
    ir = [SimData(address=0, values=regs, datatype=DataType.REGISTERS)]
    hr = [SimData(address=60000, values=[0], datatype=DataType.REGISTERS)]
    server = ModbusTcpServer(SimDevice(id=1, simdata=(bits, list(bits), hr, ir)), address=("127.0.0.1", port))
    await server.serve_forever(background=True)
    print("ready", flush=True)
    await asyncio.Event().wait()


def child(*args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.strip() != "ready":
        proc.kill()
        raise SystemExit(f"child {args} failed to start: {line!r}")
    return proc


def child_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def stop_child(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=10)


# -- gateway ---------------------------------------------------------------------------------------------------


async def start_gateway(yaml_text: str) -> tuple[Any, Path]:
    import logging

    from gateway.bootstrap import prepare
    from gateway.core import Gateway
    from gateway.security.netaddr import HostInfo

    logging.basicConfig(level=logging.ERROR)
    directory = Path(tempfile.mkdtemp(prefix="ampgate-bench-"))
    (directory / "config.yaml").write_text(yaml_text)
    plan = prepare(directory / "config.yaml", data_dir=directory / "data",
                   host=HostInfo({"lo": ("127.0.0.1",)}), today=dt.date.today())
    if plan.report.refused:
        raise SystemExit("policy refused the bench config: " + ", ".join(r.rule.id for r in plan.report.refused))
    gw = Gateway(plan.config, directory / "data")
    await gw.async_start(plan)
    return gw, directory


async def bench_gateway_polling(ports: list[int], seconds: float) -> dict[str, float]:
    meters = "".join(f"    - {{name: m{i}, model: eastron_sdm630, host: 127.0.0.1, port: {port}, "
                     f"poll_interval: 1s, timeout: 1s, retries: 1, load_management: false}}\n"
                     for i, port in enumerate(ports))
    gw, _ = await start_gateway(f"modbus:\n  enabled: true\n  meters:\n{meters}")
    plugin = next(r.instance for r in gw._runner.running if r.name == "modbus")
    latencies: list[float] = []
    for poller in plugin.pollers:
        poller._on_latency = latencies.append  # the bench's only look inside: the read round trips
    changes = 0

    def count(_: Any) -> None:
        nonlocal changes
        changes += 1

    gw.bus.subscribe("state_changed", count, owner="bench")
    try:
        await asyncio.sleep(3)  # connect and settle
        latencies.clear()
        changes = 0
        cpu0, wall0 = cpu_seconds(), time.perf_counter()
        await asyncio.sleep(seconds)
        cpu, wall = cpu_seconds() - cpu0, time.perf_counter() - wall0
        reads = len(latencies)
        unavailable = sum(1 for s in gw.states.all("sensor") if s.value == "unavailable")
        return {"cpu_percent": 100 * cpu / wall, "reads_per_s": reads / wall, "p50_ms": 1000 * percentile(
            latencies, 0.5), "p99_ms": 1000 * percentile(latencies, 0.99), "state_changes_per_s": changes / wall,
            "unavailable_entities": unavailable}
    finally:
        await gw.async_stop()


async def bench_pymodbus_polling(ports: list[int], seconds: float) -> dict[str, float]:
    from pymodbus.client import AsyncModbusTcpClient

    clients = [AsyncModbusTcpClient("127.0.0.1", port=p, timeout=1, retries=1) for p in ports]
    for c in clients:
        await c.connect()
    latencies: list[float] = []
    stop = asyncio.Event()

    async def loop(client: AsyncModbusTcpClient, offset: float) -> None:
        await asyncio.sleep(offset)  # spread over the second, as the gateway spreads its pollers
        next_at = time.perf_counter()
        while not stop.is_set():
            started = time.perf_counter()
            rr = await client.read_input_registers(0, count=READ_COUNT, device_id=1)
            latencies.append(time.perf_counter() - started)
            assert not rr.isError()
            next_at += 1.0
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))

    tasks = [asyncio.create_task(loop(c, i / len(clients))) for i, c in enumerate(clients)]
    try:
        await asyncio.sleep(3)
        latencies.clear()
        cpu0, wall0 = cpu_seconds(), time.perf_counter()
        await asyncio.sleep(seconds)
        cpu, wall = cpu_seconds() - cpu0, time.perf_counter() - wall0
        reads = len(latencies)
        return {"cpu_percent": 100 * cpu / wall, "reads_per_s": reads / wall,
                "p50_ms": 1000 * percentile(latencies, 0.5), "p99_ms": 1000 * percentile(latencies, 0.99)}
    finally:
        stop.set()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for c in clients:
            c.close()


# -- server load -----------------------------------------------------------------------------------------------


class _LoadClient(asyncio.Protocol):
    """Request/response back to back on one connection, as lean as Python allows so that the server, not the
    load generator, is what gets measured."""

    def __init__(self, request: bytes, expected: bytes, deadline: float, done: asyncio.Future[None]) -> None:
        self.request, self.expected, self.deadline, self.done = request, expected, deadline, done
        self.buffer = b""
        self.answers = 0
        self.bad = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) < len(self.expected):
            return
        if self.buffer == self.expected:
            self.answers += 1
        else:
            self.bad += 1
        self.buffer = b""
        assert self.transport is not None
        if time.perf_counter() < self.deadline:
            self.transport.write(self.request)
        else:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


async def load(port: int, connections: int, seconds: float) -> dict[str, float]:
    """``connections`` clients doing request/response back to back; counts valid answers per second."""
    loop = asyncio.get_running_loop()
    request = struct.pack(">HHHBBHH", 1, 0, 6, 1, 4, 0, 2 * SERVER_ENTRIES)
    payload = b"".join(struct.pack(">f", v) for v in server_values())
    expected = struct.pack(">HHHBBB", 1, 0, 3 + len(payload), 1, 4, len(payload)) + payload
    start = time.perf_counter()
    clients = []
    for i in range(connections):
        done: asyncio.Future[None] = loop.create_future()
        # Four connections per source address (the server's per-address limit), from 127.0.0.1, .2, ...
        _, client = await loop.create_connection(
            lambda d=done: _LoadClient(request, expected, start + seconds, d), "127.0.0.1", port,
            local_addr=(f"127.0.0.{1 + i // 4}", 0))
        clients.append(client)
    await asyncio.gather(*(c.done for c in clients))
    wall = time.perf_counter() - start
    return {"requests_per_s": sum(c.answers for c in clients) / wall, "bad_answers": sum(c.bad for c in clients)}


# -- main ------------------------------------------------------------------------------------------------------


async def main(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {"meters": args.meters}
    ports = free_ports(args.meters)
    sim = child("--simulate", ",".join(map(str, ports)))
    try:
        results["gateway_polling"] = await bench_gateway_polling(ports, args.seconds)
        results["pymodbus_polling"] = await bench_pymodbus_polling(ports, args.seconds)
    finally:
        stop_child(sim)
    results["cpu_ratio_vs_pymodbus"] = (results["gateway_polling"]["cpu_percent"]
                                        / results["pymodbus_polling"]["cpu_percent"])

    for name, flag in (("ours", "--serve-ours"), ("pymodbus", "--serve-pymodbus")):
        [port] = free_ports(1)
        proc = child(flag, str(port))
        try:
            await load(port, args.connections, 1.0)  # warm up
            cpu0 = child_cpu_seconds(proc.pid)
            results[f"server_{name}"] = await load(port, args.connections, args.server_seconds)
            cpu = child_cpu_seconds(proc.pid) - cpu0
            answered = results[f"server_{name}"]["requests_per_s"] * args.server_seconds
            results[f"server_{name}"]["cpu_percent"] = 100 * cpu / args.server_seconds
            results[f"server_{name}"]["us_cpu_per_request"] = 1e6 * cpu / max(answered, 1)
        finally:
            stop_child(proc)
    results["server_ratio_vs_pymodbus"] = (results["server_ours"]["requests_per_s"]
                                           / results["server_pymodbus"]["requests_per_s"])
    results["goals"] = {
        "polling_under_15_percent": results["gateway_polling"]["cpu_percent"] < 15.0,
        "server_at_least_0.8x": results["server_ratio_vs_pymodbus"] >= 0.8,
    }
    return results


def report(r: dict[str, Any]) -> str:
    g, p = r["gateway_polling"], r["pymodbus_polling"]
    return "\n".join([
        f"{r['meters']} meters at 1 Hz (one 76-register read each):",
        f"  gateway : {g['cpu_percent']:5.1f} % of one core, {g['reads_per_s']:6.1f} reads/s, "
        f"p50 {g['p50_ms']:.2f} ms, p99 {g['p99_ms']:.2f} ms, {g['state_changes_per_s']:.0f} state changes/s, "
        f"{g['unavailable_entities']} unavailable",
        f"  pymodbus: {p['cpu_percent']:5.1f} % of one core, {p['reads_per_s']:6.1f} reads/s, "
        f"p50 {p['p50_ms']:.2f} ms, p99 {p['p99_ms']:.2f} ms (plain client loop, no states)",
        f"  gateway / pymodbus CPU: {r['cpu_ratio_vs_pymodbus']:.2f}x",
        "server, FC4 reads of 40 registers:",
        f"  ours    : {r['server_ours']['requests_per_s']:8.0f} requests/s, server process "
        f"{r['server_ours']['cpu_percent']:.0f} % of a core, "
        f"{r['server_ours']['us_cpu_per_request']:.0f} us CPU/request",
        f"  pymodbus: {r['server_pymodbus']['requests_per_s']:8.0f} requests/s, server process "
        f"{r['server_pymodbus']['cpu_percent']:.0f} % of a core, "
        f"{r['server_pymodbus']['us_cpu_per_request']:.0f} us CPU/request",
        f"  ratio   : {r['server_ratio_vs_pymodbus']:.2f}x",
        f"goals: {r['goals']}",
    ])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--meters", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--server-seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=12)  # under MAX_CLIENTS (16)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--simulate", help=argparse.SUPPRESS)
    parser.add_argument("--serve-ours", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--serve-pymodbus", type=int, help=argparse.SUPPRESS)
    ns = parser.parse_args()
    if ns.simulate:
        asyncio.run(simulate_meters([int(p) for p in ns.simulate.split(",")]))
    elif ns.serve_ours:
        asyncio.run(serve_ours(ns.serve_ours))
    elif ns.serve_pymodbus:
        asyncio.run(serve_pymodbus(ns.serve_pymodbus))
    else:
        out = asyncio.run(main(ns))
        print(json.dumps(out, indent=2) if ns.json else report(out))
