"""The ``Gateway`` object: what every plugin receives and the only door into the core.

A plugin reaches the core through ``gw.bus``, ``gw.states``, ``gw.services``, ``gw.storage``, ``gw.audit``,
``gw.vault``, ``gw.enrollment`` and ``gw.users``, and builds TLS through ``gateway.security.tls``.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway import __version__
from gateway.bus import EventBus
from gateway.context import SYSTEM
from gateway.loader import PluginRunner
from gateway.security import audit as audit_events
from gateway.security.audit import AuditLog
from gateway.security.certs import GatewayCerts, ensure_gateway_certs
from gateway.security.enrollment import EnrollmentQueue
from gateway.security.users import UserStore
from gateway.security.vault import Vault
from gateway.services import ServiceRegistry
from gateway.states import StateMachine
from gateway.storage import Storage

if TYPE_CHECKING:
    from gateway.bootstrap import Plan
    from gateway.config import Config

_LOGGER = logging.getLogger(__name__)

EVENT_GATEWAY_STARTED = "gateway_started"
EVENT_GATEWAY_STOPPING = "gateway_stopping"
PID_FILE = "ampgate.pid"


class Gateway:
    def __init__(self, config: Config, data_dir: Path) -> None:
        self.config = config
        self.data_dir = Path(data_dir)
        self.bus = EventBus()
        self.states = StateMachine(self.bus)
        self.services = ServiceRegistry(self.bus, owner_of=self.states.owner)
        self.storage = Storage(self.data_dir).open()
        self.audit = AuditLog(self.storage)
        self.vault = Vault.from_data_dir(self.data_dir)
        self.enrollment = EnrollmentQueue(self.storage, self.audit, self.bus)
        self.users = UserStore(self.storage, self.audit)
        self._runner: PluginRunner | None = None
        self.certs: GatewayCerts | None = None
        self.plan: Plan | None = None  # the checked plan it runs (the web console shows its report)
        # Small typed APIs that shared plugins put here for others (e.g. one zeroconf instance).
        self.shared: dict[str, Any] = {}

    @property
    def name(self) -> str:
        return str(self.config.core.get("name", "ampgate"))

    async def async_start(self, plan: Plan) -> None:
        self.plan = plan
        loop = asyncio.get_running_loop()
        # First start: a local CA and a server certificate in data_dir/certs (keys 0600). Later starts only
        # load them. The fingerprint is what clients pin (TLS-003).
        self.certs = await loop.run_in_executor(None, ensure_gateway_certs, self.data_dir)
        _LOGGER.info("gateway certificate SHA-256 fingerprint: %s%s", self.certs.fingerprint,
                     " (created now)" if self.certs.created else "")
        await self.audit.append(audit_events.EVENT_START, {"version": __version__, "plugins": plan.order})
        for row in plan.report.accepted:
            acceptance = row.acceptance
            assert acceptance is not None
            # Every start re-records each accepted risk: the audit log shows what ran under which risk.
            await self.audit.append(
                audit_events.EVENT_RISK_ACCEPTED,
                {
                    "rule": row.rule.id,
                    "plugin": row.finding.plugin,
                    "setting": row.where,
                    "reason": acceptance.reason,
                    "expires": acceptance.expires.isoformat() if acceptance.expires else None,
                },
            )
            _LOGGER.warning("accepted risk %s (%s): %s", row.rule.id, row.finding.plugin, acceptance.reason)
        self._runner = PluginRunner(self, plan.registry)
        await self._runner.async_setup_all(plan.order, plan.config.plugins)
        self.bus.fire(EVENT_GATEWAY_STARTED, {"plugins": [r.name for r in self._runner.running]})

    @property
    def failed_plugins(self) -> dict[str, str]:
        return dict(self._runner.failed) if self._runner else {}

    async def async_stop(self) -> None:
        self.bus.fire(EVENT_GATEWAY_STOPPING, {}, context=SYSTEM)
        if self._runner is not None:
            await self._runner.async_stop_all()
        await self.bus.async_stop(grace_s=0.5)
        await self.audit.append(audit_events.EVENT_STOP, {})
        await asyncio.get_running_loop().run_in_executor(None, self.storage.close)


def write_pid(data_dir: Path) -> Path:
    path = Path(data_dir) / PID_FILE
    path.write_text(f"{os.getpid()}\n")
    return path
