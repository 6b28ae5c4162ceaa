"""The gateway's Modbus server against real clients: mbpoll reads the published map, pymodbus gets the
exception codes the spec names, peers outside the allowlist are dropped before any answer and audited,
malformed frames close only their own connection, pipelined requests are all answered."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import struct
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymodbus.client import AsyncModbusTcpClient

from gateway.context import Role
from gateway.core import Gateway
from gateway.services import ServiceCall
from plugins.modbus.codec import encode_request
from tests.helpers import free_port, running_gateway

pytestmark = pytest.mark.peer

STATES = {"sensor.grid_power": (7200.5, "W"), "sensor.grid_current_l1": (10.25, "A"),
          "sensor.grid_energy_import": (12345678.0, "Wh"), "sensor.site_limit": (32.0, "A")}


def server_yaml(port: int, *, extra: str = "", holding: str = "") -> str:
    return f"""
modbus:
  enabled: true
  server:
    enabled: true
    port: {port}
{extra}
    input_registers:
      - {{address: 0, entity: sensor.grid_power, description: site power W}}
      - {{entity: sensor.grid_current_l1}}
      - {{address: 10, entity: sensor.grid_energy_import, type: uint32, scale: 1000}}
      - {{entity: sensor.not_there, type: int16}}
    holding_registers:
      - {{address: 0, entity: sensor.site_limit, type: uint16, scale: 0.1}}
{holding}"""


def set_states(gw: Gateway) -> None:
    for entity, (value, unit) in STATES.items():
        gw.states.set(entity, value, unit, owner="test")


@contextlib.asynccontextmanager
async def gateway_server(tmp_path: Path, **kw: Any) -> AsyncIterator[tuple[Gateway, int]]:
    port = free_port()
    async with running_gateway(tmp_path, server_yaml(port, **kw)) as gw:
        set_states(gw)
        yield gw, port


async def raw_request(port: int, frame: bytes, *, min_bytes: int = 9) -> bytes:
    """Send ``frame``; read until ``min_bytes`` arrived or the server closed."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(frame)
        await writer.drain()
        data = b""
        while len(data) < min_bytes:
            chunk = await asyncio.wait_for(reader.read(1024), 2)
            if not chunk:
                break
            data += chunk
        return data
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def mbpoll(*args: str) -> tuple[int, str, str]:
    assert shutil.which("mbpoll"), "mbpoll is not installed: run scripts/system-deps.sh (make test does)"
    proc = await asyncio.create_subprocess_exec("mbpoll", *args, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 10)
    return proc.returncode or 0, out.decode(), err.decode()


def mbpoll_values(out: str) -> dict[int, str]:
    found = {}
    for line in out.splitlines():
        if line.startswith("["):
            ref, value = line.split(":", 1)
            found[int(ref.strip("[]"))] = value.strip()
    return found


async def wait_until(check: Callable[[], Any], within: float = 5.0) -> Any:
    deadline = time.monotonic() + within
    while not (result := check()):
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)
    return result


# -- reads -------------------------------------------------------------------------------------------------------


async def test_mbpoll_reads_the_published_map(tmp_path: Path) -> None:
    async with gateway_server(tmp_path) as (_, port):
        code, out, err = await mbpoll("-m", "tcp", "-a", "1", "-t", "3:float", "-B", "-0", "-r", "0", "-c", "2",
                                      "-1", "-p", str(port), "127.0.0.1")
        assert code == 0, err
        assert mbpoll_values(out) == {0: "7200.5", 2: "10.25"}
        code, out, err = await mbpoll("-m", "tcp", "-a", "1", "-t", "3", "-0", "-r", "10", "-c", "3", "-1",
                                      "-p", str(port), "127.0.0.1")
        assert code == 0, err
        assert mbpoll_values(out) == {10: "0", 11: "12346", 12: "32768 (-32768)"}  # uint32 kWh, int16 not available
        code, out, err = await mbpoll("-m", "tcp", "-a", "1", "-t", "3", "-0", "-r", "4", "-c", "1", "-1",
                                      "-p", str(port), "127.0.0.1")
        assert code == 1 and "Illegal data address" in err  # register 4 is a hole in the map


async def test_values_follow_the_states(tmp_path: Path) -> None:
    async with gateway_server(tmp_path) as (gw, port):
        client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=2, retries=0)
        await client.connect()
        try:
            rr = await client.read_input_registers(0, count=2, device_id=1)
            assert client.convert_from_registers(rr.registers, client.DATATYPE.FLOAT32) == 7200.5
            gw.states.set("sensor.grid_power", -1500.0, "W", owner="test")
            rr = await client.read_input_registers(0, count=2, device_id=1)
            assert client.convert_from_registers(rr.registers, client.DATATYPE.FLOAT32) == -1500.0
            gw.states.set("sensor.grid_power", "unavailable", "W", owner="test")
            rr = await client.read_input_registers(0, count=2, device_id=1)
            assert rr.registers == [0x7FC0, 0]  # NaN, not an exception (protocol note §3)
            rr = await client.read_holding_registers(0, count=1, device_id=1)
            assert rr.registers == [320]
            rr = await client.read_input_registers(0, count=2, device_id=7)  # a unit we do not serve
            assert rr.isError() and rr.exception_code == 0x0B
        finally:
            client.close()


