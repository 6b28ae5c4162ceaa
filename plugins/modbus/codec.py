"""Modbus/TCP server-side codec: MBAP framing and the PDUs our server speaks. Sans-IO, like h11.

Contract:
- ``ServerConnection.receive_data(bytes)`` only buffers (``b""`` = peer closed); ``next_event()`` returns
  one ``ReadRequest``/``WriteRequest``/``BadRequest`` or ``NEED_DATA``. Pipelined requests (several ADUs in one
  segment, or one ADU split over many) come out one by one, in order (protocol note §6.1: pymodbus's server
  answers only the first of two ADUs in one segment; we answer all).
- A request whose *framing* is intact but whose PDU is wrong becomes ``BadRequest`` carrying the exception
  code to answer (AP §7): unknown function code -> 0x01, bad quantity / length / byte count -> 0x03, address
  range past 65535 -> 0x02. The connection stays usable.
- Broken *framing* (protocol id != 0, MBAP length outside 2..254, bytes after the peer closed mid-frame)
  raises ``RemoteProtocolError``: the stream cannot be resynchronised, so the adapter closes that one
  connection. After that every call raises again. No input makes it raise anything else, and the buffer never
  holds more than one incomplete ADU (260 bytes).
- ``encode_*`` build response ADUs; they never fail on values the server map produces.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from .const import (
    EXC_ILLEGAL_DATA_ADDRESS,
    EXC_ILLEGAL_DATA_VALUE,
    EXC_ILLEGAL_FUNCTION,
    EXCEPTION_FLAG,
    FC_READ_HOLDING,
    FC_READ_INPUT,
    FC_WRITE_MULTIPLE,
    FC_WRITE_SINGLE,
    MAX_MBAP_LENGTH,
    MAX_READ_REGISTERS,
    MAX_WRITE_REGISTERS,
    MBAP_HEADER_LEN,
    MIN_MBAP_LENGTH,
    PROTOCOL_ID,
    REGISTER_SPACE,
)


class NeedData:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA: Final = NeedData()


class RemoteProtocolError(Exception):
    """The peer broke MBAP framing; the connection must close (there is nothing valid to answer)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadRequest:
    """FC3 (holding) or FC4 (input): ``count`` registers from ``address``. AP §6.3, §6.4."""

    transaction_id: int
    unit_id: int
    function: int
    address: int
    count: int


