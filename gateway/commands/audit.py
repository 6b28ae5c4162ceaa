"""``ampgate audit``: show the newest audit records; ``ampgate audit verify`` checks the hash chain (LOG-002).

Exit codes: 0 listed, or the chain is intact; 1 the chain is broken (the first bad seq and the problem are
printed to stderr).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from typing import Any

from gateway.commands import open_storage
from gateway.security.audit import AuditLog, AuditRecord

DEFAULT_LIMIT = 20
EXIT_TAMPERED = 1


def register(sub: Any) -> None:
    parser = sub.add_parser("audit", help="show the audit log; 'audit verify' checks it for tampering")
    parser.add_argument("--limit", type=int, default=DEFAULT_LIMIT, help=f"records to show ({DEFAULT_LIMIT})")
    parser.add_argument("--event", default=None, metavar="PREFIX", help="only events starting with PREFIX")
    parser.add_argument("--json", action="store_true", help="print the records as a JSON array")
    parser.set_defaults(func=handle_list)
    actions = parser.add_subparsers(dest="audit_command", metavar="ACTION")
    verify = actions.add_parser("verify", help="check the hash chain; exit 1 if a record was changed")
    verify.set_defaults(func=handle_verify)


def _line(record: AuditRecord) -> str:
    when = dt.datetime.fromtimestamp(record.ts).astimezone().isoformat(timespec="seconds")
    data = json.dumps(record.data, sort_keys=True, ensure_ascii=False)
    return f"{record.seq:>6}  {when}  {record.event:<24} {record.actor:<28} {data}"


def handle_list(args: argparse.Namespace) -> int:
    storage = open_storage(args)
    try:
        records = AuditLog(storage).list_sync(limit=args.limit, event_prefix=args.event)
    finally:
        storage.close()
    if args.json:
        print(json.dumps([r.as_dict() for r in records], indent=2, ensure_ascii=False))
    elif not records:
        print("The audit log is empty.")
    else:
        for record in records:
            print(_line(record))
    return 0


def handle_verify(args: argparse.Namespace) -> int:
    storage = open_storage(args)
    try:
        result = AuditLog(storage).verify_sync()
    finally:
        storage.close()
    if result.ok:
        print(f"Audit log intact: {result.records} record{'s' if result.records != 1 else ''}, chain verified.")
        return 0
    print(f"Audit log TAMPERED at seq {result.first_bad_seq}: {result.problem} "
          f"({result.records} records before it are intact)", file=sys.stderr)
    return EXIT_TAMPERED
