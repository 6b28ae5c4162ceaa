"""Modbus/TCP Security roles: the certificate extension, its DER encoding, and what a role may do."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.security import certs
from gateway.security.certs import CertError
from plugins.modbus.roles import access_for, common_name, decode_utf8string, role_of
from tests.plugins.modbus.tlsutil import Pki


def der_utf8(text: str) -> bytes:
    raw = text.encode()
    if len(raw) < 0x80:
        return b"\x0c" + bytes([len(raw)]) + raw
    return b"\x0c\x81" + bytes([len(raw)]) + raw


def test_decode_utf8string() -> None:
    assert decode_utf8string(der_utf8("Reader")) == "Reader"
    assert decode_utf8string(der_utf8("Zähler")) == "Zähler"
    assert decode_utf8string(b"\x13\x06Reader") is None  # PrintableString: not what the spec requires
    assert decode_utf8string(b"\x0c\x07Reader") is None  # length lies
    assert decode_utf8string(b"\x0c\x06Reader!") is None  # trailing bytes
    assert decode_utf8string(b"\x0c\x02\xff\xfe") is None  # not UTF-8
    assert decode_utf8string(b"\x0c\x00") is None and decode_utf8string(b"") is None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_decode_never_raises(data: bytes) -> None:
    """Contract: any bytes give a string or None, never an exception; a valid encoding round-trips."""
    result = decode_utf8string(data)
    assert result is None or der_utf8(result) == data or data[1] & 0x80


@settings(max_examples=100, deadline=None)
@given(st.text(min_size=1, max_size=100))
def test_round_trip(text: str) -> None:
    assert decode_utf8string(der_utf8(text)) == (text if len(text.encode()) <= 128 else None)


def test_role_from_real_certificates(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    reader = pki.client("ems-reader", role="Reader")
    assert role_of(reader.der) == "Reader"
    assert common_name(reader.der) == "ems-reader"
    assert role_of(pki.client("no-role").der) is None
    assert role_of(pki.client("printable", raw_role=b"\x13\x06Reader").der) is None
    assert role_of(None) is None and role_of(b"not a certificate") is None
    cert = x509.load_der_x509_certificate(reader.der)
    assert cert.extensions.get_extension_for_oid(x509.ObjectIdentifier("1.3.6.1.4.1.50316.802.1"))


def test_access_table() -> None:
    roles = {"Reader": "read", "Operator": "write"}
    assert access_for("Reader", roles) == "read"
    assert access_for("Operator", roles) == "write"
    assert access_for("reader", roles) is None  # role names compare exactly
    assert access_for(None, roles) is None


def test_role_written_by_gateway_certs_is_read_back() -> None:
    # The consumer of the extension: what plugins/modbus reads must be what we write, long form included.
    ca = certs.create_ca("Test CA")
    for role in ("Operator", "Leser", "R" * 127, "ü" * 64):
        client = certs.issue_client(ca, common_name="m", extra_extensions=[certs.modbus_role_extension(role)])
        assert role_of(client.cert.public_bytes(serialization.Encoding.DER)) == role
    for bad in ("", "R" * 129):
        with pytest.raises(CertError, match="Modbus role"):
            certs.modbus_role_extension(bad)
