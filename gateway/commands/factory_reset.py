"""``ampgate factory-reset``: erase users, tokens, transactions, enrollments, keys and certificates (DATA-002).

Shows what it will erase, asks the operator to type ERASE (``--yes`` skips the question), erases, and prints
what it erased. Without a terminal and without ``--yes`` it refuses: a script must say so explicitly. Exit
codes: 0 erased; 1 refused or not confirmed (nothing erased), or some files could not be erased (listed).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from gateway.commands import cli_context, data_dir
from gateway.security.reset import ResetRefused, ResetReport, factory_reset, inventory

CONFIRM_WORD = "ERASE"
EXIT_REFUSED = 1


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "factory-reset", help="erase all personal data, keys and certificates (before disposal or a new owner)"
    )
    parser.add_argument("--yes", action="store_true", help=f"do not ask to type {CONFIRM_WORD}")
    parser.set_defaults(func=handle)


def _print_report(report: ResetReport, *, done: bool) -> None:
    verb = "Erased" if done else "Will erase"
    print(f"{verb} in {report.data_dir}:")
    if report.tables:
        print(f"  database tables ({report.rows} rows):")
        width = max(len(name) for name in report.tables)
        for name, rows in report.tables.items():
            print(f"    {name:<{width}}  {rows:>8} row{'s' if rows != 1 else ''}")
    elif report.database_error:
        print(f"  the database (unreadable: {report.database_error}; rows not counted)")
    if report.files:
        print(f"  files ({len(report.files)}):")
        for item in report.files:
            note = " (link)" if item.link else (" (overwritten with zeros)" if done and item.zeroed else "")
            print(f"    {item.path}  [{item.kind}, {item.size} bytes]{note}")
    if not report.tables and not report.files:
        print("  nothing: the data directory is empty")


def _confirmed(args: argparse.Namespace) -> bool:
    if args.yes:
        return True
    if not sys.stdin.isatty():
        print(f"error: no terminal to confirm on; pass --yes to erase without typing {CONFIRM_WORD}",
              file=sys.stderr)
        return False
    try:
        answer = input(f"This cannot be undone. Type {CONFIRM_WORD} to erase everything listed above: ")
    except EOFError:
        answer = ""
    if answer.strip() != CONFIRM_WORD:
        print("Not confirmed; nothing was erased.", file=sys.stderr)
        return False
    return True


def handle(args: argparse.Namespace) -> int:
    directory = data_dir(args)
    try:
        _print_report(inventory(directory), done=False)
        if not _confirmed(args):
            return EXIT_REFUSED
        report = factory_reset(directory, context=cli_context())
    except ResetRefused as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_REFUSED
    print()
    _print_report(report, done=True)
    if report.errors:
        print("Could not erase:", file=sys.stderr)
        for problem in report.errors:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_REFUSED
    print(f"A fresh database was created; its audit log starts with the factory reset (seq {report.audit_seq}).")
    return 0
