"""Simulated charging stations: the ``ocpp`` library's ChargePoint over ``websockets`` with TLS, on loopback.

``CP1`` speaks OCPP 1.6J with security profile 2 (Basic Auth over TLS), ``CP2`` OCPP 2.0.1 with profile 3 (a
client certificate issued by the gateway's local CA). Each boots, authorises its badge, starts a transaction
and sends MeterValues every ``METER_S`` seconds. The car behind it draws what the station was last allowed by
SetChargingProfile (a car takes slightly less than offered), its full maximum before the first limit; a limit
of 0 pauses it (status SuspendedEVSE) and a positive one resumes it (Charging). Every limit received is
printed as ``demo: <id> limit <A> A`` so that a test can read what the station actually got.

Limits arrive in A (both stations say they take A: 1.6 ``ChargingScheduleAllowedChargingRateUnit``, 2.0.1
``SmartChargingCtrlr.RateUnit``); a limit in W is converted with the nominal voltage.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from ocpp.routing import on
from ocpp.v16 import ChargePoint as ChargePoint16
from ocpp.v16 import call as call16
from ocpp.v16 import call_result as result16
from ocpp.v16.enums import Action as Action16
from ocpp.v201 import ChargePoint as ChargePoint201
from ocpp.v201 import call as call201
from ocpp.v201 import call_result as result201
from ocpp.v201.enums import Action as Action201
from websockets.asyncio.client import ClientConnection, connect

from demo import curve

_LOGGER = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])


def handles(action: str) -> Callable[[F], F]:
    """The library's ``@on`` (untyped), typed; the station keeps the library's schema validation."""
    return cast(Callable[[F], F], on(action))

METER_S = 3.0  # MeterValues period (real seconds): numbers visibly move, the log stays readable
RECONNECT_S = 2.0  # a station that lost its connection dials again after this long
RESPONSE_TIMEOUT_S = 10
CAR_ACCEPTS = 0.96  # an on-board charger draws a little under the offered current
VOLTAGE = curve.VOLTAGE


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(slots=True, kw_only=True)
class Car:
    """The car on the station: ``phases`` 1 or 3; ``phase`` is the grid phase (0-2) of a single-phase car."""

    phases: int
    max_a: float
    phase: int = 0
    energy_wh: float = 0.0


@dataclass(slots=True, kw_only=True)
class SimStation:
    identity: str
    version: str  # "1.6" or "2.0.1"
    url: str
    ssl_context: ssl.SSLContext
    car: Car
    id_tag: str
    password: str | None = None
    say: Callable[[str], None] = print
    limit_a: float | None = None  # None: no limit received yet
    limits: list[float] = field(default_factory=list)
    connected: bool = False
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    # -- the car -----------------------------------------------------------------------------------------

    def current_a(self) -> float:
        """What the car draws per phase now."""
        offered = self.car.max_a if self.limit_a is None else min(self.limit_a, self.car.max_a)
        return round(offered * CAR_ACCEPTS, 2) if self.connected and offered > 0 else 0.0

    def draw_a(self) -> tuple[float, float, float]:
        """Per grid phase, for the meter."""
        amps = self.current_a()
        if self.car.phases == 3:
            return amps, amps, amps
        out = [0.0, 0.0, 0.0]
        out[self.car.phase] = amps
        return out[0], out[1], out[2]

    def charging(self) -> bool:
        return self.limit_a is None or self.limit_a > 0

    def apply_limit(self, limit: float, unit: str) -> None:
        amps = limit / (VOLTAGE * self.car.phases) if unit == "W" else limit
        self.limit_a = round(amps, 1)
        self.limits.append(self.limit_a)
        self.say(f"demo: {self.identity} limit {self.limit_a:.1f} A")
        self._changed.set()

    # -- OCPP --------------------------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        if self.password is None:
            return {}
        raw = f"{self.identity}:{self.password}".encode()
        return {"Authorization": "Basic " + base64.b64encode(raw).decode()}

    async def run(self) -> None:
        """Dial, charge, and dial again after a lost connection, until cancelled."""
        subprotocol = "ocpp1.6" if self.version == "1.6" else "ocpp2.0.1"
        while True:
            try:
                async with connect(f"{self.url}/{self.identity}", subprotocols=[subprotocol],  # type: ignore[list-item]
                                   additional_headers=self._headers(), ssl=self.ssl_context, open_timeout=10,
                                   close_timeout=2, compression=None) as ws:
                    await self._session(ws)
            except asyncio.CancelledError:
                raise
            except Exception as err:  # the demo keeps going; the gateway's side logs the reason
                self.say(f"demo: {self.identity} connection lost ({type(err).__name__}: {err}); dialling again")
            finally:
                self.connected = False
            await asyncio.sleep(RECONNECT_S)

    async def _session(self, ws: ClientConnection) -> None:
        cp: Any = (_Station16 if self.version == "1.6" else _Station201)(self, ws)
        reader = asyncio.create_task(cp.start())
        try:
            self.connected = True
            talk = self._talk16(cp) if self.version == "1.6" else self._talk201(cp)
            done, _ = await asyncio.wait({reader, asyncio.ensure_future(talk)},
                                         return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # re-raise what ended the session
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader

    async def _tick(self) -> None:
        """Wait for the next meter period (or a new limit), and let the energy register run."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), METER_S)
        self._changed.clear()

    def _energy(self, period_s: float) -> float:
        # Simulated time: a session gains as much energy as the accelerated day says.
        self.car.energy_wh += self.current_a() * VOLTAGE * self.car.phases * period_s * curve.SPEEDUP / 3600
        return round(self.car.energy_wh, 1)

    def _phases(self) -> list[tuple[str, float]]:
        names = ("L1", "L2", "L3")
        return [(names[i], a) for i, a in enumerate(self.draw_a()) if self.car.phases == 3 or i == self.car.phase]

    async def _talk16(self, cp: Any) -> None:
        boot = await cp.call(call16.BootNotification(charge_point_vendor="Ampgate demo", charge_point_model="Sim16",
                                                     firmware_version="1.0.0"))
        if boot.status != "Accepted":
            raise ConnectionError(f"boot {boot.status}")
        await cp.call(call16.StatusNotification(connector_id=1, error_code="NoError", status="Preparing"))
        await cp.call(call16.Authorize(id_tag=self.id_tag))
        start = await cp.call(call16.StartTransaction(connector_id=1, id_tag=self.id_tag,
                                                      meter_start=int(self.car.energy_wh), timestamp=_now()))
        transaction = start.transaction_id
        status = ""
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            wanted = "Charging" if self.charging() else "SuspendedEVSE"
            if wanted != status:
                await cp.call(call16.StatusNotification(connector_id=1, error_code="NoError", status=wanted))
                status = wanted
            now = loop.time()
            energy = self._energy(now - last)
            last = now
            power = sum(a for _, a in self._phases()) * VOLTAGE
            sampled = [{"value": f"{energy:.1f}", "measurand": "Energy.Active.Import.Register", "unit": "Wh"},
                       {"value": f"{power:.0f}", "measurand": "Power.Active.Import", "unit": "W"}]
            sampled += [{"value": f"{a:.2f}", "measurand": "Current.Import", "phase": p, "unit": "A"}
                        for p, a in self._phases()]
            await cp.call(call16.MeterValues(connector_id=1, transaction_id=transaction,
                                             meter_value=[{"timestamp": _now(), "sampled_value": sampled}]))
            await self._tick()

    async def _talk201(self, cp: Any) -> None:
        boot = await cp.call(call201.BootNotification(
            charging_station={"model": "Sim201", "vendor_name": "Ampgate demo", "firmware_version": "1.0.0"},
            reason="PowerUp"))
        if boot.status != "Accepted":
            raise ConnectionError(f"boot {boot.status}")
        await cp.call(call201.StatusNotification(timestamp=_now(), connector_status="Occupied", evse_id=1,
                                                 connector_id=1))
        token = {"id_token": self.id_tag, "type": "ISO14443"}
        await cp.call(call201.Authorize(id_token=token))
        transaction = f"demo-{self.identity}-{int(dt.datetime.now(dt.UTC).timestamp())}"
        seq = 0
        state = "Charging" if self.charging() else "SuspendedEVSE"
        loop = asyncio.get_running_loop()
        last = loop.time()
        await cp.call(call201.TransactionEvent(
            event_type="Started", timestamp=_now(), trigger_reason="Authorized", seq_no=seq,
            transaction_info={"transaction_id": transaction, "charging_state": state}, id_token=token,
            evse={"id": 1, "connector_id": 1}, meter_value=[self._meter201(0.0)]))
        while True:
            await self._tick()
            seq += 1
            now = loop.time()
            meter = self._meter201(now - last)
            last = now
            wanted = "Charging" if self.charging() else "SuspendedEVSE"
            reason = "ChargingStateChanged" if wanted != state else "MeterValuePeriodic"
            state = wanted
            await cp.call(call201.TransactionEvent(
                event_type="Updated", timestamp=_now(), trigger_reason=reason, seq_no=seq,
                transaction_info={"transaction_id": transaction, "charging_state": state}, meter_value=[meter]))

    def _meter201(self, period_s: float) -> dict[str, Any]:
        energy = self._energy(period_s)
        power = sum(a for _, a in self._phases()) * VOLTAGE
        sampled: list[dict[str, Any]] = [
            {"value": energy, "measurand": "Energy.Active.Import.Register", "unit_of_measure": {"unit": "Wh"}},
            {"value": round(power), "measurand": "Power.Active.Import", "unit_of_measure": {"unit": "W"}}]
        sampled += [{"value": a, "measurand": "Current.Import", "phase": p, "unit_of_measure": {"unit": "A"}}
                    for p, a in self._phases()]
        return {"timestamp": _now(), "sampled_value": sampled}


