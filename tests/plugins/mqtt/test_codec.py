"""plugins/mqtt/codec.py: state payloads, command decoding and replies, with hypothesis fuzzing."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plugins.mqtt.codec import (
    ERR_BAD_TOPIC,
    ERR_NOT_ALLOWED,
    ERR_NOT_JSON,
    ERR_NOT_OBJECT,
    ERR_RETAINED,
    ERR_TOO_DEEP,
    ERR_TOO_LARGE,
    CommandError,
    InboundMessage,
    ReplyTarget,
    claimed_user,
    decode_command,
    decode_json_object,
    encode_attributes,
    encode_reply,
    encode_value,
    reply_target,
)
from plugins.mqtt.const import MAX_COMMAND_BYTES, MAX_COMMAND_DEPTH, MAX_CORRELATION_BYTES
from plugins.mqtt.topics import Topics

TOPICS = Topics("ampgate/site1")
REPLY = ReplyTarget(topic="ampgate/site1/cmd/charger/set_current_limit/result")
ALLOW = frozenset({"charger.set_current_limit"})


def message(payload: bytes = b"{}", topic: str = "ampgate/site1/cmd/charger/set_current_limit", **kw: Any) -> InboundMessage:
    return InboundMessage(topic=topic, payload=payload, **kw)


def refused(msg: InboundMessage, allow: frozenset[str] | None = ALLOW) -> str:
    with pytest.raises(CommandError) as info:
        decode_command(msg, TOPICS, allow=allow, reply=REPLY)
    return info.value.code


# -- states out ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "expected"), [
    ("Charging", b"Charging"), (7200, b"7200"), (3.5, b"3.5"), (True, b"true"), (False, b"false"),
    (None, b"null"), ([1, 2], b"[1,2]"), ({"a": 1}, b'{"a":1}'), ("Grüße", "Grüße".encode()),
    (float("nan"), b"NaN"), ((1, "x"), b'[1,"x"]'),
])
def test_encode_value(value: Any, expected: bytes) -> None:
    assert encode_value(value) == expected


def test_encode_attributes_has_unit_and_attributes_only() -> None:
    assert json.loads(encode_attributes("W", {"friendly_name": "CP01", "phases": 3})) == \
        {"unit": "W", "attributes": {"friendly_name": "CP01", "phases": 3}}


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text() | st.binary(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8) | st.integers(), children,
                                                                      max_size=4) | st.tuples(children, children),
    max_leaves=20,
)


@given(JSONISH)
def test_encoders_never_raise(value: Any) -> None:
    """Contract: any state value or attribute mapping becomes bytes; nothing a plugin stores can stop a publish."""
    assert isinstance(encode_value(value), bytes)
    assert isinstance(encode_attributes("W", {"x": value, "y": object()}), bytes)


# -- commands in ---------------------------------------------------------------------------------------------

def test_a_valid_command() -> None:
    msg = message(b'{"charger": "cp01", "limit_a": 16}', user_properties=(("user", "alice"),))
    request = decode_command(msg, TOPICS, allow=ALLOW, reply=REPLY)
    assert (request.domain, request.service, request.data) == ("charger", "set_current_limit",
                                                               {"charger": "cp01", "limit_a": 16})
    assert request.claimed_user == "alice" and request.reply is REPLY


def test_refusals_in_order_of_cost() -> None:
    assert refused(message(topic="ampgate/site1/cmd/Charger/x")) == ERR_BAD_TOPIC
    assert refused(message(retain=True)) == ERR_RETAINED
    assert refused(message(topic="ampgate/site1/cmd/test/forbidden")) == ERR_NOT_ALLOWED
    # Not allowed is decided before the payload is even looked at.
    assert refused(message(b"\xff" * 10, topic="ampgate/site1/cmd/test/forbidden")) == ERR_NOT_ALLOWED
    assert refused(message(b" " * (MAX_COMMAND_BYTES + 1))) == ERR_TOO_LARGE
    assert refused(message(b"not json")) == ERR_NOT_JSON
    assert refused(message(b'{"a": NaN}')) == ERR_NOT_JSON
    assert refused(message(b"\xff\xfe{}")) == ERR_NOT_JSON
    assert refused(message(b"[1]")) == ERR_NOT_OBJECT
    deep = b'{"a":' * (MAX_COMMAND_DEPTH + 1) + b"1" + b"}" * (MAX_COMMAND_DEPTH + 1)
    assert refused(message(deep)) == ERR_TOO_DEEP
    assert refused(message(b"[" * 2000 + b"]" * 2000)) in {ERR_NOT_JSON, ERR_NOT_OBJECT}


def test_allow_none_means_every_service() -> None:
    """Only reachable when MQTT-002 was accepted as a risk (commands enabled without an allow list)."""
    request = decode_command(message(topic="ampgate/site1/cmd/test/anything"), TOPICS, allow=None, reply=REPLY)
    assert (request.domain, request.service) == ("test", "anything")


def test_reply_target() -> None:
    plain = reply_target(message(), TOPICS, forbidden_roots=("ampgate/site1", "homeassistant"))
    assert plain.topic == "ampgate/site1/cmd/charger/set_current_limit/result" and plain.note is None
    v5 = reply_target(message(response_topic="clients/dash/replies", correlation_data=b"42"), TOPICS,
                      forbidden_roots=("ampgate/site1",))
    assert (v5.topic, v5.correlation_data) == ("clients/dash/replies", b"42")
    ours = reply_target(message(response_topic="ampgate/site1/reply/dash"), TOPICS, forbidden_roots=("ampgate/site1",))
    assert ours.topic == "ampgate/site1/reply/dash" and ours.note is None
    for bad in ("ampgate/site1/sensor.x/state", "homeassistant/sensor/x/config", "a/+/b", "$SYS/x", ""):
        target = reply_target(message(response_topic=bad), TOPICS, forbidden_roots=("ampgate/site1", "homeassistant"))
        assert target.topic.endswith("/result") and target.note, bad
    huge = reply_target(message(correlation_data=b"x" * (MAX_CORRELATION_BYTES + 1)), TOPICS, forbidden_roots=())
    assert huge.correlation_data is None


def test_claimed_user_is_cleaned_and_bounded() -> None:
    assert claimed_user((("other", "x"), ("User", "bob\x00\n"))) == "bob"
    assert claimed_user((("user", "a" * 500),)) == "a" * 64
    assert claimed_user(()) is None


def test_encode_reply() -> None:
    assert json.loads(encode_reply(ok=True, result={"limit_a": 16})) == {"ok": True, "result": {"limit_a": 16}}
    assert json.loads(encode_reply(ok=False, code="invalid", error="limit_a: expected int")) == \
        {"ok": False, "code": "invalid", "error": "limit_a: expected int"}


TOPIC_LEVEL = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)


@settings(max_examples=300)
@given(payload=st.binary(max_size=MAX_COMMAND_BYTES + 64), retain=st.booleans(),
       levels=st.lists(TOPIC_LEVEL, min_size=0, max_size=4),
       response_topic=st.none() | st.text(max_size=40), correlation=st.none() | st.binary(max_size=300),
       props=st.lists(st.tuples(st.text(max_size=10), st.text(max_size=80)), max_size=3))
def test_decode_command_never_raises_anything_but_command_error(
        payload: bytes, retain: bool, levels: list[str], response_topic: str | None, correlation: bytes | None,
        props: list[tuple[str, str]]) -> None:
    """Contract: whatever the bytes, topic, flags and properties, the result is a request or a CommandError."""
    msg = InboundMessage(topic="/".join(["ampgate", "site1", "cmd", *levels]), payload=payload, retain=retain,
                         response_topic=response_topic, correlation_data=correlation, user_properties=tuple(props))
    target = reply_target(msg, TOPICS, forbidden_roots=("ampgate/site1", "homeassistant"))
    assert target.topic
    try:
        request = decode_command(msg, TOPICS, allow=None, reply=target)
    except CommandError as err:
        assert err.code and err.message
    else:
        assert isinstance(request.data, dict) and not retain


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20)
                    | st.floats(allow_nan=False, allow_infinity=False),
                    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
                    max_leaves=15).filter(lambda v: isinstance(v, dict)))
def test_json_objects_round_trip(value: dict[str, Any]) -> None:
    """Contract: any JSON object within the limits decodes to itself."""
    raw = json.dumps(value).encode()
    if len(raw) <= MAX_COMMAND_BYTES:
        decoded = decode_json_object(raw)
        assert json.dumps(decoded, sort_keys=True) == json.dumps(value, sort_keys=True)
        assert not any(isinstance(v, float) and math.isnan(v) for v in decoded.values())
