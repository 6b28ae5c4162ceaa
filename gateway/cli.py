"""``ampgate``: the command line. Sub-commands live in ``gateway.commands``, one module each."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from gateway import __version__
from gateway.commands import COMMAND_MODULES, DEFAULT_CONFIG
from gateway.config import LOG_LEVELS
from gateway.loader import discover
from gateway.log import setup_logging


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ampgate", description="Ampgate: a secure-by-default energy gateway."
    )
    parser.add_argument("--version", action="version", version=f"ampgate {__version__}")
    parser.add_argument("-c", "--config", default=DEFAULT_CONFIG, help="configuration file (config.yaml)")
    parser.add_argument("--data-dir", default=None, help="where the database, keys and certificates live")
    parser.add_argument("--log-level", choices=LOG_LEVELS, default=None, help="overrides gateway.log_level")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"gateway.commands.{name}").register(sub)
    # Built-in plugins may add commands of their own (``ampgate simulate`` comes with the load manager).
    for spec in discover().plugins.values():
        register_commands = getattr(spec.module, "register_commands", None)
        if register_commands is not None:
            register_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    setup_logging(args.log_level or "info")
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
