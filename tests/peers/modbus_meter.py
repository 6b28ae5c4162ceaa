"""Real Modbus peers for tests: pymodbus servers that simulate meters, a silent server, a socat pty pair.

Register images are built here with ``struct`` from addresses written out by hand, independently of the
plugin's map files, so a wrong map cannot make both sides agree (protocol note §7).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import ssl
import struct
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from pymodbus import FramerType
from pymodbus.server import ModbusSerialServer, ModbusTcpServer, ModbusTlsServer
from pymodbus.simulator import DataType, SimData, SimDevice

Registers = dict[int, int]


# -- encoding (independent of plugins/modbus/maps.py) --------------------------------------------------------


def words(fmt: str, value: float | int, order: str = "big") -> list[int]:
    raw = struct.pack(fmt, value)
    out = [int.from_bytes(raw[i:i + 2], "big") for i in range(0, len(raw), 2)]
    return out if order == "big" else out[::-1]


def put(regs: Registers, address: int, values: list[int]) -> None:
    for i, v in enumerate(values):
        regs[address + i] = v


def fill(regs: Registers, first: int, last: int) -> None:
    """Define every register first..last (zero) the way a real meter answers inside its map."""
    for a in range(first, last + 1):
        regs.setdefault(a, 0)


def _blocks(regs: Registers) -> list[SimData]:
    out: list[SimData] = []
    run: list[int] = []
    start = -2
    for address in sorted(regs):
        if run and address == start + len(run):
            run.append(regs[address])
            continue
        if run:
            out.append(SimData(address=start, values=run, datatype=DataType.REGISTERS))
        start, run = address, [regs[address]]
    if run:
        out.append(SimData(address=start, values=run, datatype=DataType.REGISTERS))
    return out


def device(unit_id: int, *, holding: Registers | None = None, inputs: Registers | None = None) -> SimDevice:
    """A simulated meter with separate holding and input tables (protocol note §6.5)."""
    bits = [SimData(address=0, values=[False] * 16, datatype=DataType.BITS)]
    hr = _blocks(holding or {}) or [SimData(address=60000, values=[0], datatype=DataType.REGISTERS)]
    ir = _blocks(inputs or {}) or [SimData(address=60000, values=[0], datatype=DataType.REGISTERS)]
    return SimDevice(id=unit_id, simdata=(bits, list(bits), hr, ir))


# -- servers ---------------------------------------------------------------------------------------------------


class MeterServer:
    """A pymodbus TCP/TLS server on 127.0.0.1 (a fixed port, so it can be stopped and started again)."""

    def __init__(self, devices: list[SimDevice], port: int, ssl_context: ssl.SSLContext | None = None,
                 framer: FramerType = FramerType.SOCKET) -> None:
        self.devices = devices
        self.port = port
        self.ssl_context = ssl_context
        self.framer = framer  # FramerType.RTU: a serial-to-TCP gateway passing RTU frames through
        self.server: ModbusTcpServer | None = None

    async def start(self) -> MeterServer:
        if self.ssl_context is not None:
            self.server = ModbusTlsServer(self.devices, address=("127.0.0.1", self.port), sslctx=self.ssl_context)
        else:
            self.server = ModbusTcpServer(self.devices, address=("127.0.0.1", self.port), framer=self.framer)
        await self.server.serve_forever(background=True)
        return self

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.shutdown()
            self.server = None
            await asyncio.sleep(0)


@contextlib.asynccontextmanager
async def meter_server(devices: list[SimDevice], port: int, ssl_context: ssl.SSLContext | None = None,
                       framer: FramerType = FramerType.SOCKET) -> AsyncIterator[MeterServer]:
    server = await MeterServer(devices, port, ssl_context, framer).start()
    try:
        yield server
    finally:
        await server.stop()


@contextlib.asynccontextmanager
async def serial_meter_server(devices: list[SimDevice], tty: str) -> AsyncIterator[ModbusSerialServer]:
    server = ModbusSerialServer(devices, framer=FramerType.RTU, port=tty, baudrate=9600,
                                ignore_missing_devices=True)  # a shared bus: absent units stay silent
    await server.serve_forever(background=True)
    try:
        yield server
    finally:
        await server.shutdown()
        await asyncio.sleep(0)


@contextlib.asynccontextmanager
async def silent_server(port: int) -> AsyncIterator[list[bytes]]:
    """Accepts, reads, never answers: a meter that hangs (protocol note §7)."""
    received: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(512):
                received.append(data)
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    try:
        yield received
    finally:
        server.close()
        await server.wait_closed()


@contextlib.contextmanager
def pty_pair(directory: Path) -> Iterator[tuple[str, str]]:
    """Two linked pseudo-terminals from socat; a missing socat fails the test (never skips)."""
    socat = shutil.which("socat")
    assert socat, "socat is not installed: run scripts/system-deps.sh (make test does)"
    a, b = directory / "ttyA", directory / "ttyB"
    proc = subprocess.Popen([socat, "-d", "-d", f"pty,raw,echo=0,link={a}", f"pty,raw,echo=0,link={b}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 5
        while not (a.exists() and b.exists()):
            assert proc.poll() is None, "socat exited"
            assert time.monotonic() < deadline, "socat did not create the pty pair"
            time.sleep(0.01)
        yield str(a), str(b)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=5)
