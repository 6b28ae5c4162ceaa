"""``ampgate user``: manage web UI accounts (add, passwd, list, delete).

A new account gets a random one-time password, printed once and stored only as a hash (WEB-002); it must be
changed at first login (AUTH-005). ``passwd`` reads the new password from the terminal (never from the
command line, where ``ps`` and the shell history would keep it), from stdin with ``--stdin``, or makes a
one-time one with ``--generate``. Every change is written to the audit log with the operating-system user
as the actor. Exit codes: 0 done, 1 refused (unknown user, weak password, ...).
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import json
import sys
from collections.abc import Callable
from typing import Any

from gateway.commands import cli_context, open_storage
from gateway.security.audit import AuditLog
from gateway.security.passwords import generate_password
from gateway.security.users import ROLES, User, UserError, UserStore, WeakPassword

EXIT_REFUSED = 1


def register(sub: Any) -> None:
    parser = sub.add_parser("user", help="manage web UI accounts")
    actions = parser.add_subparsers(dest="user_command", metavar="ACTION", required=True)

    add = actions.add_parser("add", help="create an account with a one-time password")
    add.add_argument("name")
    add.add_argument("--role", choices=tuple(ROLES), required=True)
    add.set_defaults(func=handle_add)

    passwd = actions.add_parser("passwd", help="set a new password (asked on the terminal)")
    passwd.add_argument("name")
    source = passwd.add_mutually_exclusive_group()
    source.add_argument("--stdin", action="store_true", help="read the new password from one line of stdin")
    source.add_argument("--generate", action="store_true",
                        help="set a random one-time password, print it, and force a change at next login")
    passwd.set_defaults(func=handle_passwd)

    listing = actions.add_parser("list", help="list the accounts")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=handle_list)

    delete = actions.add_parser("delete", help="delete an account")
    delete.add_argument("name")
    delete.set_defaults(func=handle_delete)


def _with_users(args: argparse.Namespace, action: Callable[[UserStore], int]) -> int:
    storage = open_storage(args)
    try:
        return action(UserStore(storage, AuditLog(storage)))
    except WeakPassword as err:
        print("Password refused:", file=sys.stderr)
        for problem in err.problems:
            print(f"  - {problem}", file=sys.stderr)
        return EXIT_REFUSED
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_REFUSED
    finally:
        storage.close()


def handle_add(args: argparse.Namespace) -> int:
    def add(users: UserStore) -> int:
        password = users.add(args.name, args.role, context=cli_context())
        print(f"User {args.name!r} ({args.role}) created.")
        print("One-time password (shown only now; it must be changed at first login):")
        print(f"  {password}")
        return 0

    return _with_users(args, add)


def _read_password(args: argparse.Namespace) -> str | None:
    if args.stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            print("error: no password on stdin", file=sys.stderr)
            return None
        return password
    if not sys.stdin.isatty():
        print("error: no terminal to ask for the password; use --stdin or --generate", file=sys.stderr)
        return None
    password = getpass.getpass("New password: ")
    if getpass.getpass("Repeat it: ") != password:
        print("error: the passwords differ", file=sys.stderr)
        return None
    return password


def handle_passwd(args: argparse.Namespace) -> int:
    def passwd(users: UserStore) -> int:
        if users.get(args.name) is None:
            print(f"error: no user {args.name!r}", file=sys.stderr)
            return EXIT_REFUSED
        if args.generate:
            password = generate_password()
            users.set_password(args.name, password, must_change=True, context=cli_context())
            print(f"New one-time password for {args.name!r} (shown only now; it must be changed at next login):")
            print(f"  {password}")
            return 0
        typed = _read_password(args)
        if typed is None:
            return EXIT_REFUSED
        users.set_password(args.name, typed, context=cli_context())
        print(f"Password of {args.name!r} changed.")
        return 0

    return _with_users(args, passwd)


def _status(user: User) -> str:
    if user.is_locked() and user.locked_until is not None:
        until = dt.datetime.fromtimestamp(user.locked_until).astimezone().isoformat(timespec="minutes")
        return f"locked until {until}"
    return "must change password" if user.must_change else "active"


def handle_list(args: argparse.Namespace) -> int:
    def listing(users: UserStore) -> int:
        accounts = users.list()
        if args.json:
            print(json.dumps([
                {"username": u.username, "role": u.role.name.lower(), "must_change": u.must_change,
                 "locked": u.is_locked(), "failed_count": u.failed_count}
                for u in accounts
            ], indent=2))
            return 0
        if not accounts:
            print("No users. Add one with: ampgate user add NAME --role admin")
            return 0
        print(f"{'NAME':<24} {'ROLE':<9} STATUS")
        for u in accounts:
            print(f"{u.username:<24} {u.role.name.lower():<9} {_status(u)}")
        return 0

    return _with_users(args, listing)


def handle_delete(args: argparse.Namespace) -> int:
    def delete(users: UserStore) -> int:
        users.delete(args.name, context=cli_context())
        print(f"User {args.name!r} deleted.")
        return 0

    return _with_users(args, delete)
