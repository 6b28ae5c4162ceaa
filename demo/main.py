"""Run the demo: write the site, check it with the policy, start the gateway and the simulated peers.

``run()`` is what ``ampgate demo`` and ``python -m demo`` call. The configuration must pass the policy with no
refusal and no accepted risk, or the demo does not start (it is meant to show the secure way). The gateway
runs in this process exactly as under ``ampgate run`` (same ``Gateway``, same plan); the peers run as asyncio
tasks beside it (Mosquitto, when installed, as a child process) and reach it only over 127.0.0.1 sockets.
SIGINT/SIGTERM stop the stations, then the gateway, then the meter and the broker; a temporary demo directory
is removed afterwards (one given with ``--data-dir`` is kept).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import shutil
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path

from demo import curve, site
from demo.broker import PREFIX
from demo.meter import GridMeter
from demo.stations import Car, SimStation
from gateway.bootstrap import Plan, prepare
from gateway.context import Context, Role
from gateway.core import Gateway
from gateway.errors import ConfigError
from gateway.log import REDACTOR, setup_logging
from gateway.security import tls
from gateway.security.idtokens import IdTokenStore
from gateway.security.report import report_text

_LOGGER = logging.getLogger(__name__)

DEFAULT_WEB_PORT = 8443
SHUTDOWN_S = 5.0
STATUS_EVERY_S = 10.0
DEMO_CONTEXT = Context(origin="demo", principal="ampgate demo", role=Role.ADMIN)
BADGES = {site.CP1: "DEMO-BADGE-0001", site.CP2: "DEMO-BADGE-0002"}
EXIT_REFUSED = 1
EXIT_INVALID = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(*, directory: Path | None, web_port: int, log_level: str | None) -> int:
    temporary = directory is None
    root = Path(tempfile.mkdtemp(prefix="ampgate-demo-")) if directory is None else directory
    try:
        demo_site = site.create(root, web_port=web_port, ocpp_port=_free_port(), meter_port=_free_port(),
                                mqtt_port=_free_port(), log_level=log_level or "warning")
        try:
            plan = prepare(demo_site.config, data_dir=demo_site.data_dir)
        except ConfigError as err:
            print("demo: the demo configuration is invalid:\n  " + "\n  ".join(err.errors), file=sys.stderr)
            return EXIT_INVALID
        if plan.report.refused or plan.config.core["accept_risk"]:
            # The demo shows the secure way: it never runs on a refused or accepted risk.
            print(report_text(plan.report), file=sys.stderr)
            print("demo: the demo configuration does not pass the policy cleanly; not starting", file=sys.stderr)
            return EXIT_REFUSED
        setup_logging(log_level or plan.config.core["log_level"])
        REDACTOR.add([demo_site.cp1_password])
        if demo_site.broker is not None:
            REDACTOR.add([demo_site.broker.gateway_password])
        return asyncio.run(_run(demo_site, plan))
    finally:
        if temporary:
            shutil.rmtree(root, ignore_errors=True)


def _stations(demo_site: site.Site) -> list[SimStation]:
    ca = demo_site.ca
    return [
        SimStation(identity=site.CP1, version="1.6", url=demo_site.ocpp_url, id_tag=BADGES[site.CP1],
                   ssl_context=tls.client_context(ca=ca), password=demo_site.cp1_password,
                   car=Car(phases=3, max_a=16.0, energy_wh=0.0)),
        SimStation(identity=site.CP2, version="2.0.1", url=demo_site.ocpp_url, id_tag=BADGES[site.CP2],
                   ssl_context=tls.client_context(ca=ca, cert=demo_site.cp2_cert, key=demo_site.cp2_key),
                   car=Car(phases=1, max_a=32.0, phase=1, energy_wh=0.0)),
    ]


def _banner(demo_site: site.Site) -> str:
    lines = [
        "Ampgate demo: a site with two charging stations, a grid meter and a 25 A fuse, all on 127.0.0.1.",
        f"  console      {demo_site.console_url}",
        f"  certificate  SHA-256 {demo_site.fingerprint}",
        "               (compare it with what the browser shows; or trust " + str(demo_site.ca) + ")",
        "  login        admin with the one-time password printed above (you choose your own at first login;",
        f"               lost it? ampgate --data-dir {demo_site.data_dir} user passwd admin --generate)",
        f"  stations     {site.CP1} OCPP 1.6J profile 2, {site.CP2} OCPP 2.0.1 profile 3, on {demo_site.ocpp_url}",
        f"  meters       grid and PV, Eastron SDM630 (simulated), Modbus TCP 127.0.0.1:{demo_site.meter_port} "
        "units 1 and 2",
        f"  files        {demo_site.root}",
        *_mqtt_lines(demo_site),
        "A simulated day runs 120x faster; an oven on L2 comes on every 90 s (first after 30 s) and the load "
        "manager cuts the cars. Ctrl-C stops the demo.",
    ]
    return "\n".join(lines)


def _mqtt_lines(demo_site: site.Site) -> list[str]:
    broker = demo_site.broker
    if broker is None:
        return ["  mqtt         off (install mosquitto to see the site on a local broker too)"]
    return [f"  mqtt         a local Mosquitto on 127.0.0.1:{broker.port} (TLS); watch it with (mosquitto-clients)",
            f"               mosquitto_sub -h 127.0.0.1 -p {broker.port} --cafile {broker.ca_cert} -u viewer "
            f"-P {broker.viewer_password} -t '{PREFIX}/#' -v"]


def _status(meter: GridMeter, stations: list[SimStation]) -> str:
    hour = curve.sim_hour(time.monotonic() - meter.started)
    reading = meter.last
    grid = "no reading yet" if reading is None else (
        f"grid {reading.total_w / 1000:+.1f} kW, " + "/".join(f"{a:.1f}" for a in reading.current) + " A")
    cars = ", ".join(f"{s.identity} {s.current_a():.1f} A" for s in stations)
    return (f"demo: {int(hour):02d}:{int(hour % 1 * 60):02d} house " +
            "/".join(f"{a:.1f}" for a in curve.house_a(hour)) + f" A, PV {curve.pv_w(hour) / 1000:.1f} kW, "
            f"{grid}; {cars}")


async def _run(demo_site: site.Site, plan: Plan) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    stations = _stations(demo_site)

    def cars_a() -> tuple[float, float, float]:
        draws = [s.draw_a() for s in stations]
        return (sum(d[0] for d in draws), sum(d[1] for d in draws), sum(d[2] for d in draws))

    meter = GridMeter(demo_site.meter_port, cars_a)
    gw: Gateway | None = None
    tasks: list[asyncio.Task[None]] = []
    try:
        if demo_site.broker is not None:
            await demo_site.broker.start()
        await meter.start()
        gw = Gateway(plan.config, demo_site.data_dir)
        await gw.async_start(plan)
        if gw.failed_plugins:
            print(f"demo: plugins failed to start: {gw.failed_plugins}", file=sys.stderr)
            return EXIT_REFUSED
        badges = IdTokenStore(gw.storage, gw.vault, gw.audit)
        known = {t.label for t in await badges.list()}
        for identity, tag in BADGES.items():
            if f"demo car at {identity}" not in known:
                await badges.add(tag, label=f"demo car at {identity}", context=DEMO_CONTEXT)
        tasks = [asyncio.create_task(s.run(), name=f"demo-{s.identity}") for s in stations]
        print("\n" + _banner(demo_site) + "\n", file=sys.stderr, flush=True)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), STATUS_EVERY_S)
            if not stop.is_set():
                print(_status(meter, stations), flush=True)
        print("demo: stopping", file=sys.stderr, flush=True)
        return 0
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if gw is not None:
            try:
                async with asyncio.timeout(SHUTDOWN_S):
                    await gw.async_stop()
            except TimeoutError:
                _LOGGER.error("the gateway took longer than %.0f s to stop", SHUTDOWN_S)
        await meter.stop()
        if demo_site.broker is not None:
            await demo_site.broker.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo", description="The Ampgate demo site on loopback.")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="keep the demo here (config, secrets, certificates, data); default: a temporary "
                             "directory removed at exit")
    parser.add_argument("--log-level", default=None)
    parser.add_argument("--port", type=int, default=DEFAULT_WEB_PORT,
                        help=f"port of the web console on 127.0.0.1 (default {DEFAULT_WEB_PORT})")
    args = parser.parse_args(argv)
    try:
        return run(directory=args.data_dir, web_port=args.port, log_level=args.log_level)
    except KeyboardInterrupt:
        return 130
