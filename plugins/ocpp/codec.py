"""OCPP-J frames: text in, checked message objects out, and CALLERROR text back. No I/O.

Contract (the "frame gate" of shared/design/protocols/ocpp.md §3):
- ``decode(text, version)`` returns a ``Call``, ``CallResult`` or ``CallError``, or raises ``FrameError``. It
  never raises anything else, whatever the text (hypothesis-tested), and never trusts a frame before its
  JSON, shape, id and payload type are checked.
- The JSON is parsed strictly: ``NaN``/``Infinity``, numbers that overflow to infinity, integers beyond
  Python's digit limit, duplicate object keys, nesting deeper than ``MAX_JSON_DEPTH`` and lone surrogates are
  refused, so that what we check is what we act on (ocpp.md §5 pitfall 9).
- A ``FrameError`` names the error kind and the message id to answer with; ``encode_call_error`` turns it
  into the version's wire code (1.6 keeps its misspellings, errata §5) or ``None`` when the version says
  "ignore" (1.6 has no answer for unreadable frames or unknown message types). Descriptions are our own fixed
  texts: a frame is never echoed back (the library echoes whole frames, ocpp.md §5 pitfall 3).
- ``validate_call`` checks a CALL payload against the ``ocpp`` library's JSON schemas for the version and
  maps the failure to the spec's error codes; unknown actions are ``NotImplemented``, known ones without a
  handler ``NotSupported`` (OCPP-J 1.6 §4.2.3 table; the library swaps the two, ocpp.md §5 pitfall 4).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from enum import Enum, IntEnum
from typing import Any, Final

from plugins.ocpp.const import (
    MAX_ERROR_DESCRIPTION_CHARS,
    MAX_JSON_DEPTH,
    MAX_MESSAGE_ID_CHARS,
    UNREADABLE_MESSAGE_ID,
    VERSION_16,
    VERSION_201,
)


class MessageType(IntEnum):
    CALL = 2
    CALL_RESULT = 3
    CALL_ERROR = 4


class ErrorKind(Enum):
    """What went wrong, independent of the version's spelling of it."""

    FORMAT = "format"  # payload syntactically wrong / not an object
    RPC_FRAMEWORK = "rpc_framework"  # not a valid RPC frame (unreadable id, wrong element count)
    MESSAGE_TYPE_NOT_SUPPORTED = "message_type_not_supported"
    NOT_IMPLEMENTED = "not_implemented"  # action not known
    NOT_SUPPORTED = "not_supported"  # action known but not supported by us
    PROTOCOL = "protocol"  # payload incomplete (a required field missing)
    SECURITY = "security"  # e.g. a CALL before the station was accepted
    TYPE_CONSTRAINT = "type_constraint"
    PROPERTY_CONSTRAINT = "property_constraint"
    OCCURRENCE_CONSTRAINT = "occurrence_constraint"
    INTERNAL = "internal"
    GENERIC = "generic"


