"""gateway.security.tls against real TLS handshakes on 127.0.0.1, with certificates made by certs.py.

Every refusal is proved from both ends: the client fails, and our server's own handshake error says why
(the server upgrades each accepted TCP connection with ``start_tls`` so that error reaches the test).
Each refusal has a positive control, so a test cannot pass because the test client could not talk at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import warnings
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from gateway.security import certs, tls
from gateway.security.tls import PeerCert, TlsConfigError

TIMEOUT = 5.0


@dataclass
class Pki:
    dir: Path
    ca: certs.CertKey
    server: certs.CertKey
    client: certs.CertKey
    other_ca: certs.CertKey

    def path(self, name: str) -> Path:
        return self.dir / name


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """One CA with a server (localhost, 127.0.0.1, ::1) and a client; a second CA with the same pair."""
    d = tmp_path_factory.mktemp("pki")
    ca = certs.create_ca("Test CA")
    server = certs.issue_server(ca, common_name="gw", hosts=["localhost", "127.0.0.1", "::1"])
    client = certs.issue_client(ca, common_name="CP-01")
    other = certs.create_ca("Other CA")
    certs.write_pair(server, d / "server.pem", d / "server.key", chain=[ca])
    certs.write_pair(client, d / "client.pem", d / "client.key")
    certs.write_cert(d / "ca.pem", [ca])
    certs.write_cert(d / "other-ca.pem", [other])
    certs.write_pair(certs.issue_server(other, common_name="gw", hosts=["127.0.0.1"]),
                     d / "other-server.pem", d / "other-server.key", chain=[other])
    certs.write_pair(certs.issue_client(other, common_name="CP-01"), d / "other-client.pem", d / "other-client.key")
    return Pki(d, ca, server, client, other)


@dataclass
class TlsServer:
    """A TCP server on 127.0.0.1 that runs the TLS handshake with ``context`` on each connection.

    ``handshakes`` gets the peer's ``PeerCert`` (None without a client certificate) for each completed
    handshake, or the exception our side raised for a refused one. A completed one answers a line with
    ``ok <client CN>``.
    """

    context: ssl.SSLContext
    port: int = 0
    handshakes: list[PeerCert | BaseException | None] = field(default_factory=list)

    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        try:
            await writer.start_tls(self.context, ssl_handshake_timeout=TIMEOUT)
        except (ssl.SSLError, OSError) as err:
            self.handshakes.append(err)
            writer.transport.abort()
            return
        peer = tls.peer_identity(writer.get_extra_info("ssl_object"))
        self.handshakes.append(peer)
        with contextlib.suppress(ssl.SSLError, OSError, asyncio.IncompleteReadError):
            await reader.readline()
            writer.write(f"ok {peer.common_name if peer else '-'}\n".encode())
            await writer.drain()
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()

    async def last_error(self) -> BaseException:
        """Why our server refused the last connection (fails the test if it completed the handshake)."""
        pending = [task for task in self.tasks if not task.done() and task is not asyncio.current_task()]
        if pending:  # the client may learn of the refusal before our handler has recorded it
            await asyncio.wait(pending, timeout=TIMEOUT)
        assert self.handshakes, "the server saw no connection"
        err = self.handshakes[-1]
        assert isinstance(err, BaseException), f"the server completed the handshake: {err!r}"
        return err

    async def last_reason(self) -> str | None:
        err = await self.last_error()
        return err.reason if isinstance(err, ssl.SSLError) else None


@contextlib.asynccontextmanager
async def serving(context: ssl.SSLContext) -> AsyncIterator[TlsServer]:
    server = TlsServer(context)
    tcp = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    server.port = tcp.sockets[0].getsockname()[1]
    try:
        yield server
    finally:
        if server.tasks:  # let every connection finish: a handler cancelled at teardown would be logged
            await asyncio.wait(server.tasks, timeout=TIMEOUT)
        tcp.close()
        await tcp.wait_closed()


async def talk(port: int, context: ssl.SSLContext, server_hostname: str | None = None) -> tuple[bytes, PeerCert | None]:
    """Connect, say a line, return the answer (b"" when the server hung up) and the server's certificate."""
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname=server_hostname,
                                ssl_handshake_timeout=TIMEOUT), TIMEOUT)
    try:
        server_cert = tls.peer_identity(writer.get_extra_info("ssl_object"))
        writer.write(b"ping\n")
        await writer.drain()
        return await asyncio.wait_for(reader.readline(), TIMEOUT), server_cert
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def refused(port: int, context: ssl.SSLContext, server_hostname: str | None = None) -> BaseException | None:
    """Connect and expect no answer: the exception the client saw (None if it only saw the line close)."""
    try:
        answer, _ = await talk(port, context, server_hostname)
    except (ssl.SSLError, ConnectionError) as err:
        return err
    # TLS 1.3: a client finishes its side of the handshake before the server has checked the client's
    # certificate; the server's refusal then shows as an alert or a closed line on the first read.
    assert answer == b"", f"the server answered: {answer!r}"
    return None


