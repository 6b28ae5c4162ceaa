"""The server-sent-events codec (WHATWG HTML §9.2): framing, the parser's rules, and fuzzed round trips."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plugins.web.sse import SseMessage, SseParser, encode_comment, encode_event, parse


def test_encode_event() -> None:
    assert encode_event("state", '{"a":1}', id="7") == b'event: state\nid: 7\ndata: {"a":1}\n\n'
    assert encode_event(None, "x\ny", retry_ms=3000) == b"retry: 3000\ndata: x\ndata: y\n\n"
    assert encode_comment("keep-alive") == b": keep-alive\n\n"


def test_a_payload_cannot_end_an_event_or_forge_one() -> None:
    data = "first\n\nevent: expired\ndata: forged\r\n"
    [message] = parse(encode_event("state", data))
    assert message.event == "state" and message.data == "first\n\nevent: expired\ndata: forged\n"


@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "a\0b"])
def test_field_injection_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        encode_event(bad, "x")
    with pytest.raises(ValueError):
        encode_event("x", "y", id=bad)


def test_parser_follows_the_spec_rules() -> None:
    stream = ("\ufeff: comment\nretry: 500\nevent: a\ndata:  two spaces\ndata\nid: 3\n\n"
              "data: no event\r\n\r\nevent: ignored-without-data\n\nid: 4\0\ndata: x\n\n").encode()
    messages = parse(stream)
    assert messages == [
        SseMessage(event="a", data=" two spaces\n", id="3", retry_ms=500),
        SseMessage(event="message", data="no event", id="3"),
        SseMessage(event="message", data="x", id="3"),  # an id containing NUL is ignored
    ]


def test_crlf_split_across_chunks_is_one_line_break() -> None:
    parser = SseParser()
    assert parser.feed(b"data: a\r") == []
    assert parser.feed(b"\n\r") == [SseMessage(data="a")]
    assert parser.feed(b"\ndata: b\n\n") == [SseMessage(data="b")]


def test_over_long_line_dropped() -> None:
    parser = SseParser(max_line=16)
    assert parser.feed(b"data: " + b"x" * 100) == []
    assert parser.feed(b"yyy\ndata: ok\n\n") == [SseMessage(data="ok")]


names = st.text(alphabet=st.characters(blacklist_characters="\r\n\0", blacklist_categories=("Cs",)), max_size=20)


@given(name=names, data=st.text(alphabet=st.characters(blacklist_categories=("Cs",))), event_id=names,
       cut=st.integers(min_value=0, max_value=400))
def test_round_trip_in_any_chunking(name: str, data: str, event_id: str, cut: int) -> None:
    """Contract: parse(encode(name, data)) gives data back with line breaks as LF, however the bytes are cut."""
    wire = encode_event(name, data, id=event_id) + encode_event("next", "1")
    parser = SseParser()
    cut = min(cut, len(wire))
    messages = parser.feed(wire[:cut]) + parser.feed(wire[cut:])
    expected = data.replace("\r\n", "\n").replace("\r", "\n")
    assert messages[0].data == expected
    assert messages[0].event == (name or "message")
    assert messages[0].id == event_id
    assert messages[1] == SseMessage(event="next", data="1", id=event_id)


@given(st.binary(max_size=2000), st.integers(min_value=1, max_value=50))
def test_parser_never_raises(data: bytes, step: int) -> None:
    """Contract: any byte sequence, in any chunking, parses without an exception."""
    parser = SseParser(max_line=256)
    for i in range(0, len(data), step):
        for message in parser.feed(data[i:i + step]):
            assert isinstance(message.data, str)
