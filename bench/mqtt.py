"""MQTT plugin performance against a plain paho publish loop on the same broker, in the same run.

Everything runs on loopback: a Mosquitto started by this script (no TLS, anonymous, no persistence), a
subscriber in its own process (paho, network thread, subscribed to ``<prefix>/+/state`` at QoS 0), and in
this process either the baseline or a real gateway (``gateway.bootstrap.prepare`` + ``Gateway``) running
the mqtt plugin with ``min_interval: 0`` (every change is a message; no coalescing to flatter the figures).
Both sides publish the same retained QoS 0 messages (MQTT 5) to the same number of topics.

1. Throughput: N changes as fast as the producer can go. Baseline: ``paho.Client.publish`` in a loop, (a)
   with paho's network thread (``loop_start``, the usual idiom) and (b) without it (publish() then writes
   to the socket itself, the fastest paho can go). Gateway: ``gw.states.set`` in batches of 500 between
   which the event loop runs (the pump publishes there). Rate = N / (time the subscriber received the last
   message - time the first change was made); also the CPU time of the publishing process per message.
   The three run in turn ``--repeat`` times and the best of each is kept: the broker and the subscriber
   share the machine's cores, so single runs vary a lot. Goal (issue 7): at least 0.8x the plain loop.
2. Sustained 10,000 changes/s for ``--seconds`` (100 every 10 ms on distinct entities), RSS of this process
   sampled before and after (and every second), messages the subscriber received. Goal: no growth.
3. Latency at 1,000 changes/s (5 every 5 ms): each value is the ``time.monotonic_ns()`` at ``states.set``
   (CLOCK_MONOTONIC is system-wide on Linux, so the subscriber process can subtract). p50/p99/max, and the
   same for the plain loop publishing at the same pace.

Run: ``.venv/bin/python bench/mqtt.py`` (``--changes 100000 --entities 10000 --seconds 10``, ``--json``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import gc
import json
import multiprocessing as mp
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

BATCH = 500


# -- broker ----------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def mosquitto(directory: Path) -> Iterator[int]:
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    port = free_port()
    conf = directory / "mosquitto.conf"
    conf.write_text(textwrap.dedent(f"""\
        listener {port} 127.0.0.1
        allow_anonymous true
        persistence false
        log_dest none
        max_queued_messages 1000000
        """) + ("user root\n" if os.geteuid() == 0 else ""))
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit("mosquitto did not start")
            time.sleep(0.02)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=5)


# -- the subscriber process ------------------------------------------------------------------------------------


def subscriber(port: int, conn: Connection) -> None:
    """Counts ``<prefix>/+/state`` messages; for latency runs, the payload is the sender's monotonic_ns."""
    state: dict[str, Any] = {"prefix": None, "count": 0, "first": 0, "last": 0, "latency": False, "lat": [],
                             "any": 0}

    def on_message(client: Any, userdata: Any, msg: paho.MQTTMessage) -> None:
        now = time.monotonic_ns()
        state["any"] += 1
        if state["prefix"] is None or not msg.topic.startswith(state["prefix"]) or msg.retain:
            return  # retain flag set: a replay of an older run's value on subscribe, not this run's message
        state["count"] += 1
        if state["count"] == 1:
            state["first"] = now
        state["last"] = now
        if state["latency"]:
            with contextlib.suppress(ValueError):
                state["lat"].append(now - int(msg.payload))

    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-subscriber",
                         protocol=MQTTProtocolVersion.MQTTv5)
    client.on_message = on_message
    client.connect("127.0.0.1", port, keepalive=60)
    client.subscribe("+/+/state", qos=0)
    client.loop_start()
    conn.send("ready")
    while True:
        cmd = conn.recv()
        if cmd[0] == "reset":
            state.update(prefix=cmd[1], count=0, first=0, last=0, latency=cmd[2], lat=[])
            conn.send("ok")
        elif cmd[0] == "quiet":
            # Until nothing at all has arrived for cmd[1] seconds: the previous phase's backlog is drained.
            seen, since = state["any"], time.monotonic()
            while time.monotonic() - since < cmd[1]:
                time.sleep(0.02)
                if state["any"] != seen:
                    seen, since = state["any"], time.monotonic()
            conn.send("ok")
        elif cmd[0] == "wait":
            _, expected, timeout = cmd
            deadline = time.monotonic() + timeout
            last_count, still = -1, time.monotonic()
            while state["count"] < expected and time.monotonic() < deadline:
                if state["count"] != last_count:
                    last_count, still = state["count"], time.monotonic()
                elif time.monotonic() - still > 2.0:
                    break  # nothing new for 2 s: what is missing is not coming
                time.sleep(0.005)
            conn.send({"count": state["count"], "first": state["first"], "last": state["last"],
                       "lat": state["lat"]})
        elif cmd[0] == "stop":
            client.loop_stop()
            client.disconnect()
            conn.send("bye")
            return


