"""Modbus/TCP Security authorisation: the role in a client certificate and what it may do. Sans-IO.

Contract:
- ``role_of(der)`` reads the role extension (OID 1.3.6.1.4.1.50316.802.1) from a DER certificate. The value
  must be a DER UTF8String (tag 0x0C), as MB-TCP-Security §6.x requires (protocol note §4); anything else
  - no extension, another string type (a PrintableString 0x13 included), trailing bytes, a bad length - is
  "no role". It never raises on any bytes.
- ``access_for(role, roles)`` maps a role to ``"read"``, ``"write"`` or ``None`` (nothing) through the
  configured ``roles:`` table; role names compare exactly, as the spec leaves them device-defined.
- ``common_name(der)`` is the subject CN, for the audit log and the service call's context.
"""

from __future__ import annotations

from collections.abc import Mapping

from cryptography import x509
from cryptography.x509.oid import NameOID, ObjectIdentifier

from .const import ROLE_OID

_ROLE_OID = ObjectIdentifier(ROLE_OID)
UTF8STRING_TAG = 0x0C
MAX_ROLE_LEN = 128  # role names are short words ("Reader", "Operator"); a longer value is not a role


def decode_utf8string(value: bytes) -> str | None:
    """A DER UTF8String, or None if ``value`` is anything else."""
    if len(value) < 2 or value[0] != UTF8STRING_TAG:
        return None
    length = value[1]
    start = 2
    if length & 0x80:  # long form: the low bits count the length bytes (X.690 §8.1.3.5)
        size = length & 0x7F
        if size == 0 or size > 2 or len(value) < 2 + size:
            return None
        length = int.from_bytes(value[2:2 + size], "big")
        start = 2 + size
    if length > MAX_ROLE_LEN or len(value) != start + length:
        return None
    try:
        text = value[start:].decode("utf-8")
    except UnicodeDecodeError:
        return None
    return text or None


def role_of(der: bytes | None) -> str | None:
    if not der:
        return None
    try:
        cert = x509.load_der_x509_certificate(der)
        ext = cert.extensions.get_extension_for_oid(_ROLE_OID)
    except (ValueError, x509.ExtensionNotFound, x509.DuplicateExtension):
        return None
    value = ext.value
    if not isinstance(value, x509.UnrecognizedExtension):
        return None
    return decode_utf8string(value.value)


def common_name(der: bytes | None) -> str | None:
    if not der:
        return None
    try:
        cert = x509.load_der_x509_certificate(der)
        names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    except ValueError:
        return None
    return str(names[0].value) if names else None


def access_for(role: str | None, roles: Mapping[str, str]) -> str | None:
    if role is None:
        return None
    return roles.get(role)
