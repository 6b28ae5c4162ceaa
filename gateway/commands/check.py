"""``ampgate check``: validate the configuration and print the policy report.

Exit codes (POLICY.md): 0 clean, only warnings, or accepted risks; 1 refused; 2 invalid configuration.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from gateway.bootstrap import Plan, prepare
from gateway.commands import data_dir
from gateway.errors import ConfigError
from gateway.security.report import report_json, report_text

EXIT_INVALID = 2


def register(sub: Any) -> None:
    parser = sub.add_parser("check", help="validate the configuration and print the security report")
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.set_defaults(func=handle)


def load_plan(args: argparse.Namespace) -> Plan | None:
    """The plan, or None after printing every configuration error to stderr."""
    try:
        return prepare(args.config, data_dir=data_dir(args))
    except ConfigError as err:
        print(f"Configuration invalid ({len(err.errors)} error{'s' if len(err.errors) != 1 else ''}):",
              file=sys.stderr)
        for line in err.errors:
            print(f"  {line}", file=sys.stderr)
        return None


def handle(args: argparse.Namespace) -> int:
    plan = load_plan(args)
    if plan is None:
        return EXIT_INVALID
    print(report_json(plan.report) if args.format == "json" else report_text(plan.report))
    return plan.report.exit_code
