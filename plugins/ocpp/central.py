"""The plugin instance: the local central system (CSMS) that every station connection belongs to.

Contract:
- ``CentralSystem.start()`` migrates the ``ocpp`` tables, publishes every configured station as
  ``unavailable`` (so the load manager and the UI see them before they connect), pre-approves them in the
  enrollment queue (the installer who wrote a station and its password into the configuration approved it),
  registers the services and opens the listener. ``stop()`` undoes all of it in reverse order.
- ``authenticate(handshake)`` is the one place that turns a verdict from ``auth.decide`` into side effects:
  counters, audit records (never a secret: identity, address, reason, profile, certificate fingerprint),
  lock-outs, security events and enrollment requests (OCPP-004, OCPP-007).
- ``attach``/``detach`` keep at most one live connection per identity.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from gateway.context import Context, Role
from gateway.security import audit as audit_events
from gateway.security.enrollment import EnrollmentError
from gateway.security.idtokens import IdTokenStore
from plugins.ocpp import auth
from plugins.ocpp.const import (
    CHARGER_DOMAIN,
    DEFAULT_HEARTBEAT_INTERVAL_S,
    DOMAIN,
    EVENT_CONNECTION,
    EVENT_SECURITY,
)
from plugins.ocpp.stations import StationConfig
from plugins.ocpp.transactions import TransactionStore

if TYPE_CHECKING:
    from gateway.core import Gateway
    from plugins.ocpp.chargepoint import ChargePoint
    from plugins.ocpp.server import StationListener
    from plugins.ocpp.station import StationRuntime

_LOGGER = logging.getLogger(__name__)

ENROLLMENT_KIND = "ocpp"
# Who pre-approves configured stations: the installer, through the configuration file.
CONFIGURATION = Context(origin="config", principal="ocpp.stations", role=Role.ADMIN)


class CentralSystem:
    def __init__(self, gw: Gateway, config: dict[str, Any]) -> None:
        self.gw = gw
        self.config = config
        self.prefix = str(config.get("path", "/ocpp"))
        self.heartbeat_interval = int(config.get("heartbeat_interval", DEFAULT_HEARTBEAT_INTERVAL_S))
        self.free_charging = bool(config.get("free_charging", False))
        self.accept_unknown_tokens = bool(config.get("accept_unknown_tokens", False))
        self.accept_mac_tokens = bool(config.get("accept_mac_tokens", False))
        self.auto_approve = bool(config.get("auto_approve", False))
        self.enrolled_defaults = dict(config.get("enrolled_defaults") or {})
        self.stations: dict[str, StationConfig] = {
            s.identity: s for s in (StationConfig.from_config(e) for e in config.get("stations", []))
        }
        self.runtimes: dict[str, StationRuntime] = {}
        self.by_slug: dict[str, StationRuntime] = {}
        self.store = TransactionStore(gw.storage, gw.vault)
        self.tokens = IdTokenStore(gw.storage, gw.vault, gw.audit)
        self.failures = auth.FailureTracker()
        self.enroll_limit = auth.EnrollmentLimiter()
        self.counters: collections.Counter[str] = collections.Counter()
        self.listener: StationListener | None = None
        self._unregister: list[Any] = []
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- lifecycle -----------------------------------------------------------------------------------------

    async def start(self) -> None:
        from plugins.ocpp.server import StationListener
        from plugins.ocpp.services import register_services
        from plugins.ocpp.station import StationRuntime

        await self.store.migrate()
        known = await self.store.configured(list(self.stations))
        for identity, station in self.stations.items():
            runtime = StationRuntime(self, station, known.get(identity))
            self.runtimes[identity] = runtime
            self.by_slug[station.slug] = runtime
            runtime.publish()
            await self._pre_approve(station)
        self.publish_counts()
        self._unregister = register_services(self)
        self.listener = StationListener(self, self.config)
        await self.listener.start()

    async def stop(self) -> None:
        if self.listener is not None:
            await self.listener.stop()
            self.listener = None
        for undo in reversed(self._unregister):
            undo()
        self._unregister = []
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for runtime in self.runtimes.values():
            if runtime.link is not None:
                runtime.detach(runtime.link)

    async def _pre_approve(self, station: StationConfig) -> None:
        # Configured stations are approved by configuration; recording them in the enrollment queue as
        # approved lets the web UI list every trusted device in one place.
        await self.gw.enrollment.add_approved(
            ENROLLMENT_KIND, station.identity, CONFIGURATION, fingerprint=station.fingerprint,
            info={"profile": station.profile}, reason="listed in ocpp.stations")

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def count(self, name: str) -> None:
        self.counters[name] += 1
        if name.startswith("refused_"):
            self.publish_counts()

    def publish_counts(self) -> None:
        """``sensor.ocpp_stations_connected`` and ``sensor.ocpp_connections_refused`` (attributes: per reason)."""
        states = self.gw.states
        states.set("sensor.ocpp_stations_connected", self.connected_count(), None,
                   {"configured": len(self.stations)}, owner=DOMAIN)
        refused = {k.removeprefix("refused_"): v for k, v in sorted(self.counters.items())
                   if k.startswith("refused_")}
        states.set("sensor.ocpp_connections_refused", sum(refused.values()), None, refused, owner=DOMAIN)

    # -- trust ---------------------------------------------------------------------------------------------

    def is_trusted(self, identity: str, fingerprint: str | None) -> bool:
        return bool(self.gw.enrollment.is_trusted(ENROLLMENT_KIND, identity, fingerprint))

    def still_trusted(self, station: StationConfig) -> bool:
        if station.configured:
            return True
        return self.auto_approve or self.is_trusted(station.identity, station.fingerprint)

    def enrolled_station(self, identity: str, fingerprint: str | None) -> StationConfig:
        return StationConfig.enrolled(identity, self.enrolled_defaults, fingerprint)

    def runtime_for(self, station: StationConfig) -> StationRuntime:
        from plugins.ocpp.station import StationRuntime

        runtime = self.runtimes.get(station.identity)
        if runtime is None:
            if station.slug in self.by_slug or self.gw.states.owner(f"{CHARGER_DOMAIN}.{station.slug}"):
                raise ValueError(f"station {station.identity}: entity charger.{station.slug} is taken")
            runtime = StationRuntime(self, station)
            self.runtimes[station.identity] = runtime
            self.by_slug[station.slug] = runtime
        return runtime

    # -- the handshake -------------------------------------------------------------------------------------

    async def authenticate(self, handshake: auth.Handshake) -> auth.Verdict:
        now = time.monotonic()
        identity = auth.identity_from_path(handshake.path, self.prefix)
        locked = identity is not None and self.failures.locked(identity, handshake.address, now)
        verdict = auth.decide(handshake, prefix=self.prefix, stations=self.stations, is_trusted=self.is_trusted,
                              enrolled_defaults=self.enrolled_station, auto_approve=self.auto_approve,
                              locked_out=locked)
        if verdict.accepted:
            assert verdict.identity is not None
            self.failures.success(verdict.identity, handshake.address)
            return verdict
        await self.refused(verdict, handshake)
        return verdict

    async def refused(self, verdict: auth.Verdict, handshake: auth.Handshake) -> None:
        """Count, audit, lock out, raise security events and enqueue, as the verdict says."""
        assert verdict.reason is not None
        reason = verdict.reason
        self.count(f"refused_{reason.value}")
        if reason in (auth.Reason.BAD_PATH, auth.Reason.LOCKED_OUT):
            return  # scanners and locked-out retries: counted, not audited one by one
        identity = verdict.identity or ""
        # Unknown identities cost an audit record and an enrollment request each: at most
        # ENROLLMENT_REQUESTS_PER_ADDRESS per address and hour, so that a scanner inventing identities can
        # neither grow the audit log (which is never pruned) nor flood the queue. Beyond: counted only.
        if reason is auth.Reason.UNKNOWN_IDENTITY and not self.enroll_limit.allow(handshake.address,
                                                                                time.monotonic()):
            self.count("unknown_identity_not_recorded")
            return
        data: dict[str, Any] = {
            "plugin": DOMAIN, "what": "station connection refused", "reason": reason.value,
            "station": identity, "address": handshake.address, "status": verdict.status,
        }
        if handshake.peer is not None:
            data["certificate_fingerprint"] = handshake.peer.fingerprint
            data["certificate_cn"] = (handshake.peer.common_name or "")[:64]
        station = self.stations.get(identity)
        if station is not None:
            data["profile"] = station.profile
        await self.gw.audit.append(audit_events.EVENT_SECURITY, data)
        _LOGGER.warning("refused station connection %r from %s: %s", identity, handshake.address, reason.value)
        if verdict.security_event:
            await self.security_event(identity, reason.value, {"address": handshake.address})
        if reason in auth.COUNTED_FAILURES and self.failures.failure(identity, handshake.address, time.monotonic()):
            self.count("lockouts")
            await self.security_event(identity, "repeated_authentication_failures",
                                      {"address": handshake.address})
        if verdict.enqueue:
            try:
                await self.gw.enrollment.request(
                    ENROLLMENT_KIND, identity, address=handshake.address,
                    fingerprint=handshake.peer.fingerprint if handshake.peer else None,
                    info={"protocol": "ocpp"})
            except (EnrollmentError, ValueError) as err:  # queue full, or an identity it does not take
                _LOGGER.warning("station %r not enqueued for enrollment: %s", identity, err)

    async def security_event(self, identity: str, kind: str, data: dict[str, Any]) -> None:
        """One of *our* security events about a station (OCPP-007): audited and fired on the bus."""
        self.count(f"security_{kind}")
        record = {"plugin": DOMAIN, "station": identity, "event": kind, **data}
        self.gw.bus.fire(EVENT_SECURITY, record, origin=DOMAIN)
        await self.gw.audit.append(audit_events.EVENT_SECURITY, record)

    # -- connections ---------------------------------------------------------------------------------------

    def connection_of(self, identity: str) -> ChargePoint | None:
        runtime = self.runtimes.get(identity)
        return runtime.link if runtime is not None else None

    def attach(self, runtime: StationRuntime, link: ChargePoint, address: str) -> ChargePoint | None:
        old = runtime.attach(link, address)
        self.count("connections")
        self.publish_counts()
        self.gw.bus.fire(EVENT_CONNECTION, {"charger": runtime.config.slug, "connected": True}, origin=DOMAIN,
                         context=runtime.context)
        self.spawn(self.store.seen(runtime.config.identity))
        return old

    def detach(self, runtime: StationRuntime, link: ChargePoint) -> None:
        if runtime.detach(link):
            self.publish_counts()
            self.gw.bus.fire(EVENT_CONNECTION, {"charger": runtime.config.slug, "connected": False},
                             origin=DOMAIN, context=runtime.context)
            self.spawn(self.store.seen(runtime.config.identity))

    def connected_count(self) -> int:
        return sum(1 for r in self.runtimes.values() if r.link is not None)
