"""``ampgate token``: the local list of id tokens (RFID badges, key codes) that may start charging.

``add`` reads the token from the terminal (never from the command line, where ``ps`` and the shell history
would keep it) or from one line of stdin with ``--stdin``; it is stored encrypted (DATA-001). ``revoke``
takes effect at once, also for a running gateway (it reads the list on every authorisation). ``list`` shows
ids, labels, kinds and statuses, never values. Every change is audited with the operating-system user.
Exit codes: 0 done, 1 refused (empty or duplicate token, unknown id, ...).
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import json
import sys
from collections.abc import Callable
from typing import Any

from gateway.commands import cli_context, data_dir, open_storage
from gateway.security.audit import AuditLog
from gateway.security.idtokens import KINDS, IdTokenError, IdTokenStore
from gateway.security.vault import Vault, VaultError

EXIT_REFUSED = 1


def register(sub: Any) -> None:
    parser = sub.add_parser("token", help="manage the id tokens (RFID badges, key codes) allowed to charge")
    actions = parser.add_subparsers(dest="token_command", metavar="ACTION", required=True)

    add = actions.add_parser("add", help="add a token (asked on the terminal)")
    add.add_argument("--label", default="", help="who or what the token belongs to")
    add.add_argument("--kind", choices=KINDS, default="rfid")
    add.add_argument("--expires", type=dt.date.fromisoformat, default=None, metavar="YYYY-MM-DD",
                     help="last day the token is valid")
    add.add_argument("--stdin", action="store_true", help="read the token from one line of stdin")
    add.set_defaults(func=handle_add)

    revoke = actions.add_parser("revoke", help="revoke a token: refused from now on")
    which = revoke.add_mutually_exclusive_group(required=True)
    which.add_argument("--id", type=int, dest="token_id", help="the id shown by 'ampgate token list'")
    which.add_argument("--stdin", action="store_true", help="read the token's value from one line of stdin")
    which.add_argument("--ask", action="store_true", help="ask for the token's value on the terminal")
    revoke.set_defaults(func=handle_revoke)

    listing = actions.add_parser("list", help="list the tokens (without their values)")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=handle_list)


def _with_store(args: argparse.Namespace, action: Callable[[IdTokenStore], int]) -> int:
    storage = open_storage(args)
    try:
        vault = Vault.from_data_dir(data_dir(args))
        return action(IdTokenStore(storage, vault, AuditLog(storage)))
    except (IdTokenError, VaultError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_REFUSED
    finally:
        storage.close()


def _read_token(from_stdin: bool) -> str | None:
    if from_stdin:
        value = sys.stdin.readline().strip()
    elif sys.stdin.isatty():
        value = getpass.getpass("Token: ").strip()
    else:
        print("error: no terminal to ask for the token; use --stdin", file=sys.stderr)
        return None
    if not value:
        print("error: no token given", file=sys.stderr)
        return None
    return value


def handle_add(args: argparse.Namespace) -> int:
    token = _read_token(args.stdin)
    if token is None:
        return EXIT_REFUSED
    expires = None
    if args.expires is not None:
        # Valid through the whole last day, local time.
        expires = dt.datetime.combine(args.expires + dt.timedelta(days=1), dt.time()).timestamp()

    def add(store: IdTokenStore) -> int:
        entry = store.add_sync(token, label=args.label, kind=args.kind, expires_at=expires, context=cli_context())
        print(f"Token {entry.id} ({entry.kind}{', ' + entry.label if entry.label else ''}) added.")
        return 0

    return _with_store(args, add)


def handle_revoke(args: argparse.Namespace) -> int:
    token = None
    if args.token_id is None:
        token = _read_token(args.stdin)
        if token is None:
            return EXIT_REFUSED

    def revoke(store: IdTokenStore) -> int:
        changed = store.revoke_sync(token, token_id=args.token_id, context=cli_context())
        print("Token revoked." if changed else "Token was already revoked.")
        return 0

    return _with_store(args, revoke)


def handle_list(args: argparse.Namespace) -> int:
    def listing(store: IdTokenStore) -> int:
        tokens = store.list_sync()
        if args.json:
            print(json.dumps([t.as_dict() for t in tokens], indent=2))
            return 0
        if not tokens:
            print("No id tokens. Add one with: ampgate token add --label NAME")
            return 0
        print(f"{'ID':>4} {'KIND':<11} {'STATUS':<8} {'HINT':<5} LABEL")
        for t in tokens:
            print(f"{t.id:>4} {t.kind:<11} {t.as_dict()['status']:<8} {t.hint:<5} {t.label}")
        return 0

    return _with_store(args, listing)