def old_client(maximum: ssl.TLSVersion, ciphers: str = "DEFAULT:@SECLEVEL=0") -> ssl.SSLContext:
    """A deliberately weak test client, built by hand (tls.py would refuse to build it): that is the point,
    it proves what our server refuses. SECLEVEL=0 lets this OpenSSL offer TLS 1.0/1.1 at all, so a refusal
    comes from the server, not from the client's own configuration."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_ciphers(ciphers)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLSVersion.TLSv1/TLSv1_1 are deprecated names
        ctx.minimum_version = ssl.TLSVersion.TLSv1
    ctx.maximum_version = maximum
    return ctx


def server_ctx(pki: Pki, **kwargs: object) -> ssl.SSLContext:
    return tls.server_context(cert=pki.path("server.pem"), key=pki.path("server.key"), **kwargs)  # type: ignore[arg-type]


# -- protocol version ---------------------------------------------------------------------------------------


async def test_tls11_client_is_refused_by_our_server(pki: Pki) -> None:
    async with serving(server_ctx(pki)) as server:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            weak = old_client(ssl.TLSVersion.TLSv1_1)
        assert await refused(server.port, weak) is not None
        # The server read a ClientHello offering at most TLS 1.1 and refused it itself.
        assert await server.last_reason() == "UNSUPPORTED_PROTOCOL"
        # Positive control: the very same client, allowed up to TLS 1.3, is served.
        answer, _ = await talk(server.port, old_client(ssl.TLSVersion.TLSv1_3))
        assert answer == b"ok -\n"
        assert server.handshakes[-1] is None


async def test_min_version_13_refuses_a_tls12_client(pki: Pki) -> None:
    async with serving(server_ctx(pki, min_version="1.3")) as server:
        client = tls.client_context(ca=pki.path("ca.pem"))
        client.maximum_version = ssl.TLSVersion.TLSv1_2
        assert await refused(server.port, client) is not None
        assert await server.last_reason() == "UNSUPPORTED_PROTOCOL"
        answer, _ = await talk(server.port, tls.client_context(ca=pki.path("ca.pem")))
        assert answer == b"ok -\n"


async def test_default_negotiates_tls13_and_12_with_an_aead_suite(pki: Pki) -> None:
    async with serving(server_ctx(pki)) as server:
        _, writer = await asyncio.open_connection("127.0.0.1", server.port,
                                                  ssl=tls.client_context(ca=pki.path("ca.pem")))
        assert writer.get_extra_info("ssl_object").version() == "TLSv1.3"
        writer.close()
        await writer.wait_closed()
        client = tls.client_context(ca=pki.path("ca.pem"))
        client.maximum_version = ssl.TLSVersion.TLSv1_2
        _, writer = await asyncio.open_connection("127.0.0.1", server.port, ssl=client)
        name, version, _ = writer.get_extra_info("ssl_object").cipher()
        assert version == "TLSv1.2" and name == "ECDHE-ECDSA-AES128-GCM-SHA256"  # our order, not the client's
        writer.close()
        await writer.wait_closed()


@pytest.mark.parametrize("version", ["1.0", "1.1", "TLSv1.1", "1"])
def test_min_version_below_12_is_never_built(pki: Pki, version: str) -> None:
    with pytest.raises(TlsConfigError, match="minimum is TLS 1.2"):
        server_ctx(pki, min_version=version)
    with pytest.raises(TlsConfigError, match="minimum is TLS 1.2"):
        tls.client_context(min_version=version)


def test_min_version_values(pki: Pki) -> None:
    assert server_ctx(pki).minimum_version == ssl.TLSVersion.TLSv1_2
    assert tls.client_context(min_version="1.3").minimum_version == ssl.TLSVersion.TLSv1_3
    with pytest.raises(TlsConfigError, match="unknown TLS version"):
        tls.client_context(min_version="2.0")


# -- cipher suites ------------------------------------------------------------------------------------------


async def test_non_aead_cipher_client_is_refused(pki: Pki) -> None:
    weak_suite = "ECDHE-ECDSA-AES128-SHA"  # forward secret but CBC with HMAC-SHA1: not AEAD
    assert tls.weak_ciphers(weak_suite) == [weak_suite]
    async with serving(server_ctx(pki)) as server:
        assert await refused(server.port, old_client(ssl.TLSVersion.TLSv1_2, weak_suite)) is not None
        assert await server.last_reason() == "NO_SHARED_CIPHER"
    # Positive control: a server that was told to allow that suite (an accepted risk) serves the same client.
    async with serving(server_ctx(pki, ciphers=weak_suite)) as server:
        answer, _ = await talk(server.port, old_client(ssl.TLSVersion.TLSv1_2, weak_suite))
        assert answer == b"ok -\n"


def test_weak_ciphers() -> None:
    assert tls.weak_ciphers(tls.DEFAULT_CIPHERS) == []
    assert tls.weak_ciphers("AES128-SHA") == ["AES128-SHA"]  # RSA key exchange and CBC
    # OCPP-010's compatibility suites: AEAD, but RSA key exchange has no forward secrecy.
    assert sorted(tls.weak_ciphers(tls.RSA_KX_CIPHERS)) == ["AES128-GCM-SHA256", "AES256-GCM-SHA384"]
    assert tls.weak_ciphers("ECDHE-RSA-CHACHA20-POLY1305:DHE-RSA-AES128-GCM-SHA256") == []
    # Aliases are expanded by OpenSSL: HIGH hides CBC and anonymous suites.
    high = tls.weak_ciphers("HIGH")
    assert "ECDHE-ECDSA-AES256-SHA384" in high and any(name.startswith("ADH-") for name in high)
    with pytest.raises(TlsConfigError):
        tls.weak_ciphers("NO-SUCH-CIPHER")


def test_default_ciphers_are_ecdhe_aead_only() -> None:
    ctx = tls.client_context()
    suites = [s for s in ctx.get_ciphers() if s["protocol"] != "TLSv1.3"]
    assert suites and all(s["aead"] and s["kea"] == "kx-ecdhe" for s in suites)
    with pytest.raises(TlsConfigError, match="no cipher"):
        tls.client_context(ciphers="NO-SUCH-CIPHER")


# -- server certificate verification by our client ----------------------------------------------------------


async def test_client_verifies_the_server_and_reads_its_identity(pki: Pki) -> None:
    async with serving(server_ctx(pki)) as server:
        for hostname in (None, "localhost"):  # by IP SAN and by DNS SAN
            answer, server_cert = await talk(server.port, tls.client_context(ca=pki.path("ca.pem")), hostname)
            assert answer == b"ok -\n"
            assert server_cert is not None
            assert server_cert.common_name == "gw"
            assert server_cert.sans == ("localhost", "127.0.0.1", "::1")
            assert server_cert.fingerprint_sha256 == pki.server.fingerprint_sha256()
            assert server_cert.not_after == pki.server.not_after


async def test_server_cert_from_another_ca_fails_verification(pki: Pki) -> None:
    other = tls.server_context(cert=pki.path("other-server.pem"), key=pki.path("other-server.key"))
    async with serving(other) as server:
        err = await refused(server.port, tls.client_context(ca=pki.path("ca.pem")))
        assert isinstance(err, ssl.SSLCertVerificationError)
        # 19: the chain the server sent ends in a self-signed CA we do not trust (20 if it sent no CA).
        assert err.verify_code in {19, 20}
        await server.last_error()  # and the server never completed that handshake
        # The system trust store does not know our local CA either.
        assert isinstance(await refused(server.port, tls.client_context()), ssl.SSLCertVerificationError)
        # Positive control: trusting that CA, the same server is accepted.
        answer, _ = await talk(server.port, tls.client_context(ca=pki.path("other-ca.pem")))
        assert answer == b"ok -\n"


async def test_hostname_mismatch_fails(pki: Pki) -> None:
    async with serving(server_ctx(pki)) as server:
        err = await refused(server.port, tls.client_context(ca=pki.path("ca.pem")), "charger.invalid")
        assert isinstance(err, ssl.SSLCertVerificationError)
        assert "Hostname mismatch" in err.verify_message
        # Switching the host-name check off (TLS-001 allows it for loopback only) lets it through.
        answer, _ = await talk(server.port, tls.client_context(ca=pki.path("ca.pem"), check_hostname=False),
                               "charger.invalid")
        assert answer == b"ok -\n"


async def test_verify_false_accepts_any_server(pki: Pki) -> None:
    # policy: TLS-001 is what keeps this away from non-loopback peers; here we prove the switch works.
    other = tls.server_context(cert=pki.path("other-server.pem"), key=pki.path("other-server.key"))
    ctx = tls.client_context(ca=pki.path("ca.pem"), verify=False)
    assert ctx.verify_mode == ssl.CERT_NONE and not ctx.check_hostname
    async with serving(other) as server:
        answer, _ = await talk(server.port, ctx, "charger.invalid")
        assert answer == b"ok -\n"


async def test_our_chain_passes_strict_x509_checks(pki: Pki) -> None:
    # Newer Python clients turn VERIFY_X509_STRICT on by default: our certificates must pass it.
    client = tls.client_context(ca=pki.path("ca.pem"))
    client.verify_flags |= ssl.VERIFY_X509_STRICT
    async with serving(server_ctx(pki)) as server:
        answer, _ = await talk(server.port, client, "localhost")
        assert answer == b"ok -\n"


# -- client certificates (mutual TLS) -----------------------------------------------------------------------


def mtls_ctx(pki: Pki, client_auth: str = "required") -> ssl.SSLContext:
    return server_ctx(pki, ca=pki.path("ca.pem"), client_auth=client_auth)


@pytest.mark.parametrize("max_version", [ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2])
async def test_required_client_auth(pki: Pki, max_version: ssl.TLSVersion) -> None:
    def client(cert: str | None = None) -> ssl.SSLContext:
        ctx = tls.client_context(ca=pki.path("ca.pem"), cert=pki.path(f"{cert}.pem") if cert else None,
                                 key=pki.path(f"{cert}.key") if cert else None)
        ctx.maximum_version = max_version
        return ctx

    async with serving(mtls_ctx(pki)) as server:
        await refused(server.port, client())
        assert await server.last_reason() == "PEER_DID_NOT_RETURN_A_CERTIFICATE"
        await refused(server.port, client("other-client"))
        assert isinstance(await server.last_error(), ssl.SSLCertVerificationError)
        answer, _ = await talk(server.port, client("client"))
        assert answer == b"ok CP-01\n"
        peer = server.handshakes[-1]
        assert isinstance(peer, PeerCert)
        assert peer.common_name == "CP-01"
        assert peer.fingerprint_sha256 == pki.client.fingerprint_sha256()
        assert peer.der == pki.client.cert.public_bytes(serialization.Encoding.DER)
        assert len(server.handshakes) == 3


async def test_required_client_auth_through_start_server(pki: Pki) -> None:
    """The way plugins use it: ``asyncio.start_server(ssl=server_context(...))``."""
    seen: list[PeerCert | None] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(tls.peer_identity(writer.get_extra_info("ssl_object")))
        await reader.readline()
        writer.write(b"ok\n")
        await writer.drain()
        writer.close()

    tcp = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=mtls_ctx(pki))
    port = tcp.sockets[0].getsockname()[1]
    try:
        await refused(port, tls.client_context(ca=pki.path("ca.pem")))
        await refused(port, tls.client_context(ca=pki.path("ca.pem"), cert=pki.path("other-client.pem"),
                                               key=pki.path("other-client.key")))
        assert seen == []  # the handler never ran for a refused client
        good = tls.client_context(ca=pki.path("ca.pem"), cert=pki.path("client.pem"), key=pki.path("client.key"))
        answer, _ = await talk(port, good)
        assert answer == b"ok\n"
        assert [p.common_name if p else None for p in seen] == ["CP-01"]
    finally:
        tcp.close()
        await tcp.wait_closed()


async def test_optional_client_auth(pki: Pki) -> None:
    async with serving(mtls_ctx(pki, "optional")) as server:
        answer, _ = await talk(server.port, tls.client_context(ca=pki.path("ca.pem")))
        assert answer == b"ok -\n" and server.handshakes[-1] is None
        answer, _ = await talk(server.port, tls.client_context(ca=pki.path("ca.pem"), cert=pki.path("client.pem"),
                                                               key=pki.path("client.key")))
        assert answer == b"ok CP-01\n"
        # A certificate that is sent is verified, optional or not.
        await refused(server.port, tls.client_context(ca=pki.path("ca.pem"), cert=pki.path("other-client.pem"),
                                                      key=pki.path("other-client.key")))
        assert isinstance(await server.last_error(), ssl.SSLCertVerificationError)


def test_peer_identity_without_tls_or_certificate() -> None:
    assert tls.peer_identity(None) is None


# -- building contexts --------------------------------------------------------------------------------------


def test_server_context_options(pki: Pki) -> None:
    ctx = server_ctx(pki)
    for option in (ssl.OP_NO_COMPRESSION, ssl.OP_NO_RENEGOTIATION, ssl.OP_NO_TICKET, ssl.OP_CIPHER_SERVER_PREFERENCE):
        assert ctx.options & option
    assert ctx.verify_mode == ssl.CERT_NONE
    assert mtls_ctx(pki).verify_mode == ssl.CERT_REQUIRED
    assert mtls_ctx(pki, "optional").verify_mode == ssl.CERT_OPTIONAL


def test_client_context_defaults() -> None:
    ctx = tls.client_context()
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert ctx.options & ssl.OP_NO_RENEGOTIATION and ctx.options & ssl.OP_NO_COMPRESSION


def test_bad_settings_raise_tls_config_error(pki: Pki, tmp_path: Path) -> None:
    with pytest.raises(TlsConfigError, match="needs a ca"):
        server_ctx(pki, client_auth="required")
    with pytest.raises(TlsConfigError, match="client_auth must be one of"):
        server_ctx(pki, ca=pki.path("ca.pem"), client_auth="sometimes")
    with pytest.raises(TlsConfigError, match="cannot use certificate"):  # a key that is not the cert's
        tls.server_context(cert=pki.path("server.pem"), key=pki.path("client.key"))
    with pytest.raises(TlsConfigError, match="cannot use certificate"):
        tls.server_context(cert=tmp_path / "missing.pem", key=tmp_path / "missing.key")
    with pytest.raises(TlsConfigError, match="cannot load CA"):
        tls.client_context(ca=tmp_path / "missing.pem")
    with pytest.raises(TlsConfigError, match="without its certificate"):
        tls.client_context(key=pki.path("client.key"))
    # Paths may be given as strings (as configuration gives them).
    assert tls.server_context(cert=str(pki.path("server.pem")), key=str(pki.path("server.key")))
