"""Charging sessions recorded from real stations (1.6 Start/Stop, 2.0.1 TransactionEvent), idempotent,
with the id token encrypted; unknown stops answered and recorded."""

from __future__ import annotations

from typing import Any

import pytest
from ocpp.v16 import call as call16
from ocpp.v201 import call as call201

from tests.peers.ocpp_station import station
from tests.plugins.ocpp.conftest import PASSWORDS, Csms

pytestmark = pytest.mark.peer


def rows(gateway: Csms) -> list[dict[str, Any]]:
    return [dict(r) for r in gateway.gw.storage.execute_sync("SELECT * FROM ocpp_transactions ORDER BY id")]


async def test_16_start_meter_stop(gateway: Csms) -> None:
    await gateway.central.tokens.add("BADGE-ANNA")
    events: list[Any] = []
    gateway.gw.bus.subscribe("charger_transaction", events.append)
    async with station(gateway.url, "CP16", "1.6", password=PASSWORDS["CP16"],
                       ssl_context=gateway.pki.station_context()) as cp:
        await cp.call(call16.BootNotification(charge_point_vendor="v", charge_point_model="m"))
        start = await cp.call(call16.StartTransaction(connector_id=1, id_tag="BADGE-ANNA", meter_start=1000,
                                                      timestamp="2026-01-01T10:00:00Z"))
        assert start.id_tag_info["status"] == "Accepted" and start.transaction_id > 0
        # a resend after a reconnect is the same transaction (ocpp.md §2.3)
        again = await cp.call(call16.StartTransaction(connector_id=1, id_tag="BADGE-ANNA", meter_start=1000,
                                                      timestamp="2026-01-01T10:00:00Z"))
        assert again.transaction_id == start.transaction_id
        await cp.call(call16.MeterValues(connector_id=1, transaction_id=start.transaction_id, meter_value=[
            {"timestamp": "2026-01-01T10:30:00Z", "sampled_value": [{"value": "4500"}]}]))
        assert gateway.gw.states.get("charger.cp16").attributes["session_energy_wh"] == 3500
        stop = await cp.call(call16.StopTransaction(meter_stop=8000, timestamp="2026-01-01T11:00:00Z",
                                                    transaction_id=start.transaction_id, reason="EVDisconnected"))
        assert stop.id_tag_info is None
        await cp.call(call16.StopTransaction(meter_stop=8000, timestamp="2026-01-01T11:00:00Z",
                                             transaction_id=start.transaction_id))  # resend: no change
    (row,) = rows(gateway)
    assert row["state"] == "completed" and row["energy_wh"] == 7000 and row["stop_reason"] == "EVDisconnected"
    assert (row["meter_start_wh"], row["meter_stop_wh"], row["connector"]) == (1000, 8000, 1)
    assert row["auth_status"] == "accepted" and row["started_at"] == "2026-01-01T10:00:00Z"
    assert "BADGE" not in str(row)  # the id token is stored encrypted
    assert gateway.central.store.id_token(row["id"]) == "BADGE-ANNA"
    assert row["id_token_index"] == gateway.central.tokens.index_of("badge-anna")
    assert [e.data["event"] for e in events] == ["started", "stopped"]


async def test_16_stop_for_an_unknown_transaction_is_answered_and_recorded(gateway: Csms) -> None:
    async with station(gateway.url, "CP16", "1.6", password=PASSWORDS["CP16"],
                       ssl_context=gateway.pki.station_context()) as cp:
        await cp.call(call16.BootNotification(charge_point_vendor="v", charge_point_model="m"))
        stop = await cp.call(call16.StopTransaction(meter_stop=500, timestamp="2026-01-01T11:00:00Z",
                                                    transaction_id=987654, id_tag="SOMEONE"))
        assert stop.id_tag_info["status"] == "Invalid"
        await cp.call(call16.Heartbeat())  # still connected and served
    (row,) = rows(gateway)
    assert row["state"] == "orphan" and row["tx_key"] == "orphan:987654" and row["meter_stop_wh"] == 500
    assert gateway.central.counters["unknown_transaction_stop"] == 1


async def test_16_stop_of_another_stations_transaction_is_not_applied(gateway: Csms) -> None:
    async with station(gateway.url, "CP16", "1.6", password=PASSWORDS["CP16"],
                       ssl_context=gateway.pki.station_context()) as cp:
        await cp.call(call16.BootNotification(charge_point_vendor="v", charge_point_model="m"))
        start = await cp.call(call16.StartTransaction(connector_id=1, id_tag="X", meter_start=0,
                                                      timestamp="2026-01-01T10:00:00Z"))
    async with station(gateway.url, "CPANY", "1.6", password=PASSWORDS["CPANY"],
                       ssl_context=gateway.pki.station_context()) as other:
        await other.call(call16.BootNotification(charge_point_vendor="v", charge_point_model="m"))
        await other.call(call16.StopTransaction(meter_stop=5, timestamp="2026-01-01T11:00:00Z",
                                                transaction_id=start.transaction_id))
    first, orphan = rows(gateway)
    assert first["state"] == "active" and orphan["station"] == "CPANY" and orphan["state"] == "orphan"


async def test_201_transaction_events(gateway: Csms) -> None:
    await gateway.central.tokens.add("CARD201")
    async with station(gateway.url, "CP201", "2.0.1", password=PASSWORDS["CP201"],
                       ssl_context=gateway.pki.station_context()) as cp:
        await cp.call(call201.BootNotification(charging_station={"model": "m", "vendor_name": "v"}, reason="PowerUp"))

        def event(kind: str, seq: int, energy: float, **extra: Any) -> Any:
            return call201.TransactionEvent(
                event_type=kind, timestamp=f"2026-01-01T10:{seq:02d}:00Z", trigger_reason="MeterValuePeriodic",
                seq_no=seq, transaction_info={"transaction_id": "TX-1", **extra.pop("info", {})},
                evse={"id": 1, "connector_id": 1},
                meter_value=[{"timestamp": f"2026-01-01T10:{seq:02d}:00Z", "sampled_value": [
                    {"value": energy, "measurand": "Energy.Active.Import.Register"}]}], **extra)

        started = await cp.call(event("Started", 0, 2000, id_token={"id_token": "card201", "type": "ISO14443"},
                                      info={"charging_state": "Charging"}))
        assert started.id_token_info["status"] == "Accepted"
        assert gateway.gw.states.get("charger.cp201").value == "charging"
        await cp.call(event("Updated", 1, 3000))
        await cp.call(event("Updated", 1, 3000))  # duplicate
        await cp.call(event("Ended", 2, 6500, info={"stopped_reason": "EVDisconnected"}))
        await cp.call(event("Ended", 2, 6500, info={"stopped_reason": "EVDisconnected"}))  # resend
        # an Ended for a transaction we never saw starting
        await cp.call(call201.TransactionEvent(
            event_type="Ended", timestamp="2026-01-01T12:00:00Z", trigger_reason="EVDeparted", seq_no=9,
            transaction_info={"transaction_id": "LOST-7", "stopped_reason": "Local"}))
    tx, lost = rows(gateway)
    assert tx["state"] == "completed" and tx["energy_wh"] == 4500 and tx["stop_reason"] == "EVDisconnected"
    assert tx["tx_key"] == "TX-1" and tx["evse"] == 1 and tx["auth_status"] == "accepted"
    assert lost["state"] == "orphan" and lost["tx_key"] == "LOST-7"
