"""States up, commands down, with real stations of both versions: the charger capability contract."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from ocpp.v16 import call as call16
from ocpp.v201 import call as call201

from gateway.context import Context, Role
from gateway.errors import ServiceValidationError, Unauthorized
from tests.peers.ocpp_station import Station16, Station201, station
from tests.plugins.ocpp.conftest import PASSWORDS, Csms

pytestmark = pytest.mark.peer

OPERATOR = Context(origin="web", principal="op", role=Role.OPERATOR)
ADMIN = Context(origin="web", principal="admin", role=Role.ADMIN)
VERSION = {"CP16": "1.6", "CP201": "2.0.1", "CPANY": "1.6", "CPW": "1.6"}


async def booted(gateway: Csms, identity: str) -> Any:
    """A connected, accepted station (context manager)."""
    return station(gateway.url, identity, VERSION[identity], password=PASSWORDS[identity],
                   ssl_context=gateway.pki.station_context())


async def boot(cp: Station16 | Station201) -> None:
    if isinstance(cp, Station16):
        assert (await cp.call(call16.BootNotification(charge_point_vendor="ACME", charge_point_model="W"))).status == (
            "Accepted")
    else:
        answer = await cp.call(call201.BootNotification(charging_station={"model": "W", "vendor_name": "ACME"},
                                                        reason="PowerUp"))
        assert answer.status == "Accepted"


async def settle(gateway: Csms) -> None:
    """Let the central system's follow-up tasks (TriggerMessage, rate-unit query) finish."""
    await asyncio.sleep(0.05)


def state(gateway: Csms, entity: str) -> Any:
    found = gateway.gw.states.get(entity)
    assert found is not None, entity
    return found


async def test_configured_stations_published_before_they_connect(gateway: Csms) -> None:
    s = state(gateway, "charger.cpany")
    assert s.value == "unavailable"
    assert s.attributes == {"phases": 1, "min_current_a": 6.0, "max_current_a": 32.0, "vendor": None,
                            "model": None, "firmware": None, "connected": False, "limit_a": None,
                            "session_energy_wh": None}
    assert gateway.gw.states.owner("charger.cpany") == "ocpp"


async def test_meter_values_16_become_states(gateway: Csms) -> None:
    async with await booted(gateway, "CP16") as cp:
        await boot(cp)
        await cp.call(call16.MeterValues(connector_id=1, meter_value=[{
            "timestamp": "2026-01-01T10:00:00Z", "sampled_value": [
                {"value": "12345", "measurand": "Energy.Active.Import.Register", "unit": "Wh"},
                {"value": "7.4", "measurand": "Power.Active.Import", "unit": "kW"},
                {"value": "10.5", "measurand": "Current.Import", "unit": "A", "phase": "L1"},
                {"value": "10.4", "measurand": "Current.Import", "unit": "A", "phase": "L2"},
                {"value": "10.6", "measurand": "Current.Import", "unit": "A", "phase": "L3"},
                {"value": "230.1", "measurand": "Voltage", "unit": "V", "phase": "L1-N"},
                {"value": "81", "measurand": "SoC", "unit": "Percent", "location": "EV"},
            ]}]))
        assert state(gateway, "sensor.cp16_power").value == 7400 and state(gateway, "sensor.cp16_power").unit == "W"
        assert state(gateway, "sensor.cp16_energy").value == 12345
        assert [state(gateway, f"sensor.cp16_current_l{i}").value for i in (1, 2, 3)] == [10.5, 10.4, 10.6]
        assert state(gateway, "sensor.cp16_voltage_l1").value == 230.1
        assert state(gateway, "sensor.cp16_soc").value == 81 and state(gateway, "sensor.cp16_soc").unit == "%"


async def test_meter_values_201_become_the_same_states(gateway: Csms) -> None:
    async with await booted(gateway, "CP201") as cp:
        await boot(cp)
        await cp.call(call201.MeterValues(evse_id=1, meter_value=[{
            "timestamp": "2026-01-01T10:00:00Z", "sampled_value": [
                {"value": 12.345, "measurand": "Energy.Active.Import.Register", "unit_of_measure": {"unit": "kWh"}},
                {"value": 7400, "measurand": "Power.Active.Import"},
                {"value": 10.5, "measurand": "Current.Import", "phase": "L1"},
            ]}]))
        assert state(gateway, "sensor.cp201_power").value == 7400
        assert state(gateway, "sensor.cp201_energy").value == 12345
        assert state(gateway, "sensor.cp201_current_l1").value == 10.5


