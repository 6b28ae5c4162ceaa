"""Modbus/TCP Security (MODBUS-004) against real peers, both directions.

Meters: a pymodbus TLS server that requires our client certificate; the gateway reads it with the right
CA and certificate, and refuses a meter whose certificate it cannot verify. Server: pymodbus TLS clients
with the right certificate and role, a certificate from another CA (refused in the handshake), no
certificate, no role, a role encoded the wrong way, and a role that may only read trying to write."""

from __future__ import annotations

import asyncio
import contextlib
import struct
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from pymodbus.client import AsyncModbusTlsClient
from pymodbus.exceptions import ModbusException

from gateway.context import Role
from gateway.core import Gateway
from gateway.services import ServiceCall
from gateway.states import UNAVAILABLE
from plugins.modbus.codec import encode_request
from tests.helpers import free_port, running_gateway
from tests.peers.modbus_meter import device, fill, meter_server, put, words
from tests.plugins.modbus.tlsutil import Issued, Pki

pytestmark = pytest.mark.peer


async def wait_until(check: Callable[[], Any], within: float = 5.0) -> Any:
    deadline = time.monotonic() + within
    while not (result := check()):
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)
    return result


def sdm630_inputs() -> dict[int, int]:
    ir: dict[int, int] = {}
    fill(ir, 0, 0x4F)
    put(ir, 0x34, words(">f", 7200.0))
    put(ir, 0x00, words(">f", 230.5))
    return ir


def tls_meter_yaml(port: int, client: Issued, ca: Path) -> str:
    return f"""
modbus:
  enabled: true
  meters:
    - name: pv
      model: eastron_sdm630
      transport: tls
      host: 127.0.0.1
      port: {port}
      poll_interval: 0.1s
      timeout: 0.5s
      tls: {{cert: {client.cert}, key: {client.key}, ca: {ca}}}
"""


