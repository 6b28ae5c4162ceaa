"""Logging set-up with redaction.

Contract: whatever a plugin logs, at any level, no secret reaches the output. Two nets catch them:
the exact values of every secret the configuration holds (registered at start), and patterns that look
like credentials (``password=...``, ``"token": "..."``, ``Authorization: Basic ...``, ``Bearer ...``).
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable
from typing import Any

REDACTED = "***"

_PATTERNS = [
    # key=value and key: value forms, quoted or not: password=..., "token": "...", pin: 1234
    re.compile(
        r"(?i)(?P<key>[\"']?(?:pass(?:word|wd)?|secret|token|api[_-]?key|pin|auth[_-]?key|private[_-]?key)"
        r"[\"']?\s*[:=]\s*)(?P<q>[\"']?)(?P<value>[^\s\"',}]+)"
    ),
    re.compile(r"(?i)(?P<key>authorization\s*[:=]\s*(?:basic|bearer|digest)\s+)(?P<q>)(?P<value>[^\s\"',]+)"),
    re.compile(r"(?i)(?P<key>\bbearer\s+)(?P<q>)(?P<value>[A-Za-z0-9._~+/=-]{8,})"),
    # user:password@host in URLs
    re.compile(r"(?P<key>[a-z][a-z0-9+.-]*://[^/\s:@]+:)(?P<q>)(?P<value>[^@\s/]+)(?=@)"),
]

# Secrets shorter than this are not redacted by value: replacing every "1" or "ab" would make logs unusable,
# and the strength rules (AUTH-002) refuse such secrets anyway.
MIN_REDACT_LEN = 4


class Redactor:
    def __init__(self) -> None:
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None

    def add(self, values: Iterable[str]) -> None:
        self._values.update(v for v in values if v and len(v) >= MIN_REDACT_LEN)
        if self._values:
            alternatives = sorted(self._values, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(v) for v in alternatives))

    def clear(self) -> None:
        self._values.clear()
        self._pattern = None

    def redact(self, text: str) -> str:
        if self._pattern is not None:
            text = self._pattern.sub(REDACTED, text)
        for pattern in _PATTERNS:
            text = pattern.sub(lambda m: f"{m['key']}{m['q']}{REDACTED}", text)
        return text


REDACTOR = Redactor()


class RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return REDACTOR.redact(super().format(record))


LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time of the record, not at set-up (tests swap it)."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def setup_logging(level: str = "info", stream: Any = None) -> None:
    handler: logging.Handler = logging.StreamHandler(stream) if stream is not None else _StderrHandler()
    handler.setFormatter(RedactingFormatter(LOG_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Third-party libraries are chatty at DEBUG (websockets logs frames): keep them at INFO unless asked.
    for name in ("websockets", "pymodbus", "aiohttp.access", "asyncio"):
        logging.getLogger(name).setLevel(max(logging.INFO, root.level))
