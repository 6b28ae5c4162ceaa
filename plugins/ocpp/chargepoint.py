"""The ``ocpp`` library's ChargePoint classes, on the CSMS side, behind our frame gate.

Contract:
- ``ChargePoint16`` / ``ChargePoint201`` subclass the library's classes: the library routes CALLs to the
  ``@on`` handlers (snake_case keyword arguments), serialises our ``call_result`` answers and matches the
  answers to our CALLs. Every incoming frame first passes ``Session.receive`` (frame gate, registration
  gate, error budget), then ``Session.throttle`` (rate limit), then ``codec.validate_call`` (the library's
  JSON schemas, inline, with the spec's error codes). Only then does the library see it.
- Handlers translate the version's payload into the protocol-free calls of ``StationRuntime`` and answer at
  once; anything that needs another round trip to the station runs in a separate task (ocpp.md §5 pitfall 2).
- Commands (``set_limit``, ``remote_start``, ...) build the version's request and return the station's status
  string; a CALLERROR raises ``CommandError`` with its code, a timeout ``CommandTimeout`` ("outcome unknown",
  ocpp.md §5 pitfall 6). Calls always use ``suppress=False`` (pitfall 1).
- The library logs whole frames (id tokens, keys) at INFO: it gets ``_LibraryLog``, which keeps no payload.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import logging
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, TypeVar, cast

from ocpp.exceptions import OCPPError
from ocpp.messages import Call as LibCall
from ocpp.messages import CallError as LibCallError
from ocpp.messages import CallResult as LibCallResult
from ocpp.routing import on
from ocpp.v16 import ChargePoint as LibChargePoint16
from ocpp.v16 import call as call16
from ocpp.v16 import call_result as result16
from ocpp.v16.enums import Action as Action16
from ocpp.v201 import ChargePoint as LibChargePoint201
from ocpp.v201 import call as call201
from ocpp.v201 import call_result as result201
from ocpp.v201.enums import Action as Action201

from plugins.ocpp import codec
from plugins.ocpp.codec import Call, CallResult, ErrorKind, FrameError
from plugins.ocpp.const import (
    MAX_SECURITY_EVENT_TYPE_CHARS,
    MAX_TECH_INFO_CHARS,
    PROFILE_ID,
    PROFILE_STACK_LEVEL,
    RESPONSE_TIMEOUT_S,
    VERSION_16,
    VERSION_201,
)
from plugins.ocpp.measurements import CHARGING_STATE_201, STATUS_16, STATUS_201, parse_meter_values
from plugins.ocpp.session import CLOSE_UNSUPPORTED_DATA, Registration, Session, Trigger

if TYPE_CHECKING:
    from websockets.asyncio.server import ServerConnection

    from plugins.ocpp.station import StationRuntime

_LOGGER = logging.getLogger(__name__)

# 1.6 §7.6 ChargePointErrorCode: the closed enum. Stations send values outside it (lbbrhzn/ocpp #1248:
# "Error"); strict validation would CALLERROR them into a retry loop, so we map them to OtherError and keep
# the original as vendorErrorCode (<= 50 chars) before validating.
ERROR_CODES_16: Final = frozenset({
    "ConnectorLockFailure", "EVCommunicationError", "GroundFailure", "HighTemperature", "InternalError",
    "LocalListConflict", "NoError", "OtherError", "OverCurrentFailure", "PowerMeterFailure", "PowerSwitchFailure",
    "ReaderFailure", "ResetFailure", "UnderVoltage", "OverVoltage", "WeakSignal",
})


F = TypeVar("F", bound=Callable[..., Any])


def handles(action: str) -> Callable[[F], F]:
    """The library's ``@on``, typed, and without the library's own validation: ``codec.validate_call`` has
    checked the payload against the same schemas before the library routes it (with the spec's error codes
    and without echoing the frame back, ocpp.md §5 pitfalls 3 and 4)."""
    return cast(Callable[[F], F], on(action, skip_schema_validation=True))


class CommandError(Exception):
    """The station answered our CALL with a CALLERROR (``code``) or with something we cannot read."""

    def __init__(self, code: str, description: str = "") -> None:
        super().__init__(f"{code}: {description}" if description else code)
        self.code = code


class CommandTimeout(Exception):
    """No answer within the response timeout: the station may or may not have applied the command."""


class _LibraryLog:
    """What the ``ocpp`` library gets as its logger: no frame content ever reaches our logs through it."""

    def __init__(self, identity: str) -> None:
        self.identity = identity

    def info(self, *args: Any, **kwargs: Any) -> None:
        pass  # "receive message <frame>" / "send <frame>": whole payloads, never logged

    def debug(self, *args: Any, **kwargs: Any) -> None:
        pass

    def warning(self, *args: Any, **kwargs: Any) -> None:
        pass  # "Received a CALLError: <frame>": we raise CommandError and log that ourselves

    def error(self, *args: Any, **kwargs: Any) -> None:
        _LOGGER.debug("station %s: late or unexpected answer dropped", self.identity)

    def exception(self, *args: Any, **kwargs: Any) -> None:
        # A handler of ours raised: the library answers InternalError. The traceback is ours to see.
        _LOGGER.error("station %s: handler failed", self.identity, exc_info=True)


def utc_now() -> str:
    """``2026-11-22T10:00:00Z``: UTC with a ``Z`` and no fraction; several stations mis-parse ``+00:00`` or
    microseconds (lbbrhzn/ocpp #512, ocpp.md §2.1)."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _cut(value: Any, limit: int) -> str | None:
    return None if value is None else str(value)[:limit]


class _GateMixin:
    """The frame gate and the command plumbing shared by both versions (see the module contract)."""

    version: str
    session: Session
    runtime: StationRuntime
    connection: ServerConnection
    address: str
    route_map: dict[str, dict[str, Any]]
    _response_queue: asyncio.Queue[Any]
    _connection: ServerConnection

    def _setup(self, runtime: StationRuntime, connection: ServerConnection, address: str, accepted: bool) -> None:
        self.runtime = runtime
        self.connection = connection
        self.address = address
        self.session = Session(identity=runtime.config.identity, version=self.version, accepted=accepted,
                               now=time.monotonic())
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- incoming --------------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Read frames until the connection closes (by the peer, by us, or by the error budget)."""
        async for frame in self.connection:
            if isinstance(frame, bytes):
                # OCPP-J frames are UTF-8 text (1.6 §4.1.1, 2.0.1 Part 4 §4.1.1): close 1003.
                self.session.close(CLOSE_UNSUPPORTED_DATA, "binary frames are not OCPP-J")
                self.runtime.hub.count("binary_frame")
            else:
                await self.route_message(frame)
            if self.session.closing:
                assert self.session.close_code is not None
                await self.connection.close(self.session.close_code, self.session.close_reason)
                break

    async def route_message(self, raw_msg: str) -> None:
        now = time.monotonic()
        try:
            message = self.session.receive(raw_msg, now)
        except FrameError as err:
            await self._refuse(err)
            return
        if message is None:
            return
        if isinstance(message, Call):
            delay = self.session.throttle(now)
            if delay > 0:
                self.runtime.hub.count("throttled")
                await asyncio.sleep(delay)
            await self._dispatch(message)
        elif isinstance(message, CallResult):
            self._response_queue.put_nowait(LibCallResult(message.message_id, message.payload))
        else:
            self._response_queue.put_nowait(
                LibCallError(message.message_id, message.code, message.description, message.details))

    async def _refuse(self, err: FrameError) -> None:
        self.runtime.hub.count(f"frame_{err.kind.value}")
        if self.session.errors == 1 or self.session.closing:
            # One line per connection (and one when we give up on it), not one per bad frame.
            _LOGGER.warning("station %s (%s): refused frame: %s%s", self.runtime.config.identity, self.address,
                            err.description, "; closing: too many protocol errors" if self.session.closing else "")
        if self.session.closing:
            await self.runtime.hub.security_event(self.runtime.config.identity, "too_many_protocol_errors",
                                                  {"address": self.address, "errors": self.session.errors})
        reply = codec.encode_error(err, self.version)
        if reply is not None and not self.session.closing:
            await self.connection.send(reply)

    async def _dispatch(self, call: Call) -> None:
        handlers = self.route_map.get(call.action)
        try:
            # Unknown action: NotImplemented; known but not ours (a CSMS->station message): NotSupported;
            # only then the payload against the schema (OCPP-J 1.6 §4.2.3 table).
            if call.action not in codec.known_actions(self.version):
                raise FrameError(ErrorKind.NOT_IMPLEMENTED, "unknown action", call.message_id)
            if handlers is None or "_on_action" not in handlers:
                raise FrameError(ErrorKind.NOT_SUPPORTED, "action not supported by this central system",
                                 call.message_id)
            call = self._tolerate(call)
            codec.validate_call(call, self.version)
        except FrameError as err:
            self.session.protocol_error(time.monotonic())
            await self._refuse(err)
            return
        try:
            await self._handle_call(LibCall(call.message_id, call.action, call.payload))  # type: ignore[attr-defined]
        except OCPPError:
            # Only reached if the library itself refuses something we let through: answer, keep going.
            reply = codec.encode_call_error(call.message_id, ErrorKind.INTERNAL, "internal error", self.version)
            if reply is not None:
                await self.connection.send(reply)

    def _tolerate(self, call: Call) -> Call:
        """Vendor quirks we accept instead of refusing (each documented where it is handled)."""
        return call

    # -- outgoing --------------------------------------------------------------------------------------------

    async def request(self, payload: Any) -> Any:
        """Send one CALL and return the station's answer (a ``call_result`` dataclass)."""
        message_id = str(uuid.uuid4())
        self.session.expect(message_id)
        try:
            return await self.call(payload, suppress=False, unique_id=message_id)  # type: ignore[attr-defined]
        except TimeoutError:
            raise CommandTimeout(f"no answer within {RESPONSE_TIMEOUT_S:.0f} s") from None
        except OCPPError as err:
            code = getattr(err, "code", "Error")
            raise CommandError(str(code), str(err.description or "")[:100]) from None
        finally:
            self.session.done(message_id)

    def background(self, coro: Any) -> None:
        """Run a follow-up (e.g. a TriggerMessage after a boot) without blocking the receive loop."""
        task: asyncio.Task[Any] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(_log_failure)

    def cancel_background(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    async def close(self, code: int, reason: str) -> None:
        self.session.close(code, reason)
        await self.connection.close(code, reason)

    async def ping(self, within_s: float) -> bool:
        """Is the connection alive? (the duplicate-identity probe, OCPP-007)."""
        try:
            async with asyncio.timeout(within_s):
                await (await self.connection.ping())
        except Exception:  # closed, timed out, or broken: all mean "not alive"
            return False
        return True

    def _after_boot(self, status: str) -> None:
        trigger = {"Accepted": Trigger.BOOT_ACCEPTED, "Pending": Trigger.BOOT_PENDING}.get(
            status, Trigger.BOOT_REJECTED)
        self.session.apply(trigger)
        if self.session.state is Registration.ACCEPTED:
            self.background(self.runtime.after_accepted())


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        _LOGGER.warning("OCPP follow-up task failed: %r", task.exception())


def _ids() -> itertools.count[int]:
    return itertools.count(int(time.time()) % 1_000_000)


class ChargePoint16(_GateMixin, LibChargePoint16):  # type: ignore[misc]
    """An OCPP 1.6J station as seen from the central system."""

    version = VERSION_16

    def __init__(self, runtime: StationRuntime, connection: ServerConnection, address: str, *,
                 accepted: bool) -> None:
        LibChargePoint16.__init__(self, runtime.config.identity, connection, response_timeout=RESPONSE_TIMEOUT_S,
                                  logger=_LibraryLog(runtime.config.identity))
        self._setup(runtime, connection, address, accepted)

    def _tolerate(self, call: Call) -> Call:
        code = call.payload.get("errorCode") if isinstance(call.payload, dict) else None
        # Only an unknown *string* is a vendor quirk to tolerate; any other type is left to the schema check,
        # which answers TypeConstraintViolation (found by the live-connection fuzz: a list crashed the set test).
        if call.action == "StatusNotification" and isinstance(code, str) and code not in ERROR_CODES_16:
            payload = dict(call.payload)
            original = payload.get("errorCode")
            payload["errorCode"] = "OtherError"
            if isinstance(original, str) and not payload.get("vendorErrorCode"):
                payload["vendorErrorCode"] = original[:50]
            self.runtime.hub.count("tolerated_error_code")
            return Call(message_id=call.message_id, action=call.action, payload=payload)
        return call

    # -- station -> central system -----------------------------------------------------------------------

    @handles(Action16.boot_notification)
    async def on_boot_notification(self, charge_point_vendor: str, charge_point_model: str,
                                   **kwargs: Any) -> Any:
        status, interval = await self.runtime.boot(
            vendor=charge_point_vendor, model=charge_point_model,
            serial=kwargs.get("charge_box_serial_number") or kwargs.get("charge_point_serial_number"),
            firmware=kwargs.get("firmware_version"))
        self._after_boot(status)
        return result16.BootNotification(current_time=utc_now(), interval=interval, status=status)

    @handles(Action16.heartbeat)
    def on_heartbeat(self, **kwargs: Any) -> Any:
        self.runtime.heartbeat()
        return result16.Heartbeat(current_time=utc_now())

    @handles(Action16.status_notification)
    def on_status_notification(self, connector_id: int, error_code: str, status: str, **kwargs: Any) -> Any:
        self.runtime.connector_status(connector_id, STATUS_16.get(status, "unavailable"),
                                      None if error_code == "NoError" else error_code)
        return result16.StatusNotification()

    @handles(Action16.authorize)
    async def on_authorize(self, id_tag: str, **kwargs: Any) -> Any:
        status = await self.runtime.authorize(id_tag)
        return result16.Authorize(id_tag_info={"status": _STATUS_16[status]})

    @handles(Action16.start_transaction)
    async def on_start_transaction(self, connector_id: int, id_tag: str, meter_start: int, timestamp: str,
                                   **kwargs: Any) -> Any:
        transaction_id, status = await self.runtime.start_transaction_16(
            connector=connector_id, id_token=id_tag, meter_start_wh=float(meter_start), timestamp=timestamp)
        return result16.StartTransaction(transaction_id=transaction_id, id_tag_info={"status": _STATUS_16[status]})

    @handles(Action16.stop_transaction)
    async def on_stop_transaction(self, meter_stop: int, timestamp: str, transaction_id: int,
                                  **kwargs: Any) -> Any:
        id_tag = kwargs.get("id_tag")
        status = await self.runtime.stop_transaction_16(
            transaction_id=transaction_id, meter_stop_wh=float(meter_stop), timestamp=timestamp,
            reason=kwargs.get("reason"), id_token=id_tag)
        if id_tag is None:
            return result16.StopTransaction()
        return result16.StopTransaction(id_tag_info={"status": _STATUS_16[status]})

    @handles(Action16.meter_values)
    async def on_meter_values(self, connector_id: int, meter_value: list[Any], **kwargs: Any) -> Any:
        readings = parse_meter_values(meter_value, VERSION_16)
        await self.runtime.meter(connector_id, readings, transaction=kwargs.get("transaction_id"))
        return result16.MeterValues()

    @handles(Action16.security_event_notification)
    async def on_security_event_notification(self, type: str, timestamp: str, **kwargs: Any) -> Any:
        await self.runtime.station_security_event(_cut(type, MAX_SECURITY_EVENT_TYPE_CHARS) or "", timestamp,
                                                  _cut(kwargs.get("tech_info"), MAX_TECH_INFO_CHARS))
        return result16.SecurityEventNotification()

    @handles(Action16.data_transfer)
    def on_data_transfer(self, vendor_id: str, **kwargs: Any) -> Any:
        # No vendor extension is configured: the spec's answer (1.6 §4.3) without looking at the data.
        return result16.DataTransfer(status="UnknownVendorId")

    @handles(Action16.firmware_status_notification)
    def on_firmware_status_notification(self, status: str, **kwargs: Any) -> Any:
        self.runtime.note("firmware_status", status)
        return result16.FirmwareStatusNotification()

    @handles(Action16.diagnostics_status_notification)
    def on_diagnostics_status_notification(self, status: str, **kwargs: Any) -> Any:
        return result16.DiagnosticsStatusNotification()

    @handles(Action16.signed_firmware_status_notification)
    def on_signed_firmware_status_notification(self, status: str, **kwargs: Any) -> Any:
        self.runtime.note("firmware_status", status)
        return result16.SignedFirmwareStatusNotification()

    @handles(Action16.log_status_notification)
    def on_log_status_notification(self, status: str, **kwargs: Any) -> Any:
        return result16.LogStatusNotification()

    @handles(Action16.sign_certificate)
    def on_sign_certificate(self, csr: str, **kwargs: Any) -> Any:
        # Certificate renewal over OCPP is not offered yet: stations get certificates from `ampgate certs`.
        return result16.SignCertificate(status="Rejected")

    # -- central system -> station ------------------------------------------------------------------------

    async def set_limit(self, *, limit: float, unit: str, purpose: str, phases: int) -> str:
        purpose_name = "ChargePointMaxProfile" if purpose == "station_max" else "TxDefaultProfile"
        period: dict[str, Any] = {"start_period": 0, "limit": round(limit, 1)}
        if unit == "A":
            period["number_phases"] = phases
        profile = {
            "charging_profile_id": PROFILE_ID, "stack_level": PROFILE_STACK_LEVEL,
            "charging_profile_purpose": purpose_name, "charging_profile_kind": "Absolute",
            "charging_schedule": {"charging_rate_unit": unit, "start_schedule": utc_now(),
                                  "charging_schedule_period": [period]},
        }
        answer = await self.request(call16.SetChargingProfile(connector_id=0, cs_charging_profiles=profile))
        return str(answer.status)

    async def remote_start(self, *, id_token: str, connector: int | None) -> str:
        answer = await self.request(call16.RemoteStartTransaction(id_tag=id_token, connector_id=connector))
        return str(answer.status)

    async def remote_stop(self, *, transaction: str) -> str:
        answer = await self.request(call16.RemoteStopTransaction(transaction_id=int(transaction)))
        return str(answer.status)

    async def reset(self, *, hard: bool) -> str:
        answer = await self.request(call16.Reset(type="Hard" if hard else "Soft"))
        return str(answer.status)

    async def unlock(self, *, connector: int) -> str:
        answer = await self.request(call16.UnlockConnector(connector_id=connector))
        return str(answer.status)

    async def rate_units(self) -> set[str] | None:
        answer = await self.request(call16.GetConfiguration(key=["ChargingScheduleAllowedChargingRateUnit"]))
        for item in answer.configuration_key or []:
            if isinstance(item, dict) and item.get("key") == "ChargingScheduleAllowedChargingRateUnit":
                words = {w.strip() for w in str(item.get("value", "")).split(",")}
                return {u for w, u in (("Current", "A"), ("Power", "W")) if w in words}
        return None

    async def trigger(self, *, message: str, connector: int | None) -> str:
        if message == "BootNotification":
            self.session.triggered(message)
        answer = await self.request(call16.TriggerMessage(requested_message=message, connector_id=connector))
        return str(answer.status)

    async def clear_profile(self, *, profile_id: int | None, purpose: str | None) -> str:
        names = {"tx_default": "TxDefaultProfile", "station_max": "ChargePointMaxProfile", "tx": "TxProfile"}
        answer = await self.request(call16.ClearChargingProfile(
            id=profile_id, charging_profile_purpose=names.get(purpose) if purpose else None))
        return str(answer.status)

    async def change_configuration(self, *, key: str, value: str) -> str:
        answer = await self.request(call16.ChangeConfiguration(key=key, value=value))
        return str(answer.status)

    async def get_configuration(self, *, keys: list[str] | None) -> dict[str, Any]:
        answer = await self.request(call16.GetConfiguration(key=keys or None))
        return {"configuration": list(answer.configuration_key or []), "unknown": list(answer.unknown_key or [])}


_STATUS_16: Final = {"accepted": "Accepted", "blocked": "Blocked", "expired": "Expired", "invalid": "Invalid"}
_STATUS_201: Final = {"accepted": "Accepted", "blocked": "Blocked", "expired": "Expired", "invalid": "Invalid"}


class ChargePoint201(_GateMixin, LibChargePoint201):  # type: ignore[misc]
    """An OCPP 2.0.1 station as seen from the central system."""

    version = VERSION_201

    def __init__(self, runtime: StationRuntime, connection: ServerConnection, address: str, *,
                 accepted: bool) -> None:
        LibChargePoint201.__init__(self, runtime.config.identity, connection, response_timeout=RESPONSE_TIMEOUT_S,
                                   logger=_LibraryLog(runtime.config.identity))
        self._setup(runtime, connection, address, accepted)
        self._remote_start_ids = _ids()

    # -- station -> central system -----------------------------------------------------------------------

    @handles(Action201.boot_notification)
    async def on_boot_notification(self, charging_station: dict[str, Any], reason: str, **kwargs: Any) -> Any:
        status, interval = await self.runtime.boot(
            vendor=str(charging_station.get("vendor_name", "")), model=str(charging_station.get("model", "")),
            serial=charging_station.get("serial_number"), firmware=charging_station.get("firmware_version"))
        self._after_boot(status)
        return result201.BootNotification(current_time=utc_now(), interval=interval, status=status)

    @handles(Action201.heartbeat)
    def on_heartbeat(self, **kwargs: Any) -> Any:
        self.runtime.heartbeat()
        return result201.Heartbeat(current_time=utc_now())

    @handles(Action201.status_notification)
    def on_status_notification(self, timestamp: str, connector_status: str, evse_id: int, connector_id: int,
                               **kwargs: Any) -> Any:
        self.runtime.connector_status(evse_id, STATUS_201.get(connector_status, "unavailable"), None,
                                      occupied=connector_status == "Occupied")
        return result201.StatusNotification()

    @handles(Action201.authorize)
    async def on_authorize(self, id_token: dict[str, Any], **kwargs: Any) -> Any:
        status = await self.runtime.authorize(str(id_token.get("id_token", "")), kind=id_token.get("type"))
        return result201.Authorize(id_token_info={"status": _STATUS_201[status]})

    @handles(Action201.transaction_event)
    async def on_transaction_event(self, event_type: str, timestamp: str, trigger_reason: str, seq_no: int,
                                   transaction_info: dict[str, Any], **kwargs: Any) -> Any:
        evse = kwargs.get("evse") or {}
        token = kwargs.get("id_token") or {}
        status = await self.runtime.transaction_event_201(
            event_type=event_type, timestamp=timestamp, seq_no=seq_no,
            transaction=str(transaction_info.get("transaction_id")),
            charging_state=CHARGING_STATE_201.get(str(transaction_info.get("charging_state"))),
            stopped_reason=transaction_info.get("stopped_reason"),
            evse=evse.get("id"), connector=evse.get("connector_id"),
            id_token=token.get("id_token"), token_kind=token.get("type"),
            readings=parse_meter_values(kwargs.get("meter_value"), VERSION_201))
        if status is None:
            return result201.TransactionEvent()
        return result201.TransactionEvent(id_token_info={"status": _STATUS_201[status]})

    @handles(Action201.meter_values)
    async def on_meter_values(self, evse_id: int, meter_value: list[Any], **kwargs: Any) -> Any:
        await self.runtime.meter(evse_id, parse_meter_values(meter_value, VERSION_201), transaction=None)
        return result201.MeterValues()

    @handles(Action201.security_event_notification)
    async def on_security_event_notification(self, type: str, timestamp: str, **kwargs: Any) -> Any:
        await self.runtime.station_security_event(_cut(type, MAX_SECURITY_EVENT_TYPE_CHARS) or "", timestamp,
                                                  _cut(kwargs.get("tech_info"), MAX_TECH_INFO_CHARS))
        return result201.SecurityEventNotification()

    @handles(Action201.notify_event)
    def on_notify_event(self, **kwargs: Any) -> Any:
        return result201.NotifyEvent()

    @handles(Action201.notify_report)
    def on_notify_report(self, **kwargs: Any) -> Any:
        return result201.NotifyReport()

    @handles(Action201.data_transfer)
    def on_data_transfer(self, vendor_id: str, **kwargs: Any) -> Any:
        return result201.DataTransfer(status="UnknownVendorId")

    @handles(Action201.firmware_status_notification)
    def on_firmware_status_notification(self, status: str, **kwargs: Any) -> Any:
        self.runtime.note("firmware_status", status)
        return result201.FirmwareStatusNotification()

    @handles(Action201.log_status_notification)
    def on_log_status_notification(self, status: str, **kwargs: Any) -> Any:
        return result201.LogStatusNotification()

    @handles(Action201.sign_certificate)
    def on_sign_certificate(self, csr: str, **kwargs: Any) -> Any:
        return result201.SignCertificate(status="Rejected")

    # -- central system -> station ------------------------------------------------------------------------

    async def set_limit(self, *, limit: float, unit: str, purpose: str, phases: int) -> str:
        purpose_name = "ChargingStationMaxProfile" if purpose == "station_max" else "TxDefaultProfile"
        period: dict[str, Any] = {"start_period": 0, "limit": round(limit, 1)}
        if unit == "A":
            period["number_phases"] = phases
        profile = {
            "id": PROFILE_ID, "stack_level": PROFILE_STACK_LEVEL, "charging_profile_purpose": purpose_name,
            "charging_profile_kind": "Absolute",
            "charging_schedule": [{"id": PROFILE_ID, "start_schedule": utc_now(), "charging_rate_unit": unit,
                                   "charging_schedule_period": [period]}],
        }
        answer = await self.request(call201.SetChargingProfile(evse_id=0, charging_profile=profile))
        return str(answer.status)

    async def remote_start(self, *, id_token: str, connector: int | None) -> str:
        answer = await self.request(call201.RequestStartTransaction(
            id_token={"id_token": id_token, "type": "Central"}, remote_start_id=next(self._remote_start_ids),
            evse_id=connector))
        return str(answer.status)

    async def remote_stop(self, *, transaction: str) -> str:
        answer = await self.request(call201.RequestStopTransaction(transaction_id=transaction))
        return str(answer.status)

    async def reset(self, *, hard: bool) -> str:
        answer = await self.request(call201.Reset(type="Immediate" if hard else "OnIdle"))
        return str(answer.status)

    async def unlock(self, *, connector: int) -> str:
        answer = await self.request(call201.UnlockConnector(evse_id=connector, connector_id=1))
        return str(answer.status)

    async def rate_units(self) -> set[str] | None:
        answer = await self.request(call201.GetVariables(get_variable_data=[
            {"component": {"name": "SmartChargingCtrlr"}, "variable": {"name": "RateUnit"}}]))
        for item in answer.get_variable_result or []:
            if isinstance(item, dict) and item.get("attribute_status") == "Accepted":
                words = {w.strip() for w in str(item.get("attribute_value", "")).split(",")}
                return {u for u in ("A", "W") if u in words}
        return None

    async def trigger(self, *, message: str, connector: int | None) -> str:
        if message == "BootNotification":
            self.session.triggered(message)
        evse = {"id": connector} if connector else None
        answer = await self.request(call201.TriggerMessage(requested_message=message, evse=evse))
        return str(answer.status)

    async def clear_profile(self, *, profile_id: int | None, purpose: str | None) -> str:
        names = {"tx_default": "TxDefaultProfile", "station_max": "ChargingStationMaxProfile", "tx": "TxProfile"}
        criteria = {"charging_profile_purpose": names[purpose]} if purpose in names else None
        answer = await self.request(call201.ClearChargingProfile(charging_profile_id=profile_id,
                                                                 charging_profile_criteria=criteria))
        return str(answer.status)

    async def set_variables(self, *, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        answer = await self.request(call201.SetVariables(set_variable_data=items))
        return list(answer.set_variable_result or [])

    async def get_variables(self, *, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        answer = await self.request(call201.GetVariables(get_variable_data=items))
        return list(answer.get_variable_result or [])


ChargePoint = ChargePoint16 | ChargePoint201
