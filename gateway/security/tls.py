"""TLS contexts: the only module that builds ``ssl.SSLContext`` objects.

Contract:
- ``server_context`` and ``client_context`` never allow less than TLS 1.2, whatever they are given: a
  ``min_version`` of "1.0" or "1.1" raises ``TlsConfigError`` (policy TLS-002 reports the setting; this is
  the floor under it, so a refused-but-accepted risk still cannot open TLS 1.0).
- Without ``ciphers`` the TLS 1.2 suites are ``DEFAULT_CIPHERS``: ECDHE key exchange with an AEAD cipher,
  nothing else. An explicit cipher string is used as given; policy TLS-002 (through ``weak_ciphers``)
  refuses one that admits weaker suites unless the risk is accepted (OCPP-010 for ``RSA_KX_CIPHERS``).
  TLS 1.3 suites are OpenSSL's, all AEAD with forward secrecy; Python cannot change them.
- ``client_context`` verifies the peer's certificate and host name unless told otherwise; switching either
  off is the caller's decision, which policy TLS-001 forbids towards any non-loopback peer.
- Every failure to build a context (bad file, key not matching the certificate, cipher string OpenSSL
  rejects) is a ``TlsConfigError`` naming what is wrong, so configuration errors read the same everywhere.
- ``peer_identity`` describes the certificate the peer presented (None when it presented none).
"""

from __future__ import annotations

import datetime as dt
import os
import ssl
from dataclasses import dataclass, field

from cryptography import x509

from gateway.security.certs import common_name, fingerprint_sha256, subject_alt_names

StrPath = str | os.PathLike[str]


class TlsConfigError(ValueError):
    """A TLS setting we refuse to build (TLS below 1.2) or that OpenSSL cannot use."""


# TLS 1.2 suites, strongest-first within each family: ECDHE only, so every session has its own key and a
# stolen server key cannot decrypt recorded traffic (forward secrecy); AEAD only (AES-GCM, ChaCha20-Poly1305),
# so there is no CBC mode with its padding-oracle history (Lucky13, POODLE-style attacks). ECDSA suites come
# first as our own certificates are P-256; the RSA ones serve operators' RSA certificates. This is the
# intermediate profile of Mozilla's server-side TLS guidelines without its DHE suites (slow, and clients
# offering DHE-but-not-ECDHE no longer exist). ChaCha20 helps stations without AES instructions.
DEFAULT_CIPHERS = ":".join((
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-CHACHA20-POLY1305",
))

# RSA key exchange with AES-GCM (TLS_RSA_WITH_AES_128_GCM_SHA256, TLS_RSA_WITH_AES_256_GCM_SHA384): the OCPP
# security whitepaper lists them for stations that cannot do ECDHE. AEAD but without forward secrecy, so
# ``weak_ciphers`` reports them; they are only ever enabled as an accepted risk (policy OCPP-010).
RSA_KX_CIPHERS = "AES128-GCM-SHA256:AES256-GCM-SHA384"

MIN_VERSIONS: dict[str, ssl.TLSVersion] = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
REFUSED_VERSIONS = frozenset({"1.0", "1.1"})  # RFC 8996 deprecates both; policy TLS-002
CLIENT_AUTH_MODES: dict[str, ssl.VerifyMode] = {
    "none": ssl.CERT_NONE,
    "optional": ssl.CERT_OPTIONAL,
    "required": ssl.CERT_REQUIRED,
}
# Key exchanges with forward secrecy, as ``SSLContext.get_ciphers()`` names them.
_FORWARD_SECRET_KX = frozenset({"kx-ecdhe", "kx-dhe", "kx-ecdhe-psk", "kx-dhe-psk"})


def _tls_version(value: str) -> ssl.TLSVersion:
    text = str(value).strip().removeprefix("TLSv").removeprefix("tls")
    if text in {"1", "1.0", "1.1"}:
        raise TlsConfigError(f"TLS {value} is refused: the minimum is TLS 1.2 (policy TLS-002)")
    try:
        return MIN_VERSIONS[text]
    except KeyError:
        raise TlsConfigError(f"unknown TLS version {value!r}: write \"1.2\" or \"1.3\"") from None


def _set_ciphers(ctx: ssl.SSLContext, ciphers: str | None) -> None:
    try:
        ctx.set_ciphers(ciphers or DEFAULT_CIPHERS)
    except ssl.SSLError as err:
        raise TlsConfigError(f"OpenSSL selects no cipher from {ciphers!r}") from err


def _load_chain(ctx: ssl.SSLContext, cert: StrPath, key: StrPath | None) -> None:
    try:
        ctx.load_cert_chain(certfile=cert, keyfile=key)
    except (ssl.SSLError, OSError) as err:
        what = getattr(err, "strerror", None) or getattr(err, "reason", None) or str(err)
        raise TlsConfigError(f"cannot use certificate {cert} with key {key or cert}: {what}") from err


def _load_ca(ctx: ssl.SSLContext, ca: StrPath) -> None:
    try:
        ctx.load_verify_locations(cafile=ca)
    except (ssl.SSLError, OSError) as err:
        what = getattr(err, "strerror", None) or getattr(err, "reason", None) or str(err)
        raise TlsConfigError(f"cannot load CA certificates from {ca}: {what}") from err


