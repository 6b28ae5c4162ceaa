"""One station as the rest of the gateway sees it: the protocol-free side of a connection.

Contract:
- ``StationRuntime`` outlives connections: it owns the ``charger.<id>`` entity and the station's sensors,
  and both OCPP versions call the same methods (``boot``, ``connector_status``, ``meter``, ``authorize``,
  transactions, security events), so 1.6 and 2.0.1 stations give the same entities and services.
- Entities (the charger capability contract): ``charger.<id>`` = one of ``const.CHARGER_STATUSES`` with
  attributes ``phases, min_current_a, max_current_a, vendor, model, firmware, connected, limit_a,
  session_energy_wh``; ``sensor.<id>_power`` (W), ``_energy`` (Wh, the meter register), ``_current_l1..l3``
  (A), ``_voltage_l1..l3`` (V), ``_soc`` (%) once sent. A dropped station turns ``unavailable``,
  ``connected: false``.
- Commands (``set_current_limit``, ``start``, ``stop``, ``reset``, ``unlock`` and the OCPP-only ones) go to
  the current connection; offline stations answer ``{"accepted": False, "status": "Offline"}``. Limit
  updates are coalesced: one in flight per station, a newer one supersedes a waiting one (ocpp.md §2.5).
- Token decisions (OCPP-005/006): a token is accepted only if it is in the id-token list and not revoked
  or expired; free charging and unknown tokens only with the configuration switches the policy guards;
  MAC-address (autocharge) tokens only when enabled.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import TYPE_CHECKING, Any, Final

from gateway.context import Context, Role
from plugins.ocpp.chargepoint import ChargePoint, ChargePoint16, ChargePoint201, CommandError, CommandTimeout
from plugins.ocpp.const import (
    AUDIT_STATION_SECURITY_EVENT,
    CHARGER_DOMAIN,
    DOMAIN,
    EVENT_SECURITY,
    EVENT_TRANSACTION,
    NOMINAL_VOLTAGE_V,
    REJECTED_RETRY_INTERVAL_S,
    REMOTE_START_TOKEN_TTL_S,
    STATUS_FINISHING,
    STATUS_PREPARING,
    VERSION_16,
)
from plugins.ocpp.measurements import Readings, station_status
from plugins.ocpp.stations import StationConfig
from plugins.ocpp.transactions import ORPHAN, Transaction

if TYPE_CHECKING:
    from plugins.ocpp.central import CentralSystem

_LOGGER = logging.getLogger(__name__)

# The station's last_seen is written at most this often (OCPP-008 needs days, not seconds).
LAST_SEEN_WRITE_S: Final = 900.0
# SecurityEventNotifications audited per station per hour; beyond, they are counted, not written, so a
# flooding station cannot fill the audit log.
SECURITY_EVENTS_PER_HOUR: Final = 60
# 2.0.1 IdTokenEnumType values that are MAC addresses of vehicles (autocharge); 1.6 autocharge sends the
# MAC as an idTag with this prefix by convention.
MAC_TOKEN_TYPES: Final = frozenset({"MacAddress"})
MAC_TAG_PREFIX: Final = "VID:"
PHASE_NAMES: Final = ("l1", "l2", "l3")


def _offline() -> dict[str, Any]:
    return {"accepted": False, "status": "Offline"}


class StationRuntime:
    """The protocol-free side of one station (see the module contract)."""

    def __init__(self, hub: CentralSystem, config: StationConfig, known: dict[str, Any] | None = None) -> None:
        known = known or {}
        self.hub = hub
        self.config = config
        self.link: ChargePoint | None = None
        self.address: str | None = None
        self.vendor: str | None = known.get("vendor")
        self.model: str | None = known.get("model")
        self.firmware: str | None = known.get("firmware")
        self.serial: str | None = known.get("serial")
        # Accepted before on this gateway: a reconnect does not need a new BootNotification.
        self.accepted_before = known.get("boot_status") == "Accepted"
        self.connectors: dict[int, str] = {}
        self.charging_state: dict[int, str] = {}  # 2.0.1 per EVSE, from TransactionEvent
        self.readings = Readings()
        self.limit_a: float | None = None
        self.active: dict[int, Transaction] = {}  # connector/EVSE -> running session
        self.notes: dict[str, str] = {}
        self._rate_unit: str | None = None
        self._limit_lock = asyncio.Lock()
        self._limit_seq = 0
        self._remote_tokens: dict[str, float] = {}
        self._last_seen_write = 0.0
        self._security_events: list[float] = []
        self.context = Context(origin=DOMAIN, principal=config.identity, role=Role.OPERATOR)

    # -- entities ------------------------------------------------------------------------------------------

    @property
    def entity_id(self) -> str:
        return f"{CHARGER_DOMAIN}.{self.config.slug}"

    @property
    def connected(self) -> bool:
        return self.link is not None

    def session_energy_wh(self) -> float | None:
        for tx in self.active.values():
            if tx.meter_start_wh is not None and self.readings.energy_wh is not None:
                return max(0.0, self.readings.energy_wh - tx.meter_start_wh)
            energy = tx.session_energy_wh()
            if energy is not None:
                return energy
        return None

    def status(self) -> str:
        statuses = dict(self.connectors)
        for evse, state in self.charging_state.items():
            statuses[evse] = state
        return station_status(statuses, self.connected)

    def publish(self) -> None:
        states, owner = self.hub.gw.states, DOMAIN
        cfg = self.config
        states.set(self.entity_id, self.status(), None, {
            "phases": cfg.phases,
            "min_current_a": cfg.min_current_a,
            "max_current_a": cfg.max_current_a,
            "vendor": self.vendor,
            "model": self.model,
            "firmware": self.firmware,
            "connected": self.connected,
            "limit_a": self.limit_a,
            "session_energy_wh": self.session_energy_wh(),
        }, owner=owner, context=self.context)
        r = self.readings
        base = f"sensor.{cfg.slug}"
        if r.power_w is not None:
            states.set(f"{base}_power", round(r.power_w, 1), "W", owner=owner, context=self.context)
        if r.energy_wh is not None:
            states.set(f"{base}_energy", round(r.energy_wh, 1), "Wh", owner=owner, context=self.context)
        for phase, name in zip(("L1", "L2", "L3"), PHASE_NAMES, strict=True):
            if phase in r.current_a:
                states.set(f"{base}_current_{name}", round(r.current_a[phase], 2), "A", owner=owner,
                           context=self.context)
            if phase in r.voltage_v:
                states.set(f"{base}_voltage_{name}", round(r.voltage_v[phase], 1), "V", owner=owner,
                           context=self.context)
        if r.soc_pct is not None:
            states.set(f"{base}_soc", round(r.soc_pct, 1), "%", owner=owner, context=self.context)

    # -- connection ----------------------------------------------------------------------------------------

    def attach(self, link: ChargePoint, address: str) -> ChargePoint | None:
        """A new connection; returns the previous one (the caller closes it: never two per identity)."""
        old, self.link, self.address = self.link, link, address
        self._rate_unit = None  # a station may have been replaced or updated: ask again
        self.context = Context(origin=DOMAIN, principal=self.config.identity, role=Role.OPERATOR, address=address)
        self.publish()
        if self.accepted_before:
            link.background(self.after_accepted())
        else:
            # Never accepted here: ask it to introduce itself (1.6 §5.17 / 2.0.1 F06 TriggerMessage).
            link.background(self._trigger("BootNotification"))
        return old

    def detach(self, link: ChargePoint) -> bool:
        """The connection ended; False if a newer one had already replaced it."""
        if self.link is not link:
            return False
        self.link = None
        self.connectors.clear()
        self.charging_state.clear()
        self.publish()
        return True

    async def after_accepted(self) -> None:
        """Follow-ups once a station is Accepted: fresh statuses, and the rate unit for our profiles."""
        await self._trigger("StatusNotification")
        if self.config.rate_unit == "auto":
            await self.rate_unit()

    async def _trigger(self, message: str) -> None:
        link = self.link
        if link is None:
            return
        try:
            await link.trigger(message=message, connector=None)
        except (CommandError, CommandTimeout) as err:
            _LOGGER.debug("station %s: TriggerMessage %s not done: %s", self.config.identity, message, err)

    # -- station -> gateway --------------------------------------------------------------------------------

    async def boot(self, *, vendor: str, model: str, serial: str | None, firmware: str | None) -> tuple[str, int]:
        # policy: OCPP-004 - Accepted only while the station is still enrolled (an administrator may have
        # rejected it since it connected).
        trusted = self.hub.still_trusted(self.config)
        status = "Accepted" if trusted else "Rejected"
        self.vendor, self.model = vendor[:50] or None, model[:50] or None
        self.serial = str(serial)[:50] if serial else None
        self.firmware = str(firmware)[:50] if firmware else None
        if trusted:
            self.accepted_before = True
        await self.hub.store.booted(self.config.identity, vendor=vendor[:50], model=model[:50], serial=self.serial,
                                    firmware=self.firmware, version=self.link.version if self.link else "",
                                    status=status)
        self.publish()
        interval = self.hub.heartbeat_interval if trusted else REJECTED_RETRY_INTERVAL_S
        return status, interval

    def heartbeat(self) -> None:
        now = time.monotonic()
        if now - self._last_seen_write > LAST_SEEN_WRITE_S:
            self._last_seen_write = now
            self.hub.spawn(self.hub.store.seen(self.config.identity))

    def connector_status(self, connector: int, status: str, error_code: str | None, *, occupied: bool = False) -> None:
        # 2.0.1 "Occupied" after a session ended on this EVSE: the cable is still in, the session is over.
        if occupied and connector not in self.active and self.connectors.get(connector) == STATUS_FINISHING:
            status = STATUS_FINISHING
        self.connectors[connector] = status
        if error_code:
            self.notes["error_code"] = error_code[:50]
        self.publish()

    def note(self, key: str, value: str) -> None:
        self.notes[key] = str(value)[:50]

    async def meter(self, connector: int, readings: Readings, *, transaction: int | None) -> None:
        self._merge(readings)
        tx = self.active.get(connector)
        if readings.energy_wh is not None:
            if transaction is not None and (tx is None or tx.id != transaction):
                tx = next((t for t in self.active.values() if t.id == transaction), tx)
            if tx is not None:
                await self.hub.store.meter(tx.id, readings.energy_wh)
        self.publish()

    def _merge(self, readings: Readings) -> None:
        r = self.readings
        if readings.power_w is not None:
            r.power_w = readings.power_w
        if readings.energy_wh is not None:
            r.energy_wh = readings.energy_wh
        r.current_a.update(readings.current_a)
        r.voltage_v.update(readings.voltage_v)
        if readings.soc_pct is not None:
            r.soc_pct = readings.soc_pct
        r.timestamp = readings.timestamp or r.timestamp

    async def authorize(self, token: str, *, kind: str | None = None, consume: bool = False) -> str:
        """``accepted`` / ``blocked`` / ``expired`` / ``invalid`` for a token this station presents."""
        value = token.strip()
        # policy: OCPP-006 - a vehicle's MAC address is no proof of anything unless explicitly allowed.
        mac = kind in MAC_TOKEN_TYPES or value.upper().startswith(MAC_TAG_PREFIX)
        if mac and not self.hub.accept_mac_tokens:
            return "invalid"
        if self.hub.free_charging:  # policy: OCPP-005 (only with an accepted risk)
            return "accepted"
        expiry = self._remote_tokens.get(value)
        if expiry is not None:
            if consume:
                del self._remote_tokens[value]
            if expiry > time.monotonic():
                return "accepted"
        if kind == "NoAuthorization":
            return "invalid"
        status = await self.hub.tokens.check(value)
        if status.value == "invalid" and self.hub.accept_unknown_tokens:  # policy: OCPP-006 (warned)
            return "accepted"
        return status.value

    async def start_transaction_16(self, *, connector: int, id_token: str, meter_start_wh: float,
                                   timestamp: str) -> tuple[int, str]:
        status = await self.authorize(id_token, consume=True)
        tx, created = await self.hub.store.start_16(station=self.config.identity, connector=connector,
                                                    id_token=id_token, meter_start_wh=meter_start_wh,
                                                    timestamp=timestamp, auth_status=status)
        self.active[connector] = tx
        if created:
            self._transaction_event("started", tx)
        self.publish()
        return tx.id, status

    async def stop_transaction_16(self, *, transaction_id: int, meter_stop_wh: float, timestamp: str,
                                  reason: str | None, id_token: str | None) -> str:
        tx, outcome = await self.hub.store.stop_16(station=self.config.identity, transaction_id=transaction_id,
                                                   meter_stop_wh=meter_stop_wh, timestamp=timestamp, reason=reason,
                                                   id_token=id_token)
        if outcome == ORPHAN:
            self.hub.count("unknown_transaction_stop")
            _LOGGER.warning("station %s stopped transaction %s that this gateway does not know; recorded as orphan",
                            self.config.identity, transaction_id)
        for connector, running in list(self.active.items()):
            if running.id == tx.id:
                del self.active[connector]
        if outcome != "repeat":
            self._transaction_event("stopped", tx)
        self.publish()
        return await self.authorize(id_token) if id_token else "accepted"

    async def transaction_event_201(self, *, event_type: str, timestamp: str, seq_no: int, transaction: str,
                                    charging_state: str | None, stopped_reason: str | None, evse: int | None,
                                    connector: int | None, id_token: str | None, token_kind: str | None,
                                    readings: Readings) -> str | None:
        status = await self.authorize(id_token, kind=token_kind, consume=True) if id_token else None
        tx = await self.hub.store.event_201(
            station=self.config.identity, event_type=event_type, tx_key=transaction, seq_no=seq_no,
            timestamp=timestamp, evse=evse, connector=connector, id_token=id_token, energy_wh=readings.energy_wh,
            stopped_reason=stopped_reason, auth_status=status)
        slot = evse if evse is not None else next(
            (k for k, t in self.active.items() if t.tx_key == transaction), 1)
        if event_type == "Ended":
            running = self.active.pop(slot, None)
            self.charging_state.pop(slot, None)
            if self.connectors.get(slot) == STATUS_PREPARING:  # 2.0.1 "Occupied": cable still in
                self.connectors[slot] = STATUS_FINISHING
            if running is not None:  # not for a resent Ended
                self._transaction_event("stopped", tx)
        else:
            if slot not in self.active or self.active[slot].id != tx.id:
                self._transaction_event("started", tx)
            self.active[slot] = tx
            if charging_state is not None:
                self.charging_state[slot] = charging_state
        if not readings.empty():
            self._merge(readings)
        self.publish()
        return status

    def _transaction_event(self, what: str, tx: Transaction) -> None:
        data = {"charger": self.config.slug, "event": what, "transaction": tx.id, "state": tx.state,
                "energy_wh": tx.energy_wh, "stop_reason": tx.stop_reason}
        self.hub.gw.bus.fire(EVENT_TRANSACTION, data, origin=DOMAIN, context=self.context)

    async def station_security_event(self, kind: str, timestamp: str, tech_info: str | None) -> None:
        now = time.monotonic()
        self._security_events = [t for t in self._security_events if t > now - 3600]
        self.hub.count("station_security_event")
        data = {"station": self.config.identity, "type": kind, "timestamp": str(timestamp)[:40],
                "tech_info": tech_info}
        self.hub.gw.bus.fire(EVENT_SECURITY, data, origin=DOMAIN, context=self.context)
        if len(self._security_events) >= SECURITY_EVENTS_PER_HOUR:
            return
        self._security_events.append(now)
        await self.hub.gw.audit.append(AUDIT_STATION_SECURITY_EVENT, data, context=self.context)

    # -- gateway -> station --------------------------------------------------------------------------------

    async def rate_unit(self) -> str:
        """The unit of our charging profiles: configured, else what the station supports (A preferred)."""
        if self.config.rate_unit in ("A", "W"):
            return self.config.rate_unit
        if self._rate_unit is None and self.link is not None:
            try:
                units = await self.link.rate_units()
            except (CommandError, CommandTimeout):
                units = None
            self._rate_unit = "W" if units == {"W"} else "A"
        return self._rate_unit or "A"

    def clamp(self, limit_a: float) -> float:
        """A limit the station can follow: above the maximum -> the maximum; below the minimum PWM current ->
        0 (pause), never a value between 0 and the minimum that models treat differently (ocpp.md §2.5)."""
        if limit_a >= self.config.max_current_a:
            return self.config.max_current_a
        if limit_a < self.config.min_current_a:
            return 0.0
        return round(limit_a, 1)

    async def set_current_limit(self, limit_a: float) -> dict[str, Any]:
        limit = self.clamp(limit_a)
        self._limit_seq += 1
        mine = self._limit_seq
        async with self._limit_lock:
            if mine != self._limit_seq:
                return {"accepted": False, "status": "Superseded", "limit_a": limit}
            link = self.link
            if link is None:
                return {**_offline(), "limit_a": limit}
            unit = await self.rate_unit()
            value = limit if unit == "A" else limit * NOMINAL_VOLTAGE_V * self.config.phases
            try:
                status = await link.set_limit(limit=value, unit=unit, purpose=self.config.limit_purpose,
                                              phases=self.config.phases)
            except CommandTimeout:
                return {"accepted": False, "status": "Timeout", "limit_a": limit}
            except CommandError as err:
                return {"accepted": False, "status": err.code, "limit_a": limit}
            accepted = status == "Accepted"
            if accepted:
                self.limit_a = limit
                self.publish()
            return {"accepted": accepted, "status": status, "limit_a": limit}

    async def command(self, action: Any) -> dict[str, Any]:
        if self.link is None:
            return _offline()
        try:
            status = await action(self.link)
        except CommandTimeout:
            return {"accepted": False, "status": "Timeout"}
        except CommandError as err:
            return {"accepted": False, "status": err.code}
        return {"accepted": status in ("Accepted", "Scheduled", "Unlocked"), "status": status}

    async def start(self, id_token: str | None, connector: int | None) -> dict[str, Any]:
        token = id_token
        if not token:
            # No badge given: a one-time token this station may present once within the TTL.
            token = "AG" + secrets.token_hex(8).upper()
            self._remote_tokens = {t: e for t, e in self._remote_tokens.items() if e > time.monotonic()}
            self._remote_tokens[token] = time.monotonic() + REMOTE_START_TOKEN_TTL_S
        return await self.command(lambda link: link.remote_start(id_token=token, connector=connector))

    async def stop(self) -> dict[str, Any]:
        running = next(iter(self.active.values()), None)
        if running is None:
            return {"accepted": False, "status": "NoTransaction"}
        return await self.command(lambda link: link.remote_stop(transaction=running.key))

    async def reset(self, hard: bool) -> dict[str, Any]:
        return await self.command(lambda link: link.reset(hard=hard))

    async def unlock(self, connector: int) -> dict[str, Any]:
        return await self.command(lambda link: link.unlock(connector=connector))

    async def trigger(self, message: str, connector: int | None) -> dict[str, Any]:
        return await self.command(lambda link: link.trigger(message=message, connector=connector))

    async def clear_profile(self, profile_id: int | None, purpose: str | None) -> dict[str, Any]:
        return await self.command(lambda link: link.clear_profile(profile_id=profile_id, purpose=purpose))

    def link16(self) -> ChargePoint16 | None:
        return self.link if isinstance(self.link, ChargePoint16) else None

    def link201(self) -> ChargePoint201 | None:
        return self.link if isinstance(self.link, ChargePoint201) else None

    @property
    def version(self) -> str | None:
        return self.link.version if self.link is not None else None

    def is_16(self) -> bool:
        return self.version == VERSION_16

    def describe(self) -> dict[str, Any]:
        return {"identity": self.config.identity, "charger": self.config.slug, "connected": self.connected,
                "address": self.address, "version": self.version, "status": self.status(),
                "profile": self.config.profile, "notes": dict(self.notes)}
