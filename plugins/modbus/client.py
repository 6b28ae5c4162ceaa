"""The meter side's only I/O: pymodbus clients (one per link) and one polling task per meter.

Contract:
- A *link* is one physical or network path: a serial port, or one host:port (several unit ids behind one
  Modbus/TCP or RTU-over-TCP gateway share it). Meters on one link take turns: a link has one lock, held for a
  meter's whole poll, and asyncio's lock is FIFO so turns rotate fairly.
- pymodbus runs with ``retries=0`` and its own reconnect off: retries with back-off and reconnection are ours
  (``meter.MeterSession``), so one dead meter costs ``timeout x (retries + 1)`` per poll and no more.
- Readings become states ``sensor.<meter>_<quantity>``; a meter that stops answering has every entity set to
  ``unavailable`` and comes back by itself. Values that are "not available" on the device become
  ``unavailable`` too; implausible ones are logged and dropped (protocol note §1).
- We only ever *read* from meters (FC3/FC4) and never with device id 0 (protocol note, "We never").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pymodbus import FramerType
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient, AsyncModbusTlsClient
from pymodbus.exceptions import ModbusException

from gateway.states import UNAVAILABLE

from .const import (
    DOMAIN,
    EXC_ILLEGAL_DATA_ADDRESS,
    FC_READ_INPUT,
    SUNSPEC_BASES,
    SUNSPEC_MAX_MODELS,
)
from .maps import Block, DeviceMap, decode, load_map, parse_map
from .meter import MeterSession, MeterSpec, sunspec_header, sunspec_marker

if TYPE_CHECKING:
    import ssl

    from gateway.core import Gateway

_LOGGER = logging.getLogger(__name__)

ModbusClient = AsyncModbusTcpClient | AsyncModbusSerialClient


class ReadFailed(Exception):
    """A read got no valid answer (timeout, link down, short answer)."""


class ReadRefused(Exception):
    """The device answered with a Modbus exception."""

    def __init__(self, code: int) -> None:
        super().__init__(f"exception 0x{code:02x}")
        self.code = code


@dataclass(eq=False)
class Link:
    """One pymodbus client and the lock that makes its meters take turns."""

    key: tuple[Any, ...]
    client: ModbusClient
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def ensure_connected(self) -> None:
        if self.client.connected:
            return
        if not await self.client.connect():
            raise ReadFailed(f"cannot connect to {self.describe()}")

    def describe(self) -> str:
        return ":".join(str(k) for k in self.key[1:])

    async def read(self, block: Block, unit_id: int) -> list[int]:
        await self.ensure_connected()
        reader = (self.client.read_input_registers if block.function == FC_READ_INPUT
                  else self.client.read_holding_registers)
        try:
            response = await reader(block.address, count=block.count, device_id=unit_id)
        except ModbusException as err:
            raise ReadFailed(str(err)) from None
        if response.isError():
            raise ReadRefused(int(getattr(response, "exception_code", 0)))
        registers = list(response.registers)
        if len(registers) < block.count:
            raise ReadFailed(f"asked {block.count} registers at {block.address}, got {len(registers)}")
        return registers

    def close(self) -> None:
        self.client.close()


def link_key(meter: dict[str, Any]) -> tuple[Any, ...]:
    transport = meter["transport"]
    if transport == "rtu":
        return ("rtu", meter["device"])
    return (transport, meter["host"], meter["port"])


def make_client(meter: dict[str, Any], ssl_context: ssl.SSLContext | None) -> ModbusClient:
    common: dict[str, Any] = {
        "name": f"{DOMAIN}:{meter['name']}",
        "timeout": meter["timeout"],
        "retries": 0,
        "reconnect_delay": 0,  # ours: MeterSession.next_delay()
    }
    transport = meter["transport"]
    if transport == "rtu":
        return AsyncModbusSerialClient(
            meter["device"], framer=FramerType.RTU, baudrate=meter["baudrate"], bytesize=meter["bytesize"],
            parity=meter["parity"], stopbits=meter["stopbits"], **common)
    if transport == "tls":
        assert ssl_context is not None
        return AsyncModbusTlsClient(meter["host"], sslctx=ssl_context, port=meter["port"], **common)
    framer = FramerType.RTU if transport == "rtu_over_tcp" else FramerType.SOCKET
    return AsyncModbusTcpClient(meter["host"], port=meter["port"], framer=framer, **common)


def client_ssl_context(meter: dict[str, Any]) -> ssl.SSLContext:
    """Modbus/TCP Security: TLS 1.2+, our certificate for the meter, the meter's CA verified (MODBUS-004)."""
    from gateway.security import tls

    block = meter["tls"]
    return tls.client_context(
        ca=block.get("ca"), cert=block.get("cert"), key=block.get("key"), verify=block["verify"],
        check_hostname=block["check_hostname"], min_version=block["min_version"], ciphers=block.get("ciphers"))


def device_map(meter: dict[str, Any]) -> DeviceMap:
    if meter["model"] == "custom":
        return parse_map(meter["custom"], model="custom")
    return load_map(meter["model"])


