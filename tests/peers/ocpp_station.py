"""A real OCPP charging station for tests: the ``ocpp`` library's ChargePoint classes over ``websockets``.

The station side validates everything the central system sends it against the library's JSON schemas (the
library's default), so a test that passes also proves our requests and answers are schema-valid. Handlers
for the calls a central system makes record what arrived (``received``) and answer with configurable
statuses (``answers``), so tests assert on what the station actually received.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

from ocpp.routing import on
from ocpp.v16 import ChargePoint as ChargePoint16
from ocpp.v16 import call_result as result16
from ocpp.v16.enums import Action as Action16
from ocpp.v201 import ChargePoint as ChargePoint201
from ocpp.v201 import call_result as result201
from ocpp.v201.enums import Action as Action201
from websockets.asyncio.client import ClientConnection, connect


class _Recorder:
    def _init_recorder(self) -> None:
        self.received: list[tuple[str, dict[str, Any]]] = []
        self.answers: dict[str, str] = {}
        self.rate_units = "Current"
        self._events: dict[str, asyncio.Event] = defaultdict(asyncio.Event)

    def _record(self, action: str, payload: dict[str, Any]) -> None:
        self.received.append((action, payload))
        self._events[action].set()

    async def wait_for(self, action: str, within_s: float = 5.0) -> dict[str, Any]:
        """The newest ``action`` the station received, waiting for it if none came yet."""
        async with asyncio.timeout(within_s):
            await self._events[action].wait()
        return [p for a, p in self.received if a == action][-1]

    def got(self, action: str) -> list[dict[str, Any]]:
        return [p for a, p in self.received if a == action]


class Station16(_Recorder, ChargePoint16):  # type: ignore[misc]
    def __init__(self, identity: str, connection: Any) -> None:
        ChargePoint16.__init__(self, identity, connection, response_timeout=5)
        self._init_recorder()

    @on(Action16.set_charging_profile)
    def on_set_charging_profile(self, **kw: Any) -> Any:
        self._record("SetChargingProfile", kw)
        return result16.SetChargingProfile(status=self.answers.get("SetChargingProfile", "Accepted"))

    @on(Action16.remote_start_transaction)
    def on_remote_start(self, **kw: Any) -> Any:
        self._record("RemoteStartTransaction", kw)
        return result16.RemoteStartTransaction(status=self.answers.get("RemoteStartTransaction", "Accepted"))

    @on(Action16.remote_stop_transaction)
    def on_remote_stop(self, **kw: Any) -> Any:
        self._record("RemoteStopTransaction", kw)
        return result16.RemoteStopTransaction(status="Accepted")

    @on(Action16.reset)
    def on_reset(self, **kw: Any) -> Any:
        self._record("Reset", kw)
        return result16.Reset(status="Accepted")

    @on(Action16.unlock_connector)
    def on_unlock(self, **kw: Any) -> Any:
        self._record("UnlockConnector", kw)
        return result16.UnlockConnector(status="Unlocked")

    @on(Action16.trigger_message)
    def on_trigger(self, **kw: Any) -> Any:
        self._record("TriggerMessage", kw)
        return result16.TriggerMessage(status=self.answers.get("TriggerMessage", "Accepted"))

    @on(Action16.get_configuration)
    def on_get_configuration(self, **kw: Any) -> Any:
        self._record("GetConfiguration", kw)
        keys = [{"key": "ChargingScheduleAllowedChargingRateUnit", "readonly": True, "value": self.rate_units},
                {"key": "AuthorizationKey", "readonly": False, "value": "must-never-be-shown"},
                {"key": "HeartbeatInterval", "readonly": False, "value": "300"}]
        wanted = kw.get("key")
        return result16.GetConfiguration(configuration_key=[k for k in keys if not wanted or k["key"] in wanted])

    @on(Action16.change_configuration)
    def on_change_configuration(self, **kw: Any) -> Any:
        self._record("ChangeConfiguration", kw)
        return result16.ChangeConfiguration(status="Accepted")

    @on(Action16.clear_charging_profile)
    def on_clear_charging_profile(self, **kw: Any) -> Any:
        self._record("ClearChargingProfile", kw)
        return result16.ClearChargingProfile(status="Accepted")


class Station201(_Recorder, ChargePoint201):  # type: ignore[misc]
    def __init__(self, identity: str, connection: Any) -> None:
        ChargePoint201.__init__(self, identity, connection, response_timeout=5)
        self._init_recorder()
        self.rate_units = "A"

    @on(Action201.set_charging_profile)
    def on_set_charging_profile(self, **kw: Any) -> Any:
        self._record("SetChargingProfile", kw)
        return result201.SetChargingProfile(status=self.answers.get("SetChargingProfile", "Accepted"))

    @on(Action201.request_start_transaction)
    def on_request_start(self, **kw: Any) -> Any:
        self._record("RequestStartTransaction", kw)
        return result201.RequestStartTransaction(status="Accepted")

    @on(Action201.request_stop_transaction)
    def on_request_stop(self, **kw: Any) -> Any:
        self._record("RequestStopTransaction", kw)
        return result201.RequestStopTransaction(status="Accepted")

    @on(Action201.reset)
    def on_reset(self, **kw: Any) -> Any:
        self._record("Reset", kw)
        return result201.Reset(status="Accepted")

    @on(Action201.unlock_connector)
    def on_unlock(self, **kw: Any) -> Any:
        self._record("UnlockConnector", kw)
        return result201.UnlockConnector(status="Unlocked")

    @on(Action201.trigger_message)
    def on_trigger(self, **kw: Any) -> Any:
        self._record("TriggerMessage", kw)
        return result201.TriggerMessage(status=self.answers.get("TriggerMessage", "Accepted"))

    @on(Action201.get_variables)
    def on_get_variables(self, **kw: Any) -> Any:
        self._record("GetVariables", kw)
        results = []
        for item in kw["get_variable_data"]:
            value = self.rate_units if item["variable"]["name"] == "RateUnit" else "x"
            results.append({"attribute_status": "Accepted", "component": item["component"],
                            "variable": item["variable"], "attribute_value": value})
        return result201.GetVariables(get_variable_result=results)

    @on(Action201.set_variables)
    def on_set_variables(self, **kw: Any) -> Any:
        self._record("SetVariables", kw)
        return result201.SetVariables(set_variable_result=[
            {"attribute_status": "Accepted", "component": i["component"], "variable": i["variable"]}
            for i in kw["set_variable_data"]])

    @on(Action201.clear_charging_profile)
    def on_clear_charging_profile(self, **kw: Any) -> Any:
        self._record("ClearChargingProfile", kw)
        return result201.ClearChargingProfile(status="Accepted")


def basic_auth(identity: str, password: bytes | str) -> dict[str, str]:
    raw = password.encode() if isinstance(password, str) else password
    return {"Authorization": "Basic " + base64.b64encode(identity.encode() + b":" + raw).decode()}


async def open_ws(url: str, *, subprotocols: list[str], password: bytes | str | None = None,
                  identity: str | None = None, ssl_context: ssl.SSLContext | None = None,
                  headers: dict[str, str] | None = None, **kwargs: Any) -> ClientConnection:
    extra = dict(headers or {})
    if password is not None:
        assert identity is not None
        extra.update(basic_auth(identity, password))
    return await connect(url, subprotocols=subprotocols,  # type: ignore[arg-type]
                         additional_headers=extra, ssl=ssl_context, open_timeout=5, close_timeout=2,
                         compression=None, **kwargs)


@contextlib.asynccontextmanager
async def station(url: str, identity: str, version: str, *, password: bytes | str | None = None,
                  ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[Station16 | Station201]:
    """A connected station with its receive loop running; closed and awaited on exit."""
    subprotocol = "ocpp1.6" if version == "1.6" else "ocpp2.0.1"
    ws = await open_ws(f"{url}/{identity}", subprotocols=[subprotocol], password=password, identity=identity,
                       ssl_context=ssl_context)
    cp: Station16 | Station201 = (Station16 if version == "1.6" else Station201)(identity, ws)
    task = asyncio.create_task(cp.start())
    try:
        yield cp
    finally:
        await ws.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