class _Station16(ChargePoint16):  # type: ignore[misc]
    def __init__(self, sim: SimStation, connection: Any) -> None:
        super().__init__(sim.identity, connection, response_timeout=RESPONSE_TIMEOUT_S)
        self.sim = sim

    @handles(Action16.set_charging_profile)
    def on_set_charging_profile(self, **kw: Any) -> Any:
        schedule = kw["cs_charging_profiles"]["charging_schedule"]
        unit = schedule["charging_rate_unit"]
        self.sim.apply_limit(float(schedule["charging_schedule_period"][0]["limit"]), unit)
        return result16.SetChargingProfile(status="Accepted")

    @handles(Action16.get_configuration)
    def on_get_configuration(self, **kw: Any) -> Any:
        keys = [{"key": "ChargingScheduleAllowedChargingRateUnit", "readonly": True, "value": "Current"},
                {"key": "MeterValueSampleInterval", "readonly": False, "value": str(int(METER_S))}]
        wanted = kw.get("key")
        return result16.GetConfiguration(configuration_key=[k for k in keys if not wanted or k["key"] in wanted],
                                         unknown_key=[k for k in wanted or [] if k not in {x["key"] for x in keys}])

    @handles(Action16.clear_charging_profile)
    def on_clear_charging_profile(self, **kw: Any) -> Any:
        return result16.ClearChargingProfile(status="Accepted")

    @handles(Action16.trigger_message)
    def on_trigger(self, **kw: Any) -> Any:
        return result16.TriggerMessage(status="Rejected")

    @handles(Action16.remote_start_transaction)
    def on_remote_start(self, **kw: Any) -> Any:
        return result16.RemoteStartTransaction(status="Rejected")  # already charging

    @handles(Action16.remote_stop_transaction)
    def on_remote_stop(self, **kw: Any) -> Any:
        return result16.RemoteStopTransaction(status="Rejected")  # the demo car keeps charging