class MeterPoller:
    """Polls one meter forever (until stopped) and keeps its entities current."""

    def __init__(self, gw: Gateway, meter: dict[str, Any], link: Link,
                 on_latency: Callable[[float], None] | None = None) -> None:
        self._gw = gw
        self._conf = meter
        self._link = link
        self._device = device_map(meter)
        self._units = {p.key: p.unit for p in self._device.points}
        self.spec = MeterSpec(name=meter["name"], unit_id=meter["unit_id"], poll_interval_s=meter["poll_interval"],
                              timeout_s=meter["timeout"], retries=meter["retries"])
        self.session = MeterSession(self.spec, self._device)
        self._sunspec_base: int | None = meter.get("sunspec_base")
        self._on_latency = on_latency
        self._task: asyncio.Task[None] | None = None
        self._attributes = {"meter": meter["name"], "model": self._device.model}

    def entity_ids(self) -> list[str]:
        return [f"sensor.{self.spec.name}_{key}" for key in self._units]

    def start(self, offset_s: float = 0.0) -> None:
        """Entities appear at once (unavailable); the first poll runs ``offset_s`` later, so that many meters
        spread their polls over the interval instead of all asking at the same instant."""
        for key, unit in self._units.items():
            self._set(key, UNAVAILABLE, unit)
        self._task = asyncio.get_running_loop().create_task(self._run(offset_s),
                                                            name=f"modbus meter {self.spec.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def _set(self, key: str, value: Any, unit: str) -> None:
        self._gw.states.set(f"sensor.{self.spec.name}_{key}", value, unit, self._attributes, owner=DOMAIN)

    async def _run(self, offset_s: float) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time() + offset_s
        await asyncio.sleep(offset_s)
        while True:
            ok = await self.poll_once()
            delay = self.session.next_delay()
            if ok:
                # Keep a steady cadence: the next poll is due one interval after the previous was due, and a
                # poll that overran skips the ticks it missed rather than bursting to catch up.
                next_at += delay
                now = loop.time()
                if next_at < now:
                    next_at = now + delay - (now - next_at) % delay
            else:
                next_at = loop.time() + delay
            await asyncio.sleep(max(0.0, next_at - loop.time()))

    async def poll_once(self) -> bool:
        """One complete poll of every block, holding the link for its duration. True when it succeeded."""
        async with self._link.lock:
            session = self.session
            try:
                if session.needs_base:
                    assert self._device.sunspec_model is not None
                    session.set_base(await self._find_sunspec_model(self._device.sunspec_model))
                readings: list[tuple[Block, list[int]]] = []
                index = 0
                while index < len(session.blocks):
                    block = session.blocks[index]
                    try:
                        readings.append((block, await self._read_with_retries(block)))
                    except ReadRefused as err:
                        if err.code == EXC_ILLEGAL_DATA_ADDRESS and session.block_refused(block):
                            _LOGGER.info("meter %s refused a merged read at %d+%d; reading its points separately",
                                         self.spec.name, block.address, block.count)
                            continue  # the same index now holds the first smaller block
                        raise
                    index += 1
            except (ReadFailed, ReadRefused) as err:
                self._failed(str(err))
                return False
        self._publish(readings)
        return True

    async def _read_with_retries(self, block: Block) -> list[int]:
        attempt = 0
        while True:
            started = time.perf_counter()
            try:
                registers = await self._link.read(block, self.spec.unit_id)
            except ReadFailed:
                attempt += 1
                if attempt > self.spec.retries:
                    raise
                await asyncio.sleep(self.session.retry_delay(attempt))
                continue
            if self._on_latency is not None:
                self._on_latency(time.perf_counter() - started)
            return registers

    async def _find_sunspec_model(self, model: int) -> int:
        """The address of ``model``'s ID register, walking the SunSpec map (protocol note §2.5)."""
        bases = (self._sunspec_base,) if self._sunspec_base is not None else SUNSPEC_BASES
        for base in bases:
            try:
                marker = await self._read_with_retries(Block(3, base, 2))
            except ReadRefused:
                continue
            if not sunspec_marker(marker):
                continue
            offset = base + 2
            for _ in range(SUNSPEC_MAX_MODELS):
                if offset + 2 > 0xFFFF:
                    break
                header = sunspec_header(await self._read_with_retries(Block(3, offset, 2)))
                if header is None:
                    break
                found, length = header
                if found == model:
                    return offset
                offset += 2 + length
            raise ReadRefused(EXC_ILLEGAL_DATA_ADDRESS) from None
        raise ReadFailed(f"no SunSpec marker at {', '.join(str(b) for b in bases)}")

    def _failed(self, reason: str) -> None:
        if self.session.poll_failed():
            _LOGGER.warning("meter %s (%s) unavailable: %s", self.spec.name, self._link.describe(), reason)
            for key, unit in self._units.items():
                self._set(key, UNAVAILABLE, unit)

    def _publish(self, readings: list[tuple[Block, list[int]]]) -> None:
        if self.session.poll_succeeded():
            _LOGGER.info("meter %s (%s) available", self.spec.name, self._link.describe())
        for block, registers in readings:
            decoded = decode(block, registers)
            for key, value in decoded.values.items():
                self._set(key, UNAVAILABLE if value is None else round(value, 6), self._units[key])
            for key, value in decoded.rejected.items():
                _LOGGER.warning("meter %s: implausible %s = %r dropped", self.spec.name, key, value)
