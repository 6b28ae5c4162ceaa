"""Payloads: states out, commands in, replies back. Pure functions and small immutable messages; no I/O.

Contract:
- ``encode_value`` turns any state value into the bytes of ``<prefix>/<entity_id>/state``: strings as they
  are (UTF-8), numbers, booleans and ``None`` as JSON scalars (``7200``, ``3.5``, ``true``, ``null``), lists
  and mappings as JSON. It never raises: what JSON cannot hold is written with ``str()``.
- ``encode_attributes`` gives the JSON object of ``<prefix>/<entity_id>/attributes``; likewise never raises.
- ``decode_command`` turns an ``InboundMessage`` on a command topic into a ``CommandRequest`` or raises
  ``CommandError`` whose ``code`` and message go back to the sender. It never raises anything else, whatever
  the bytes, properties or flags (tests/plugins/mqtt/test_codec.py fuzzes it), and it refuses before parsing
  what it can refuse cheaply (size, retain flag, allowlist).
- ``encode_reply`` gives ``{"ok": true, "result": ...}`` or ``{"ok": false, "code": ..., "error": ...}``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from .const import (
    CLAIMED_USER_PROPERTIES,
    MAX_CLAIMED_USER_CHARS,
    MAX_COMMAND_BYTES,
    MAX_COMMAND_DEPTH,
    MAX_CORRELATION_BYTES,
)
from .topics import Topics, check_response_topic, valid_name

# Error codes carried in replies (``code``): stable, so that dashboards can branch on them.
ERR_TOO_LARGE = "too_large"
ERR_RETAINED = "retained"
ERR_BAD_TOPIC = "bad_topic"
ERR_NOT_ALLOWED = "not_allowed"
ERR_NOT_JSON = "not_json"
ERR_NOT_OBJECT = "not_object"
ERR_TOO_DEEP = "too_deep"
ERR_RATE_LIMITED = "rate_limited"
ERR_BUSY = "busy"
ERR_NOT_FOUND = "not_found"
ERR_INVALID = "invalid"
ERR_UNAUTHORIZED = "unauthorized"
ERR_TIMEOUT = "timeout"
ERR_FAILED = "failed"


class CommandError(Exception):
    """A command we refuse; ``code`` is one of the ``ERR_*`` constants, the message is for the sender."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True, kw_only=True)
class InboundMessage:
    """A PUBLISH received from the broker, with the MQTT 5 properties we use (MQTT 5 §3.3.2.3)."""

    topic: str
    payload: bytes
    retain: bool = False
    qos: int = 0
    response_topic: str | None = None  # §3.3.2.3.5 Response Topic
    correlation_data: bytes | None = None  # §3.3.2.3.6 Correlation Data
    user_properties: tuple[tuple[str, str], ...] = ()  # §3.3.2.3.7 User Property


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplyTarget:
    """Where the answer to one command goes: the v5 response topic when acceptable, else ``.../result``."""

    topic: str
    correlation_data: bytes | None = None
    note: str | None = None  # why the named response topic was not used


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandRequest:
    """A command that passed every check but the service's own schema: ready for ``services.call``."""

    domain: str
    service: str
    data: dict[str, Any] = field(default_factory=dict)
    reply: ReplyTarget
    claimed_user: str | None = None  # a v5 user property: what the sender says it is, not proven


# -- states out ------------------------------------------------------------------------------------------------


def _json_default(value: Any) -> Any:
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def _dumps(value: Any) -> bytes:
    # allow_nan: Python floats may be NaN/inf (a meter glitch); JSON has no spelling for them, so they go out as
    # NaN/Infinity, which JavaScript's and Python's parsers accept, rather than failing the publish.
    try:
        text = json.dumps(value, default=_json_default, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=True)
    except (TypeError, ValueError, RecursionError):  # non-string keys, cycles, absurd nesting
        text = json.dumps(str(value), ensure_ascii=False)
    return text.encode("utf-8", "replace")


def encode_value(value: Any) -> bytes:
    # Exact-type checks first: this runs for every state published (bench/mqtt.py), and str()/repr() of an
    # int or float is the JSON spelling already, several times cheaper than json.dumps.
    kind = type(value)
    if kind is str:
        return value.encode("utf-8", "replace")  # type: ignore[no-any-return]
    if kind is int:
        try:
            return str(value).encode()
        except ValueError:  # beyond sys.get_int_max_str_digits(): no meter reads that, but never raise
            return hex(value).encode()
    if kind is float:
        return repr(value).encode() if math.isfinite(value) else _dumps(value)
    if isinstance(value, str):
        return value.encode("utf-8", "replace")
    if value is None or isinstance(value, bool | int):
        return _dumps(value)
    if isinstance(value, float):
        return repr(float(value)).encode() if math.isfinite(value) else _dumps(float(value))
    if isinstance(value, Mapping):
        return _dumps(dict(value))
    if isinstance(value, list | tuple | set | frozenset):
        return _dumps(list(value))
    return str(value).encode("utf-8", "replace")


