"""``ampgate ocpp``: helpers for commissioning stations.

``ampgate ocpp password`` prints a new random station password (OCPP-009: 16-20 random bytes, unique per
station) to put into ``secrets.yaml`` and into the station. The default is 20 printable characters for
stations that take a text password (2.0.1 BasicAuthPassword, most 1.6 web UIs); ``--hex`` prints 20 random
bytes as 40 hex digits for a 1.6 ``AuthorizationKey`` (then set ``password_format: hex``). Nothing is stored.
"""

from __future__ import annotations

import argparse
import secrets
import string
from typing import Any

from plugins.ocpp.const import GENERATED_PASSWORD_CHARS, MAX_PASSWORD_BYTES_16

# Letters and digits without look-alikes (0/O, 1/l/I): people type these into station web UIs.
ALPHABET = "".join(c for c in string.ascii_letters + string.digits if c not in "0O1lI")


def generate(hex_key: bool = False) -> str:
    if hex_key:
        return secrets.token_bytes(MAX_PASSWORD_BYTES_16).hex()
    return "".join(secrets.choice(ALPHABET) for _ in range(GENERATED_PASSWORD_CHARS))


def register(sub: Any) -> None:
    parser = sub.add_parser("ocpp", help="OCPP station helpers")
    actions = parser.add_subparsers(dest="ocpp_command", metavar="ACTION", required=True)
    password = actions.add_parser("password", help="print a new random station password")
    password.add_argument("--hex", action="store_true",
                          help="20 random bytes as 40 hex digits (OCPP 1.6 AuthorizationKey)")
    password.set_defaults(func=handle_password)


def handle_password(args: argparse.Namespace) -> int:
    print(generate(args.hex))
    return 0
