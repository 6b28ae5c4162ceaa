"""Keys and certificates: the only module that generates them (ECDSA P-256, SHA-256, via ``cryptography``).

Contract:
- ``create_ca`` / ``issue_server`` / ``issue_client`` / ``self_signed_server`` return a ``CertKey`` in memory;
  nothing touches the disk until ``write_pair``. A leaf never outlives its issuer: the validity asked for is
  cut at the issuer's ``not_after``, so ``days_left`` tells the truth about when the chain stops working.
- ``write_pair`` writes the key with mode 0600 from the first byte (a temporary file opened with
  O_CREAT|O_EXCL and mode 0600, then renamed over the target), so the key is never readable by others, not
  even briefly, and a crash leaves the old file or the new one, never half of one. The certificate file
  holds the leaf and then the chain (a full chain, as TLS servers send it).
- ``load_pair`` refuses a key that does not belong to the certificate (``CertError``).
- ``ensure_gateway_certs`` keeps the gateway's own local CA and server certificate in ``data_dir/certs``
  (directory 0700, keys 0600): created on the first call, loaded afterwards, re-issued from the same CA when
  the server certificate has less than ``RENEW_DAYS`` left or does not cover a host asked for. The CA is
  never replaced silently: clients trust it, and a new one would break every one of them.
- ``key_file_too_open`` (policy TLS-004) and ``days_left`` (TLS-005) are the checks the policy rules use.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import ipaddress
import logging
import os
import secrets
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gateway.security.files import write_atomic
from gateway.security.netaddr import is_wildcard

_LOGGER = logging.getLogger(__name__)

CA_DAYS = 3650
# 825 days: the longest leaf validity browsers and the CA/Browser Forum accepted for years; shorter than
# the CA by far, so a leaf is renewed many times under one CA that clients trust once.
LEAF_DAYS = 825
RENEW_DAYS = 30  # re-issue when less is left: the same threshold at which policy TLS-005 starts warning
# Issue certificates valid from an hour ago: a station whose clock runs a little behind must not refuse a
# certificate issued a minute ago as "not yet valid".
BACKDATE = dt.timedelta(hours=1)

CERTS_DIR = "certs"
CA_CERT_FILE = "ca.pem"
CA_KEY_FILE = "ca.key"
SERVER_CERT_FILE = "server.pem"
SERVER_KEY_FILE = "server.key"
_LOCK_FILE = ".lock"
KEY_MODE = 0o600
CERT_MODE = 0o644  # certificates are public
DIR_MODE = 0o700

DEFAULT_HOSTS = ("localhost", "127.0.0.1", "::1")
SERVER_COMMON_NAME = "Ampgate gateway"
CA_COMMON_NAME = "Ampgate local CA"

# Modbus/TCP Security: the role of a client travels in this private certificate extension as a DER
# UTF8String (the spec section is cited in plugins/modbus/const.py, which holds the same OID: gateway/ never
# imports plugins/).
MODBUS_ROLE_OID = x509.ObjectIdentifier("1.3.6.1.4.1.50316.802.1")
MODBUS_ROLE_MAX_BYTES = 128  # what plugins/modbus/roles.py accepts as a role; longer is "no role" there
_UTF8STRING_TAG = 0x0C


class CertError(ValueError):
    """A key or certificate is missing, unreadable, mismatched, or cannot be issued as asked."""


ExtensionSpec = x509.ExtensionType | tuple[x509.ExtensionType, bool]
"""An extra extension for a certificate: the extension (not critical), or ``(extension, critical)``."""


# -- the in-memory pair -----------------------------------------------------------------------------------


def fingerprint_sha256(cert: x509.Certificate) -> str:
    """SHA-256 of the DER certificate as upper-case hex pairs joined by colons (how tools print it)."""
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()


def common_name(cert: x509.Certificate) -> str | None:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not names:
        return None
    value = names[0].value
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def subject_alt_names(cert: x509.Certificate) -> list[str]:
    """The DNS names and IP addresses of the subjectAltName extension, in order."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    names: list[str] = list(san.get_values_for_type(x509.DNSName))
    names += [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    return names


@dataclass(frozen=True, slots=True)
class CertKey:
    """A certificate and its private key."""

    cert: x509.Certificate
    key: CertificateIssuerPrivateKeyTypes

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        # Unencrypted PKCS#8: a service must load it unattended; the file mode is what protects it (TLS-004).
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def fingerprint_sha256(self) -> str:
        return fingerprint_sha256(self.cert)

    @property
    def not_after(self) -> dt.datetime:
        return self.cert.not_valid_after_utc

    @property
    def common_name(self) -> str | None:
        return common_name(self.cert)


# -- issuing ----------------------------------------------------------------------------------------------


def _new_key() -> ec.EllipticCurvePrivateKey:
    # P-256: the curve every TLS stack and every OCPP station supports (the OCPP security whitepaper's
    # ECDSA suites assume it); as strong as RSA-3072 at a fraction of the handshake cost.
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    if not common_name:
        raise CertError("a certificate needs a common name")
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _hash_for(key: CertificateIssuerPrivateKeyTypes) -> hashes.SHA256 | None:
    # EdDSA signs the message itself and takes no separate hash (RFC 8410).
    return None if isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey) else hashes.SHA256()