@pytest.mark.parametrize("identity", ["CP16", "CP201"])
async def test_set_current_limit_reaches_the_station(gateway: Csms, identity: str) -> None:
    async with await booted(gateway, identity) as cp:
        await boot(cp)
        await settle(gateway)
        result = await gateway.gw.services.call("charger", "set_current_limit",
                                                {"charger": identity.lower(), "limit_a": 13.25}, OPERATOR)
        assert result == {"accepted": True, "status": "Accepted", "limit_a": 13.2}
        got = await cp.wait_for("SetChargingProfile")
        if identity == "CP16":
            profile = got["cs_charging_profiles"]
            assert got["connector_id"] == 0 and profile["charging_profile_purpose"] == "TxDefaultProfile"
            schedule = profile["charging_schedule"]
        else:
            profile = got["charging_profile"]
            assert got["evse_id"] == 0 and profile["charging_profile_purpose"] == "TxDefaultProfile"
            schedule = profile["charging_schedule"][0]
        assert schedule["charging_rate_unit"] == "A"
        assert float(schedule["charging_schedule_period"][0]["limit"]) == 13.2
        assert schedule["charging_schedule_period"][0]["number_phases"] == 3
        assert state(gateway, f"charger.{identity.lower()}").attributes["limit_a"] == 13.2


async def test_rejected_limit_is_reported(gateway: Csms) -> None:
    async with await booted(gateway, "CP16") as cp:
        await boot(cp)
        cp.answers["SetChargingProfile"] = "Rejected"
        result = await gateway.gw.services.call("charger", "set_current_limit",
                                                {"charger": "cp16", "limit_a": 10}, OPERATOR)
        assert result["accepted"] is False and result["status"] == "Rejected"
        assert state(gateway, "charger.cp16").attributes["limit_a"] is None


async def test_watt_only_station_gets_watts(gateway: Csms) -> None:
    async with await booted(gateway, "CPW") as cp:
        assert isinstance(cp, Station16)
        cp.rate_units = "Power"  # ChargingScheduleAllowedChargingRateUnit
        await boot(cp)
        await settle(gateway)
        result = await gateway.gw.services.call("charger", "set_current_limit",
                                                {"charger": "cpw", "limit_a": 10}, OPERATOR)
        assert result["accepted"]
        schedule = (await cp.wait_for("SetChargingProfile"))["cs_charging_profiles"]["charging_schedule"]
        assert schedule["charging_rate_unit"] == "W"
        assert float(schedule["charging_schedule_period"][0]["limit"]) == 10 * 230 * 3


async def test_limits_are_clamped_to_the_station(gateway: Csms) -> None:
    async with await booted(gateway, "CPANY") as cp:
        await boot(cp)
        high = await gateway.gw.services.call("charger", "set_current_limit", {"charger": "cpany", "limit_a": 100})
        low = await gateway.gw.services.call("charger", "set_current_limit", {"charger": "cpany", "limit_a": 4})
        assert (high["limit_a"], low["limit_a"]) == (32.0, 0.0)  # below the 6 A minimum: pause, never 4 A
        limits = [float(p["cs_charging_profiles"]["charging_schedule"]["charging_schedule_period"][0]["limit"])
                  for p in cp.got("SetChargingProfile")]
        assert limits == [32.0, 0.0]
        period = cp.got("SetChargingProfile")[0]["cs_charging_profiles"]["charging_schedule"][
            "charging_schedule_period"][0]
        assert period["number_phases"] == 1


async def test_offline_charger_answers_offline(gateway: Csms) -> None:
    result = await gateway.gw.services.call("charger", "set_current_limit", {"charger": "cp16", "limit_a": 10})
    assert result == {"accepted": False, "status": "Offline", "limit_a": 10.0}
    assert await gateway.gw.services.call("charger", "stop", {"charger": "cp16"}) == {
        "accepted": False, "status": "NoTransaction"}
    with pytest.raises(ServiceValidationError):
        await gateway.gw.services.call("charger", "set_current_limit", {"charger": "nope", "limit_a": 10})


