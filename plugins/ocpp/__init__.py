"""OCPP: the gateway as the local central system (CSMS) of its charging stations, OCPP 1.6J and 2.0.1.

Stations dial ``wss://<bind>:<port><path>/<station-id>``; each has one security profile (1: Basic Auth over
ws:// on loopback only; 2: Basic Auth over TLS; 3: client certificate). The plugin publishes what they measure
as ``charger.<id>`` and ``sensor.<id>_*`` entities, records every charging session, and steers them through
the protocol-free ``charger.*`` services. See docs/plugins/ocpp.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from gateway.plugin import Manifest
from gateway.security.exposure import Auth, Exposure, Listener
from plugins.ocpp.const import DEFAULT_BIND, DEFAULT_PORT, DOMAIN
from plugins.ocpp.schema import CONFIG_SCHEMA

if TYPE_CHECKING:
    from gateway.core import Gateway
    from gateway.security.policy import Rule
    from plugins.ocpp.central import CentralSystem

MANIFEST = Manifest(name=DOMAIN, title="OCPP central system (1.6J, 2.0.1)", after=("loadmanager",))

__all__ = ["CONFIG_SCHEMA", "MANIFEST", "async_setup", "exposures", "register_commands", "rules"]


def exposures(config: dict[str, Any]) -> Sequence[Exposure]:
    from plugins.ocpp.tlsconfig import listener_tls

    stations = config.get("stations", [])
    profiles = {int(s.get("profile", 2)) for s in stations}
    # Profile 3 only: client certificates. Any profile 1/2 station: passwords travel on this listener.
    auth = Auth.CLIENT_CERT if profiles == {3} else Auth.PASSWORD
    return [Listener(
        plugin=DOMAIN,
        protocol="ocpp",
        bind=str(config.get("bind", DEFAULT_BIND)),
        port=int(config.get("port", DEFAULT_PORT)),
        tls=listener_tls(config),
        auth=auth,
        allowlist=tuple(config.get("allow_from", [])),
        # Station connections steer charging (our commands travel on them) and feed the load manager's
        # inputs (a fake station's meter values move real limits): treated as a writing listener.
        writes=True,
        config_path=(DOMAIN,),
        description="OCPP-J central system: charging stations connect here",
    )]


def rules() -> list[Rule]:
    from plugins.ocpp.policy import RULES

    return list(RULES)


async def async_setup(gw: Gateway, config: dict[str, Any]) -> CentralSystem:
    from plugins.ocpp.central import CentralSystem

    central = CentralSystem(gw, config)
    await central.start()
    return central


def register_commands(sub: Any) -> None:
    from plugins.ocpp.commands import register

    register(sub)
