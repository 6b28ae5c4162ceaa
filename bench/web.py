"""Web console throughput and live fan-out, against plain aiohttp measured in the same run.

1. Requests/s for ``GET /api/states`` with 500 entities (bearer token, HTTPS), against aiohttp's hello-world
   handler (``web.Response(text="Hello, world")``) served the same way (same TLS context, same client).
2. The time for one state change to reach 100 connected ``/api/stream`` clients (p50/p99/max over every
   client and change), against a bare aiohttp broadcast (the same bytes written to 100 ``StreamResponse``s
   in a loop, no bus, no queues). Goal (issue 8): p99 under 50 ms at 100 clients.

The load runs in a separate process (this script with ``--client``), so the server keeps its core.
Run: ``.venv/bin/python bench/web.py`` (``--json`` for machine-readable output, ``--quick`` for a short run).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aiohttp import ClientSession, ClientTimeout, TCPConnector, web

from gateway.security import certs, tls

ENTITIES = 500
CLIENTS = 100
CONCURRENCY = 32
HELLO = "Hello, world"


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


# -- the load generator (child process) ---------------------------------------------------------------


async def client_get(url: str, token: str, ca: str, seconds: float, concurrency: int) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    done = 0
    errors = 0
    deadline = time.perf_counter() + seconds
    connector = TCPConnector(ssl=tls.client_context(ca=ca), limit=concurrency)
    async with ClientSession(connector=connector) as session:
        async def worker() -> None:
            nonlocal done, errors
            while time.perf_counter() < deadline:
                async with session.get(url, headers=headers) as resp:
                    await resp.read()
                    if resp.status == 200:
                        done += 1
                    else:
                        errors += 1

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    return {"requests": done, "errors": errors, "rate": done / elapsed}


async def client_sse(url: str, token: str, ca: str, clients: int) -> dict[str, Any]:
    """Open ``clients`` streams, say READY, then time every ``state`` event (its value is the send time)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    latencies: list[float] = []
    connector = TCPConnector(ssl=tls.client_context(ca=ca), limit=clients + 1)
    async with ClientSession(connector=connector, timeout=ClientTimeout(total=None)) as session:
        ready = asyncio.Event()
        opened = 0

        async def one() -> None:
            nonlocal opened
            async with session.get(url, headers=headers) as resp:
                assert resp.status == 200, resp.status
                buffer = b""
                started = False
                while True:
                    chunk = await resp.content.readany()
                    if not chunk:
                        return
                    now = time.time()
                    buffer += chunk
                    while b"\n\n" in buffer:
                        event, buffer = buffer.split(b"\n\n", 1)
                        if not started and (b"event: snapshot" in event or b"event: hello" in event):
                            started = True
                            opened += 1
                            if opened == clients:
                                ready.set()
                            continue
                        for line in event.split(b"\n"):
                            if line.startswith(b"data: "):
                                sent = _sent_time(line[6:])
                                if sent is None:
                                    continue
                                if sent < 0:
                                    return
                                latencies.append(now - sent)

        tasks = [asyncio.create_task(one()) for _ in range(clients)]
        await asyncio.wait_for(ready.wait(), 60)
        print("READY", flush=True)
        await asyncio.gather(*tasks)
    return {"samples": len(latencies), "p50_ms": percentile(latencies, 50) * 1000,
            "p99_ms": percentile(latencies, 99) * 1000, "max_ms": max(latencies) * 1000}


def _sent_time(data: bytes) -> float | None:
    try:
        message = json.loads(data)
    except ValueError:
        return None
    # The console's event carries the state; the bare baseline sends the timestamp alone.
    console_event = isinstance(message, dict) and "state" in message
    value = (message.get("state") or {}).get("value") if console_event else message
    return float(value) if isinstance(value, int | float) else None


def client_main(args: argparse.Namespace) -> None:
    if args.client == "get":
        result = asyncio.run(client_get(args.url, args.token, args.ca, args.seconds, args.concurrency))
    else:
        result = asyncio.run(client_sse(args.url, args.token, args.ca, args.clients))
    print(json.dumps(result), flush=True)


# -- servers (this process) ---------------------------------------------------------------------------------


async def spawn(*extra: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(sys.executable, __file__, *extra, stdout=asyncio.subprocess.PIPE,
                                                env={**os.environ, "PYTHONPATH": str(ROOT)})


async def run_get_load(url: str, token: str, ca: str, seconds: float) -> dict[str, Any]:
    proc = await spawn("--client", "get", "--url", url, "--token", token, "--ca", ca, "--seconds", str(seconds),
                       "--concurrency", str(CONCURRENCY))
    out, _ = await proc.communicate()
    return dict(json.loads(out.decode().strip().splitlines()[-1]))


@contextlib.asynccontextmanager
async def sse_clients(url: str, token: str, ca: str) -> AsyncIterator[asyncio.subprocess.Process]:
    proc = await spawn("--client", "sse", "--url", url, "--token", token, "--ca", ca, "--clients", str(CLIENTS))
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 60)
    assert line.strip() == b"READY", line
    try:
        yield proc
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()


async def finish(proc: asyncio.subprocess.Process) -> dict[str, Any]:
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return dict(json.loads(out.decode().strip().splitlines()[-1]))


