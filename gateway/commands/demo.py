"""``ampgate demo``: a living demo site on 127.0.0.1 (two charging stations, a grid meter, the load manager).

The demo is not part of the core: it lives in the top-level ``demo`` package (installed beside ``gateway``
and ``plugins``), which this command imports only when it runs, the way plugins are loaded, so the core
never depends on it (nor, through it, on the ``ocpp``/``websockets``/``pymodbus`` client code it drives).
``--data-dir`` keeps the demo's files there; without it a temporary directory is used and removed at exit.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import Any

DEFAULT_WEB_PORT = 8443


def register(sub: Any) -> None:
    parser = sub.add_parser("demo", help="run a demo site on 127.0.0.1: two stations, a grid meter, a 25 A fuse")
    parser.add_argument("--port", type=int, default=DEFAULT_WEB_PORT,
                        help=f"port of the web console on 127.0.0.1 (default {DEFAULT_WEB_PORT})")
    parser.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    try:
        demo = importlib.import_module("demo.main")
    except ImportError as err:
        print(f"error: the demo is not installed with this copy of ampgate ({err})", file=sys.stderr)
        return 1
    directory = Path(args.data_dir) if args.data_dir else None
    return int(demo.run(directory=directory, web_port=args.port, log_level=args.log_level))