@pytest.mark.parametrize("identity", ["CP16", "CP201"])
async def test_start_stop_reset_unlock(gateway: Csms, identity: str) -> None:
    charger = identity.lower()
    async with await booted(gateway, identity) as cp:
        await boot(cp)
        started = await gateway.gw.services.call("charger", "start", {"charger": charger}, OPERATOR)
        assert started == {"accepted": True, "status": "Accepted"}
        action = "RemoteStartTransaction" if identity == "CP16" else "RequestStartTransaction"
        got = await cp.wait_for(action)
        token = got["id_tag"] if identity == "CP16" else got["id_token"]["id_token"]
        assert token.startswith("AG")  # a one-time token, usable once by this station
        soft = await gateway.gw.services.call("charger", "reset", {"charger": charger}, OPERATOR)
        assert soft["accepted"]
        assert (await cp.wait_for("Reset"))["type"] == ("Soft" if identity == "CP16" else "OnIdle")
        with pytest.raises(Unauthorized):
            await gateway.gw.services.call("charger", "reset", {"charger": charger, "type": "hard"}, OPERATOR)
        assert (await gateway.gw.services.call("charger", "reset", {"charger": charger, "type": "hard"},
                                               ADMIN))["accepted"]
        assert [r.data["type"] for r in await gateway.gw.audit.list(event_prefix="ocpp.reset")] == ["soft", "hard"]
        unlocked = await gateway.gw.services.call("charger", "unlock", {"charger": charger}, OPERATOR)
        assert unlocked == {"accepted": True, "status": "Unlocked"}


async def test_remote_start_token_is_accepted_once(gateway: Csms) -> None:
    async with await booted(gateway, "CP16") as cp:
        await boot(cp)
        await gateway.gw.services.call("charger", "start", {"charger": "cp16"}, OPERATOR)
        token = (await cp.wait_for("RemoteStartTransaction"))["id_tag"]
        assert (await cp.call(call16.Authorize(id_tag=token))).id_tag_info["status"] == "Accepted"
        start = await cp.call(call16.StartTransaction(connector_id=1, id_tag=token, meter_start=0,
                                                      timestamp="2026-01-01T10:00:00Z"))
        assert start.id_tag_info["status"] == "Accepted"
        assert (await cp.call(call16.Authorize(id_tag=token))).id_tag_info["status"] == "Invalid"  # used up
        stop = await gateway.gw.services.call("charger", "stop", {"charger": "cp16"}, OPERATOR)
        assert stop["accepted"]
        assert (await cp.wait_for("RemoteStopTransaction"))["transaction_id"] == start.transaction_id


async def test_id_tokens_accepted_revoked_at_once_and_unknown(gateway: Csms) -> None:
    tokens = gateway.central.tokens
    await tokens.add("04A1B2C3", label="Anna")
    async with await booted(gateway, "CP16") as cp:
        await boot(cp)
        assert (await cp.call(call16.Authorize(id_tag="04a1b2c3"))).id_tag_info["status"] == "Accepted"
        await gateway.gw.services.call("idtoken", "revoke", {"token": "04A1B2C3"}, ADMIN)
        assert (await cp.call(call16.Authorize(id_tag="04A1B2C3"))).id_tag_info["status"] == "Blocked"
        start = await cp.call(call16.StartTransaction(connector_id=1, id_tag="04A1B2C3", meter_start=0,
                                                      timestamp="2026-01-01T10:00:00Z"))
        assert start.id_tag_info["status"] == "Blocked"  # recorded, but the station must not deliver energy
        assert (await cp.call(call16.Authorize(id_tag="UNKNOWN1"))).id_tag_info["status"] == "Invalid"
        assert (await cp.call(call16.Authorize(id_tag="VID:0123456789AB"))).id_tag_info["status"] == "Invalid"
    async with await booted(gateway, "CP201") as cp2:
        await boot(cp2)
        await tokens.add("CARD2")
        answer = await cp2.call(call201.Authorize(id_token={"id_token": "card2", "type": "ISO14443"}))
        assert answer.id_token_info["status"] == "Accepted"
        answer = await cp2.call(call201.Authorize(id_token={"id_token": "AABBCCDDEEFF", "type": "MacAddress"}))
        assert answer.id_token_info["status"] == "Invalid"