class Sub:
    def __init__(self, port: int) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=subscriber, args=(port, child), daemon=True)
        self.proc.start()
        assert self.conn.recv() == "ready"
        time.sleep(0.2)  # SUBACK

    def reset(self, prefix: str, latency: bool = False) -> None:
        """Count from now on the messages whose topic starts with ``prefix``."""
        self.conn.send(("reset", prefix, latency))
        assert self.conn.recv() == "ok"

    def quiet(self, seconds: float = 0.5) -> None:
        self.conn.send(("quiet", seconds))
        assert self.conn.recv() == "ok"

    def wait(self, expected: int, timeout: float = 120.0) -> dict[str, Any]:
        self.conn.send(("wait", expected, timeout))
        result: dict[str, Any] = self.conn.recv()
        return result

    def stop(self) -> None:
        self.conn.send(("stop",))
        self.conn.recv()
        self.proc.join(timeout=5)


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


# -- baseline: a plain paho loop -------------------------------------------------------------------------------


def plain_client(port: int, threaded: bool) -> paho.Client:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-plain-{threaded}",
                         protocol=MQTTProtocolVersion.MQTTv5)
    client.connect("127.0.0.1", port, keepalive=60)
    if threaded:
        client.loop_start()
    else:
        deadline = time.monotonic() + 5
        while not client.is_connected() and time.monotonic() < deadline:
            client.loop(0.05)
    time.sleep(0.1)
    return client


def plain_throughput(port: int, sub: Sub, n: int, entities: int, threaded: bool) -> dict[str, Any]:
    prefix = f"plain{int(threaded)}"
    client = plain_client(port, threaded)
    topics = [f"{prefix}/sensor.bench_{i}/state" for i in range(entities)]
    for topic in topics:  # warm-up: every topic exists once, as for the gateway
        client.publish(topic, b"0", qos=0, retain=True)
    if not threaded:
        client.loop(0.1)
    sub.quiet()
    sub.reset(f"{prefix}/sensor.bench_")
    cpu = time.process_time()
    start = time.monotonic_ns()
    for i in range(n):
        client.publish(topics[i % entities], str(i).encode(), qos=0, retain=True)
        if not threaded and i % BATCH == 0:
            client.loop(0)  # reads PINGRESP etc.; publish() already wrote
    result = sub.wait(n)
    cpu = time.process_time() - cpu  # this process (and paho's thread) until the subscriber had everything
    if threaded:
        client.loop_stop()
    client.disconnect()
    seconds = (result["last"] - start) / 1e9
    return {"received": result["count"], "seconds": seconds, "rate": result["count"] / seconds,
            "cpu_us_per_msg": cpu / n * 1e6}


def plain_latency(port: int, sub: Sub, seconds: float) -> dict[str, Any]:
    client = plain_client(port, threaded=True)
    sub.quiet()
    sub.reset("plainlat/", latency=True)
    sent = asyncio.run(_paced(lambda i, now: client.publish(f"plainlat/sensor.bench_{i % 100}/state",
                                                            str(now).encode(), qos=0, retain=True),
                              rate=1_000, chunk=5, seconds=seconds))
    result = sub.wait(sent, timeout=10)
    client.loop_stop()
    client.disconnect()
    lat_ms = [v / 1e6 for v in result["lat"]]
    return {"sent": sent, "received": result["count"], "p50_ms": percentile(lat_ms, 0.5),
            "p99_ms": percentile(lat_ms, 0.99), "max_ms": max(lat_ms, default=float("nan"))}


async def _paced(action: Any, *, rate: int, chunk: int, seconds: float) -> int:
    """Call ``action(i, monotonic_ns)`` ``rate`` times a second, ``chunk`` at a time; returns the count."""
    interval = chunk / rate
    loop = asyncio.get_running_loop()
    start = loop.time()
    i = 0
    tick = 0
    while loop.time() - start < seconds:
        for _ in range(chunk):
            action(i, time.monotonic_ns())
            i += 1
        tick += 1
        await asyncio.sleep(max(0.0, start + tick * interval - loop.time()))
    return i