class _Station201(ChargePoint201):  # type: ignore[misc]
    def __init__(self, sim: SimStation, connection: Any) -> None:
        super().__init__(sim.identity, connection, response_timeout=RESPONSE_TIMEOUT_S)
        self.sim = sim

    @handles(Action201.set_charging_profile)
    def on_set_charging_profile(self, **kw: Any) -> Any:
        schedule = kw["charging_profile"]["charging_schedule"][0]
        self.sim.apply_limit(float(schedule["charging_schedule_period"][0]["limit"]), schedule["charging_rate_unit"])
        return result201.SetChargingProfile(status="Accepted")

    @handles(Action201.get_variables)
    def on_get_variables(self, **kw: Any) -> Any:
        results = []
        for item in kw["get_variable_data"]:
            if item["variable"]["name"] == "RateUnit":
                results.append({"attribute_status": "Accepted", "component": item["component"],
                                "variable": item["variable"], "attribute_value": "A"})
            else:
                results.append({"attribute_status": "UnknownVariable", "component": item["component"],
                                "variable": item["variable"]})
        return result201.GetVariables(get_variable_result=results)

    @handles(Action201.clear_charging_profile)
    def on_clear_charging_profile(self, **kw: Any) -> Any:
        return result201.ClearChargingProfile(status="Accepted")

    @handles(Action201.trigger_message)
    def on_trigger(self, **kw: Any) -> Any:
        return result201.TriggerMessage(status="Rejected")

    @handles(Action201.request_start_transaction)
    def on_request_start(self, **kw: Any) -> Any:
        return result201.RequestStartTransaction(status="Rejected")

    @handles(Action201.request_stop_transaction)
    def on_request_stop(self, **kw: Any) -> Any:
        return result201.RequestStopTransaction(status="Rejected")
