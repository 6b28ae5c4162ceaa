"""The frame gate: every row of the table in shared/design/protocols/ocpp.md §3, per version, plus a fuzz.

Fuzz contract: ``codec.decode`` returns a message or raises ``FrameError`` for ANY text, never anything
else; an error carries an answer id only when the version answers, and the CALLERROR it encodes is a valid
OCPP-J frame that never echoes the input.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plugins.ocpp import codec
from plugins.ocpp.codec import Call, CallError, CallResult, ErrorKind, FrameError

V16, V201 = "1.6", "2.0.1"


def refused(text: str, version: str) -> FrameError:
    with pytest.raises(FrameError) as info:
        codec.decode(text, version)
    return info.value


def test_valid_frames_decode() -> None:
    assert codec.decode('[2,"1","Heartbeat",{}]', V16) == Call(message_id="1", action="Heartbeat", payload={})
    assert codec.decode('[3,"1",{"currentTime":"x"}]', V201) == CallResult(message_id="1",
                                                                           payload={"currentTime": "x"})
    assert codec.decode('[4,"1","NotSupported","no",{}]', V16) == CallError(
        message_id="1", code="NotSupported", description="no", details={})
    # a sloppy CALLERROR without details is still read
    assert isinstance(codec.decode('[4,"1","GenericError","x"]', V16), CallError)


@pytest.mark.parametrize("text", [
    "not json", "[2, \"1\", \"Heartbeat\", {}", "", "\x00",
    '[2,"1","Heartbeat",{"a":NaN}]', '[2,"1","Heartbeat",{"a":Infinity}]', '[2,"1","Heartbeat",{"a":-Infinity}]',
    '[2,"1","Heartbeat",{"a":1e309}]',  # overflows to inf in Python
    '[2,"1","Heartbeat",{"a":1,"a":2}]',  # duplicate key: which one would we act on?
    '[2,"1","Heartbeat",{"a":"\\ud800"}]',  # lone surrogate
    '[2,"1","Heartbeat",{"a":' + "9" * 5000 + "}]",  # beyond Python's int digit limit
    "[" * 40 + "]" * 40,  # deeper than MAX_JSON_DEPTH
    "[" * 100_000,  # a recursion bomb must not crash the parser
])
def test_unreadable_json(text: str) -> None:
    # 2.0.1 Part 4 §4.3: CALLERROR "-1" RpcFrameworkError; 1.6 has no answer (dropped, counted).
    err = refused(text, V201)
    assert (err.kind, err.message_id) == (ErrorKind.RPC_FRAMEWORK, "-1")
    assert codec.encode_error(err, V201) == json.dumps([4, "-1", "RpcFrameworkError", err.description, {}],
                                                       separators=(",", ":"))
    assert refused(text, V16).message_id is None


def test_paired_surrogates_are_fine() -> None:
    assert codec.decode('[2,"1","DataTransfer",{"vendorId":"\\ud83d\\ude00"}]', V16).payload == {"vendorId": "😀"}


@pytest.mark.parametrize(("text", "answer_id"), [
    ('{"a":1}', "-1"), ("[]", "-1"), ('"text"', "-1"), ("42", "-1"),
    ('[2]', "-1"), ('[2, 5, "Heartbeat", {}]', "-1"), ('[2, "' + "x" * 37 + '", "Heartbeat", {}]', "-1"),
    ('[2, "", "Heartbeat", {}]', "-1"),
    ('[2, "7", "Heartbeat"]', "7"), ('[2, "7", "Heartbeat", {}, 1]', "7"), ('[2, "7", 5, {}]', "7"),
])
def test_wrong_shapes(text: str, answer_id: str) -> None:
    err = refused(text, V201)
    assert err.kind is ErrorKind.RPC_FRAMEWORK and err.message_id == answer_id
    frame = json.loads(codec.encode_error(err, V16) or "null") if err.message_id != "-1" else None
    if frame is not None:
        assert frame[2] == "FormationViolation"  # 1.6 spelling (errata §5)


def test_payload_not_an_object_is_a_format_violation() -> None:
    err = refused('[2,"9","Heartbeat",[]]', V16)
    assert err.kind is ErrorKind.FORMAT and err.message_id == "9"
    assert json.loads(codec.encode_error(err, V16) or "")[2] == "FormationViolation"
    assert json.loads(codec.encode_error(refused('[2,"9","Heartbeat",null]', V201), V201) or "")[2] == (
        "FormatViolation")


def test_unknown_message_type() -> None:
    err = refused('[5,"1","Heartbeat",{}]', V201)
    assert err.kind is ErrorKind.MESSAGE_TYPE_NOT_SUPPORTED
    assert json.loads(codec.encode_error(err, V201) or "")[2] == "MessageTypeNotSupported"
    assert codec.encode_error(refused('[5,"1","Heartbeat",{}]', V16), V16) is None  # 1.6 §4.1.3: ignore
    assert refused('[true,"1","Heartbeat",{}]', V201).kind is ErrorKind.MESSAGE_TYPE_NOT_SUPPORTED


def test_bad_responses_are_never_answered() -> None:
    for text in ('[3,"1"]', '[3,"1",[]]', '[4,"1",5,"x",{}]', '[4,"1","X","x",[]]', '[3,5,{}]'):
        assert refused(text, V201).message_id is None


def test_schema_validation_maps_to_spec_codes() -> None:
    def kind(action: str, payload: dict[str, object], version: str = V16) -> ErrorKind:
        with pytest.raises(FrameError) as info:
            codec.validate_call(Call(message_id="1", action=action, payload=payload), version)
        return info.value.kind

    codec.validate_call(Call(message_id="1", action="Heartbeat", payload={}), V16)
    assert kind("NoSuchAction", {}) is ErrorKind.NOT_IMPLEMENTED  # 1.6 §4.2.3: NotImplemented = unknown
    assert kind("BootNotification", {"chargePointModel": "m"}) is ErrorKind.PROTOCOL  # required missing
    assert kind("BootNotification", {"chargePointModel": 5, "chargePointVendor": "v"}) is ErrorKind.TYPE_CONSTRAINT
    assert kind("BootNotification", {"chargePointModel": "m" * 21, "chargePointVendor": "v"}) is (
        ErrorKind.TYPE_CONSTRAINT)
    assert kind("StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Dancing"}) is (
        ErrorKind.PROPERTY_CONSTRAINT)
    assert kind("Heartbeat", {"extra": 1}) is ErrorKind.FORMAT  # additionalProperties
    assert kind("Heartbeat", {"extra": 1}, V201) is ErrorKind.FORMAT


def test_descriptions_never_echo_the_frame() -> None:
    secret = "SECRETTOKEN123"
    with pytest.raises(FrameError) as info:
        codec.validate_call(Call(message_id="1", action="Authorize", payload={"idTag": secret * 3}), V16)
    assert secret not in (codec.encode_error(info.value, V16) or "")


def test_every_kind_has_a_wire_code_per_version() -> None:
    for version in (V16, V201):
        for kind in ErrorKind:
            assert kind in codec.WIRE_CODES[version]
    assert codec.wire_code(ErrorKind.OCCURRENCE_CONSTRAINT, V16) == "OccurenceConstraintViolation"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
frames = st.one_of(
    st.text(max_size=200),
    json_values.map(json.dumps),
    st.tuples(st.sampled_from([2, 3, 4, 5, -1, "2"]), st.text(max_size=40), st.text(max_size=30),
              json_values).map(lambda t: json.dumps(list(t))),
    st.lists(json_values, max_size=6).map(json.dumps),
)


@given(frames, st.sampled_from([V16, V201]))
@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_fuzz_decode_never_raises_anything_else(text: str, version: str) -> None:
    try:
        message = codec.decode(text, version)
    except FrameError as err:
        reply = codec.encode_error(err, version)
        if reply is not None:
            frame = json.loads(reply)
            assert frame[0] == 4 and isinstance(frame[1], str) and len(frame[1]) <= 36
            assert frame[2] in codec.KNOWN_ERROR_CODES and frame[4] == {}
            assert len(frame[3]) <= 255
            if len(text) > 40:
                assert text not in reply
        return
    assert isinstance(message, Call | CallResult | CallError)
    if isinstance(message, Call):
        assert isinstance(message.payload, dict) and 0 < len(message.message_id) <= 36
        try:
            codec.validate_call(message, version)
        except FrameError as err:
            assert err.message_id == message.message_id
