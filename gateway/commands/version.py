"""``ampgate version``: the version and the plugins this installation has."""

from __future__ import annotations

import argparse
from typing import Any

from gateway import __version__
from gateway.loader import discover


def register(sub: Any) -> None:
    parser = sub.add_parser("version", help="print the version and the installed plugins")
    parser.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    registry = discover()
    print(f"ampgate {__version__}")
    for name, spec in sorted(registry.plugins.items()):
        print(f"  plugin {name:<12} {spec.manifest.title}")
    for name, target in sorted(registry.not_allowed.items()):
        print(f"  plugin {name:<12} third-party ({target}), not allowed (gateway.allow_plugins)")
    return 0
