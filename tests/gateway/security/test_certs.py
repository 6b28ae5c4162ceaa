"""gateway.security.certs (keys and certificates) and the ``ampgate certs`` command built on it."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import ssl
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID

from gateway.commands import certs as certs_command
from gateway.security import certs, tls
from gateway.security.audit import AuditLog
from gateway.security.certs import CertError
from gateway.storage import Storage


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@contextlib.contextmanager
def umask(value: int) -> Iterator[None]:
    old = os.umask(value)
    try:
        yield
    finally:
        os.umask(old)


def ext(cert: x509.Certificate, kind: type[Any]) -> Any:
    return cert.extensions.get_extension_for_class(kind)


# -- issuing ------------------------------------------------------------------------------------------------


def test_ca_is_a_p256_ca_for_leaves_only() -> None:
    ca = certs.create_ca("Test CA")
    basic = ext(ca.cert, x509.BasicConstraints)
    assert basic.critical and basic.value.ca and basic.value.path_length == 0
    usage = ext(ca.cert, x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign and not usage.digital_signature
    assert ca.cert.issuer == ca.cert.subject and ca.common_name == "Test CA"
    assert ca.key.public_key().curve.name == "secp256r1"  # type: ignore[union-attr]
    assert ca.cert.signature_hash_algorithm is not None and ca.cert.signature_hash_algorithm.name == "sha256"
    assert 3649.9 < (ca.not_after - dt.datetime.now(dt.UTC)).total_seconds() / 86400 <= 3650


def test_server_cert_names_every_host_and_is_for_servers() -> None:
    ca = certs.create_ca("Test CA")
    server = certs.issue_server(ca, common_name="gw", hosts=["Gw.LAN", "192.168.1.5", "[::1]", "fe80::1%eth0"])
    assert certs.subject_alt_names(server.cert) == ["gw.lan", "192.168.1.5", "::1", "fe80::1"]
    assert ext(server.cert, x509.ExtendedKeyUsage).value == x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH])
    assert not ext(server.cert, x509.BasicConstraints).value.ca
    assert server.cert.issuer == ca.cert.subject
    aki = ext(server.cert, x509.AuthorityKeyIdentifier).value.key_identifier
    assert aki == ext(ca.cert, x509.SubjectKeyIdentifier).value.digest
    server.cert.verify_directly_issued_by(ca.cert)
    assert server.not_after - server.cert.not_valid_before_utc == dt.timedelta(days=certs.LEAF_DAYS) + certs.BACKDATE
    with pytest.raises(CertError, match="at least one host"):
        certs.issue_server(ca, common_name="gw", hosts=[])


def test_a_leaf_never_outlives_its_ca() -> None:
    ca = certs.create_ca("Short CA", days=10)
    assert certs.issue_server(ca, common_name="gw", hosts=["localhost"], days=825).not_after == ca.not_after
    assert certs.issue_client(ca, common_name="c", days=825).not_after == ca.not_after
    with pytest.raises(CertError, match="at least one day"):
        certs.issue_client(ca, common_name="c", days=0)


def test_client_cert_with_modbus_role_and_extra_extensions() -> None:
    ca = certs.create_ca("Test CA")
    client = certs.issue_client(ca, common_name="CP-01", extra_extensions=[
        certs.modbus_role_extension("Operator"),
        (x509.SubjectAlternativeName([x509.DNSName("cp-01.lan")]), True),
    ])
    assert client.common_name == "CP-01"
    assert ext(client.cert, x509.ExtendedKeyUsage).value == x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH])
    role = client.cert.extensions.get_extension_for_oid(certs.MODBUS_ROLE_OID)
    assert not role.critical and isinstance(role.value, x509.UnrecognizedExtension)
    assert role.value.value == b"\x0c\x08Operator"  # DER UTF8String
    assert ext(client.cert, x509.SubjectAlternativeName).critical
    client.cert.verify_directly_issued_by(ca.cert)


def test_self_signed_server_is_its_own_trust_anchor() -> None:
    pair = certs.self_signed_server("gw", ["localhost"], days=10)
    assert pair.cert.issuer == pair.cert.subject
    pair.cert.verify_directly_issued_by(pair.cert)
    assert 9 < (pair.not_after - dt.datetime.now(dt.UTC)).total_seconds() / 86400 <= 10


def test_fingerprint_format() -> None:
    pair = certs.self_signed_server("gw", ["localhost"])
    fp = pair.fingerprint_sha256()
    parts = fp.split(":")
    assert len(parts) == 32 and all(len(p) == 2 and p == p.upper() for p in parts)
    assert bytes.fromhex(fp.replace(":", "")) == pair.cert.fingerprint(hashes.SHA256())


# -- files --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mask", [0o000, 0o022, 0o077])
def test_write_pair_modes_and_full_chain(tmp_path: Path, mask: int) -> None:
    ca = certs.create_ca("Test CA")
    server = certs.issue_server(ca, common_name="gw", hosts=["localhost"])
    with umask(mask):
        certs.write_pair(server, tmp_path / "s.pem", tmp_path / "s.key", chain=[ca])
    assert mode(tmp_path / "s.key") == 0o600  # whatever the umask
    assert mode(tmp_path / "s.pem") == 0o644
    chain = certs.load_certs(tmp_path / "s.pem")
    assert chain == [server.cert, ca.cert]  # leaf first, then the CA
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.key", "s.pem"]  # no temporary file left


def test_key_is_never_readable_by_others_even_briefly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The key's bytes only ever go to a file that was created exclusively with mode 0600."""
    opened: list[tuple[str, int, int]] = []
    real_open = os.open

    def spy(path: Any, flags: int, mode: int = 0o777, **kwargs: Any) -> int:
        opened.append((str(path), flags, mode))
        return real_open(path, flags, mode, **kwargs)

    key_path = tmp_path / "s.key"
    key_path.write_text("old")
    key_path.chmod(0o644)  # an old, too open key file is replaced, not rewritten in place
    pair = certs.self_signed_server("gw", ["localhost"])
    monkeypatch.setattr(os, "open", spy)
    certs.write_pair(pair, tmp_path / "s.pem", key_path)
    monkeypatch.undo()
    key_opens = [(p, f, m) for p, f, m in opened if Path(p).name.startswith(".s.key.")]
    assert len(key_opens) == 1
    _, flags, created_mode = key_opens[0]
    assert flags & os.O_CREAT and flags & os.O_EXCL and created_mode == 0o600
    assert mode(key_path) == 0o600
    assert certs.load_pair(tmp_path / "s.pem", key_path).fingerprint_sha256() == pair.fingerprint_sha256()


