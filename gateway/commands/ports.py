"""``ampgate ports``: every listener, outbound link and announcement, as a firewall plan."""

from __future__ import annotations

import argparse
from typing import Any

from gateway.commands.check import EXIT_INVALID, load_plan
from gateway.security.report import ports_json, ports_nftables, ports_text


def register(sub: Any) -> None:
    parser = sub.add_parser("ports", help="list what the configuration would open (firewall plan)")
    parser.add_argument("--format", choices=("table", "json", "nftables"), default="table")
    parser.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    plan = load_plan(args)
    if plan is None:
        return EXIT_INVALID
    render = {"table": ports_text, "json": ports_json, "nftables": ports_nftables}[args.format]
    print(render(plan.exposures))
    return 0
