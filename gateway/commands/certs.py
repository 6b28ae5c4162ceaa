"""``ampgate certs``: the gateway's own local CA and server certificate, and client certificates it issues.

- ``show`` prints paths, subject, host names, expiry and SHA-256 fingerprints (what clients pin, TLS-003).
- ``create`` makes the local CA and server certificate in ``data_dir/certs`` if they are missing (the
  gateway also does this at first start); ``--host`` names what clients dial. Existing ones are kept: a
  host they do not name yet gets a re-issued server certificate naming the old hosts and the new ones.
- ``renew`` re-issues the server certificate from the local CA (``--host`` replaces its host names).
- ``client NAME --out DIR`` issues a client certificate (CN=NAME) from the local CA for a station or a
  Modbus/TCP Security peer (``--role``), writing ``NAME.pem``, ``NAME.key`` (0600) and ``ca.pem``.

The CA's key never leaves ``data_dir``. Every certificate issued is audited with the operating-system user.
Exit codes: 0 done, 1 refused (no local CA yet, a bad name, a file that would be overwritten, ...).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import sys
from pathlib import Path
from typing import Any

from cryptography import x509

from gateway.commands import cli_context, data_dir, open_storage
from gateway.security import certs
from gateway.security.audit import AuditLog

EXIT_REFUSED = 1
EVENT_CERT_ISSUED = "cert.issued"
# A client name becomes a file name and a CN: letters, digits and . _ - only, so "../x" or "a/b" cannot
# write outside --out. 48 characters: the length of an OCPP charge point identity (CiString48).
CLIENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,47}")


def register(sub: Any) -> None:
    parser = sub.add_parser("certs", help="show, create and renew the gateway's certificates; issue client ones")
    actions = parser.add_subparsers(dest="certs_command", metavar="ACTION", required=True)

    show = actions.add_parser("show", help="paths, host names, expiry and fingerprints of the local CA and server")
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=handle_show)

    create = actions.add_parser("create", help="create the local CA and server certificate if missing")
    create.add_argument("--host", action="append", default=[], metavar="HOST",
                        help="a DNS name or IP address clients use to reach the gateway (repeatable; "
                             f"default {', '.join(certs.DEFAULT_HOSTS)})")
    create.set_defaults(func=handle_create)

    renew = actions.add_parser("renew", help="re-issue the server certificate from the local CA")
    renew.add_argument("--host", action="append", default=[], metavar="HOST",
                       help="replace the host names (repeatable; default: keep the current ones)")
    renew.add_argument("--days", type=int, default=certs.LEAF_DAYS, help=f"validity (default {certs.LEAF_DAYS})")
    renew.set_defaults(func=handle_renew)

    client = actions.add_parser("client", help="issue a client certificate signed by the local CA")
    client.add_argument("name", help="the peer's identity: the certificate's CN and the file names")
    client.add_argument("--out", type=Path, required=True, help="directory for NAME.pem, NAME.key and ca.pem")
    client.add_argument("--role", default=None, help="Modbus/TCP Security role (e.g. Operator) to put in it")
    client.add_argument("--days", type=int, default=certs.LEAF_DAYS, help=f"validity (default {certs.LEAF_DAYS})")
    client.add_argument("--force", action="store_true", help="overwrite NAME.pem and NAME.key if they exist")
    client.set_defaults(func=handle_client)


# -- helpers --------------------------------------------------------------------------------------------------


def _error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_REFUSED


def _describe(cert_path: Path, key_path: Path) -> dict[str, Any]:
    cert = certs.load_certs(cert_path)[0]
    left = (cert.not_valid_after_utc - dt.datetime.now(dt.UTC)).total_seconds() / 86400
    return {
        "cert": str(cert_path),
        "key": str(key_path),
        "key_mode": f"{key_path.stat().st_mode & 0o777:04o}" if key_path.exists() else None,
        "key_too_open": key_path.exists() and certs.key_file_too_open(key_path),
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "hosts": certs.subject_alt_names(cert),
        "not_after": cert.not_valid_after_utc.isoformat(),
        "days_left": round(left, 1),
        "fingerprint_sha256": certs.fingerprint_sha256(cert),
    }


def _print_block(title: str, info: dict[str, Any]) -> None:
    print(f"{title:<13}{info['cert']}")
    print(f"  subject    {info['subject']}")
    if info["hosts"]:
        print(f"  hosts      {', '.join(info['hosts'])}")
    days = info["days_left"]
    state = "EXPIRED" if days <= 0 else f"{days:.0f} days left"
    warn = "  -- renew it: ampgate certs renew" if 0 < days < certs.RENEW_DAYS else ""
    print(f"  not after  {info['not_after']} ({state}){warn}")
    print(f"  SHA-256    {info['fingerprint_sha256']}")
    mode = info["key_mode"] or "missing"
    print(f"  key        {info['key']} (mode {mode})")
    if info["key_too_open"]:  # policy: TLS-004
        print(f"  WARNING    the key is readable by group or others (TLS-004): chmod 600 {info['key']}")


def _audit(args: argparse.Namespace, kind: str, cert: x509.Certificate, **extra: Any) -> None:
    storage = open_storage(args)
    try:
        AuditLog(storage).append_sync(EVENT_CERT_ISSUED, {
            "kind": kind,
            "subject": cert.subject.rfc4514_string(),
            "fingerprint_sha256": certs.fingerprint_sha256(cert),
            "not_after": cert.not_valid_after_utc.isoformat(),
            **extra,
        }, cli_context())
    finally:
        storage.close()


def _print_gateway(own: certs.GatewayCerts) -> None:
    _print_block("Local CA", _describe(own.ca_cert, own.ca_key))
    _print_block("Server", _describe(own.cert, own.key))


# -- actions --------------------------------------------------------------------------------------------------


def handle_show(args: argparse.Namespace) -> int:
    directory = certs.certs_dir(data_dir(args))
    ca_cert, ca_key = directory / certs.CA_CERT_FILE, directory / certs.CA_KEY_FILE
    cert, key = directory / certs.SERVER_CERT_FILE, directory / certs.SERVER_KEY_FILE
    if not ca_cert.exists() and not cert.exists():
        return _error(f"no certificates in {directory} yet: ampgate certs create (or start the gateway)")
    try:
        found = {
            name: _describe(c, k) for name, c, k in (("ca", ca_cert, ca_key), ("server", cert, key)) if c.exists()
        }
    except certs.CertError as err:
        return _error(str(err))
    if args.json:
        print(json.dumps(found, indent=2))
        return 0
    if "ca" in found:
        _print_block("Local CA", found["ca"])
    if "server" in found:
        _print_block("Server", found["server"])
    else:
        print(f"Server       missing: ampgate certs renew issues one ({cert})")
    return 0


def handle_create(args: argparse.Namespace) -> int:
    try:
        own = certs.ensure_gateway_certs(data_dir(args), hosts=args.host)
    except certs.CertError as err:
        return _error(str(err))
    server = certs.load_certs(own.cert)[0]
    if own.created:
        _audit(args, "ca", certs.load_certs(own.ca_cert)[0])
        _audit(args, "server", server, hosts=certs.subject_alt_names(server))
        print(f"Created the local CA and the server certificate in {own.directory}.")
    elif own.renewed:
        _audit(args, "server", server, hosts=certs.subject_alt_names(server))
        print(f"Re-issued the server certificate in {own.directory} (its fingerprint changed).")
    else:
        print(f"The certificates in {own.directory} exist and name every host asked for: nothing changed.")
    _print_gateway(own)
    print("Clients trust ca.pem, or pin the server's SHA-256 fingerprint above.")
    return 0


def handle_renew(args: argparse.Namespace) -> int:
    try:
        own = certs.renew_server(data_dir(args), hosts=args.host or None, days=args.days)
    except certs.CertError as err:
        return _error(str(err))
    server = certs.load_certs(own.cert)[0]
    _audit(args, "server", server, hosts=certs.subject_alt_names(server))
    print(f"Re-issued the server certificate in {own.directory} (its fingerprint changed).")
    _print_block("Server", _describe(own.cert, own.key))
    print("A running gateway uses it after a restart.")
    return 0


def handle_client(args: argparse.Namespace) -> int:
    name: str = args.name
    if not CLIENT_NAME.fullmatch(name):
        return _error(f"{name!r} is not a usable name: use 1-48 letters, digits, '.', '_' or '-'")
    out: Path = args.out
    cert_path, key_path = out / f"{name}.pem", out / f"{name}.key"
    if not args.force and (cert_path.exists() or key_path.exists()):
        return _error(f"{cert_path} or {key_path} exists: choose another --out, or add --force to replace them")
    try:
        ca = certs.load_gateway_ca(data_dir(args))
        extra = [certs.modbus_role_extension(args.role)] if args.role else []
        client = certs.issue_client(ca, common_name=name, days=args.days, extra_extensions=extra)
    except certs.CertError as err:
        return _error(str(err))
    certs.write_pair(client, cert_path, key_path)
    certs.write_cert(out / certs.CA_CERT_FILE, [ca])
    _audit(args, "client", client.cert, role=args.role)
    print(f"Issued a client certificate for {name!r}" + (f" with Modbus role {args.role!r}" if args.role else ""))
    print(f"  certificate  {cert_path}")
    print(f"  key          {key_path} (mode 0600: give it only to that peer)")
    print(f"  CA           {out / certs.CA_CERT_FILE} (the peer verifies the gateway with it)")
    print(f"  not after    {client.not_after.isoformat()}")
    print(f"  SHA-256      {client.fingerprint_sha256()}")
    return 0