def test_load_pair_refuses_a_key_that_is_not_the_certificates(tmp_path: Path) -> None:
    a, b = certs.self_signed_server("a", ["localhost"]), certs.self_signed_server("b", ["localhost"])
    certs.write_pair(a, tmp_path / "a.pem", tmp_path / "a.key")
    certs.write_pair(b, tmp_path / "b.pem", tmp_path / "b.key")
    loaded = certs.load_pair(tmp_path / "a.pem", tmp_path / "a.key")
    assert loaded.cert == a.cert and loaded.key_pem() == a.key_pem()
    with pytest.raises(CertError, match="is not the key of the certificate"):
        certs.load_pair(tmp_path / "a.pem", tmp_path / "b.key")
    with pytest.raises(CertError, match="cannot read"):
        certs.load_pair(tmp_path / "missing.pem", tmp_path / "a.key")
    (tmp_path / "junk.pem").write_text("not a certificate")
    with pytest.raises(CertError, match="not a PEM certificate"):
        certs.load_certs(tmp_path / "junk.pem")


@pytest.mark.parametrize(("file_mode", "too_open"), [
    (0o600, False), (0o400, False), (0o700, False), (0o640, True), (0o644, True), (0o604, True),
])
def test_key_file_too_open(tmp_path: Path, file_mode: int, too_open: bool) -> None:
    key = tmp_path / "k.key"
    key.write_text("x")
    key.chmod(file_mode)
    assert certs.key_file_too_open(key) is too_open


