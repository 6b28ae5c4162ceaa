"""Test PKI for Modbus/TCP Security: a CA, server and client certificates (with or without a role), issued with
``gateway.security.certs`` and written to files, and contexts built with ``gateway.security.tls``."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from gateway.security import certs, tls


@dataclass(frozen=True, slots=True)
class Issued:
    cert: Path
    key: Path
    der: bytes


class Pki:
    def __init__(self, directory: Path, name: str = "ca") -> None:
        self.directory = directory / name
        self.directory.mkdir(parents=True, exist_ok=True)
        self.ca = certs.create_ca(f"Test {name}")
        self.ca_path = self.directory / "ca.pem"
        certs.write_cert(self.ca_path, [self.ca])

    def _write(self, name: str, pair: certs.CertKey) -> Issued:
        cert, key = self.directory / f"{name}.pem", self.directory / f"{name}.key"
        certs.write_pair(pair, cert, key)
        return Issued(cert, key, pair.cert.public_bytes(serialization.Encoding.DER))

    def server(self, name: str = "meter", hosts: tuple[str, ...] = ("127.0.0.1", "localhost")) -> Issued:
        return self._write(name, certs.issue_server(self.ca, common_name=name, hosts=list(hosts)))

    def client(self, name: str, role: str | None = None, raw_role: bytes | None = None) -> Issued:
        extensions: list[x509.UnrecognizedExtension] = []
        if role is not None:
            extensions.append(certs.modbus_role_extension(role))
        if raw_role is not None:  # a deliberately mis-encoded role (e.g. PrintableString)
            extensions.append(x509.UnrecognizedExtension(certs.MODBUS_ROLE_OID, raw_role))
        return self._write(name, certs.issue_client(self.ca, common_name=name, extra_extensions=extensions))

    def server_context(self, server: Issued) -> ssl.SSLContext:
        """A Modbus/TCP Security server: our CA's client certificates required."""
        return tls.server_context(cert=server.cert, key=server.key, ca=self.ca_path, client_auth="required")

    def client_context(self, client: Issued | None, *, trust: Path) -> ssl.SSLContext:
        return tls.client_context(ca=trust, cert=client.cert if client else None,
                                  key=client.key if client else None)