async def hello_world_and_broadcast(ssl_context: Any, ca: str, seconds: float, changes: int) -> dict[str, Any]:
    streams: list[web.StreamResponse] = []

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text=HELLO)

    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b"event: hello\ndata: {}\n\n")
        streams.append(response)
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.Event().wait()
        return response

    app = web.Application()
    app.router.add_get("/", hello)
    app.router.add_get("/stream", stream)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    port = runner.addresses[0][1]
    try:
        rate = await run_get_load(f"https://127.0.0.1:{port}/", "", ca, seconds)
        async with sse_clients(f"https://127.0.0.1:{port}/stream", "", ca) as proc:
            for _ in range(changes):
                data = f"data: {time.time()!r}\n\n".encode()
                for response in streams:
                    await response.write(data)
                await asyncio.sleep(0.02)
            for response in streams:
                await response.write(b"data: -1\n\n")
            fanout = await finish(proc)
    finally:
        await runner.cleanup()
    return {"get": rate, "fanout": fanout}


async def console(tmp: Path, seconds: float, changes: int) -> dict[str, Any]:
    from gateway.security import passwords
    from gateway.security.audit import AuditLog
    from gateway.security.users import UserStore
    from gateway.storage import Storage
    from plugins.web.console import WebConsole
    from tests.helpers import free_port, running_gateway

    passwords.SCRYPT_N = 2**10
    data = tmp / "data"
    data.mkdir()
    storage = Storage(data).open()
    UserStore(storage, AuditLog(storage)).add("admin", "admin", "Bench!Pass#2024x")
    storage.close()
    port = free_port()
    async with running_gateway(tmp, f"web:\n  enabled: true\n  port: {port}\n") as gw:
        assert gw._runner is not None
        web_console = next(r.instance for r in gw._runner.running if r.name == "web")
        assert isinstance(web_console, WebConsole)
        for i in range(ENTITIES):
            gw.states.set(f"sensor.bench_{i:03d}_power", float(i), "W", {"phase": "l1"}, owner="bench")
        token, _ = await web_console.store.create_token(name="bench", scope="read", created_by="admin",
                                                        now=time.time())
        ca = str(data / "certs" / "ca.pem")
        base = f"https://127.0.0.1:{port}"
        rate = await run_get_load(f"{base}/api/states", token, ca, seconds)
        async with sse_clients(f"{base}/api/stream?entity_id=sensor.bench_ts", token, ca) as proc:
            for _ in range(changes):
                gw.states.set("sensor.bench_ts", time.time(), "s", owner="bench")
                await asyncio.sleep(0.02)
            gw.states.set("sensor.bench_ts", -1.0, "s", owner="bench")
            fanout = await finish(proc)
    return {"get": rate, "fanout": fanout, "ca": ca}


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    seconds = 2.0 if args.quick else 5.0
    changes = 50 if args.quick else 200
    with tempfile.TemporaryDirectory() as tmp:
        ours = await console(Path(tmp), seconds, changes)
        # The same certificate and TLS settings for the baseline.
        own = certs.ensure_gateway_certs(Path(tmp) / "data")
        ssl_context = tls.server_context(cert=own.cert, key=own.key)
        base = await hello_world_and_broadcast(ssl_context, str(own.ca_cert), seconds, changes)
    return {
        "entities": ENTITIES, "clients": CLIENTS, "concurrency": CONCURRENCY,
        "states_rps": round(ours["get"]["rate"]), "hello_rps": round(base["get"]["rate"]),
        "states_vs_hello": round(ours["get"]["rate"] / base["get"]["rate"], 3),
        "fanout_p50_ms": round(ours["fanout"]["p50_ms"], 2), "fanout_p99_ms": round(ours["fanout"]["p99_ms"], 2),
        "fanout_max_ms": round(ours["fanout"]["max_ms"], 2), "fanout_samples": ours["fanout"]["samples"],
        "bare_p50_ms": round(base["fanout"]["p50_ms"], 2), "bare_p99_ms": round(base["fanout"]["p99_ms"], 2),
        "errors": ours["get"]["errors"] + base["get"]["errors"],
        "goal_p99_under_50ms": ours["fanout"]["p99_ms"] < 50,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--client", choices=("get", "sse"), help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--token", default="", help=argparse.SUPPRESS)
    parser.add_argument("--ca", help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=5.0, help=argparse.SUPPRESS)
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY, help=argparse.SUPPRESS)
    parser.add_argument("--clients", type=int, default=CLIENTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        client_main(args)
        return
    result = asyncio.run(main_async(args))
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"GET /api/states ({ENTITIES} entities, {CONCURRENCY} connections, HTTPS): {result['states_rps']} req/s; "
          f"aiohttp hello world: {result['hello_rps']} req/s (ratio {result['states_vs_hello']})")
    print(f"fan-out of one change to {CLIENTS} /api/stream clients: p50 {result['fanout_p50_ms']} ms, "
          f"p99 {result['fanout_p99_ms']} ms, max {result['fanout_max_ms']} ms ({result['fanout_samples']} samples); "
          f"bare aiohttp broadcast p50 {result['bare_p50_ms']} ms, p99 {result['bare_p99_ms']} ms")
    print(f"goal p99 < 50 ms: {'met' if result['goal_p99_under_50ms'] else 'NOT met'}; errors: {result['errors']}")


if __name__ == "__main__":
    main()
