"""The listener with real stations (the ``ocpp`` library's ChargePoints over websockets + TLS on loopback).

Each refusal is asserted on what the station actually got: the HTTP status of the refused upgrade, the
TLS alert, the close code, or the CALLERROR.
"""

from __future__ import annotations

import asyncio

import pytest
from ocpp.v16 import call as call16
from ocpp.v201 import call as call201

from tests.peers.ocpp_station import station
from tests.plugins.ocpp.conftest import PASSWORDS, Csms

pytestmark = pytest.mark.peer


async def test_boot_16_accepted_and_published(gateway: Csms) -> None:
    async with station(gateway.url, "CP16", "1.6", password=PASSWORDS["CP16"],
                       ssl_context=gateway.pki.station_context()) as cp:
        answer = await cp.call(call16.BootNotification(charge_point_vendor="ACME", charge_point_model="Wall",
                                                       firmware_version="1.2.3"))
        assert answer.status == "Accepted" and answer.interval == 60
        assert answer.current_time.endswith("Z")
        state = gateway.gw.states.get("charger.cp16")
        assert state is not None and state.attributes["connected"] is True
        assert (state.attributes["vendor"], state.attributes["model"], state.attributes["firmware"]) == (
            "ACME", "Wall", "1.2.3")
        await cp.call(call16.StatusNotification(connector_id=1, error_code="NoError", status="Charging"))
        assert gateway.gw.states.get("charger.cp16").value == "charging"
        assert gateway.gw.states.get("sensor.ocpp_stations_connected").value == 1
    await asyncio.sleep(0.1)
    assert gateway.gw.states.get("sensor.ocpp_stations_connected").value == 0
    state = gateway.gw.states.get("charger.cp16")
    assert state.value == "unavailable" and state.attributes["connected"] is False


async def test_boot_201_accepted(gateway: Csms) -> None:
    async with station(gateway.url, "CP201", "2.0.1", password=PASSWORDS["CP201"],
                       ssl_context=gateway.pki.station_context()) as cp:
        answer = await cp.call(call201.BootNotification(
            charging_station={"model": "Box", "vendor_name": "ACME", "firmware_version": "9"}, reason="PowerUp"))
        assert answer.status == "Accepted"
        await cp.call(call201.StatusNotification(timestamp="2026-01-01T00:00:00Z", connector_status="Available",
                                                 evse_id=1, connector_id=1))
        state = gateway.gw.states.get("charger.cp201")
        assert state.value == "available" and state.attributes["model"] == "Box"


# -- refusals before the upgrade --------------------------------------------------------------------------

import ssl  # noqa: E402
import warnings  # noqa: E402

from websockets.exceptions import ConnectionClosed, InvalidMessage, InvalidStatus  # noqa: E402

from gateway.security import audit as audit_events  # noqa: E402
from tests.peers.ocpp_station import open_ws  # noqa: E402


async def refused_status(gateway: Csms, identity: str, **kw: object) -> InvalidStatus:
    kw.setdefault("ssl_context", gateway.pki.station_context())
    with pytest.raises(InvalidStatus) as info:
        await open_ws(f"{gateway.url}/{identity}", subprotocols=["ocpp1.6"], identity=identity, **kw)  # type: ignore[arg-type]
    return info.value


async def security_records(gateway: Csms) -> list[dict[str, object]]:
    return [r.data for r in await gateway.gw.audit.list(event_prefix=audit_events.EVENT_SECURITY)]


async def test_no_password_is_401_with_challenge(gateway: Csms) -> None:
    err = await refused_status(gateway, "CP16")
    assert err.response.status_code == 401
    assert err.response.headers["WWW-Authenticate"].startswith('Basic realm="ocpp"')
    assert b"CP16" not in err.response.body  # no detail in the answer
    assert (await security_records(gateway))[-1]["reason"] == "no_credentials"


async def test_wrong_password_is_401_audited_without_secret(gateway: Csms) -> None:
    err = await refused_status(gateway, "CP16", password="wrong-password-1234")
    assert err.response.status_code == 401
    record = (await security_records(gateway))[-1]
    assert record["reason"] == "bad_password" and record["station"] == "CP16" and record["address"] == "127.0.0.1"
    everything = str([r.data for r in await gateway.gw.audit.list()])
    assert "wrong-password-1234" not in everything and PASSWORDS["CP16"] not in everything
    assert gateway.central.counters["refused_bad_password"] == 1
    refused = gateway.gw.states.get("sensor.ocpp_connections_refused")
    assert refused is not None and refused.value == 1 and refused.attributes == {"bad_password": 1}


async def test_password_of_another_station_is_refused(gateway: Csms) -> None:
    assert (await refused_status(gateway, "CP16", password=PASSWORDS["CP201"])).response.status_code == 401


async def test_unknown_station_is_401_and_enqueued(gateway: Csms) -> None:
    err = await refused_status(gateway, "STRANGER", password="whatever-password-1")
    assert err.response.status_code == 401
    pending = [e for e in await gateway.gw.enrollment.list() if e.identity == "STRANGER"]
    assert len(pending) == 1 and pending[0].kind == "ocpp" and pending[0].status == "pending"
    assert pending[0].address == "127.0.0.1"
    assert (await security_records(gateway))[-1]["reason"] == "unknown_identity"