async def test_ocpp_configuration_services(gateway: Csms) -> None:
    async with await booted(gateway, "CP16") as cp:
        await boot(cp)
        ok = await gateway.gw.services.call("ocpp", "change_configuration",
                                            {"charger": "cp16", "key": "HeartbeatInterval", "value": 120}, ADMIN)
        assert ok == {"accepted": True, "status": "Accepted"}
        assert (await cp.wait_for("ChangeConfiguration")) == {"key": "HeartbeatInterval", "value": "120"}
        with pytest.raises(ServiceValidationError, match="secret"):
            await gateway.gw.services.call("ocpp", "change_configuration",
                                           {"charger": "cp16", "key": "AuthorizationKey", "value": "00" * 16}, ADMIN)
        with pytest.raises(ServiceValidationError, match="profile"):  # policy: OCPP-011
            await gateway.gw.services.call("ocpp", "change_configuration",
                                           {"charger": "cp16", "key": "SecurityProfile", "value": "1"}, ADMIN)
        with pytest.raises(Unauthorized):
            await gateway.gw.services.call("ocpp", "change_configuration",
                                           {"charger": "cp16", "key": "HeartbeatInterval", "value": "1"}, OPERATOR)
        config = await gateway.gw.services.call("ocpp", "get_configuration", {"charger": "cp16"}, ADMIN)
        keys = {k["key"]: k for k in config["configuration"]}
        assert "value" not in keys["AuthorizationKey"] and keys["HeartbeatInterval"]["value"] == "300"
        with pytest.raises(ServiceValidationError, match="OCPP 1.6"):
            await gateway.gw.services.call("ocpp", "get_variables", {
                "charger": "cp16", "variables": [{"component": "X", "variable": "Y"}]}, ADMIN)
        trig = await gateway.gw.services.call("ocpp", "trigger_message",
                                              {"charger": "cp16", "message": "MeterValues", "connector": 1}, ADMIN)
        assert trig["accepted"]
        cleared = await gateway.gw.services.call("ocpp", "clear_charging_profile",
                                                 {"charger": "cp16", "purpose": "tx_default"}, ADMIN)
        assert cleared["accepted"]
        assert (await cp.wait_for("ClearChargingProfile"))["charging_profile_purpose"] == "TxDefaultProfile"


async def test_ocpp_variables_services(gateway: Csms) -> None:
    async with await booted(gateway, "CP201") as cp:
        await boot(cp)
        result = await gateway.gw.services.call("ocpp", "set_variables", {"charger": "cp201", "variables": [
            {"component": "OCPPCommCtrlr", "variable": "HeartbeatInterval", "value": 120}]}, ADMIN)
        assert result["results"][0]["attribute_status"] == "Accepted"
        with pytest.raises(ServiceValidationError, match="secret"):
            await gateway.gw.services.call("ocpp", "set_variables", {"charger": "cp201", "variables": [
                {"component": "SecurityCtrlr", "variable": "BasicAuthPassword", "value": "x" * 20}]}, ADMIN)
        with pytest.raises(ServiceValidationError, match="profile"):
            await gateway.gw.services.call("ocpp", "set_variables", {"charger": "cp201", "variables": [
                {"component": "SecurityCtrlr", "variable": "SecurityProfile", "value": 1}]}, ADMIN)
        got = await gateway.gw.services.call("ocpp", "get_variables", {"charger": "cp201", "variables": [
            {"component": "SmartChargingCtrlr", "variable": "RateUnit"}]}, ADMIN)
        assert got["results"][0]["attribute_value"] == "A"


async def test_security_event_notification_is_audited_and_fired(gateway: Csms) -> None:
    events: list[Any] = []
    gateway.gw.bus.subscribe("ocpp_security_event", events.append)
    async with await booted(gateway, "CP201") as cp:
        await boot(cp)
        await cp.call(call201.SecurityEventNotification(type="TamperDetectionActivated",
                                                        timestamp="2026-01-01T10:00:00Z", tech_info="lid open"))
        records = await gateway.gw.audit.list(event_prefix="ocpp.station_security_event")
        assert records[-1].data["type"] == "TamperDetectionActivated" and records[-1].data["station"] == "CP201"
        assert events and events[-1].data["tech_info"] == "lid open"


async def test_both_versions_offer_the_same_entities(gateway: Csms) -> None:
    for identity in ("CP16", "CP201"):
        async with await booted(gateway, identity) as cp:
            await boot(cp)
    a, b = state(gateway, "charger.cp16"), state(gateway, "charger.cp201")
    assert set(a.attributes) == set(b.attributes)
