"""The one socket adapter of the plugin: a ``websockets`` server that stations dial into.

Contract:
- Listens on ``bind:port`` (TLS unless the configuration is plain loopback, OCPP-001), serving
  ``<path>/<identity>``. Why ``websockets`` rather than aiohttp: its ``open_timeout`` bounds the TLS
  handshake *and* the HTTP request head (aiohttp's server waits up to its keep-alive timeout, 3630 s by
  default, for a slow request head), ``process_request`` refuses before the upgrade, ``select_subprotocol``
  picks the station's version, and it is what the ``ocpp`` library's examples (our benchmark baseline) use.
  Measured on this project's bench: the same RSS per TLS connection as aiohttp, ~15 % more messages/s.
- Every decision is taken before the upgrade in ``process_request`` (``CentralSystem.authenticate``):
  refusals get a bare 401 (with ``WWW-Authenticate: Basic realm="ocpp"``), 403 or 404 and no detail.
  A second connection of a connected identity: from the same address it replaces the old one; from another
  address the old one is pinged and, if it answers, the newcomer is refused 403 (OCPP-007).
- No agreed subprotocol: the handshake completes without one and the connection is closed at once with
  1002 (OCPP-J 1.6 §3.1.2 MUST). Frames above ``max_frame_bytes`` close with 1009 (websockets), binary
  frames with 1003, an exhausted error budget with 1008.
"""

from __future__ import annotations

import asyncio
import http
import ipaddress
import logging
import ssl
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from plugins.ocpp import auth
from plugins.ocpp.chargepoint import ChargePoint16, ChargePoint201
from plugins.ocpp.const import (
    BASIC_REALM,
    DUPLICATE_PROBE_TIMEOUT_S,
    HANDSHAKE_TIMEOUT_S,
    MAX_FRAME_BYTES,
    MAX_QUEUED_FRAMES,
    PING_INTERVAL_S,
    PING_TIMEOUT_S,
    SUBPROTOCOL_OF,
    SUBPROTOCOLS,
    VERSION_16,
)
from plugins.ocpp.session import CLOSE_POLICY_VIOLATION, CLOSE_PROTOCOL_ERROR

if TYPE_CHECKING:
    from plugins.ocpp.central import CentralSystem

_LOGGER = logging.getLogger(__name__)


def build_ssl_context(central: CentralSystem, config: dict[str, Any]) -> ssl.SSLContext | None:
    """The listener's TLS context from ``gateway.security.tls`` (the only place that builds contexts)."""
    from plugins.ocpp.tlsconfig import server_tls

    return server_tls(config, central.gw.data_dir, central.stations.values(),
                      base_dir=central.gw.config.path.parent)


def peer_certificate(connection: ServerConnection) -> auth.PeerCert | None:
    """The verified client certificate of a TLS connection, if the station presented one."""
    from gateway.security import tls

    peer = tls.peer_identity(connection.transport.get_extra_info("ssl_object"))
    if peer is None:
        return None
    return auth.PeerCert(common_name=peer.common_name,
                         fingerprint=peer.fingerprint_sha256.replace(":", "").lower())