async def test_pipelined_requests_are_all_answered_in_order(tmp_path: Path) -> None:
    async with gateway_server(tmp_path) as (_, port):
        frames = b"".join(encode_request(tid, 1, struct.pack(">BHH", 4, 0, 2)) for tid in range(1, 6))
        data = await raw_request(port, frames, min_bytes=5 * 13)
        tids = [struct.unpack_from(">H", data, i * 13)[0] for i in range(5)]
        assert len(data) == 5 * 13 and tids == [1, 2, 3, 4, 5]


# -- writes ------------------------------------------------------------------------------------------------------


async def test_write_to_a_read_only_server_gets_illegal_function(tmp_path: Path) -> None:
    async with gateway_server(tmp_path) as (gw, port):
        client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=2, retries=0)
        await client.connect()
        try:
            rr = await client.write_register(0, 250, device_id=1)
            assert rr.isError() and rr.exception_code == 0x01
            rr = await client.write_registers(0, [250], device_id=1)
            assert rr.isError() and rr.exception_code == 0x01
            rr = await client.write_coil(0, True, device_id=1)
            assert rr.isError() and rr.exception_code == 0x01
            assert gw.states.get("sensor.site_limit").value == 32.0  # type: ignore[union-attr]
        finally:
            client.close()
        code, _, err = await mbpoll("-m", "tcp", "-a", "1", "-t", "4", "-0", "-r", "0", "-1", "-p", str(port),
                                    "127.0.0.1", "7")
        assert code == 1 and "Illegal function" in err


WRITABLE = """      - {address: 1, entity: sensor.site_limit, type: uint16, scale: 0.1, writable: true,
         service: test.set_limit, field: limit_a}
"""
ACCEPT_002 = """
gateway:
  accept_risk:
    - rule: MODBUS-002
      reason: "loopback test of the write path"
"""


async def test_writes_call_the_mapped_service_and_refuse_everything_else(tmp_path: Path) -> None:
    port = free_port()
    calls: list[ServiceCall] = []

    def handler(call: ServiceCall) -> None:
        if call.data["limit_a"] > 63:
            from gateway.errors import ServiceValidationError
            raise ServiceValidationError("limit_a: above the fuse")
        calls.append(call)
        call_gw.states.set("sensor.site_limit", call.data["limit_a"], "A", owner="test")

    async with running_gateway(tmp_path, ACCEPT_002 + server_yaml(port, holding=WRITABLE)) as call_gw:
        set_states(call_gw)
        call_gw.services.register("test", "set_limit", handler, schema={"limit_a": float}, role=Role.OPERATOR,
                                  owner="test")
        client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=2, retries=0)
        await client.connect()
        try:
            rr = await client.write_register(1, 250, device_id=1)
            assert not rr.isError()
            assert [c.data for c in calls] == [{"limit_a": 25.0}]
            assert calls[0].context.origin == "modbus" and calls[0].context.address == "127.0.0.1"
            rr = await client.read_holding_registers(1, count=1, device_id=1)
            assert rr.registers == [250]
            rr = await client.write_register(0, 250, device_id=1)  # mapped, read-only
            assert rr.isError() and rr.exception_code == 0x02
            rr = await client.write_register(5, 1, device_id=1)  # unmapped
            assert rr.isError() and rr.exception_code == 0x02
            rr = await client.write_register(1, 700, device_id=1)  # the service refuses the value
            assert rr.isError() and rr.exception_code == 0x03
            assert len(calls) == 1
        finally:
            client.close()


# -- allowlist ---------------------------------------------------------------------------------------------------


async def test_a_client_outside_the_allowlist_is_dropped_before_any_answer_and_audited(tmp_path: Path) -> None:
    async with gateway_server(tmp_path, extra="    allow_from: [10.0.0.0/8]") as (gw, port):
        request = encode_request(1, 1, struct.pack(">BHH", 4, 0, 2))
        try:
            data = await raw_request(port, request)
        except ConnectionResetError:
            data = b""
        assert data == b""

        async def refused() -> list[Any]:
            return [r for r in await gw.audit.list(event_prefix="security.")
                    if r.data.get("what") == "peer_refused"]
        deadline = time.monotonic() + 5
        while not (found := await refused()):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        assert found[0].data["address"] == "127.0.0.1" and found[0].data["plugin"] == "modbus"
        assert found[0].data["reason"] == "not in allow_from"


async def test_a_client_inside_the_allowlist_is_served(tmp_path: Path) -> None:
    async with gateway_server(tmp_path, extra="    allow_from: [127.0.0.0/8]") as (_, port):
        data = await raw_request(port, encode_request(1, 1, struct.pack(">BHH", 4, 0, 2)))
        assert data[7:9] == b"\x04\x04"


# -- hostile input -----------------------------------------------------------------------------------------------