async def test_configured_stations_are_pre_approved(gateway: Csms) -> None:
    approved = {e.identity for e in await gateway.gw.enrollment.list() if e.status == "approved"}
    assert {"CP16", "CP201", "CPANY", "CP3"} <= approved


async def test_bad_paths_are_404(gateway: Csms) -> None:
    for path in ("CP16/extra", "CP%2F16", "..", "CP16?x=1"):
        err = await refused_status(gateway, path, password=PASSWORDS["CP16"])
        assert err.response.status_code == 404


async def test_profile3_with_its_certificate(gateway: Csms) -> None:
    async with station(gateway.url, "CP3", "1.6", ssl_context=gateway.pki.station_context("cp3")) as cp:
        answer = await cp.call(call16.BootNotification(charge_point_vendor="v", charge_point_model="m"))
        assert answer.status == "Accepted"


async def test_profile3_certificate_for_another_identity_is_403(gateway: Csms) -> None:
    # A valid certificate (our CA) whose CN is CP16, used to connect as CP3:
    err = await refused_status(gateway, "CP3", ssl_context=gateway.pki.station_context("cp3_as_cp16"))
    assert err.response.status_code == 403
    assert (await security_records(gateway))[-2]["reason"] == "certificate_for_another_identity"
    # and CP3's certificate presented by a password station CP16 (with the right password):
    err = await refused_status(gateway, "CP16", password=PASSWORDS["CP16"],
                               ssl_context=gateway.pki.station_context("cp3"))
    assert err.response.status_code == 403


async def test_profile3_station_without_certificate_is_a_downgrade(gateway: Csms) -> None:
    # policy: OCPP-011 - arriving with Basic Auth only (profile 2) is a lower profile: refused and logged.
    err = await refused_status(gateway, "CP3", password="any-password-123456")
    assert err.response.status_code == 403
    reasons = [r.get("reason") or r.get("event") for r in await security_records(gateway)]
    assert "lower_profile" in reasons


async def test_certificate_from_another_ca_fails_the_tls_handshake(gateway: Csms) -> None:
    # TLS 1.3: the client may finish its side before the server's verdict arrives; then the HTTP answer to
    # its upgrade request never comes (InvalidMessage) instead of a handshake error.
    with pytest.raises((ssl.SSLError, ConnectionError, InvalidMessage)):
        await open_ws(f"{gateway.url}/CP3", subprotocols=["ocpp1.6"],
                      ssl_context=gateway.pki.station_context("rogue_cp3"))