# The wire code of each kind per version; ``None`` means the version answers nothing.
# 1.6: OCPP-J 1.6 §4.2.3 table 4.3, misspellings kept (errata §5.1/5.2). 1.6 has no RpcFrameworkError: the
# closest is FormationViolation ("not conform the PDU structure"); unknown message types are ignored (§4.1.3).
# 2.0.1: Part 4 §4.3 table. OccurrenceConstraintViolation is spelled as the design note read it in Part 4
# (verify: the library's comments claim 2.0.1 kept the 1.6 misspelling). We never emit it: a missing
# required field is answered ProtocolError ("payload incomplete") in both versions.
WIRE_CODES: Final[dict[str, dict[ErrorKind, str | None]]] = {
    VERSION_16: {
        ErrorKind.FORMAT: "FormationViolation",
        ErrorKind.RPC_FRAMEWORK: "FormationViolation",
        ErrorKind.MESSAGE_TYPE_NOT_SUPPORTED: None,
        ErrorKind.NOT_IMPLEMENTED: "NotImplemented",
        ErrorKind.NOT_SUPPORTED: "NotSupported",
        ErrorKind.PROTOCOL: "ProtocolError",
        ErrorKind.SECURITY: "SecurityError",
        ErrorKind.TYPE_CONSTRAINT: "TypeConstraintViolation",
        ErrorKind.PROPERTY_CONSTRAINT: "PropertyConstraintViolation",
        ErrorKind.OCCURRENCE_CONSTRAINT: "OccurenceConstraintViolation",
        ErrorKind.INTERNAL: "InternalError",
        ErrorKind.GENERIC: "GenericError",
    },
    VERSION_201: {
        ErrorKind.FORMAT: "FormatViolation",
        ErrorKind.RPC_FRAMEWORK: "RpcFrameworkError",
        ErrorKind.MESSAGE_TYPE_NOT_SUPPORTED: "MessageTypeNotSupported",
        ErrorKind.NOT_IMPLEMENTED: "NotImplemented",
        ErrorKind.NOT_SUPPORTED: "NotSupported",
        ErrorKind.PROTOCOL: "ProtocolError",
        ErrorKind.SECURITY: "SecurityError",
        ErrorKind.TYPE_CONSTRAINT: "TypeConstraintViolation",
        ErrorKind.PROPERTY_CONSTRAINT: "PropertyConstraintViolation",
        ErrorKind.OCCURRENCE_CONSTRAINT: "OccurrenceConstraintViolation",
        ErrorKind.INTERNAL: "InternalError",
        ErrorKind.GENERIC: "GenericError",
    },
}

# Every code a peer may send us in a CALLERROR, both versions and both spellings.
KNOWN_ERROR_CODES: Final = frozenset(
    code for table in WIRE_CODES.values() for code in table.values() if code is not None
) | {"OccurrenceConstraintViolation", "OccurenceConstraintViolation", "FormatViolation", "FormationViolation"}


# -- messages (frozen: build new ones, never change one) ---------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Call:
    """``[2, "<messageId>", "<Action>", {payload}]``: a request."""

    message_id: str
    action: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class CallResult:
    """``[3, "<messageId>", {payload}]``: the answer to our CALL."""

    message_id: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class CallError:
    """``[4, "<messageId>", "<errorCode>", "<errorDescription>", {errorDetails}]``: our CALL failed."""

    message_id: str
    code: str
    description: str
    details: dict[str, Any] = field(default_factory=dict)


Message = Call | CallResult | CallError


class FrameError(Exception):
    """The peer sent a frame we refuse (a remote protocol error).

    ``message_id`` is the id to answer with, ``None`` when no answer may be sent (the frame was a response,
    or the version has no answer for it). ``description`` is ours, never text from the frame.
    """

    def __init__(self, kind: ErrorKind, description: str, message_id: str | None) -> None:
        super().__init__(description)
        self.kind = kind
        self.description = description[:MAX_ERROR_DESCRIPTION_CHARS]
        self.message_id = message_id

    def __repr__(self) -> str:
        return f"FrameError({self.kind.name}, {self.description!r}, id={self.message_id!r})"


# -- strict JSON ----------------------------------------------------------------------------------------------


class _Refused(ValueError):
    pass


def _no_constants(name: str) -> Any:
    raise _Refused(f"JSON constant {name} is not allowed")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise _Refused("number out of range")
    return value


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise _Refused("duplicate key in a JSON object")
    return result


_SURROGATE = re.compile("[\ud800-\udfff]")


def _check_tree(value: Any, check_strings: bool) -> None:
    """Depth limit and, when the text had escapes, no lone surrogates. Iterative: no recursion to exhaust."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            if depth > MAX_JSON_DEPTH:
                raise _Refused("JSON nested too deeply")
            for key, item in node.items():
                if check_strings and _SURROGATE.search(key):
                    raise _Refused("lone surrogate in a JSON string")
                stack.append((item, depth + 1))
        elif isinstance(node, list):
            if depth > MAX_JSON_DEPTH:
                raise _Refused("JSON nested too deeply")
            stack.extend((item, depth + 1) for item in node)
        elif check_strings and isinstance(node, str) and _SURROGATE.search(node):
            raise _Refused("lone surrogate in a JSON string")


def loads_strict(text: str) -> Any:
    """``json.loads`` that refuses what Python's parser would silently accept (see the module contract)."""
    try:
        value = json.loads(
            text, parse_constant=_no_constants, parse_float=_finite_float, object_pairs_hook=_no_duplicates
        )
    except RecursionError:
        raise _Refused("JSON nested too deeply") from None
    except (ValueError, TypeError) as err:  # JSONDecodeError is a ValueError; so is the int digit limit
        if isinstance(err, _Refused):
            raise
        raise _Refused("not valid JSON") from None
    _check_tree(value, check_strings="\\u" in text)
    return value