MALFORMED = [
    bytes.fromhex("0001 0001 0006 01 04 0000 0002"),  # protocol id 1
    bytes.fromhex("0001 0000 0000 01"),  # length 0
    bytes.fromhex("0001 0000 ffff 01 04"),  # length 65535
    bytes.fromhex("0001 0000"),  # truncated MBAP, then close
]


async def _served(port: int, sock: tuple[asyncio.StreamReader, asyncio.StreamWriter], tid: int) -> None:
    reader, writer = sock
    writer.write(encode_request(tid, 1, struct.pack(">BHH", 4, 0, 2)))
    await writer.drain()
    answer = await asyncio.wait_for(reader.readexactly(13), 2)
    assert struct.unpack_from(">H", answer)[0] == tid and answer[7] == 4


@pytest.mark.parametrize("frame", MALFORMED)
async def test_malformed_frames_close_only_that_connection(tmp_path: Path, frame: bytes) -> None:
    async with gateway_server(tmp_path) as (_, port):
        good = await asyncio.open_connection("127.0.0.1", port)
        await _served(port, good, 1)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(frame)
        if len(frame) < 7:
            writer.write_eof()
        await writer.drain()
        with contextlib.suppress(ConnectionResetError):
            assert await asyncio.wait_for(reader.read(100), 2) == b""  # closed without an answer
        writer.close()
        await _served(port, good, 2)  # the other client is still served
        good[1].close()


async def test_unknown_function_codes_and_bad_counts_get_exceptions_not_a_close(tmp_path: Path) -> None:
    async with gateway_server(tmp_path) as (_, port):
        frames = [(b"\x2b\x0e\x01\x00", 0x2B, 1), (struct.pack(">BHH", 4, 0, 126), 4, 3),
                  (struct.pack(">BHH", 4, 0, 0), 4, 3), (struct.pack(">BHH", 4, 65535, 2), 4, 2)]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for tid, (pdu, function, code) in enumerate(frames, 1):
            writer.write(encode_request(tid, 1, pdu))
            answer = await asyncio.wait_for(reader.readexactly(9), 2)
            assert answer[7] == function | 0x80 and answer[8] == code
        await _served(port, (reader, writer), 99)
        writer.close()


def test_hypothesis_garbage_closes_or_is_answered_but_never_hurts_another_client(tmp_path: Path) -> None:
    """Contract: whatever bytes one client sends, another client keeps getting correct answers, and the
    garbage connection is either answered or closed - the server never hangs on it beyond its own input."""
    loop = asyncio.new_event_loop()
    port = free_port()
    gateway_cm = running_gateway(tmp_path, server_yaml(port))
    try:
        gw = loop.run_until_complete(gateway_cm.__aenter__())
        set_states(gw)
        good = loop.run_until_complete(asyncio.open_connection("127.0.0.1", port))
        counter = iter(range(1, 10_000))

        @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
        @given(st.binary(min_size=1, max_size=300))
        def garbage(data: bytes) -> None:
            async def run() -> None:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(data)
                writer.write_eof()
                with contextlib.suppress(ConnectionError):
                    await asyncio.wait_for(reader.read(), 2)  # answered and/or closed, never hangs
                writer.close()
                await _served(port, good, next(counter))

            loop.run_until_complete(run())

        garbage()
        good[1].close()
    finally:
        loop.run_until_complete(gateway_cm.__aexit__(None, None, None))
        loop.close()


async def test_connection_limit_per_address(tmp_path: Path) -> None:
    async with gateway_server(tmp_path) as (_, port):
        opened = [await asyncio.open_connection("127.0.0.1", port) for _ in range(4)]
        for i, conn in enumerate(opened):
            await _served(port, conn, i + 1)
        try:
            data = await raw_request(port, encode_request(9, 1, struct.pack(">BHH", 4, 0, 2)))
        except ConnectionResetError:
            data = b""
        assert data == b""  # the fifth from one address is dropped
        for _, writer in opened:
            writer.close()


async def test_idle_connections_are_closed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import plugins.modbus.server as server_module

    monkeypatch.setattr(server_module, "IDLE_TIMEOUT_S", 0.2)
    async with gateway_server(tmp_path) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await _served(port, (reader, writer), 1)
        started = time.monotonic()
        with contextlib.suppress(ConnectionResetError):
            assert await asyncio.wait_for(reader.read(100), 5) == b""
        assert time.monotonic() - started < 3
        writer.close()


async def test_the_declared_listener_is_what_is_bound(tmp_path: Path) -> None:
    from gateway.security.exposure import Listener
    from plugins.modbus import exposures

    async with gateway_server(tmp_path) as (gw, port):
        [declared] = [e for e in exposures(gw.config.plugins["modbus"]) if isinstance(e, Listener)]
        plugin = next(r.instance for r in gw._runner.running if r.name == "modbus")  # type: ignore[union-attr]
        sockets = plugin.server._server.sockets
        assert [s.getsockname()[:2] for s in sockets] == [(declared.bind, declared.port)] == [("127.0.0.1", port)]