def _weak_client(minimum: ssl.TLSVersion, maximum: ssl.TLSVersion) -> ssl.SSLContext:
    """A deliberately weak client context, built by hand (test only): it offers TLS 1.1 and nothing else,
    with OpenSSL's security level lowered so that it really sends a TLS 1.1 ClientHello."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = minimum
        ctx.maximum_version = maximum
    return ctx


async def test_client_offering_only_tls11_is_refused(gateway: Csms) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        old = ssl.TLSVersion.TLSv1_1
    # Control: this client does complete a TLS 1.1 handshake with a server that allows it (built by hand,
    # test only), so the refusal below is our server's, not the client's inability.
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(gateway.pki.server_cert, gateway.pki.server_key)
    server_ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        server_ctx.minimum_version = old

    async def close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    legacy = await asyncio.start_server(close, "127.0.0.1", 0, ssl=server_ctx)
    try:
        port = legacy.sockets[0].getsockname()[1]
        _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=_weak_client(old, old))
        assert writer.get_extra_info("ssl_object").version() == "TLSv1.1"
        writer.close()
    finally:
        legacy.close()
        await legacy.wait_closed()
    with pytest.raises((ssl.SSLError, ConnectionError)):
        await asyncio.open_connection("127.0.0.1", gateway.port, ssl=_weak_client(old, old))


async def test_duplicate_identity_from_another_address_is_403(gateway: Csms) -> None:
    async with station(gateway.url, "CP16", "1.6", password=PASSWORDS["CP16"],
                       ssl_context=gateway.pki.station_context()) as first:
        await first.call(call16.BootNotification(charge_point_vendor="v", charge_point_model="m"))
        # The same identity from 127.0.0.2 while the first connection answers pings: refused.
        err = await refused_status(gateway, "CP16", password=PASSWORDS["CP16"], local_addr=("127.0.0.2", 0))
        assert err.response.status_code == 403
        records = await security_records(gateway)
        assert any(r.get("reason") == "duplicate_identity" and r.get("address") == "127.0.0.2" for r in records)
        await first.call(call16.Heartbeat())  # the first one is untouched


async def test_reconnect_from_the_same_address_replaces_the_old_connection(gateway: Csms) -> None:
    async with station(gateway.url, "CP16", "1.6", password=PASSWORDS["CP16"],
                       ssl_context=gateway.pki.station_context()) as first:
        await first.call(call16.BootNotification(charge_point_vendor="v", charge_point_model="m"))
        async with station(gateway.url, "CP16", "1.6", password=PASSWORDS["CP16"],
                           ssl_context=gateway.pki.station_context()) as second:
            await second.call(call16.Heartbeat())  # accepted before: no boot needed
            await asyncio.wait_for(first._connection.wait_closed(), 2)
            assert first._connection.close_code == 1008
            assert gateway.central.connected_count() == 1


async def test_repeated_failures_lock_out_and_raise_a_security_event(gateway: Csms) -> None:
    for _ in range(5):
        await refused_status(gateway, "CP16", password="wrong-password-1234")
    # now even the right password is refused for a while from this address
    err = await refused_status(gateway, "CP16", password=PASSWORDS["CP16"])
    assert err.response.status_code == 401
    events = [r for r in await security_records(gateway) if r.get("event") == "repeated_authentication_failures"]
    assert len(events) == 1
    assert gateway.central.counters["refused_locked_out"] == 1


async def test_no_common_subprotocol_completes_and_closes_1002(gateway: Csms) -> None:
    # OCPP-J 1.6 §3.1.2: complete the handshake without a protocol, then close. CP16 may only speak 1.6.
    ws = await open_ws(f"{gateway.url}/CP16", subprotocols=["ocpp2.0.1"], identity="CP16",
                       password=PASSWORDS["CP16"], ssl_context=gateway.pki.station_context())
    assert ws.subprotocol is None
    with pytest.raises(ConnectionClosed) as info:
        await ws.recv()
    assert info.value.rcvd is not None and info.value.rcvd.code == 1002


async def test_station_picks_among_allowed_versions(gateway: Csms) -> None:
    ws = await open_ws(f"{gateway.url}/CPANY", subprotocols=["ocpp2.0.1", "ocpp1.6"], identity="CPANY",
                       password=PASSWORDS["CPANY"], ssl_context=gateway.pki.station_context())
    assert ws.subprotocol == "ocpp2.0.1"  # the station's preference when it may use both
    await ws.close()


async def test_plain_ws_to_the_tls_listener_fails(gateway: Csms) -> None:
    with pytest.raises((InvalidMessage, ConnectionError)):
        await open_ws(f"ws://127.0.0.1:{gateway.port}/ocpp/CP16", subprotocols=["ocpp1.6"],
                      identity="CP16", password=PASSWORDS["CP16"])


# -- profile 1 on loopback, and stations admitted through the enrollment queue -------------------------------

from pathlib import Path  # noqa: E402

from gateway.context import Context, Role  # noqa: E402
from tests.plugins.ocpp.conftest import Pki, csms  # noqa: E402


async def test_profile1_plain_ws_on_loopback(tmp_path: Path, pki: Pki) -> None:
    stations = """
        - id: CP16
          profile: 1
          password: !secret cp16
    """
    async with csms(tmp_path, pki, tls=False, stations=stations) as plain:
        url = f"ws://127.0.0.1:{plain.port}/ocpp"
        async with station(url, "CP16", "1.6", password=PASSWORDS["CP16"]) as cp:
            answer = await cp.call(call16.BootNotification(charge_point_vendor="v", charge_point_model="m"))
            assert answer.status == "Accepted"
        with pytest.raises(InvalidStatus) as info:
            await open_ws(f"{url}/CP16", subprotocols=["ocpp1.6"], identity="CP16", password="not-the-password-1")
        assert info.value.response.status_code == 401


async def test_unknown_certificate_station_admitted_after_approval(gateway: Csms) -> None:
    ctx = gateway.pki.station_context("new1")
    err = await refused_status(gateway, "NEW1", ssl_context=ctx)
    assert err.response.status_code == 401
    (entry,) = [e for e in await gateway.gw.enrollment.list() if e.identity == "NEW1"]
    assert entry.status == "pending" and entry.fingerprint  # the certificate's fingerprint is recorded
    await gateway.gw.enrollment.approve("ocpp", "NEW1", Context(origin="web", principal="admin", role=Role.ADMIN))
    async with station(gateway.url, "NEW1", "2.0.1", ssl_context=ctx) as cp:
        answer = await cp.call(call201.BootNotification(charging_station={"model": "m", "vendor_name": "v"},
                                                        reason="PowerUp"))
        assert answer.status == "Accepted"
        assert gateway.gw.states.get("charger.new1").attributes["connected"] is True


async def test_a_scanner_inventing_identities_cannot_flood_audit_or_queue(gateway: Csms) -> None:
    for n in range(12):
        assert (await refused_status(gateway, f"SCAN{n}", password="whatever-password-1")).response.status_code == 401
    unknown = [r for r in await security_records(gateway) if r.get("reason") == "unknown_identity"]
    queued = [e for e in await gateway.gw.enrollment.list() if e.identity.startswith("SCAN")]
    assert len(unknown) == len(queued) == 10  # ENROLLMENT_REQUESTS_PER_ADDRESS per address and hour
    assert gateway.central.counters["refused_unknown_identity"] == 12
    assert gateway.central.counters["unknown_identity_not_recorded"] == 2