def dumps(value: Any) -> str:
    """Compact JSON, no NaN: what we send."""
    return json.dumps(value, separators=(",", ":"), allow_nan=False, ensure_ascii=False)


# -- decoding -------------------------------------------------------------------------------------------------


def _readable_id(frame: list[Any]) -> str | None:
    if len(frame) >= 2 and isinstance(frame[1], str) and 0 < len(frame[1]) <= MAX_MESSAGE_ID_CHARS:
        return frame[1]
    return None


def decode(text: str, version: str) -> Message:
    """One frame's text to a message; ``FrameError`` for anything that is not a well-formed OCPP-J frame."""
    unreadable = UNREADABLE_MESSAGE_ID if version == VERSION_201 else None
    try:
        frame = loads_strict(text)
    except _Refused as err:
        # 2.0.1 Part 4 §4.3: answer "-1" with RpcFrameworkError; 1.6 defines no answer (design: drop).
        raise FrameError(ErrorKind.RPC_FRAMEWORK, str(err), unreadable) from None
    if not isinstance(frame, list) or not frame:
        raise FrameError(ErrorKind.RPC_FRAMEWORK, "a frame must be a non-empty JSON array", unreadable)
    kind = frame[0]
    message_id = _readable_id(frame)
    if isinstance(kind, bool) or not isinstance(kind, int) or kind not in (2, 3, 4):
        # 2.0.1: MessageTypeNotSupported; 1.6 §4.1.3: ignore the message.
        raise FrameError(ErrorKind.MESSAGE_TYPE_NOT_SUPPORTED, "unknown message type",
                         (message_id or UNREADABLE_MESSAGE_ID) if version == VERSION_201 else None)
    if kind == MessageType.CALL:
        if message_id is None:
            raise FrameError(ErrorKind.RPC_FRAMEWORK, "message id missing, not a string or too long", unreadable)
        if len(frame) != 4:
            raise FrameError(ErrorKind.RPC_FRAMEWORK, "a CALL has 4 elements", message_id)
        action, payload = frame[2], frame[3]
        if not isinstance(action, str) or not action:
            raise FrameError(ErrorKind.RPC_FRAMEWORK, "action missing or not a string", message_id)
        if not isinstance(payload, dict):
            raise FrameError(ErrorKind.FORMAT, "payload must be a JSON object", message_id)
        return Call(message_id=message_id, action=action, payload=payload)
    # Responses are never answered (an error answering an error could loop); the caller drops them.
    if message_id is None:
        raise FrameError(ErrorKind.RPC_FRAMEWORK, "response without a readable message id", None)
    if kind == MessageType.CALL_RESULT:
        if len(frame) != 3 or not isinstance(frame[2], dict):
            raise FrameError(ErrorKind.RPC_FRAMEWORK, "a CALLRESULT has 3 elements and an object", None)
        return CallResult(message_id=message_id, payload=frame[2])
    # CALLERROR: details may be absent in sloppy implementations; code and description must be strings.
    if len(frame) not in (4, 5) or not isinstance(frame[2], str) or not isinstance(frame[3], str):
        raise FrameError(ErrorKind.RPC_FRAMEWORK, "malformed CALLERROR", None)
    details = frame[4] if len(frame) == 5 else {}
    if not isinstance(details, dict):
        raise FrameError(ErrorKind.RPC_FRAMEWORK, "CALLERROR details must be an object", None)
    return CallError(message_id=message_id, code=frame[2], description=frame[3][:MAX_ERROR_DESCRIPTION_CHARS],
                     details=details)


