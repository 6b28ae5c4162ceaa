"""Modbus: energy meters over TCP, RTU and Modbus/TCP Security, and an optional locked-down server.

Meters are polled with pymodbus (``client.py``) through register maps kept as data (``devices/*.yaml``,
``maps.py``); readings become ``sensor.<meter>_<quantity>`` states. The server (off by default) answers from
states with our own sans-IO codec (``codec.py``, ``servermap.py``, ``server.py``). Configuration is in
``config.py``, the policy rules MODBUS-001..004 in ``policy.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gateway.plugin import Manifest
from gateway.security.exposure import Auth, Exposure, Listener, Outbound, TlsSpec, Transport
from gateway.security.policy import Rule

from .config import CONFIG_SCHEMA, build_server_map, server_tls_on
from .const import DOMAIN
from .policy import plugin_rules

if TYPE_CHECKING:
    import ssl

    from gateway.core import Gateway

    from .client import Link, MeterPoller
    from .server import ModbusServer

MANIFEST = Manifest(name=DOMAIN, title="Modbus meters and server", after=("loadmanager",))

# -- exposures -----------------------------------------------------------------------------------------------


def exposures(config: dict[str, Any]) -> list[Exposure]:
    found: list[Exposure] = []
    for index, meter in enumerate(config.get("meters", [])):
        path = (DOMAIN, "meters", index)
        transport = meter["transport"]
        if transport == "rtu":
            found.append(Outbound(plugin=DOMAIN, protocol="modbus-rtu", host=meter["device"], port=None,
                                  transport=Transport.SERIAL, config_path=path,
                                  description=f"meter {meter['name']} (unit {meter['unit_id']}), reads only"))
            continue
        tls = TlsSpec.from_config(meter["tls"]) if transport == "tls" else None
        found.append(Outbound(
            plugin=DOMAIN, protocol="modbus-tls" if tls else "modbus", host=meter["host"], port=meter["port"],
            tls=tls, auth=Auth.CLIENT_CERT if tls else Auth.NONE, config_path=path,
            description=f"meter {meter['name']} ({meter['model']}, {transport}, unit {meter['unit_id']}), "
                        "reads only"))
    server = config.get("server") or {}
    if server.get("enabled"):
        tls = TlsSpec.from_config(server.get("tls")) if server_tls_on(server) else None
        writes = any(r.get("writable") for r in server.get("holding_registers", []))
        found.append(Listener(
            plugin=DOMAIN, protocol="modbus-tls" if tls else "modbus", bind=server["bind"], port=server["port"],
            tls=tls, auth=Auth.CLIENT_CERT if tls else Auth.NONE, allowlist=tuple(server["allow_from"]),
            writes=writes, config_path=(DOMAIN, "server"),
            description="Modbus server: states as input registers" + (", writable holding registers" if writes
                                                                       else ", read-only")))
    return found


def rules() -> list[Rule]:
    return plugin_rules()


# -- setup ---------------------------------------------------------------------------------------------------


@dataclass(eq=False)
class ModbusPlugin:
    links: dict[tuple[Any, ...], Link] = field(default_factory=dict)
    pollers: list[MeterPoller] = field(default_factory=list)
    server: ModbusServer | None = None

    async def stop(self) -> None:
        for poller in self.pollers:
            await poller.stop()
        for link in self.links.values():
            link.close()
        if self.server is not None:
            await self.server.stop()


async def async_setup(gw: Gateway, config: dict[str, Any]) -> ModbusPlugin:
    from .client import Link, MeterPoller, client_ssl_context, link_key, make_client
    from .server import ModbusServer

    plugin = ModbusPlugin()
    try:
        for meter in config.get("meters", []):
            key = link_key(meter)
            link = plugin.links.get(key)
            if link is None:
                context = client_ssl_context(meter) if meter["transport"] == "tls" else None
                link = plugin.links[key] = Link(key, make_client(meter, context))
            plugin.pollers.append(MeterPoller(gw, meter, link))
        server_conf = config.get("server") or {}
        if server_conf.get("enabled"):
            ssl_context = _server_ssl_context(gw, server_conf) if server_tls_on(server_conf) else None
            plugin.server = ModbusServer(gw, bind=server_conf["bind"], port=server_conf["port"],
                                         smap=build_server_map(server_conf), allow_from=server_conf["allow_from"],
                                         ssl_context=ssl_context, roles=dict(server_conf["roles"]))
            await plugin.server.start()
        for index, poller in enumerate(plugin.pollers):
            poller.start(offset_s=poller.spec.poll_interval_s * index / len(plugin.pollers))
    except BaseException:
        await plugin.stop()
        raise
    return plugin


def _server_ssl_context(gw: Gateway, server: dict[str, Any]) -> ssl.SSLContext:
    """Modbus/TCP Security: the configured certificate or the gateway's own; client certificates from the
    configured CA or the gateway CA (``ampgate certs`` issues them), always required."""
    from gateway.security import certs, tls

    block = server["tls"]
    cert, key, ca = block.get("cert"), block.get("key"), block.get("ca")
    if not cert or not key or not ca:
        own = certs.ensure_gateway_certs(gw.data_dir, hosts=[server["bind"]])
        cert = cert or str(own.cert)
        key = key or str(own.key)
        ca = ca or str(own.ca_cert)
    return tls.server_context(cert=cert, key=key, ca=ca, client_auth="required",  # policy: MODBUS-004
                              min_version=block["min_version"], ciphers=block.get("ciphers"))


__all__ = ["CONFIG_SCHEMA", "MANIFEST", "async_setup", "exposures", "rules"]