def test_days_left(tmp_path: Path) -> None:
    for days in (10, 825):
        pair = certs.self_signed_server("gw", ["localhost"], days=days)
        certs.write_pair(pair, tmp_path / "c.pem", tmp_path / "c.key")
        assert days - 0.01 < certs.days_left(tmp_path / "c.pem") <= days


# -- the gateway's own certificates -------------------------------------------------------------------------


def test_ensure_gateway_certs_creates_once_then_loads(tmp_path: Path) -> None:
    first = certs.ensure_gateway_certs(tmp_path, hosts=["gw.lan", "192.168.1.5"])
    assert first.created and not first.renewed
    directory = tmp_path / "certs"
    assert first.directory == directory and mode(directory) == 0o700
    assert mode(first.ca_key) == 0o600 and mode(first.key) == 0o600
    ca = certs.load_pair(first.ca_cert, first.ca_key)
    chain = certs.load_certs(first.cert)
    assert len(chain) == 2 and chain[1] == ca.cert  # server.pem is the full chain
    chain[0].verify_directly_issued_by(ca.cert)
    assert certs.subject_alt_names(chain[0]) == ["gw.lan", "192.168.1.5"]
    assert first.fingerprint == certs.fingerprint_sha256(chain[0])
    assert first.ca_fingerprint == ca.fingerprint_sha256()
    contents = {p.name: p.read_bytes() for p in directory.iterdir()}

    second = certs.ensure_gateway_certs(tmp_path, hosts=["gw.lan"])
    assert not second.created and not second.renewed
    assert second.fingerprint == first.fingerprint and second.ca_fingerprint == first.ca_fingerprint
    assert {p.name: p.read_bytes() for p in directory.iterdir()} == contents  # nothing rewritten


def test_ensure_without_hosts_or_with_a_wildcard_names_loopback(tmp_path: Path) -> None:
    own = certs.ensure_gateway_certs(tmp_path, hosts=["0.0.0.0", "::"])
    assert certs.subject_alt_names(certs.load_certs(own.cert)[0]) == ["localhost", "127.0.0.1", "::1"]
    assert not certs.ensure_gateway_certs(tmp_path).renewed
    assert not certs.ensure_gateway_certs(tmp_path, hosts=["0.0.0.0"]).renewed


def test_ensure_adds_a_new_host_once(tmp_path: Path) -> None:
    first = certs.ensure_gateway_certs(tmp_path, hosts=["gw.lan"])
    added = certs.ensure_gateway_certs(tmp_path, hosts=["192.168.1.7"])
    assert added.renewed and added.fingerprint != first.fingerprint
    assert added.ca_fingerprint == first.ca_fingerprint  # the CA clients trust stays
    assert certs.subject_alt_names(certs.load_certs(added.cert)[0]) == ["gw.lan", "192.168.1.7"]
    again = certs.ensure_gateway_certs(tmp_path, hosts=["192.168.1.7"])
    assert not again.renewed and again.fingerprint == added.fingerprint


def test_ensure_renews_a_server_cert_about_to_expire(tmp_path: Path) -> None:
    first = certs.ensure_gateway_certs(tmp_path)
    ca = certs.load_pair(first.ca_cert, first.ca_key)
    short = certs.issue_server(ca, common_name="gw", hosts=["localhost"], days=certs.RENEW_DAYS - 1)
    certs.write_pair(short, first.cert, first.key, chain=[ca])
    renewed = certs.ensure_gateway_certs(tmp_path)
    assert renewed.renewed and renewed.fingerprint != short.fingerprint_sha256()
    assert certs.days_left(renewed.cert) > certs.LEAF_DAYS - 1
    assert certs.subject_alt_names(certs.load_certs(renewed.cert)[0]) == ["localhost"]  # hosts kept