def _harden(ctx: ssl.SSLContext, min_version: str, ciphers: str | None) -> None:
    ctx.minimum_version = _tls_version(min_version)
    _set_ciphers(ctx, ciphers)
    # Compression leaks plaintext lengths (CRIME); Python sets this already, we keep it explicit. TLS 1.2
    # renegotiation is an old source of injection and DoS bugs and nothing we talk to needs it.
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    # Key-exchange groups stay OpenSSL's defaults (X25519, P-256, X448, P-521, P-384): set_ecdh_curve()
    # would narrow them to a single curve and lock out stations that lack it.


def server_context(
    *,
    cert: StrPath,
    key: StrPath,
    ca: StrPath | None = None,
    client_auth: str = "none",
    min_version: str = "1.2",
    ciphers: str | None = None,
) -> ssl.SSLContext:
    """A server context presenting ``cert`` (a full chain, leaf first) and ``key``.

    ``client_auth``: "none" asks for no client certificate; "optional" verifies one if the client sends it;
    "required" refuses a client without a certificate issued by ``ca``. Both need ``ca``, the CA(s) whose
    client certificates are accepted: there is nothing to verify a client certificate against otherwise.
    """
    if client_auth not in CLIENT_AUTH_MODES:
        raise TlsConfigError(f"client_auth must be one of {', '.join(CLIENT_AUTH_MODES)}, not {client_auth!r}")
    if client_auth != "none" and ca is None:
        raise TlsConfigError(f"client_auth {client_auth!r} needs a ca to verify client certificates against")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _harden(ctx, min_version, ciphers)
    # Our suites are all strong, so choose by our order (ECDSA and AES-GCM first) rather than the client's.
    ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    # No stateless session tickets: a TLS 1.2 ticket carries the session's master secret encrypted with a
    # key OpenSSL makes at start and keeps for the life of the process (months for a gateway), so whoever
    # gets that one key can decrypt every recorded session that got a ticket (by default, all of them):
    # forward secrecy undone. Our peers hold long-lived connections (OCPP WebSockets, Modbus/TCP), so
    # resumption saves little; for TLS 1.3 OpenSSL then resumes from its in-memory session cache instead.
    ctx.options |= ssl.OP_NO_TICKET
    _load_chain(ctx, cert, key)
    if ca is not None:
        _load_ca(ctx, ca)
    ctx.verify_mode = CLIENT_AUTH_MODES[client_auth]
    return ctx


def client_context(
    *,
    ca: StrPath | None = None,
    cert: StrPath | None = None,
    key: StrPath | None = None,
    verify: bool = True,
    check_hostname: bool = True,
    min_version: str = "1.2",
    ciphers: str | None = None,
) -> ssl.SSLContext:
    """A client context that verifies the server against ``ca`` (the system's trust store when None).

    ``cert``/``key`` present a client certificate (mutual TLS). The host name to check is given when
    connecting (``server_hostname``); IP addresses are checked against the certificate's IP SANs.
    """
    if key is not None and cert is None:
        raise TlsConfigError("a client key was given without its certificate")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED and check_hostname on from the start
    _harden(ctx, min_version, ciphers)
    if cert is not None:
        _load_chain(ctx, cert, key)
    if not verify:
        # policy: TLS-001 refuses this towards any non-loopback peer; it stays possible for loopback only.
        # Without certificate verification a host name check proves nothing, so both go.
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    if ca is not None:
        _load_ca(ctx, ca)
    else:
        ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
    if not check_hostname:
        ctx.check_hostname = False  # policy: TLS-001 gates this as above
    return ctx


def weak_ciphers(cipher_string: str) -> list[str]:
    """The TLS 1.2 suites ``cipher_string`` enables that lack AEAD or forward secrecy (or authentication).

    Expanded by OpenSSL itself (a throwaway context), so aliases such as ``HIGH`` or ``DEFAULT`` are judged
    by what they really contain here. ``TlsConfigError`` when OpenSSL selects nothing from the string.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        ctx.set_ciphers(cipher_string)
    except ssl.SSLError as err:
        raise TlsConfigError(f"OpenSSL selects no cipher from {cipher_string!r}") from err
    weak: list[str] = []
    for suite in ctx.get_ciphers():
        if suite["protocol"] == "TLSv1.3":
            continue  # always present, all AEAD with ephemeral key exchange; not set by the string
        # Anonymous suites (aNULL) have AEAD and ECDHE but authenticate nobody: a man in the middle's dream.
        if not suite["aead"] or suite["kea"] not in _FORWARD_SECRET_KX or suite["auth"] == "auth-null":
            weak.append(suite["name"])
    return weak


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerCert:
    """The certificate a TLS peer presented."""

    common_name: str | None  # subject CN
    sans: tuple[str, ...]  # DNS names and IP addresses of subjectAltName
    fingerprint_sha256: str  # of the DER certificate, upper-case hex pairs joined by colons
    not_after: dt.datetime  # UTC
    der: bytes = field(repr=False)  # the certificate itself, for callers that read more (Modbus roles)


def peer_identity(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> PeerCert | None:
    """Who the peer is, from the certificate it sent; None without TLS or without a peer certificate.

    Takes ``writer.get_extra_info("ssl_object")`` (asyncio) or an ``ssl.SSLSocket``. On a server that does
    not ask for client certificates (client_auth "none") a client never sends one, so this is None.
    """
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    if not der:
        return None
    cert = x509.load_der_x509_certificate(der)  # OpenSSL parsed it already; this cannot fail on its bytes
    return PeerCert(
        common_name=common_name(cert),
        sans=tuple(subject_alt_names(cert)),
        fingerprint_sha256=fingerprint_sha256(cert),
        not_after=cert.not_valid_after_utc,
        der=der,
    )