class StationListener:
    def __init__(self, central: CentralSystem, config: dict[str, Any]) -> None:
        self.central = central
        self.config = config
        self.bind = str(config.get("bind", "127.0.0.1"))
        self.port = int(config.get("port", 9443))
        self.max_frame_bytes = int(config.get("max_frame_bytes", MAX_FRAME_BYTES))
        self.allow_from = [ipaddress.ip_network(n, strict=False) for n in config.get("allow_from", [])]
        self._server: Server | None = None
        self._verdicts: weakref.WeakKeyDictionary[ServerConnection, auth.Verdict] = weakref.WeakKeyDictionary()
        self.ssl_context: ssl.SSLContext | None = None

    @property
    def bound_port(self) -> int:
        """The port actually bound (``port: 0`` in tests picks a free one)."""
        assert self._server is not None
        sockets = self._server.sockets
        return int(sockets[0].getsockname()[1]) if sockets else self.port

    async def start(self) -> None:
        self.ssl_context = build_ssl_context(self.central, self.config)
        self._server = await serve(
            self._handler, self.bind, self.port,
            ssl=self.ssl_context,
            process_request=self._process_request,
            select_subprotocol=self._select_subprotocol,
            subprotocols=[Subprotocol(s) for s in SUBPROTOCOLS],
            compression=None,  # OCPP-J 1.6 §3.3 allows it; we refuse it: CPU and decompression bombs
            open_timeout=HANDSHAKE_TIMEOUT_S,
            ping_interval=PING_INTERVAL_S,
            ping_timeout=PING_TIMEOUT_S,
            close_timeout=5,
            max_size=self.max_frame_bytes,
            max_queue=MAX_QUEUED_FRAMES,
            server_header=None,  # no version banner
            # A child of "websockets", which the core keeps at INFO or above: at DEBUG websockets logs request
            # headers (Authorization) and frames (id tokens).
            logger=logging.getLogger("websockets.server.ocpp"),
        )
        scheme = "wss" if self.ssl_context is not None else "ws"
        _LOGGER.info("OCPP central system listening on %s://%s:%s%s/<station-id>", scheme, self.bind,
                     self.bound_port, self.central.prefix)

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close(close_connections=True)
        try:
            await asyncio.wait_for(self._server.wait_closed(), timeout=10)
        except TimeoutError:
            _LOGGER.warning("OCPP listener: connections did not close in time")
        self._server = None

    # -- handshake -----------------------------------------------------------------------------------------

    def _allowed(self, address: str) -> bool:
        if not self.allow_from:
            return True
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self.allow_from)

    @staticmethod
    def _refusal(connection: ServerConnection, status: int) -> Response:
        response = connection.respond(http.HTTPStatus(status), f"{http.HTTPStatus(status).phrase}\n")
        if status == auth.UNAUTHORIZED:
            response.headers["WWW-Authenticate"] = f'Basic realm="{BASIC_REALM}", charset="UTF-8"'
        return response

    async def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        address = str(connection.remote_address[0]) if connection.remote_address else ""
        if not self._allowed(address):
            self.central.count("refused_address_not_allowed")
            return self._refusal(connection, auth.FORBIDDEN)
        headers: Headers = request.headers
        handshake = auth.Handshake(
            path=request.path,
            authorization=tuple(headers.get_all("Authorization")),
            address=address,
            tls=self.ssl_context is not None,
            peer=peer_certificate(connection) if self.ssl_context is not None else None,
        )
        verdict = await self.central.authenticate(handshake)
        if not verdict.accepted:
            return self._refusal(connection, verdict.status)
        assert verdict.identity is not None
        if not await self._settle_duplicate(verdict.identity, address, handshake):
            return self._refusal(connection, auth.FORBIDDEN)
        self._verdicts[connection] = verdict
        return None

    async def _settle_duplicate(self, identity: str, address: str, handshake: auth.Handshake) -> bool:
        """policy: OCPP-007 - never two live connections for one identity (ocpp.md §4.5)."""
        old = self.central.connection_of(identity)
        if old is None or old.address == address:
            return True  # new, or a reconnect from the same address while the old socket is half-open
        if await old.ping(DUPLICATE_PROBE_TIMEOUT_S):
            verdict = auth.Verdict(identity=identity, reason=auth.Reason.DUPLICATE)
            await self.central.refused(verdict, handshake)
            return False
        await old.close(CLOSE_POLICY_VIOLATION, "replaced by a newer connection")
        return True

    def _select_subprotocol(self, connection: ServerConnection,
                            offered: Sequence[Subprotocol]) -> Subprotocol | None:
        verdict = self._verdicts.get(connection)
        if verdict is None or verdict.station is None:
            return None
        allowed = {SUBPROTOCOL_OF[v] for v in verdict.station.versions}
        # The station's preference among what it may use here (offered in preference order, OCPP-J §3.1.2).
        return next((p for p in offered if p in allowed), None)

    # -- connection ----------------------------------------------------------------------------------------

    async def _handler(self, connection: ServerConnection) -> None:
        verdict = self._verdicts.pop(connection, None)
        if verdict is None or verdict.station is None:
            await connection.close(CLOSE_POLICY_VIOLATION, "not authenticated")
            return
        address = str(connection.remote_address[0]) if connection.remote_address else ""
        if connection.subprotocol is None:
            self.central.count("refused_no_subprotocol")
            _LOGGER.warning("station %s (%s) offered no OCPP version it may use; closing", verdict.identity,
                            address)
            await connection.close(CLOSE_PROTOCOL_ERROR, "no supported OCPP subprotocol")
            return
        version = SUBPROTOCOLS[connection.subprotocol]
        try:
            runtime = self.central.runtime_for(verdict.station)
        except ValueError as err:
            _LOGGER.warning("%s", err)
            await connection.close(CLOSE_POLICY_VIOLATION, "station cannot be registered")
            return
        cls = ChargePoint16 if version == VERSION_16 else ChargePoint201
        link = cls(runtime, connection, address, accepted=runtime.accepted_before)
        old = self.central.attach(runtime, link, address)
        if old is not None:
            await old.close(CLOSE_POLICY_VIOLATION, "replaced by a newer connection")
        _LOGGER.info("station %s connected from %s (OCPP %s, profile %s)", verdict.identity, address, version,
                     verdict.station.profile)
        try:
            await link.run()
        except ConnectionClosed:
            pass
        finally:
            link.cancel_background()
            self.central.detach(runtime, link)
            _LOGGER.info("station %s disconnected", verdict.identity)