# -- the gateway -----------------------------------------------------------------------------------------------


async def gateway_run(port: int, sub: Sub, args: argparse.Namespace, out: dict[str, Any]) -> None:
    from gateway.bootstrap import prepare
    from gateway.core import Gateway
    from gateway.security.netaddr import HostInfo

    directory = Path(tempfile.mkdtemp(prefix="ampgate-bench-mqtt-"))
    config = directory / "config.yaml"
    config.write_text(textwrap.dedent(f"""\
        gateway:
          name: bench
        mqtt:
          enabled: true
          host: 127.0.0.1
          port: {port}
          prefix: gw
          min_interval: 0
          tls:
            enabled: false
        """))
    plan = prepare(config, data_dir=directory / "data", host=HostInfo({"lo": ("127.0.0.1",)}), today=dt.date.today())
    assert not plan.report.refused, [r.rule.id for r in plan.report.refused]
    gw = Gateway(plan.config, directory / "data")
    await gw.async_start(plan)
    try:
        await asyncio.sleep(0.5)  # CONNACK
        set_ = gw.states.set
        n, entities = args.changes, args.entities
        names = [f"sensor.bench_{i}" for i in range(entities)]
        sustained_names = [f"sensor.sust_{i}" for i in range(entities)]
        latency_names = [f"sensor.lat_{i}" for i in range(100)]
        for name in (*names, *sustained_names, *latency_names):
            set_(name, -1, "W", owner="bench")  # warm-up: every entity exists and its attributes message is out
            await asyncio.sleep(0)
        await asyncio.to_thread(sub.quiet)

        # 1. throughput: the three variants in turn, REPEAT rounds, best of each (the least disturbed by the
        # broker, the subscriber and whatever else shares the machine).
        rounds: dict[str, list[dict[str, Any]]] = {"plain_threaded": [], "plain_direct": [], "gateway": []}
        for round_no in range(args.repeat):
            rounds["plain_threaded"].append(
                await asyncio.to_thread(plain_throughput, port, sub, n, entities, True))
            rounds["plain_direct"].append(await asyncio.to_thread(plain_throughput, port, sub, n, entities, False))
            await asyncio.to_thread(sub.quiet)
            sub.reset("gw/sensor.bench_")
            gc.collect()
            cpu = time.process_time()
            start = time.monotonic_ns()
            for base in range(0, n, BATCH):
                for i in range(base, min(base + BATCH, n)):
                    set_(names[i % entities], i + round_no * n, "W", owner="bench")
                await asyncio.sleep(0)
            result = await asyncio.to_thread(sub.wait, n)
            cpu = time.process_time() - cpu
            seconds = (result["last"] - start) / 1e9
            rounds["gateway"].append({"received": result["count"], "seconds": seconds, "rate": n / seconds,
                                      "delivered_rate": result["count"] / seconds, "cpu_us_per_msg": cpu / n * 1e6})
        for key, runs in rounds.items():
            best = dict(max(runs, key=lambda r: r["rate"]))
            best["all_rates"] = [round(r["rate"]) for r in runs]
            best["cpu_us_per_msg"] = min(r["cpu_us_per_msg"] for r in runs)
            out[key if key != "gateway" else "gateway_throughput"] = best
        out["plain_latency"] = await asyncio.to_thread(plain_latency, port, sub, args.latency_seconds)

        # 2. sustained 10,000/s
        await asyncio.to_thread(sub.quiet)
        sub.reset("gw/sensor.sust_")
        gc.collect()
        rss_before = rss_mb()
        samples: list[float] = []
        counter = [0]
        loop = asyncio.get_running_loop()
        t0 = loop.time()

        def change(i: int, now: int) -> None:
            set_(sustained_names[i % entities], now, "W", owner="bench")

        async def sample() -> None:
            while True:
                await asyncio.sleep(1.0)
                samples.append(rss_mb())

        sampler = asyncio.create_task(sample())
        counter[0] = await _paced(change, rate=10_000, chunk=100, seconds=args.seconds)
        elapsed = loop.time() - t0
        sampler.cancel()
        result = await asyncio.to_thread(sub.wait, counter[0], 20.0)
        gc.collect()
        out["sustained"] = {"target_per_s": 10_000, "seconds": args.seconds, "changes": counter[0],
                            "achieved_per_s": counter[0] / elapsed, "received": result["count"],
                            "rss_before_mb": rss_before, "rss_after_mb": rss_mb(), "rss_samples_mb": samples}

        # 3. latency at 1,000/s
        await asyncio.to_thread(sub.quiet)
        sub.reset("gw/sensor.lat_", latency=True)
        sent = await _paced(lambda i, now: set_(latency_names[i % 100], now, "W", owner="bench"), rate=1_000,
                            chunk=5, seconds=args.latency_seconds)
        result = await asyncio.to_thread(sub.wait, sent, 10.0)
        lat_ms = [v / 1e6 for v in result["lat"]]
        out["gateway_latency"] = {"sent": sent, "received": result["count"], "p50_ms": percentile(lat_ms, 0.5),
                                  "p99_ms": percentile(lat_ms, 0.99), "max_ms": max(lat_ms, default=float("nan")),
                                  "mean_ms": statistics.fmean(lat_ms) if lat_ms else float("nan")}
        dropped = gw.states.get("sensor.mqtt_dropped")
        out["gateway_dropped"] = dropped.value if dropped else None
    finally:
        await gw.async_stop()
        shutil.rmtree(directory, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--changes", type=int, default=100_000)
    parser.add_argument("--entities", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of the sustained 10,000/s run")
    parser.add_argument("--latency-seconds", type=float, default=5.0)
    parser.add_argument("--repeat", type=int, default=3, help="throughput rounds per variant (best is kept)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    out: dict[str, Any] = {"changes": args.changes, "entities": args.entities}
    with tempfile.TemporaryDirectory() as tmp, mosquitto(Path(tmp)) as port:
        sub = Sub(port)
        try:
            asyncio.run(gateway_run(port, sub, args, out))
        finally:
            sub.stop()
    if args.json:
        print(json.dumps(out, indent=2))
        return
    gt, pt, pd = out["gateway_throughput"], out["plain_threaded"], out["plain_direct"]
    print(f"throughput, {args.changes:,} retained QoS 0 messages over {args.entities:,} topics, loopback Mosquitto:")
    print(f"  plain paho loop, network thread : {pt['rate']:>9,.0f} msg/s ({pt['received']:,} received; "
          f"{pt['cpu_us_per_msg']:.1f} us CPU/msg in the publishing process)")
    print(f"  plain paho loop, no thread      : {pd['rate']:>9,.0f} msg/s ({pd['received']:,} received; "
          f"{pd['cpu_us_per_msg']:.1f} us CPU/msg)")
    print(f"  gateway states.set -> subscriber: {gt['rate']:>9,.0f} changes/s ({gt['received']:,} received, "
          f"{gt['delivered_rate']:,.0f} msg/s; {gt['cpu_us_per_msg']:.1f} us CPU/change)")
    print(f"  ratio vs threaded loop {gt['rate'] / pt['rate']:.2f}x, vs direct loop {gt['rate'] / pd['rate']:.2f}x "
          f"(goal >= 0.8x); CPU per message {pt['cpu_us_per_msg'] / gt['cpu_us_per_msg']:.2f}x / "
          f"{pd['cpu_us_per_msg'] / gt['cpu_us_per_msg']:.2f}x of the plain loops' efficiency")
    print(f"  (best of {args.repeat}; all rounds: threaded {pt['all_rates']}, direct {pd['all_rates']}, "
          f"gateway {gt['all_rates']})")
    s = out["sustained"]
    print(f"sustained: {s['achieved_per_s']:,.0f} changes/s for {s['seconds']:g} s, {s['received']:,} of "
          f"{s['changes']:,} received; RSS {s['rss_before_mb']:.1f} -> {s['rss_after_mb']:.1f} MB "
          f"(samples {', '.join(f'{v:.1f}' for v in s['rss_samples_mb'])})")
    gl, pl = out["gateway_latency"], out["plain_latency"]
    print(f"latency at 1,000/s: gateway p50 {gl['p50_ms']:.2f} ms, p99 {gl['p99_ms']:.2f} ms, "
          f"max {gl['max_ms']:.2f} ms ({gl['received']}/{gl['sent']}); plain paho p50 {pl['p50_ms']:.2f} ms, "
          f"p99 {pl['p99_ms']:.2f} ms ({pl['received']}/{pl['sent']})")
    print(f"sensor.mqtt_dropped at the end: {out['gateway_dropped']}")


if __name__ == "__main__":
    main()