def _validity(days: int, issuer: x509.Certificate | None) -> tuple[dt.datetime, dt.datetime]:
    if days < 1:
        raise CertError(f"a certificate must be valid for at least one day, not {days}")
    now = dt.datetime.now(dt.UTC)
    not_after = now + dt.timedelta(days=days)
    if issuer is not None:
        if issuer.not_valid_after_utc <= now:
            raise CertError(f"the issuing CA {common_name(issuer)!r} has expired")
        not_after = min(not_after, issuer.not_valid_after_utc)
    return now - BACKDATE, not_after


def _builder(
    subject: x509.Name, public_key: ec.EllipticCurvePublicKey, issuer: CertKey | None, days: int
) -> x509.CertificateBuilder:
    not_before, not_after = _validity(days, issuer.cert if issuer is not None else None)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert.subject if issuer is not None else subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )
    if issuer is not None:
        # The AKI lets verifiers pick the right CA among several with the same name (and strict X.509
        # checking, the default of newer Python clients, requires it).
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), critical=False
        )
    return builder


def _leaf_usage(builder: x509.CertificateBuilder, purpose: x509.ObjectIdentifier) -> x509.CertificateBuilder:
    return (
        builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        # ECDHE key exchange: the leaf key only signs the handshake.
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([purpose]), critical=False)
    )


def _general_names(hosts: Sequence[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in hosts:
        text = host.strip().strip("[]").split("%", 1)[0]  # "[::1]" and scoped "fe80::1%eth0" as written
        if not text:
            continue
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(text)))
        except ValueError:
            # DNS names go into certificates in their ASCII (IDNA) form.
            names.append(x509.DNSName(text.encode("idna").decode("ascii").lower()))
    return list(dict.fromkeys(names))


def _san(hosts: Sequence[str]) -> x509.SubjectAlternativeName:
    names = _general_names(hosts)
    if not names:
        raise CertError("a server certificate needs at least one host name or address")
    return x509.SubjectAlternativeName(names)


