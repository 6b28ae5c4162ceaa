"""Server-sent events, both ways, without I/O (WHATWG HTML §9.2 "Server-sent events").

Contract:
- ``encode_event`` writes one event: ``event:``, ``id:``, ``retry:`` then one ``data:`` line per line of
  ``data``; it never emits a blank line inside an event, so no payload can end an event early or inject a
  second one. Line breaks in ``data`` (CRLF, CR, LF) all become LF, as §9.2.6 reads them. An event name
  or id containing CR, LF or NUL raises ``ValueError`` (those would break the framing).
- ``SseParser.feed(bytes)`` follows §9.2.6 ("Interpreting an event stream") for any byte sequence, in any
  chunking: it never raises, invalid UTF-8 becomes U+FFFD, and a line longer than ``max_line`` is dropped
  rather than buffered without bound. ``parse(encode_event(name, data))`` gives back ``data`` with line
  breaks normalised to LF. The gateway only sends; the parser serves tests, the benchmark and Python
  clients of ``/api/stream``.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
DEFAULT_MAX_LINE = 1 << 20  # 1 MiB: a snapshot of a large site is one line of JSON


@dataclass(frozen=True, slots=True, kw_only=True)
class SseMessage:
    """One dispatched event (§9.2.6 "dispatch the event")."""

    event: str = "message"
    data: str = ""
    id: str = ""  # the last event id in force when it was dispatched
    retry_ms: int | None = None  # a reconnection time seen since the previous event


def _check_field(name: str, value: str) -> None:
    if "\n" in value or "\r" in value or "\0" in value:
        raise ValueError(f"SSE {name} must not contain CR, LF or NUL: {value!r}")


def encode_event(event: str | None, data: str, *, id: str | None = None, retry_ms: int | None = None) -> bytes:
    parts: list[str] = []
    if event is not None:
        _check_field("event", event)
        parts.append(f"event: {event}\n")
    if id is not None:
        _check_field("id", id)
        parts.append(f"id: {id}\n")
    if retry_ms is not None:
        if retry_ms < 0:
            raise ValueError("SSE retry must be a non-negative number of milliseconds")
        parts.append(f"retry: {retry_ms}\n")
    parts.extend(f"data: {line}\n" for line in _LINE_BREAK.split(data))
    parts.append("\n")
    return "".join(parts).encode("utf-8", "surrogatepass")


def encode_comment(text: str = "") -> bytes:
    """A comment line (§9.2.6: lines starting with a colon are ignored): keeps a stream alive."""
    return "".join(f":{(' ' + line) if line else ''}\n" for line in _LINE_BREAK.split(text)).encode() + b"\n"


class SseParser:
    """Incremental §9.2.6 parser: ``feed`` returns the events completed by the bytes given."""

    def __init__(self, *, max_line: int = DEFAULT_MAX_LINE) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buffer = ""
        self._first = True
        self._pending_cr = False
        self._skipping = False  # inside an over-long line that is being dropped
        self.max_line = max_line
        self._event = ""
        self._data: list[str] = []
        self._last_id = ""
        self._retry: int | None = None

    @property
    def last_event_id(self) -> str:
        return self._last_id

    def feed(self, data: bytes) -> list[SseMessage]:
        text = self._decoder.decode(data)
        if self._first and text:
            self._first = False
            text = text.removeprefix("\ufeff")  # §9.2.6: one leading BOM is ignored
        return self._consume(text)

    def _consume(self, text: str) -> list[SseMessage]:
        out: list[SseMessage] = []
        if self._pending_cr and text.startswith("\n"):
            text = text[1:]  # the LF of a CRLF split across two chunks
        self._pending_cr = False
        self._buffer += text
        while True:
            match = _LINE_BREAK.search(self._buffer)
            if match is None:
                break
            if match.group() == "\r" and match.end() == len(self._buffer):
                # A CR at the very end may be the first half of a CRLF: take the line, remember the CR.
                self._pending_cr = True
            line = self._buffer[: match.start()]
            self._buffer = self._buffer[match.end():]
            if self._skipping:
                self._skipping = False
                continue
            message = self._line(line)
            if message is not None:
                out.append(message)
        if len(self._buffer) > self.max_line:
            self._buffer = ""
            self._skipping = True
        return out

    def _line(self, line: str) -> SseMessage | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id":
            if "\0" not in value:
                self._last_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self._retry = int(value)
        return None

    def _dispatch(self) -> SseMessage | None:
        data, event = self._data, self._event
        self._data, self._event = [], ""
        if not data:
            return None  # §9.2.6: an event with an empty data buffer is not dispatched
        retry, self._retry = self._retry, None
        return SseMessage(event=event or "message", data="\n".join(data), id=self._last_id, retry_ms=retry)


def parse(stream: bytes) -> list[SseMessage]:
    return SseParser().feed(stream)
