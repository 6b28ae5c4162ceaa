"""Bad frames on a live connection: the right CALLERROR or close code, and other stations unaffected.

Fuzz contract (live): whatever text frame a station sends, the central system answers with a well-formed
OCPP-J frame or nothing, closes only with an OCPP-J reason (1008 error budget), and a second station
connected all along keeps getting answers.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ocpp.v16 import call as call16
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from plugins.ocpp.const import CALL_BURST, CALL_RATE_PER_S, ERROR_BUDGET, MAX_FRAME_BYTES
from tests.peers.ocpp_station import open_ws, station
from tests.plugins.ocpp.conftest import PASSWORDS, Csms

pytestmark = pytest.mark.peer

BOOT16 = '[2,"boot","BootNotification",{"chargePointVendor":"v","chargePointModel":"m"}]'
BOOT201 = '[2,"boot","BootNotification",{"chargingStation":{"model":"m","vendorName":"v"},"reason":"PowerUp"}]'


async def raw(gateway: Csms, identity: str = "CP201", version: str = "2.0.1") -> ClientConnection:
    """A raw, authenticated, booted connection: we craft the frames ourselves."""
    ws = await open_ws(f"{gateway.url}/{identity}", subprotocols=["ocpp1.6" if version == "1.6" else "ocpp2.0.1"],
                       identity=identity, password=PASSWORDS[identity], ssl_context=gateway.pki.station_context())
    await ws.send(BOOT16 if version == "1.6" else BOOT201)
    await answer_to(ws, "boot")
    return ws


async def answer_to(ws: ClientConnection, message_id: str, within_s: float = 3.0) -> list[Any]:
    """The next frame answering ``message_id``; CALLs from the central system are answered Accepted."""
    async with asyncio.timeout(within_s):
        while True:
            frame = json.loads(await ws.recv())
            if frame[0] == 2:  # the central system's own CALL (TriggerMessage after boot): answer it
                await ws.send(json.dumps([3, frame[1], {"status": "Accepted"}]))
                continue
            if frame[1] == message_id:
                return list(frame)


async def silence(ws: ClientConnection, wait: float = 0.2) -> list[Any]:
    """Frames (other than the central system's CALLs) arriving within ``wait``: expected none."""
    got: list[Any] = []
    try:
        async with asyncio.timeout(wait):
            while True:
                frame = json.loads(await ws.recv())
                if frame[0] == 2:
                    await ws.send(json.dumps([3, frame[1], {"status": "Accepted"}]))
                else:
                    got.append(frame)
    except TimeoutError:
        pass
    return got


@pytest.mark.parametrize(("frame", "answer"), [
    ("this is not json", ["-1", "RpcFrameworkError"]),
    ('{"not": "an array"}', ["-1", "RpcFrameworkError"]),
    ('[2,"a1","Heartbeat"]', ["a1", "RpcFrameworkError"]),
    ('[2,"a2","Heartbeat",[]]', ["a2", "FormatViolation"]),
    ('[7,"a3","Heartbeat",{}]', ["a3", "MessageTypeNotSupported"]),
    ('[2,"a4","Teleport",{}]', ["a4", "NotImplemented"]),
    ('[2,"a5","GetVariables",{"getVariableData":[]}]', ["a5", "NotSupported"]),  # known, CSMS->station only
    ('[2,"a6","Heartbeat",{"unexpected":1}]', ["a6", "FormatViolation"]),
    ('[2,"a7","Authorize",{"idToken":{"idToken":5,"type":"ISO14443"}}]', ["a7", "TypeConstraintViolation"]),
    ('[2,"a8","Authorize",{}]', ["a8", "ProtocolError"]),
    ('[2,"a9","Heartbeat",{"a":NaN}]', ["-1", "RpcFrameworkError"]),
])
async def test_bad_frames_201(gateway: Csms, frame: str, answer: list[str]) -> None:
    ws = await raw(gateway)
    await ws.send(frame)
    got = await answer_to(ws, answer[0])
    assert got[2] == answer[1] and got[4] == {} and frame not in got[3]
    await ws.send('[2,"ok","Heartbeat",{}]')
    assert (await answer_to(ws, "ok"))[0] == 3  # the connection keeps working
    await ws.close()


@pytest.mark.parametrize(("frame", "answer"), [
    ("this is not json", None),  # 1.6 has no answer for an unreadable frame (dropped, counted)
    ('[7,"b1","Heartbeat",{}]', None),  # 1.6 §4.1.3: unknown message type is ignored
    ('[2,"b2","Heartbeat",[]]', "FormationViolation"),  # the 1.6 spelling (errata §5)
    ('[2,"b3","Teleport",{}]', "NotImplemented"),
    ('[2,"b4","StartTransaction",{"connectorId":1}]', "ProtocolError"),
    ('[2,"b5","StatusNotification",{"connectorId":1,"errorCode":"NoError","status":"Dancing"}]',
     "PropertyConstraintViolation"),
    # Found by test_fuzz_live_connection: a non-string errorCode crashed the handler (close 1011).
    ('[2,"b6","StatusNotification",{"connectorId":1,"errorCode":[],"status":"Available"}]',
     "TypeConstraintViolation"),
])
async def test_bad_frames_16(gateway: Csms, frame: str, answer: str | None) -> None:
    ws = await raw(gateway, "CP16", "1.6")
    await ws.send(frame)
    if answer is None:
        assert await silence(ws) == []
    else:
        got = await answer_to(ws, json.loads(frame)[1])
        assert got[2] == answer
    await ws.send('[2,"ok","Heartbeat",{}]')
    assert (await answer_to(ws, "ok"))[0] == 3
    await ws.close()


async def test_status_error_code_outside_the_enum_is_tolerated(gateway: Csms) -> None:
    # lbbrhzn/ocpp #1248: stations send "Error"; refusing would put them in a retry loop.
    ws = await raw(gateway, "CP16", "1.6")
    await ws.send('[2,"s1","StatusNotification",{"connectorId":1,"errorCode":"Error","status":"Faulted"}]')
    assert (await answer_to(ws, "s1"))[0] == 3
    assert gateway.gw.states.get("charger.cp16").value == "faulted"
    await ws.close()


async def test_call_before_boot_is_a_security_error(gateway: Csms) -> None:
    ws = await open_ws(f"{gateway.url}/CP201", subprotocols=["ocpp2.0.1"], identity="CP201",
                       password=PASSWORDS["CP201"], ssl_context=gateway.pki.station_context())
    await ws.send('[2,"early","Heartbeat",{}]')
    assert (await answer_to(ws, "early"))[2] == "SecurityError"
    await ws.close()


async def test_oversized_frame_closes_1009_others_unaffected(gateway: Csms) -> None:
    async with station(gateway.url, "CP16", "1.6", password=PASSWORDS["CP16"],
                       ssl_context=gateway.pki.station_context()) as bystander:
        await bystander.call(call16.BootNotification(charge_point_vendor="v", charge_point_model="m"))
        ws = await raw(gateway)
        big = '[2,"big","DataTransfer",{"vendorId":"x","data":"' + "A" * MAX_FRAME_BYTES + '"}]'
        with pytest.raises(ConnectionClosed) as info:
            await ws.send(big)
            while True:
                await ws.recv()
        assert info.value.rcvd is not None and info.value.rcvd.code == 1009
        assert (await bystander.call(call16.Heartbeat())).current_time


async def test_binary_frame_closes_1003(gateway: Csms) -> None:
    ws = await raw(gateway)
    await ws.send(b'[2,"bin","Heartbeat",{}]')
    with pytest.raises(ConnectionClosed) as info:
        while True:
            await ws.recv()
    assert info.value.rcvd is not None and info.value.rcvd.code == 1003


async def test_error_budget_closes_1008_and_raises_a_security_event(gateway: Csms) -> None:
    async with station(gateway.url, "CP16", "1.6", password=PASSWORDS["CP16"],
                       ssl_context=gateway.pki.station_context()) as bystander:
        await bystander.call(call16.BootNotification(charge_point_vendor="v", charge_point_model="m"))
        ws = await raw(gateway)
        with pytest.raises(ConnectionClosed) as info:
            for n in range(ERROR_BUDGET + 5):
                await ws.send(f'[2,"e{n}","Teleport",{{}}]')
            while True:
                await ws.recv()
        assert info.value.rcvd is not None and info.value.rcvd.code == 1008
        records = await gateway.gw.audit.list(event_prefix="security.event")
        assert any(r.data.get("event") == "too_many_protocol_errors" for r in records)
        assert (await bystander.call(call16.Heartbeat())).current_time


async def test_rate_limit_paces_a_flood_without_slowing_others(gateway: Csms) -> None:
    async with station(gateway.url, "CP16", "1.6", password=PASSWORDS["CP16"],
                       ssl_context=gateway.pki.station_context()) as bystander:
        await bystander.call(call16.BootNotification(charge_point_vendor="v", charge_point_model="m"))
        ws = await raw(gateway)
        extra = 16
        started = time.monotonic()
        for n in range(CALL_BURST + extra):  # without waiting for answers (breaks OCPP-J synchronicity)
            await ws.send(f'[2,"f{n}","Heartbeat",{{}}]')
        # meanwhile the bystander is answered at once
        t0 = time.monotonic()
        await bystander.call(call16.Heartbeat())
        assert time.monotonic() - t0 < 0.5
        await answer_to(ws, f"f{CALL_BURST + extra - 1}", within_s=10)
        elapsed = time.monotonic() - started
        assert elapsed >= (extra - 2) / CALL_RATE_PER_S  # the calls beyond the burst were paced
        assert gateway.central.counters["throttled"] >= extra - 2
        await ws.close()


frames = st.one_of(
    st.text(max_size=300),
    st.builds(lambda t, i, a, p: json.dumps([t, i, a, p]),
              st.sampled_from([2, 3, 4, 9]), st.text(max_size=40),
              st.sampled_from(["Heartbeat", "BootNotification", "Authorize", "MeterValues", "StatusNotification",
                               "StartTransaction", "TransactionEvent", "DataTransfer", "Nope"]),
              st.dictionaries(st.sampled_from(["idTag", "idToken", "connectorId", "meterValue", "status",
                                               "errorCode", "vendorId", "data", "evseId", "x"]),
                              st.none() | st.integers() | st.text(max_size=30) | st.lists(st.integers(), max_size=3),
                              max_size=4)),
)


@pytest.fixture
async def fuzz_target(gateway: Csms) -> Any:
    async with station(gateway.url, "CP16", "1.6", password=PASSWORDS["CP16"],
                       ssl_context=gateway.pki.station_context()) as bystander:
        await bystander.call(call16.BootNotification(charge_point_vendor="v", charge_point_model="m"))
        yield gateway, bystander


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(batch=st.lists(frames, min_size=1, max_size=8), version=st.sampled_from(["1.6", "2.0.1"]))
async def test_fuzz_live_connection(fuzz_target: Any, batch: list[str], version: str) -> None:
    gateway, bystander = fuzz_target
    ws = await raw(gateway, "CPANY", version)
    try:
        for frame in batch:
            await ws.send(frame)
        await ws.send('[2,"probe","Heartbeat",{}]')
        async with asyncio.timeout(5):
            while True:
                text = await ws.recv()
                reply = json.loads(text)
                assert isinstance(reply, list) and reply[0] in (2, 3, 4)
                if reply[0] == 4:
                    assert len(reply) == 5 and isinstance(reply[2], str) and reply[4] == {}
                if reply[0] == 2:
                    await ws.send(json.dumps([3, reply[1], {"status": "Accepted"}]))
                if reply[1] == "probe":
                    break
    except ConnectionClosed as closed:
        assert closed.rcvd is not None and closed.rcvd.code == 1008  # only the error budget may close it
    finally:
        await ws.close()
    assert (await bystander.call(call16.Heartbeat())).current_time