@dataclass(frozen=True, slots=True, kw_only=True)
class WriteRequest:
    """FC6 (one register, AP §6.6) or FC16 (``values`` from ``address``, AP §6.12)."""

    transaction_id: int
    unit_id: int
    function: int
    address: int
    values: tuple[int, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class BadRequest:
    """A well-framed request we answer with ``exception_code`` (AP §7)."""

    transaction_id: int
    unit_id: int
    function: int
    exception_code: int


Event = ReadRequest | WriteRequest | BadRequest

_MBAP = struct.Struct(">HHHB")
_ADDR_COUNT = struct.Struct(">HH")


def parse_pdu(transaction_id: int, unit_id: int, pdu: bytes) -> Event:
    """One PDU (function code + data) to an event; never raises."""
    function = pdu[0]
    size = len(pdu)
    if function in (FC_READ_HOLDING, FC_READ_INPUT):
        if size != 5:
            return BadRequest(transaction_id=transaction_id, unit_id=unit_id, function=function,
                              exception_code=EXC_ILLEGAL_DATA_VALUE)
        address, count = _ADDR_COUNT.unpack_from(pdu, 1)
        # AP §6.3: "Quantity of Registers: 1 to 125" else exception 03; then "Starting Address + Quantity"
        # must be valid, else 02.
        if not 1 <= count <= MAX_READ_REGISTERS:
            return BadRequest(transaction_id=transaction_id, unit_id=unit_id, function=function,
                              exception_code=EXC_ILLEGAL_DATA_VALUE)
        if address + count > REGISTER_SPACE:
            return BadRequest(transaction_id=transaction_id, unit_id=unit_id, function=function,
                              exception_code=EXC_ILLEGAL_DATA_ADDRESS)
        return ReadRequest(transaction_id=transaction_id, unit_id=unit_id, function=function, address=address,
                           count=count)
    if function == FC_WRITE_SINGLE:
        if size != 5:
            return BadRequest(transaction_id=transaction_id, unit_id=unit_id, function=function,
                              exception_code=EXC_ILLEGAL_DATA_VALUE)
        address, value = _ADDR_COUNT.unpack_from(pdu, 1)
        return WriteRequest(transaction_id=transaction_id, unit_id=unit_id, function=function, address=address,
                            values=(value,))
    if function == FC_WRITE_MULTIPLE:
        if size < 6:
            return BadRequest(transaction_id=transaction_id, unit_id=unit_id, function=function,
                              exception_code=EXC_ILLEGAL_DATA_VALUE)
        address, count = _ADDR_COUNT.unpack_from(pdu, 1)
        byte_count = pdu[5]
        # AP §6.12: quantity 1..123 and "Byte Count == Quantity of Registers x 2", else 03.
        if not 1 <= count <= MAX_WRITE_REGISTERS or byte_count != 2 * count or size != 6 + byte_count:
            return BadRequest(transaction_id=transaction_id, unit_id=unit_id, function=function,
                              exception_code=EXC_ILLEGAL_DATA_VALUE)
        if address + count > REGISTER_SPACE:
            return BadRequest(transaction_id=transaction_id, unit_id=unit_id, function=function,
                              exception_code=EXC_ILLEGAL_DATA_ADDRESS)
        values = struct.unpack_from(f">{count}H", pdu, 6)
        return WriteRequest(transaction_id=transaction_id, unit_id=unit_id, function=function, address=address,
                            values=values)
    # AP §7 code 01: "The function code received in the query is not an allowable action for the server".
    return BadRequest(transaction_id=transaction_id, unit_id=unit_id, function=function & 0x7F,
                      exception_code=EXC_ILLEGAL_FUNCTION)


class ServerConnection:
    """The server side of one Modbus/TCP connection (see the module contract)."""

    __slots__ = ("_buffer", "_closed", "_error")

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._closed = False
        self._error: RemoteProtocolError | None = None

    def receive_data(self, data: bytes) -> None:
        if self._error is not None:
            raise self._error
        if not data:
            self._closed = True
            return
        self._buffer += data

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def next_event(self) -> Event | NeedData:
        if self._error is not None:
            raise self._error
        buffer = self._buffer
        if len(buffer) < MBAP_HEADER_LEN:
            return self._need_data()
        transaction_id, protocol_id, length, unit_id = _MBAP.unpack_from(buffer)
        if protocol_id != PROTOCOL_ID:
            return self._fail(f"protocol id {protocol_id} is not Modbus (0)")
        if not MIN_MBAP_LENGTH <= length <= MAX_MBAP_LENGTH:
            return self._fail(f"MBAP length {length} outside {MIN_MBAP_LENGTH}..{MAX_MBAP_LENGTH}")
        end = MBAP_HEADER_LEN - 1 + length
        if len(buffer) < end:
            return self._need_data()
        pdu = bytes(buffer[MBAP_HEADER_LEN:end])
        del buffer[:end]
        return parse_pdu(transaction_id, unit_id, pdu)

    def _need_data(self) -> NeedData:
        if self._closed and self._buffer:
            return self._fail(f"peer closed inside a frame ({len(self._buffer)} bytes pending)")
        return NEED_DATA

    def _fail(self, reason: str) -> NeedData:
        self._error = RemoteProtocolError(reason)
        self._buffer.clear()
        raise self._error


# -- responses -------------------------------------------------------------------------------------------


def encode_registers(transaction_id: int, unit_id: int, function: int, registers: list[int]) -> bytes:
    """FC3/FC4 response: byte count then the registers, big-endian (AP §6.3)."""
    count = len(registers)
    return struct.pack(f">HHHBBB{count}H", transaction_id, 0, 3 + 2 * count, unit_id, function, 2 * count,
                       *registers)


def encode_exception(transaction_id: int, unit_id: int, function: int, code: int) -> bytes:
    return struct.pack(">HHHBBB", transaction_id, 0, 3, unit_id, (function | EXCEPTION_FLAG) & 0xFF, code)


def encode_write_ack(request: WriteRequest) -> bytes:
    """FC6 echoes address and value (AP §6.6); FC16 echoes address and quantity (AP §6.12)."""
    second = request.values[0] if request.function == FC_WRITE_SINGLE else len(request.values)
    return struct.pack(">HHHBBHH", request.transaction_id, 0, 6, request.unit_id, request.function,
                       request.address, second)


def encode_request(transaction_id: int, unit_id: int, pdu: bytes) -> bytes:
    """A client ADU around ``pdu``: used by tests and the benchmark to speak to the server by hand."""
    return _MBAP.pack(transaction_id, 0, len(pdu) + 1, unit_id) + pdu
