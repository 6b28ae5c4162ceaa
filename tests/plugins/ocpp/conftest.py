"""Fixtures: a test PKI made with gateway.security.certs, and a real gateway running the OCPP plugin."""

from __future__ import annotations

import contextlib
import ssl
import textwrap
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gateway.core import Gateway
from gateway.security import certs, tls
from tests.helpers import free_port, running_gateway

PASSWORDS = {
    "CP16": "cp16-Secret-Passw0rd",
    "CP201": "cp201-Secret-Passw0rd",
    "CPANY": "cpany-Secret-Passw0rd",
    "CPW": "cpw-Secret-Passw0rd-xy",
}


@dataclass
class Pki:
    dir: Path
    ca: Path
    server_cert: Path
    server_key: Path

    def client(self, name: str) -> tuple[Path, Path]:
        return self.dir / f"{name}.pem", self.dir / f"{name}.key"

    def station_context(self, client: str | None = None) -> ssl.SSLContext:
        """What a station builds: trust the station CA, present a client certificate for profile 3."""
        cert, key = self.client(client) if client else (None, None)
        return tls.client_context(ca=self.ca, cert=cert, key=key)


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    ca = certs.create_ca("Test CSMS CA")
    server = certs.issue_server(ca, common_name="localhost", hosts=["localhost", "127.0.0.1"])
    certs.write_pair(server, d / "server.pem", d / "server.key", chain=[ca])
    certs.write_cert(d / "ca.pem", [ca])
    for name, cn in (("cp3", "CP3"), ("cp3_as_cp16", "CP16"), ("new1", "NEW1")):
        client = certs.issue_client(ca, common_name=cn)
        certs.write_pair(client, d / f"{name}.pem", d / f"{name}.key", chain=[ca])
    rogue_ca = certs.create_ca("Rogue CA")
    rogue = certs.issue_client(rogue_ca, common_name="CP3")
    certs.write_pair(rogue, d / "rogue_cp3.pem", d / "rogue_cp3.key", chain=[rogue_ca])
    return Pki(dir=d, ca=d / "ca.pem", server_cert=d / "server.pem", server_key=d / "server.key")


def ocpp_yaml(pki: Pki, port: int, *, extra: str = "", stations: str | None = None, tls: bool = True) -> str:
    """The ``ocpp:`` section of a test gateway; ``extra`` holds more keys, ``stations`` the list's items."""
    stations = stations if stations is not None else DEFAULT_STATIONS
    tls_lines = (["  tls:", f"    cert: {pki.server_cert}", f"    key: {pki.server_key}", f"    ca: {pki.ca}"]
                 if tls else ["  tls:", "    enabled: false"])
    lines = ["ocpp:", "  enabled: true", f"  port: {port}", "  heartbeat_interval: 60", *tls_lines]
    lines += [textwrap.indent(textwrap.dedent(extra).strip(), "  ")] if extra.strip() else []
    lines += ["  stations:", textwrap.indent(textwrap.dedent(stations).strip(), "    ")]
    return "\n".join(lines) + "\n"


DEFAULT_STATIONS = """
    - id: CP16
      password: !secret cp16
      version: "1.6"
    - id: CP201
      password: !secret cp201
      version: "2.0.1"
    - id: CPANY
      password: !secret cpany
      phases: 1
      max_current_a: 32
    - id: CPW
      password: !secret cpw
      version: "1.6"
      rate_unit: auto
    - id: CP3
      profile: 3
"""


SECRETS = "".join(f'{k.lower()}: "{v}"\n' for k, v in PASSWORDS.items())


@dataclass
class Csms:
    gw: Gateway
    port: int
    pki: Pki

    @property
    def url(self) -> str:
        return f"wss://127.0.0.1:{self.port}/ocpp"

    @property
    def central(self) -> Any:
        runner = self.gw._runner  # tests look inside
        assert runner is not None
        return next(r.instance for r in runner.running if r.name == "ocpp")


@contextlib.asynccontextmanager
async def csms(tmp_path: Path, pki: Pki, *, extra: str = "", stations: str | None = None,
               tls: bool = True) -> AsyncIterator[Csms]:
    port = free_port()
    async with running_gateway(tmp_path, ocpp_yaml(pki, port, extra=extra, stations=stations, tls=tls),
                               SECRETS) as gw:
        assert not gw.failed_plugins, gw.failed_plugins
        yield Csms(gw=gw, port=port, pki=pki)


@pytest.fixture
async def gateway(tmp_path: Path, pki: Pki) -> AsyncIterator[Csms]:
    async with csms(tmp_path, pki) as running:
        yield running
