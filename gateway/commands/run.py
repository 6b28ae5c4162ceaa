"""``ampgate run``: check, then start every enabled plugin; stop cleanly on SIGINT/SIGTERM.

Nothing opens unless the policy report has no standing refusal. Shutdown stops plugins in reverse order
and finishes within ``SHUTDOWN_S`` even when a plugin hangs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import signal
import sys
from typing import Any

from gateway import __version__
from gateway.bootstrap import Plan
from gateway.commands import data_dir
from gateway.commands.check import EXIT_INVALID, load_plan
from gateway.core import Gateway, write_pid
from gateway.log import REDACTOR, setup_logging
from gateway.security.report import report_text
from gateway.security.rules import walk_secrets

_LOGGER = logging.getLogger(__name__)

SHUTDOWN_S = 5.0


def register(sub: Any) -> None:
    parser = sub.add_parser("run", help="check the configuration, then run the gateway")
    parser.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    plan = load_plan(args)
    if plan is None:
        return EXIT_INVALID
    setup_logging(args.log_level or plan.config.core["log_level"])
    REDACTOR.add(str(value) for _, value in walk_secrets(plan.config.raw))
    if plan.report.refused:
        print(report_text(plan.report), file=sys.stderr)
        print("\nampgate refuses to start: fix the settings above, or accept a risk explicitly under "
              "gateway.accept_risk with a reason (see docs/security.md).", file=sys.stderr)
        return 1
    for row in plan.report.warnings:
        _LOGGER.warning("%s %s: %s (%s) — fix: %s", row.rule.id, row.finding.plugin, row.finding.message,
                        row.where, row.finding.fix)
    return asyncio.run(async_run(plan, args))


async def async_run(plan: Plan, args: argparse.Namespace) -> int:
    directory = data_dir(args)
    gw = Gateway(plan.config, directory)
    pid = write_pid(directory)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        _LOGGER.info("ampgate %s starting with %s", __version__, ", ".join(plan.order) or "no plugins")
        await gw.async_start(plan)
        # Everything allocated at start-up (plugins, configuration, thousands of station sessions' static
        # parts) moves out of the collector's reach: full collections over that heap paused the loop for
        # 120-450 ms with 3,000 OCPP stations (bench/ocpp_stations.py --gc-freeze, docs/plugins/ocpp.md).
        gc.freeze()
        _LOGGER.info("ampgate running (data in %s); Ctrl-C stops it", directory)
        await stop.wait()
        _LOGGER.info("stopping")
    finally:
        try:
            async with asyncio.timeout(SHUTDOWN_S):
                await gw.async_stop()
        except TimeoutError:
            _LOGGER.error("shutdown took longer than %.0f s; exiting anyway", SHUTDOWN_S)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        with contextlib.suppress(FileNotFoundError):
            pid.unlink()
    return 0