async def test_meter_over_modbus_tcp_security(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    port = free_port()
    context = pki.server_context(pki.server())
    gateway_cert = pki.client("ampgate", role="Reader")
    async with meter_server([device(1, inputs=sdm630_inputs())], port, context), \
            running_gateway(tmp_path, tls_meter_yaml(port, gateway_cert, pki.ca_path)) as gw:
        await wait_until(lambda: getattr(gw.states.get("sensor.pv_power"), "value", None) == 7200.0)
        assert gw.states.get("sensor.pv_voltage_l1").value == 230.5  # type: ignore[union-attr]


async def test_meter_with_a_certificate_we_cannot_verify_is_refused(tmp_path: Path) -> None:
    pki, other = Pki(tmp_path), Pki(tmp_path, "other")
    port = free_port()
    context = other.server_context(other.server())  # an impostor meter, signed by a CA we do not trust
    gateway_cert = pki.client("ampgate", role="Reader")
    async with meter_server([device(1, inputs=sdm630_inputs())], port, context), \
            running_gateway(tmp_path, tls_meter_yaml(port, gateway_cert, pki.ca_path)) as gw:
        await asyncio.sleep(0.8)
        assert gw.states.get("sensor.pv_power").value == UNAVAILABLE  # type: ignore[union-attr]


# -- the gateway's server over TLS ---------------------------------------------------------------------------


def server_yaml(port: int, pki: Pki, server: Issued, writable: bool = False) -> str:
    holding = ("      - {address: 1, entity: sensor.site_limit, type: uint16, scale: 0.1, writable: true,\n"
               "         service: test.set_limit, field: limit_a}\n") if writable else ""
    return f"""
modbus:
  enabled: true
  server:
    enabled: true
    port: {port}
    tls: {{cert: {server.cert}, key: {server.key}, ca: {pki.ca_path}}}
    roles: {{Reader: read, Operator: write}}
    input_registers:
      - {{address: 0, entity: sensor.grid_power}}
    holding_registers:
      - {{address: 0, entity: sensor.site_limit, type: uint16, scale: 0.1}}
{holding}"""


@contextlib.asynccontextmanager
async def tls_server(tmp_path: Path, writable: bool = False) -> AsyncIterator[tuple[Gateway, int, Pki, list[Any]]]:
    pki = Pki(tmp_path)
    port = free_port()
    calls: list[ServiceCall] = []
    async with running_gateway(tmp_path, server_yaml(port, pki, pki.server("ampgate"), writable)) as gw:
        gw.states.set("sensor.grid_power", 7200.5, "W", owner="test")
        gw.states.set("sensor.site_limit", 32.0, "A", owner="test")
        gw.services.register("test", "set_limit", calls.append, schema={"limit_a": float}, role=Role.OPERATOR,
                             owner="test")
        yield gw, port, pki, calls


@contextlib.asynccontextmanager
async def tls_client(port: int, pki: Pki, client: Issued | None, trust: Path | None = None
                     ) -> AsyncIterator[AsyncModbusTlsClient]:
    ctx = pki.client_context(client, trust=trust or pki.ca_path)
    c = AsyncModbusTlsClient("127.0.0.1", sslctx=ctx, port=port, timeout=1, retries=0, reconnect_delay=0)
    await c.connect()
    try:
        yield c
    finally:
        c.close()


async def security_events(gw: Gateway, what: str) -> list[Any]:
    return [r for r in await gw.audit.list(event_prefix="security.") if r.data.get("what") == what]


async def wait_audit(gw: Gateway, what: str) -> list[Any]:
    deadline = time.monotonic() + 5
    while not (found := await security_events(gw, what)):
        assert time.monotonic() < deadline, f"no {what} audit record"
        await asyncio.sleep(0.02)
    return found


async def test_reader_role_reads_and_may_not_write(tmp_path: Path) -> None:
    async with tls_server(tmp_path, writable=True) as (gw, port, pki, calls), \
            tls_client(port, pki, pki.client("ems", role="Reader")) as client:
        rr = await client.read_input_registers(0, count=2, device_id=1)
        assert client.convert_from_registers(rr.registers, client.DATATYPE.FLOAT32) == 7200.5
        rr = await client.write_register(1, 250, device_id=1)
        assert rr.isError() and rr.exception_code == 0x01  # MB-TCP-Security AuthZ refusal
        assert calls == []
        [record] = await wait_audit(gw, "write_denied")
        assert record.data["principal"] == "ems"


async def test_operator_role_writes_through_the_service(tmp_path: Path) -> None:
    async with tls_server(tmp_path, writable=True) as (_, port, pki, calls), \
            tls_client(port, pki, pki.client("ems", role="Operator")) as client:
        rr = await client.write_register(1, 250, device_id=1)
        assert not rr.isError()
        assert [c.data for c in calls] == [{"limit_a": 25.0}]
        assert calls[0].context.principal == "ems" and calls[0].context.origin == "modbus"
        rr = await client.write_register(0, 250, device_id=1)  # not writable, whatever the role
        assert rr.isError() and rr.exception_code == 0x02


@pytest.mark.parametrize("kind", ["no role", "printable string role", "unknown role"])
async def test_certificates_without_a_usable_role_get_illegal_function(tmp_path: Path, kind: str) -> None:
    async with tls_server(tmp_path) as (gw, port, pki, _):
        client_cert = {"no role": lambda: pki.client("c"),
                       "printable string role": lambda: pki.client("c", raw_role=b"\x13\x06Reader"),
                       "unknown role": lambda: pki.client("c", role="Admin")}[kind]()
        async with tls_client(port, pki, client_cert) as client:
            rr = await client.read_input_registers(0, count=2, device_id=1)
            assert rr.isError() and rr.exception_code == 0x01
        await wait_audit(gw, "role_denied")


async def test_a_certificate_from_another_ca_is_refused_in_the_handshake(tmp_path: Path) -> None:
    async with tls_server(tmp_path) as (gw, port, pki, _):
        other = Pki(tmp_path, "other")
        async with tls_client(port, other, other.client("intruder", role="Operator"), trust=pki.ca_path) as client:
            with pytest.raises(ModbusException):
                await client.read_input_registers(0, count=2, device_id=1)
        await wait_audit(gw, "tls_handshake_failed")


async def test_a_client_without_certificate_is_refused(tmp_path: Path) -> None:
    async with tls_server(tmp_path) as (gw, port, pki, _):
        async with tls_client(port, pki, None) as client:
            with pytest.raises(ModbusException):
                await client.read_input_registers(0, count=2, device_id=1)
        await wait_audit(gw, "tls_handshake_failed")


async def test_pipelined_requests_split_across_tls_records_are_answered(tmp_path: Path) -> None:
    async with tls_server(tmp_path) as (_, port, pki, _):
        ctx = pki.client_context(pki.client("ems", role="Reader"), trust=pki.ca_path)
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
        frames = b"".join(encode_request(tid, 1, struct.pack(">BHH", 4, 0, 2)) for tid in (1, 2, 3))
        writer.write(frames[:5])  # one TLS record with half a header ...
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(frames[5:])  # ... and one with the rest: two and a half ADUs
        await writer.drain()
        data = await asyncio.wait_for(reader.readexactly(3 * 13), 2)
        assert [struct.unpack_from(">H", data, 13 * i)[0] for i in range(3)] == [1, 2, 3]
        writer.close()


async def test_allowlist_is_checked_before_the_handshake(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    port = free_port()
    text = server_yaml(port, pki, pki.server("ampgate")).replace("    roles:", "    allow_from: [10.1.2.0/24]\n    roles:")
    async with running_gateway(tmp_path, text) as gw:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"\x16\x03\x01\x00\x05hello")  # the start of a ClientHello
        with contextlib.suppress(ConnectionResetError):
            assert await asyncio.wait_for(reader.read(100), 2) == b""  # no ServerHello, nothing at all
        writer.close()
        await wait_audit(gw, "peer_refused")
        assert not await security_events(gw, "tls_handshake_failed")


async def test_server_with_the_gateways_own_certificates(tmp_path: Path) -> None:
    from gateway.security import certs

    port = free_port()
    text = f"""
modbus:
  enabled: true
  server:
    enabled: true
    port: {port}
    tls: {{}}
    input_registers: [{{address: 0, entity: sensor.grid_power}}]
"""
    async with running_gateway(tmp_path, text) as gw:
        gw.states.set("sensor.grid_power", 7200.5, "W", owner="test")
        gateway_ca = certs.load_gateway_ca(tmp_path / "data")
        client = certs.issue_client(gateway_ca, common_name="ems",
                                    extra_extensions=[certs.modbus_role_extension("Reader")])
        certs.write_pair(client, tmp_path / "ems.pem", tmp_path / "ems.key")
        ca_path = certs.certs_dir(tmp_path / "data") / certs.CA_CERT_FILE
        ctx = tls_context(tmp_path / "ems.pem", tmp_path / "ems.key", ca_path)
        c = AsyncModbusTlsClient("127.0.0.1", sslctx=ctx, port=port, timeout=1, retries=0, reconnect_delay=0)
        await c.connect()
        try:
            rr = await c.read_input_registers(0, count=2, device_id=1)
            assert c.convert_from_registers(rr.registers, c.DATATYPE.FLOAT32) == 7200.5
        finally:
            c.close()


def tls_context(cert: Path, key: Path, ca: Path) -> Any:
    from gateway.security import tls

    return tls.client_context(ca=ca, cert=cert, key=key)