def encode_attributes(unit: str | None, attributes: Mapping[str, Any]) -> bytes:
    # No timestamp: the message is only sent when unit or attributes change, not with every value.
    return _dumps({"unit": unit, "attributes": dict(attributes)})


# -- commands in -----------------------------------------------------------------------------------------------


def _depth(value: Any) -> int:
    """Nesting depth of a decoded JSON value, iteratively (no recursion for an attacker to exhaust)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return deepest


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def decode_json_object(payload: bytes) -> dict[str, Any]:
    """The JSON object of a command payload; raises ``CommandError`` for anything else."""
    if len(payload) > MAX_COMMAND_BYTES:
        raise CommandError(ERR_TOO_LARGE, f"payload of {len(payload)} bytes; at most {MAX_COMMAND_BYTES}")
    try:
        text = payload.decode("utf-8")  # RFC 8259 §8.1: JSON between systems is UTF-8
        # parse_constant: NaN and Infinity are Python extensions, not JSON (RFC 8259 §6).
        value = json.loads(text, parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        reason = "not UTF-8" if isinstance(err, UnicodeDecodeError) else "nested too deeply" \
            if isinstance(err, RecursionError) else str(err).split(":")[0]
        raise CommandError(ERR_NOT_JSON, f"payload is not a JSON object ({reason})") from None
    if not isinstance(value, dict):
        raise CommandError(ERR_NOT_OBJECT, f"payload must be a JSON object, not {_json_type(value)}")
    if _depth(value) > MAX_COMMAND_DEPTH:
        raise CommandError(ERR_TOO_DEEP, f"payload nested deeper than {MAX_COMMAND_DEPTH} levels")
    return value


def _json_type(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    return "a number"


def reply_target(message: InboundMessage, topics: Topics, *, forbidden_roots: tuple[str, ...]) -> ReplyTarget:
    """The v5 response topic with its correlation data (MQTT 5 §4.10.1), when acceptable; else ``.../result``."""
    correlation = message.correlation_data
    if correlation is not None and len(correlation) > MAX_CORRELATION_BYTES:
        correlation = None  # not echoed: the sender gets its answer on .../result without it
    if message.response_topic is not None:
        try:
            topic = check_response_topic(message.response_topic, forbidden_roots=forbidden_roots,
                                         allowed_roots=(topics.reply_root,))
        except ValueError as err:
            return ReplyTarget(topic=topics.result(message.topic), correlation_data=correlation, note=str(err))
        return ReplyTarget(topic=topic, correlation_data=correlation)
    return ReplyTarget(topic=topics.result(message.topic), correlation_data=correlation)


def claimed_user(properties: tuple[tuple[str, str], ...]) -> str | None:
    for name, value in properties:
        if name.lower() in CLAIMED_USER_PROPERTIES and isinstance(value, str):
            clean = "".join(c for c in value if c.isprintable())[:MAX_CLAIMED_USER_CHARS]
            return clean or None
    return None


def decode_command(
    message: InboundMessage,
    topics: Topics,
    *,
    allow: Collection[str] | None,
    reply: ReplyTarget,
) -> CommandRequest:
    """Checks in order of cost: topic, retain flag, allowlist (policy: MQTT-002), size, JSON, depth.

    ``allow`` holds ``"domain.service"`` names; ``None`` means every service (only reachable when MQTT-002
    was accepted as a risk). Raises ``CommandError``; the caller computes ``reply`` first (``reply_target``)
    so that refusals are answered on the same topic as results."""
    parsed = topics.parse_command(message.topic)
    if parsed is None or not valid_name(parsed[0]) or not valid_name(parsed[1]):
        raise CommandError(ERR_BAD_TOPIC, "command topics are <prefix>/cmd/<domain>/<service> "
                                          "with lower-case letters, digits and _")
    domain, service = parsed
    if message.retain:
        # A retained command is delivered again on every (re)subscribe (protocols/mqtt.md §5, observed with
        # Mosquitto 2.0.11): acting on it would repeat a stale command after each reconnect. With MQTT 5 we
        # subscribe with Retain As Published, so a live command sent with retain=true is refused as well.
        raise CommandError(ERR_RETAINED, "retained commands are refused; publish commands with retain=false")
    if allow is not None and f"{domain}.{service}" not in allow:  # policy: MQTT-002
        raise CommandError(ERR_NOT_ALLOWED, f"{domain}.{service} is not in mqtt.commands.allow")
    data = decode_json_object(message.payload)
    return CommandRequest(domain=domain, service=service, data=data, reply=reply,
                          claimed_user=claimed_user(message.user_properties))


def encode_reply(*, ok: bool, result: Any = None, code: str | None = None, error: str | None = None) -> bytes:
    if ok:
        return _dumps({"ok": True, "result": result})
    return _dumps({"ok": False, "code": code or ERR_FAILED, "error": error or "failed"})
