"""The ``ampgate`` sub-commands, one module each.

Each module defines ``register(sub)`` which adds its parser to ``sub`` (an argparse sub-parsers object) and
sets ``func`` to a handler ``(args) -> int`` returning the exit code. The shared options ``--config``,
``--data-dir`` and ``--log-level`` live on the top-level parser (``gateway.cli``); the helpers below turn
them into what a command needs.
"""

from __future__ import annotations

import argparse
import getpass
import os
from pathlib import Path

from gateway.context import Context, Role
from gateway.storage import Storage

COMMAND_MODULES = (
    "run",
    "check",
    "ports",
    "certs",
    "audit",
    "user",
    "enroll",
    "token",
    "factory_reset",
    "sbom",
    "version",
    "demo",
)

DEFAULT_CONFIG = "config.yaml"
DEFAULT_DATA_DIR = "data"


def data_dir(args: argparse.Namespace) -> Path:
    """``--data-dir``, else ``$AMPGATE_DATA_DIR``, else ``./data``; created with mode 0700."""
    path = Path(args.data_dir or os.environ.get("AMPGATE_DATA_DIR") or DEFAULT_DATA_DIR)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def open_storage(args: argparse.Namespace) -> Storage:
    return Storage(data_dir(args)).open()


def cli_context() -> Context:
    """Who runs the command, for the audit log: the operating-system user, on the ``cli`` channel."""
    try:
        who: str | None = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry for this uid (containers)
        who = None
    return Context(origin="cli", principal=who, role=Role.ADMIN)