# -- encoding -------------------------------------------------------------------------------------------------


def wire_code(kind: ErrorKind, version: str) -> str | None:
    return WIRE_CODES[version][kind]


def encode_call_error(message_id: str, kind: ErrorKind, description: str, version: str) -> str | None:
    """The CALLERROR text for ``kind`` in ``version``; ``None`` when the version answers nothing."""
    code = wire_code(kind, version)
    if code is None:
        return None
    return dumps([MessageType.CALL_ERROR.value, message_id, code, description[:MAX_ERROR_DESCRIPTION_CHARS], {}])


def encode_error(err: FrameError, version: str) -> str | None:
    if err.message_id is None:
        return None
    return encode_call_error(err.message_id, err.kind, err.description, version)


def encode_call(message_id: str, action: str, payload: dict[str, Any]) -> str:
    return dumps([MessageType.CALL.value, message_id, action, payload])


def encode_call_result(message_id: str, payload: dict[str, Any]) -> str:
    return dumps([MessageType.CALL_RESULT.value, message_id, payload])


# -- payload validation against the library's schemas ---------------------------------------------------------


def known_actions(version: str) -> frozenset[str]:
    """Every action the version defines (the library's ``Action`` enums)."""
    cached = _ACTIONS.get(version)
    if cached is None:
        if version == VERSION_16:
            from ocpp.v16.enums import Action as Action16

            cached = frozenset(a.value for a in Action16)
        else:
            from ocpp.v201.enums import Action as Action201

            cached = frozenset(a.value for a in Action201)
        _ACTIONS[version] = cached
    return cached


_ACTIONS: dict[str, frozenset[str]] = {}

# jsonschema validator keyword -> the spec's error kind. "required" is 1.6's ProtocolError ("Payload for
# Action is incomplete"); a wrong type or a too long string a TypeConstraintViolation; a value outside an
# enum or range a PropertyConstraintViolation ("at least one field contains an invalid value"); an unknown
# property a FormationViolation/FormatViolation.
_SCHEMA_KINDS: Final = {
    "required": ErrorKind.PROTOCOL,
    "type": ErrorKind.TYPE_CONSTRAINT,
    "maxLength": ErrorKind.TYPE_CONSTRAINT,
    "minLength": ErrorKind.TYPE_CONSTRAINT,
    "enum": ErrorKind.PROPERTY_CONSTRAINT,
    "minimum": ErrorKind.PROPERTY_CONSTRAINT,
    "maximum": ErrorKind.PROPERTY_CONSTRAINT,
    "multipleOf": ErrorKind.PROPERTY_CONSTRAINT,
    "pattern": ErrorKind.PROPERTY_CONSTRAINT,
    "format": ErrorKind.PROPERTY_CONSTRAINT,
    "minItems": ErrorKind.OCCURRENCE_CONSTRAINT,
    "maxItems": ErrorKind.OCCURRENCE_CONSTRAINT,
    "additionalProperties": ErrorKind.FORMAT,
}


def validate_call(call: Call, version: str) -> None:
    """Raise ``FrameError`` unless ``call.payload`` satisfies the version's request schema.

    Runs inline (a MeterValues check costs tens of microseconds): the library's default hop to the thread
    pool for every frame costs more than it saves at our sizes (ocpp.md §5 pitfall 8).
    """
    from ocpp.messages import MessageType as LibType
    from ocpp.messages import get_validator

    if call.action not in known_actions(version):
        raise FrameError(ErrorKind.NOT_IMPLEMENTED, "unknown action", call.message_id)
    try:
        validator = get_validator(LibType.Call, call.action, version)
    except (OSError, ValueError):
        raise FrameError(ErrorKind.NOT_SUPPORTED, "action not supported", call.message_id) from None
    error = next(iter(validator.iter_errors(call.payload)), None)
    if error is None:
        return
    kind = _SCHEMA_KINDS.get(str(error.validator), ErrorKind.FORMAT)
    where = "/".join(str(p) for p in error.absolute_path) or "payload"
    # The field path and the schema keyword only: never the offending value.
    raise FrameError(kind, f"{where}: violates '{error.validator}'", call.message_id)