def test_ensure_reissues_a_missing_server_key_but_never_replaces_the_ca(tmp_path: Path) -> None:
    first = certs.ensure_gateway_certs(tmp_path)
    first.key.unlink()
    again = certs.ensure_gateway_certs(tmp_path)
    assert again.renewed and again.ca_fingerprint == first.ca_fingerprint
    assert certs.load_pair(again.cert, again.key).fingerprint_sha256() == again.fingerprint
    first.ca_key.unlink()
    with pytest.raises(CertError, match="ca.key is missing"):
        certs.ensure_gateway_certs(tmp_path)
    assert first.ca_cert.exists()


def test_renew_server(tmp_path: Path) -> None:
    with pytest.raises(CertError, match="no local CA"):
        certs.renew_server(tmp_path)
    first = certs.ensure_gateway_certs(tmp_path, hosts=["gw.lan"])
    renewed = certs.renew_server(tmp_path)
    assert renewed.renewed and renewed.fingerprint != first.fingerprint
    assert renewed.ca_fingerprint == first.ca_fingerprint
    assert certs.subject_alt_names(certs.load_certs(renewed.cert)[0]) == ["gw.lan"]
    moved = certs.renew_server(tmp_path, hosts=["10.0.0.2"], days=90)
    assert certs.subject_alt_names(certs.load_certs(moved.cert)[0]) == ["10.0.0.2"]
    assert 89.9 < certs.days_left(moved.cert) <= 90
    assert mode(moved.key) == 0o600


async def test_gateway_certs_in_a_real_handshake(tmp_path: Path) -> None:
    own = certs.ensure_gateway_certs(tmp_path, hosts=["localhost", "127.0.0.1"])

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"hello\n")
        await writer.drain()
        writer.close()

    tcp = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=tls.server_context(cert=own.cert, key=own.key))
    port = tcp.sockets[0].getsockname()[1]
    try:
        client = tls.client_context(ca=own.ca_cert)
        client.verify_flags |= ssl.VERIFY_X509_STRICT
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client, server_hostname="localhost")
        assert await reader.readline() == b"hello\n"
        peer = tls.peer_identity(writer.get_extra_info("ssl_object"))
        assert peer is not None and peer.fingerprint_sha256 == own.fingerprint  # the one clients pin
        writer.close()
        await writer.wait_closed()
    finally:
        tcp.close()
        await tcp.wait_closed()


# -- the ``ampgate certs`` command ---------------------------------------------------------------------------


def run_cli(data_dir: Path, *argv: str) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir")
    sub = parser.add_subparsers()
    certs_command.register(sub)
    args = parser.parse_args(["--data-dir", str(data_dir), *argv])
    return int(args.func(args))


def audit_events(data_dir: Path) -> list[dict[str, Any]]:
    storage = Storage(data_dir).open()
    try:
        return [r.data for r in AuditLog(storage).list_sync(event_prefix=certs_command.EVENT_CERT_ISSUED)]
    finally:
        storage.close()


