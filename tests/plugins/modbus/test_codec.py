"""The server codec: MBAP framing, pipelining, PDU validation and exception codes (AP §6-7, TCP §3)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plugins.modbus.codec import (
    NEED_DATA,
    BadRequest,
    NeedData,
    ReadRequest,
    RemoteProtocolError,
    ServerConnection,
    WriteRequest,
    encode_exception,
    encode_registers,
    encode_request,
    encode_write_ack,
)


def events(conn: ServerConnection) -> list[object]:
    out: list[object] = []
    while not isinstance(ev := conn.next_event(), NeedData):
        out.append(ev)
    return out


def feed(*chunks: bytes) -> list[object]:
    conn = ServerConnection()
    out: list[object] = []
    for chunk in chunks:
        conn.receive_data(chunk)
        out += events(conn)
    return out


READ = encode_request(7, 1, struct.pack(">BHH", 4, 0x34, 2))


def test_read_request_and_response_bytes() -> None:
    assert feed(READ) == [ReadRequest(transaction_id=7, unit_id=1, function=4, address=0x34, count=2)]
    assert encode_registers(7, 1, 4, [0x45E1, 0x0000]) == bytes.fromhex("0007 0000 0007 01 04 04 45e1 0000")
    assert encode_exception(7, 1, 6, 2) == bytes.fromhex("0007 0000 0003 01 86 02")


def test_pipelined_and_split_requests_come_out_in_order() -> None:
    two = READ + encode_request(8, 1, struct.pack(">BHH", 3, 0, 1))
    assert [e.transaction_id for e in feed(two)] == [7, 8]  # type: ignore[attr-defined]
    assert [e.transaction_id for e in feed(*[two[i:i + 1] for i in range(len(two))])] == [7, 8]  # type: ignore[attr-defined]


def test_writes_parse_and_acknowledge() -> None:
    single = feed(encode_request(1, 1, struct.pack(">BHH", 6, 10, 0xBEEF)))[0]
    assert single == WriteRequest(transaction_id=1, unit_id=1, function=6, address=10, values=(0xBEEF,))
    assert encode_write_ack(single) == bytes.fromhex("0001 0000 0006 01 06 000a beef")  # type: ignore[arg-type]
    multi = feed(encode_request(2, 1, struct.pack(">BHHB2H", 16, 10, 2, 4, 1, 2)))[0]
    assert multi == WriteRequest(transaction_id=2, unit_id=1, function=16, address=10, values=(1, 2))
    assert encode_write_ack(multi) == bytes.fromhex("0002 0000 0006 01 10 000a 0002")  # type: ignore[arg-type]


@pytest.mark.parametrize(("pdu", "code"), [
    (struct.pack(">BHH", 3, 0, 0), 3),  # count 0
    (struct.pack(">BHH", 4, 0, 126), 3),  # count 126
    (struct.pack(">BHH", 4, 0, 65535), 3),
    (struct.pack(">BHH", 4, 65530, 10), 2),  # wraps past 65535
    (struct.pack(">BH", 3, 0), 3),  # truncated PDU
    (struct.pack(">BHHB", 16, 0, 2, 3) + b"\x00\x01\x02", 3),  # byte count mismatch
    (struct.pack(">BHHB", 16, 0, 124, 2) + bytes(2), 3),  # more than 123 registers
    (struct.pack(">BHH", 5, 0, 0xFF00), 1),  # write coil: not implemented
    (struct.pack(">BHH", 1, 0, 1), 1),
    (b"\x2b\x0e\x01\x00", 1),  # read device identification
    (b"\x83\x00", 1),  # an exception code as a request
])
def test_bad_pdus_get_the_exception_the_spec_names(pdu: bytes, code: int) -> None:
    [event] = feed(encode_request(9, 1, pdu))
    assert isinstance(event, BadRequest) and event.exception_code == code and event.transaction_id == 9


@pytest.mark.parametrize("frame", [
    bytes.fromhex("0001 0001 0006 01 03 0000 0001"),  # protocol id 1
    bytes.fromhex("0001 0000 0000 01"),  # MBAP length 0
    bytes.fromhex("0001 0000 0001 01"),  # MBAP length 1: no function code
    bytes.fromhex("0001 0000 ffff 01 03"),  # MBAP length 65535
    bytes.fromhex("0001 0000 00ff 01 03"),  # 255 > 254
])
def test_broken_framing_raises_and_stays_broken(frame: bytes) -> None:
    conn = ServerConnection()
    conn.receive_data(frame)
    with pytest.raises(RemoteProtocolError):
        conn.next_event()
    with pytest.raises(RemoteProtocolError):
        conn.next_event()
    with pytest.raises(RemoteProtocolError):
        conn.receive_data(READ)


def test_truncated_mbap_waits_then_fails_at_close() -> None:
    conn = ServerConnection()
    conn.receive_data(READ[:5])
    assert conn.next_event() is NEED_DATA
    conn.receive_data(b"")
    with pytest.raises(RemoteProtocolError):
        conn.next_event()
    clean = ServerConnection()
    clean.receive_data(b"")
    assert clean.next_event() is NEED_DATA  # closing between frames is fine


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=600), st.lists(st.integers(1, 64), max_size=20))
def test_fuzz_any_bytes_any_split(data: bytes, cuts: list[int]) -> None:
    """Contract: on any bytes, split anywhere, the codec yields events or raises RemoteProtocolError - nothing
    else; the events do not depend on how the stream was split; the buffer never holds more than one ADU."""
    def run(chunks: list[bytes]) -> tuple[list[object], bool]:
        conn = ServerConnection()
        out: list[object] = []
        try:
            for chunk in chunks:
                conn.receive_data(chunk)
                out += events(conn)
                assert conn.buffered <= 260
            conn.receive_data(b"")
            out += events(conn)
        except RemoteProtocolError:
            return out, True
        return out, False

    whole = run([data])
    chunks, pos = [], 0
    for cut in cuts:
        chunks.append(data[pos:pos + cut])
        pos += cut
    chunks.append(data[pos:])
    assert run([c for c in chunks if c]) == whole


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 0xFFFF), st.integers(0, 255), st.binary(min_size=1, max_size=253)),
                min_size=1, max_size=8))
def test_fuzz_well_framed_adus_never_break_the_connection(adus: list[tuple[int, int, bytes]]) -> None:
    """Contract: any sequence of correctly framed ADUs (any PDU bytes) yields exactly one event each, with the
    ADU's transaction and unit id, and never a framing error."""
    stream = b"".join(encode_request(tid, unit, pdu) for tid, unit, pdu in adus)
    out = feed(stream)
    assert [(e.transaction_id, e.unit_id) for e in out] == [(t, u) for t, u, _ in adus]  # type: ignore[attr-defined]
