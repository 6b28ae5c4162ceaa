"""``ampgate enroll``: the devices asking to be trusted, and an administrator's decision (DISC-001).

``list`` shows the queue; ``approve KIND IDENTITY`` trusts a device (pinning the fingerprint it presented,
or the one given with ``--fingerprint``); ``reject`` refuses it for good; ``remove`` forgets it. Decisions
are audited with the operating-system user who ran the command.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from typing import Any

from gateway.commands import cli_context, open_storage
from gateway.security.audit import AuditLog
from gateway.security.enrollment import STATUSES, EnrollmentError, EnrollmentQueue


def register(sub: Any) -> None:
    parser = sub.add_parser("enroll", help="devices asking to be trusted: list, approve, reject, remove")
    actions = parser.add_subparsers(dest="enroll_command", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="show the enrollment queue")
    listing.add_argument("--status", choices=STATUSES, default=None)
    listing.add_argument("--kind", default=None, help="only one kind (ocpp, eebus, ssdp, mdns, modbus)")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=handle_list)
    for name, helptext in (("approve", "trust a device"), ("reject", "refuse a device"),
                           ("remove", "forget a device (it may ask again)")):
        action = actions.add_parser(name, help=helptext)
        action.add_argument("kind")
        action.add_argument("identity")
        if name == "approve":
            action.add_argument("--fingerprint", default=None, help="pin this SHA-256 fingerprint")
        if name == "reject":
            action.add_argument("--reason", default=None)
        action.set_defaults(func=handle_decision, decision=name)


def _when(ts: float | None) -> str:
    return dt.datetime.fromtimestamp(ts).astimezone().isoformat(timespec="seconds") if ts else "-"


def handle_list(args: argparse.Namespace) -> int:
    storage = open_storage(args)
    try:
        entries = EnrollmentQueue(storage, AuditLog(storage)).list_sync(status=args.status, kind=args.kind)
    finally:
        storage.close()
    if args.json:
        print(json.dumps([e.as_dict() for e in entries], indent=2))
        return 0
    if not entries:
        print("No device is waiting or known.")
        return 0
    for e in entries:
        changed = "  FINGERPRINT CHANGED" if e.fingerprint_changed else ""
        print(f"{e.status:<9} {e.kind:<7} {e.identity:<32} {e.address or '-':<22} "
              f"last seen {_when(e.last_seen)}{changed}")
        if e.fingerprint or e.offered_fingerprint:
            print(f"          fingerprint {e.offered_fingerprint or e.fingerprint}")
    return 0


def handle_decision(args: argparse.Namespace) -> int:
    storage = open_storage(args)
    try:
        queue = EnrollmentQueue(storage, AuditLog(storage))
        context = cli_context()
        if args.decision == "approve":
            entry = queue.approve_sync(args.kind, args.identity, context, fingerprint=args.fingerprint)
            print(f"approved {entry.kind} {entry.identity}" +
                  (f" (fingerprint {entry.fingerprint})" if entry.fingerprint else ""))
        elif args.decision == "reject":
            queue.reject_sync(args.kind, args.identity, context, reason=args.reason)
            print(f"rejected {args.kind} {args.identity}")
        else:
            queue.remove_sync(args.kind, args.identity, context)
            print(f"removed {args.kind} {args.identity}")
    except (EnrollmentError, ValueError) as err:
        print(f"ampgate enroll: {err}", file=sys.stderr)
        return 1
    finally:
        storage.close()
    return 0