def test_cli_show_before_create_refuses(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(tmp_path, "certs", "show") == 1
    assert "ampgate certs create" in capsys.readouterr().err


def test_cli_create_show_renew(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(tmp_path, "certs", "create") == 0
    out = capsys.readouterr().out
    own = certs.ensure_gateway_certs(tmp_path)
    assert "Created the local CA" in out and own.fingerprint in out and own.ca_fingerprint in out
    assert certs.subject_alt_names(certs.load_certs(own.cert)[0]) == ["localhost", "127.0.0.1", "::1"]

    assert run_cli(tmp_path, "certs", "create") == 0
    assert "nothing changed" in capsys.readouterr().out

    assert run_cli(tmp_path, "certs", "show") == 0
    out = capsys.readouterr().out
    assert own.fingerprint in out and own.ca_fingerprint in out and "localhost, 127.0.0.1, ::1" in out
    assert "(mode 0600)" in out and "825 days left" in out

    assert run_cli(tmp_path, "certs", "show", "--json") == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["server"]["fingerprint_sha256"] == own.fingerprint
    assert shown["ca"]["fingerprint_sha256"] == own.ca_fingerprint

    assert run_cli(tmp_path, "certs", "renew", "--host", "gw.lan", "--host", "192.168.1.5") == 0
    renewed = certs.ensure_gateway_certs(tmp_path)
    assert renewed.fingerprint != own.fingerprint and renewed.fingerprint in capsys.readouterr().out
    assert certs.subject_alt_names(certs.load_certs(renewed.cert)[0]) == ["gw.lan", "192.168.1.5"]

    kinds = [event["kind"] for event in audit_events(tmp_path)]
    assert kinds == ["ca", "server", "server"]  # created (CA, server), renewed; "nothing changed" is not


def test_cli_show_warns_about_an_open_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    own = certs.ensure_gateway_certs(tmp_path)
    own.key.chmod(0o644)
    assert run_cli(tmp_path, "certs", "show") == 0
    assert f"chmod 600 {own.key}" in capsys.readouterr().out


def test_cli_renew_without_ca_refuses(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(tmp_path, "certs", "renew") == 1
    assert "no local CA" in capsys.readouterr().err


async def test_cli_client_cert_works_against_a_mutual_tls_server(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, out = tmp_path / "data", tmp_path / "out"
    assert run_cli(data, "certs", "client", "CP-01", "--out", str(out)) == 1  # no local CA yet
    assert "ampgate certs create" in capsys.readouterr().err
    own = certs.ensure_gateway_certs(data)

    assert run_cli(data, "certs", "client", "CP-01", "--out", str(out), "--role", "Operator") == 0
    cert_path, key_path = out / "CP-01.pem", out / "CP-01.key"
    assert mode(key_path) == 0o600 and (out / "ca.pem").read_bytes() == own.ca_cert.read_bytes()
    client = certs.load_pair(cert_path, key_path)
    assert client.common_name == "CP-01" and client.fingerprint_sha256() in capsys.readouterr().out
    role = client.cert.extensions.get_extension_for_oid(certs.MODBUS_ROLE_OID).value
    assert isinstance(role, x509.UnrecognizedExtension) and role.value == b"\x0c\x08Operator"
    event = audit_events(data)[-1]
    assert event["kind"] == "client" and event["role"] == "Operator"
    assert event["subject"] == "CN=CP-01" and event["fingerprint_sha256"] == client.fingerprint_sha256()

    # Never overwritten by accident; names cannot escape --out.
    assert run_cli(data, "certs", "client", "CP-01", "--out", str(out)) == 1
    assert run_cli(data, "certs", "client", "CP-01", "--out", str(out), "--force") == 0
    assert run_cli(data, "certs", "client", "../evil", "--out", str(out)) == 1
    assert not (tmp_path / "evil.pem").exists()

    # What the peer gets is enough to pass a server that requires a certificate from the local CA.
    seen: list[tls.PeerCert | None] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(tls.peer_identity(writer.get_extra_info("ssl_object")))
        writer.write(b"ok\n")
        await writer.drain()
        writer.close()

    server_ctx = tls.server_context(cert=own.cert, key=own.key, ca=own.ca_cert, client_auth="required")
    tcp = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_ctx)
    port = tcp.sockets[0].getsockname()[1]
    try:
        ctx = tls.client_context(ca=out / "ca.pem", cert=cert_path, key=key_path)
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
        assert await reader.readline() == b"ok\n"
        writer.close()
        await writer.wait_closed()
    finally:
        tcp.close()
        await tcp.wait_closed()
    reissued = certs.load_pair(cert_path, key_path)
    assert seen and seen[0] is not None and seen[0].common_name == "CP-01"
    assert seen[0].fingerprint_sha256 == reissued.fingerprint_sha256()