def create_ca(common_name: str, *, days: int = CA_DAYS) -> CertKey:
    """A self-signed CA that may sign leaves only (path length 0: no intermediate CAs below it)."""
    key = _new_key()
    cert = (
        _builder(_name(common_name), key.public_key(), None, days)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return CertKey(cert, key)


def issue_server(ca: CertKey, *, common_name: str, hosts: Sequence[str], days: int = LEAF_DAYS) -> CertKey:
    """A TLS server certificate signed by ``ca``; ``hosts`` (DNS names and IP addresses) become its SANs.

    Clients check the SANs, not the common name (RFC 6125), so every name a client dials must be in ``hosts``.
    """
    key = _new_key()
    builder = _leaf_usage(_builder(_name(common_name), key.public_key(), ca, days), ExtendedKeyUsageOID.SERVER_AUTH)
    builder = builder.add_extension(_san(hosts), critical=False)
    return CertKey(builder.sign(ca.key, _hash_for(ca.key)), key)


def issue_client(
    ca: CertKey, *, common_name: str, days: int = LEAF_DAYS, extra_extensions: Sequence[ExtensionSpec] = ()
) -> CertKey:
    """A TLS client certificate (extendedKeyUsage clientAuth) signed by ``ca``, CN = the peer's identity.

    ``extra_extensions`` adds extensions such as ``modbus_role_extension("Operator")``.
    """
    key = _new_key()
    builder = _leaf_usage(_builder(_name(common_name), key.public_key(), ca, days), ExtendedKeyUsageOID.CLIENT_AUTH)
    for spec in extra_extensions:
        extension, critical = spec if isinstance(spec, tuple) else (spec, False)
        builder = builder.add_extension(extension, critical=critical)
    return CertKey(builder.sign(ca.key, _hash_for(ca.key)), key)


def self_signed_server(common_name: str, hosts: Sequence[str], days: int = LEAF_DAYS) -> CertKey:
    """A self-signed server certificate: its own trust anchor, for clients that pin it (policy TLS-003)."""
    key = _new_key()
    builder = _leaf_usage(_builder(_name(common_name), key.public_key(), None, days), ExtendedKeyUsageOID.SERVER_AUTH)
    builder = builder.add_extension(_san(hosts), critical=False)
    return CertKey(builder.sign(key, hashes.SHA256()), key)


def modbus_role_extension(role: str) -> x509.UnrecognizedExtension:
    """The Modbus/TCP Security role extension (OID 1.3.6.1.4.1.50316.802.1) holding ``role`` as a UTF8String."""
    value = role.encode("utf-8")
    if not value or len(value) > MODBUS_ROLE_MAX_BYTES:
        raise CertError(f"a Modbus role must be 1 to {MODBUS_ROLE_MAX_BYTES} bytes of UTF-8, got {len(value)}")
    # DER length: short form below 128, else 0x81 followed by one length byte (X.690 8.1.3).
    length = bytes([len(value)]) if len(value) < 0x80 else bytes([0x81, len(value)])
    return x509.UnrecognizedExtension(MODBUS_ROLE_OID, bytes([_UTF8STRING_TAG]) + length + value)


# -- files ------------------------------------------------------------------------------------------------


def write_cert(path: Path, certs: Sequence[CertKey | x509.Certificate]) -> None:
    """Write certificates (PEM, in the order given) to ``path`` atomically, mode 0644."""
    pems = [(c.cert if isinstance(c, CertKey) else c).public_bytes(serialization.Encoding.PEM) for c in certs]
    path.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    write_atomic(path, b"".join(pems), CERT_MODE)


def write_pair(
    certkey: CertKey, cert_path: Path, key_path: Path, *, chain: Sequence[CertKey | x509.Certificate] = ()
) -> None:
    """Write the key (0600) and then the certificate followed by ``chain`` (leaf first, full chain)."""
    cert_path, key_path = Path(cert_path), Path(key_path)
    key_path.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    write_atomic(key_path, certkey.key_pem(), KEY_MODE)
    write_cert(cert_path, [certkey, *chain])


def load_certs(path: Path) -> list[x509.Certificate]:
    """Every certificate in a PEM file, leaf first."""
    try:
        certs = x509.load_pem_x509_certificates(Path(path).read_bytes())
    except ValueError as err:
        raise CertError(f"{path}: not a PEM certificate file ({err})") from err
    except OSError as err:
        raise CertError(f"{path}: cannot read ({err.strerror})") from err
    return certs


def load_pair(cert_path: Path, key_path: Path) -> CertKey:
    """The first certificate of ``cert_path`` with the key of ``key_path``; refuses a key that is not its own."""
    cert = load_certs(cert_path)[0]
    try:
        key = serialization.load_pem_private_key(Path(key_path).read_bytes(), password=None)
    except (ValueError, TypeError) as err:  # TypeError: the key is encrypted
        raise CertError(f"{key_path}: not an unencrypted PEM private key ({err})") from err
    except OSError as err:
        raise CertError(f"{key_path}: cannot read ({err.strerror})") from err
    if not isinstance(
        key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
        | ed448.Ed448PrivateKey | dsa.DSAPrivateKey
    ):
        raise CertError(f"{key_path}: a {type(key).__name__} cannot sign")
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(*spki) != cert.public_key().public_bytes(*spki):
        raise CertError(f"{key_path} is not the key of the certificate in {cert_path}")
    return CertKey(cert, key)


def key_file_too_open(path: Path) -> bool:
    """True when group or others may read the key file (policy TLS-004)."""
    return bool(Path(path).stat().st_mode & (stat.S_IRGRP | stat.S_IROTH))


def days_left(cert_path: Path) -> float:
    """Days until the (first) certificate in ``cert_path`` expires; negative once expired (policy TLS-005)."""
    cert = load_certs(cert_path)[0]
    return (cert.not_valid_after_utc - dt.datetime.now(dt.UTC)).total_seconds() / 86400


# -- the gateway's own CA and server certificate ----------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class GatewayCerts:
    """Where the gateway's own certificates are, and what happened on this call."""

    directory: Path
    ca_cert: Path
    ca_key: Path
    cert: Path  # the server certificate followed by the CA (full chain)
    key: Path
    fingerprint: str  # SHA-256 of the server certificate: what clients pin (TLS-003)
    ca_fingerprint: str
    not_after: dt.datetime  # of the server certificate
    created: bool = False  # the CA and the server certificate were made now
    renewed: bool = False  # the server certificate was re-issued now (expiring, missing, or new hosts)


def certs_dir(data_dir: Path) -> Path:
    return Path(data_dir) / CERTS_DIR


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """One process at a time in ``directory``: the gateway and ``ampgate certs`` must not interleave writes
    (a key from one and a certificate from the other would not match)."""
    directory.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    if directory.stat().st_mode & 0o077:
        directory.chmod(DIR_MODE)
    fd = os.open(directory / _LOCK_FILE, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), KEY_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _named_hosts(hosts: Sequence[str]) -> list[str]:
    # 0.0.0.0 and :: are where a server listens, never a name a client dials: they have no place in a SAN.
    return list(dict.fromkeys(h.strip() for h in hosts if h.strip() and not is_wildcard(h)))


def _san_hosts(hosts: Sequence[str]) -> list[str]:
    return _named_hosts(hosts) or list(DEFAULT_HOSTS)


def _uncovered(cert: x509.Certificate, hosts: Sequence[str]) -> list[str]:
    """The hosts that the certificate's SANs do not name."""
    have = set(_general_names(subject_alt_names(cert)))
    return [host for host in hosts if not set(_general_names([host])) <= have]


def _old_hosts(directory: Path) -> list[str]:
    try:
        return subject_alt_names(load_certs(directory / SERVER_CERT_FILE)[0])
    except CertError:
        return []


def _result(directory: Path, ca: CertKey, server: CertKey, *, created: bool, renewed: bool) -> GatewayCerts:
    return GatewayCerts(
        directory=directory,
        ca_cert=directory / CA_CERT_FILE,
        ca_key=directory / CA_KEY_FILE,
        cert=directory / SERVER_CERT_FILE,
        key=directory / SERVER_KEY_FILE,
        fingerprint=server.fingerprint_sha256(),
        ca_fingerprint=ca.fingerprint_sha256(),
        not_after=server.not_after,
        created=created,
        renewed=renewed,
    )


def _load_ca(directory: Path) -> CertKey | None:
    cert, key = directory / CA_CERT_FILE, directory / CA_KEY_FILE
    if not cert.exists() and not key.exists():
        return None
    if not cert.exists() or not key.exists():
        present, missing = (cert, key) if cert.exists() else (key, cert)
        # Making a new CA here would silently break every client that trusts the old one.
        raise CertError(f"{missing} is missing but {present} exists: restore it from a backup, or remove "
                        f"{present} to create a new local CA (every client must then trust the new one)")
    return load_pair(cert, key)


def _issue_and_write(directory: Path, ca: CertKey, hosts: Sequence[str], days: int) -> CertKey:
    server = issue_server(ca, common_name=SERVER_COMMON_NAME, hosts=_san_hosts(hosts), days=days)
    write_pair(server, directory / SERVER_CERT_FILE, directory / SERVER_KEY_FILE, chain=[ca])
    return server


def ensure_gateway_certs(data_dir: Path, *, hosts: Sequence[str] = ()) -> GatewayCerts:
    """The gateway's local CA and server certificate: created on the first call, loaded afterwards.

    The server certificate is re-issued from the same CA when it is missing or does not match its key, has
    less than ``RENEW_DAYS`` left, or does not name one of ``hosts`` (the new one then names the old hosts
    and the new ones, so callers asking for different hosts converge instead of re-issuing at every start).
    Wildcard addresses are ignored; with no host at all the certificate names ``DEFAULT_HOSTS``.
    """
    directory = certs_dir(data_dir)
    with _locked(directory):
        ca = _load_ca(directory)
        if ca is None:
            ca = create_ca(f"{CA_COMMON_NAME} {secrets.token_hex(4)}")  # unique: clients may trust several
            write_pair(ca, directory / CA_CERT_FILE, directory / CA_KEY_FILE)
            server = _issue_and_write(directory, ca, hosts, LEAF_DAYS)
            _LOGGER.info("created the local CA and server certificate in %s", directory)
            return _result(directory, ca, server, created=True, renewed=False)

        wanted = _named_hosts(hosts)
        try:
            server = load_pair(directory / SERVER_CERT_FILE, directory / SERVER_KEY_FILE)
        except CertError as err:
            _LOGGER.warning("re-issuing the server certificate: %s", err)
            server = _issue_and_write(directory, ca, [*_old_hosts(directory), *wanted], LEAF_DAYS)
            return _result(directory, ca, server, created=False, renewed=True)
        left = (server.not_after - dt.datetime.now(dt.UTC)).total_seconds() / 86400
        uncovered = _uncovered(server.cert, wanted)
        if left < RENEW_DAYS or uncovered:
            reason = f"{left:.0f} days left" if left < RENEW_DAYS else f"new hosts {', '.join(uncovered)}"
            _LOGGER.warning("re-issuing the server certificate (%s); its fingerprint changes", reason)
            server = _issue_and_write(directory, ca, [*subject_alt_names(server.cert), *wanted], LEAF_DAYS)
            return _result(directory, ca, server, created=False, renewed=True)
        return _result(directory, ca, server, created=False, renewed=False)


def renew_server(data_dir: Path, *, hosts: Sequence[str] | None = None, days: int = LEAF_DAYS) -> GatewayCerts:
    """Re-issue the server certificate from the local CA (which must exist); ``hosts`` None keeps its SANs."""
    directory = certs_dir(data_dir)
    with _locked(directory):
        ca = _load_ca(directory)
        if ca is None:
            raise CertError(f"no local CA in {directory}: create it first (ampgate certs create)")
        if hosts is None:
            hosts = _old_hosts(directory)
        server = _issue_and_write(directory, ca, hosts, days)
        return _result(directory, ca, server, created=False, renewed=True)


def load_gateway_ca(data_dir: Path) -> CertKey:
    """The local CA (to issue client certificates); ``CertError`` if there is none yet."""
    directory = certs_dir(data_dir)
    with _locked(directory):
        ca = _load_ca(directory)
    if ca is None:
        raise CertError(f"no local CA in {directory}: create it first (ampgate certs create)")
    return ca
