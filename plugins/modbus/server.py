"""The gateway's Modbus/TCP server: the only module of the server side that touches sockets.

Contract:
- Listens on the configured address only (127.0.0.1 by default; never all interfaces unless configured).
- A peer outside ``allow_from`` is aborted in ``connection_made``, before a single byte is read or a TLS
  handshake starts, and audited (one record per address per ``AUDIT_REFUSED_INTERVAL_S``). # policy: MODBUS-001
- With TLS (Modbus/TCP Security, # policy: MODBUS-004) the TLS handshake starts only after the allowlist check
  (``loop.start_tls``); the client must present a certificate from the configured CA (``client_auth``
  "required": a wrong certificate fails the handshake), and its role extension decides what it may do:
  no access -> every request gets 0x01, "read" -> writes get 0x01.
- Requests are decoded by ``codec.ServerConnection`` and answered in order, pipelined ones included. Broken
  framing closes that one connection; every other connection carries on. Writes (only where the map says
  ``writable: true``) call the mapped gateway service and are acknowledged after it returned; any failure is
  an exception response, never a silent success.
- Connection count, idle time and handshake time are bounded (``const.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import ssl
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from gateway.context import Context, Role
from gateway.errors import ServiceValidationError, Unauthorized

from .codec import (
    BadRequest,
    NeedData,
    ReadRequest,
    RemoteProtocolError,
    ServerConnection,
    WriteRequest,
    encode_exception,
    encode_registers,
    encode_write_ack,
)
from .const import (
    AUDIT_REFUSED_INTERVAL_S,
    DOMAIN,
    EXC_GATEWAY_TARGET_FAILED,
    EXC_ILLEGAL_DATA_VALUE,
    EXC_ILLEGAL_FUNCTION,
    EXC_SERVER_DEVICE_FAILURE,
    IDLE_TIMEOUT_S,
    MAX_ADU_LEN,
    MAX_CLIENTS,
    MAX_CLIENTS_PER_ADDRESS,
    MAX_QUEUED_REQUESTS,
    TLS_HANDSHAKE_TIMEOUT_S,
    UNIT_ID_TCP_ANY,
    WRITE_SERVICE_TIMEOUT_S,
)
from .roles import access_for, common_name, role_of
from .servermap import Entry, ServerMap

if TYPE_CHECKING:
    from gateway.core import Gateway

_LOGGER = logging.getLogger(__name__)

AUDIT_EVENT = "security.event"  # gateway.security.audit.EVENT_SECURITY


class ModbusServer:
    def __init__(self, gw: Gateway, *, bind: str, port: int, smap: ServerMap, allow_from: Sequence[str],
                 ssl_context: ssl.SSLContext | None, roles: dict[str, str]) -> None:
        self._gw = gw
        self.bind = bind
        self.port = port
        self.map = smap
        self._allow = [ipaddress.ip_network(n, strict=False) for n in allow_from]
        self.ssl_context = ssl_context
        self.roles = roles
        self._server: asyncio.Server | None = None
        self.connections: set[_Connection] = set()
        self._per_address: dict[str, int] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._refused: dict[str, tuple[float, int]] = {}  # address -> (last audited, refusals since)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Connection(self), host=self.bind, port=self.port,
                                                reuse_address=True, backlog=MAX_CLIENTS * 2)
        sock = self._server.sockets[0]
        self.port = int(sock.getsockname()[1])
        _LOGGER.info("modbus server on %s:%d (%s), map:\n  %s", self.bind, self.port,
                     "Modbus/TCP Security" if self.ssl_context else "plain TCP", "\n  ".join(self.map.describe()))

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            conn.abort()
        if self._server is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- admission ----------------------------------------------------------------------------------------

    def admits(self, address: str) -> str | None:
        """None when the peer may connect, else the reason it may not."""
        if self._allow:
            try:
                ip = ipaddress.ip_address(address.split("%", 1)[0])
            except ValueError:
                return "unparseable address"
            if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
                ip = ip.ipv4_mapped
            if not any(ip in net for net in self._allow):
                return "not in allow_from"  # policy: MODBUS-001
        if len(self.connections) >= MAX_CLIENTS:
            return f"more than {MAX_CLIENTS} connections"
        if self._per_address.get(address, 0) >= MAX_CLIENTS_PER_ADDRESS:
            return f"more than {MAX_CLIENTS_PER_ADDRESS} connections from one address"
        return None

    def refused(self, address: str, reason: str) -> None:
        now = time.monotonic()
        last, count = self._refused.get(address, (0.0, 0))
        count += 1
        if last and now - last < AUDIT_REFUSED_INTERVAL_S:
            self._refused[address] = (last, count)
            return
        self._refused[address] = (now, 0)
        _LOGGER.warning("modbus server refused %s: %s", address, reason)
        self.audit("peer_refused", address, reason=reason, refusals=count)

    def audit(self, what: str, address: str | None, **data: Any) -> None:
        context = Context(origin=DOMAIN, address=address, role=Role.VIEWER)
        self.spawn(self._gw.audit.append(AUDIT_EVENT, {"plugin": DOMAIN, "what": what, "address": address,
                                                       **data}, context))

    def opened(self, conn: _Connection) -> None:
        self.connections.add(conn)
        self._per_address[conn.address] = self._per_address.get(conn.address, 0) + 1

    def closed(self, conn: _Connection) -> None:
        if conn in self.connections:
            self.connections.discard(conn)
            left = self._per_address.get(conn.address, 1) - 1
            if left:
                self._per_address[conn.address] = left
            else:
                self._per_address.pop(conn.address, None)

    # -- requests -----------------------------------------------------------------------------------------

    def lookup(self, entity_id: str) -> Any:
        state = self._gw.states.get(entity_id)
        return None if state is None else state.value

    async def write(self, conn: _Connection, request: WriteRequest, entries: list[tuple[Entry, float | None]]
                    ) -> bytes:
        context = Context(origin=DOMAIN, principal=conn.principal, role=Role.OPERATOR, address=conn.address)
        for entry, value in entries:
            if value is None or entry.service is None or entry.field is None:
                return encode_exception(request.transaction_id, request.unit_id, request.function,
                                        EXC_ILLEGAL_DATA_VALUE)
            domain, name = entry.service.split(".", 1)
            data = {**dict(entry.data), entry.field: value}
            try:
                await asyncio.wait_for(self._gw.services.call(domain, name, data, context), WRITE_SERVICE_TIMEOUT_S)
            except ServiceValidationError as err:
                _LOGGER.info("modbus write from %s refused by %s: %s", conn.address, entry.service, err)
                code = EXC_ILLEGAL_DATA_VALUE
            except Unauthorized:
                code = EXC_ILLEGAL_FUNCTION
            except Exception:  # any other failure is the device failing, not the request (AP §7 code 04)
                _LOGGER.exception("modbus write from %s: %s failed", conn.address, entry.service)
                code = EXC_SERVER_DEVICE_FAILURE
            else:
                continue
            return encode_exception(request.transaction_id, request.unit_id, request.function, code)
        return encode_write_ack(request)


class _Connection(asyncio.Protocol):
    """One client. Reads stay synchronous (answered in ``data_received``); a write parks the pipeline until its
    service call returned, so answers leave in request order."""

    def __init__(self, server: ModbusServer) -> None:
        self.server = server
        self.codec = ServerConnection()
        self.transport: asyncio.Transport | None = None
        self.address = "?"
        self.principal: str | None = None
        self.access: str | None = "write"  # plain TCP: the map alone decides (MODBUS-002 keeps writes off)
        self.ready = False
        self.busy = False
        self.closed = False
        self.paused = False
        self.write_paused = False
        self.last_activity = 0.0
        self.idle_handle: asyncio.TimerHandle | None = None

    # -- asyncio ------------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.address = str(peer[0]) if peer else "?"
        reason = self.server.admits(self.address)
        if reason is not None:
            self.closed = True
            transport.abort()  # before reading anything: no byte of theirs is parsed, no TLS started
            self.server.refused(self.address, reason)
            return
        self.server.opened(self)
        loop = asyncio.get_running_loop()
        self.last_activity = loop.time()
        self.idle_handle = loop.call_later(IDLE_TIMEOUT_S, self._check_idle)
        if self.server.ssl_context is not None:
            transport.pause_reading()  # nothing reaches data_received before the handshake
            self.server.spawn(self._start_tls(transport, self.server.ssl_context))
        else:
            self.ready = True

    async def _start_tls(self, transport: asyncio.Transport, context: ssl.SSLContext) -> None:
        loop = asyncio.get_running_loop()
        try:
            tls_transport = await loop.start_tls(transport, self, context, server_side=True,
                                                 ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT_S)
        except (TimeoutError, OSError, ssl.SSLError, ConnectionError) as err:
            _LOGGER.info("modbus TLS handshake with %s failed: %s", self.address, err)
            self.server.audit("tls_handshake_failed", self.address, reason=type(err).__name__)
            self.abort()
            return
        if tls_transport is None or self.closed:
            return
        assert isinstance(tls_transport, asyncio.Transport)
        self.transport = tls_transport
        ssl_object = tls_transport.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        role = role_of(der)
        self.principal = common_name(der)
        self.access = access_for(role, self.server.roles)
        if self.access is None:
            _LOGGER.warning("modbus client %s (%s) has role %r: no access", self.address, self.principal, role)
            self.server.audit("role_denied", self.address, principal=self.principal, role=role)
        self.ready = True
        self._resume()
        self._process()

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        self.last_activity = asyncio.get_running_loop().time()
        self.codec.receive_data(data)
        if (self.busy or not self.ready) and self.codec.buffered > MAX_QUEUED_REQUESTS * MAX_ADU_LEN:
            self._pause()
        if self.ready:
            self._process()
        # else: TLS records that arrived right after the handshake, before _start_tls resumed; it
        # processes them once it has read the client's role.

    def eof_received(self) -> bool | None:
        return None  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.idle_handle is not None:
            self.idle_handle.cancel()
        self.server.closed(self)

    def pause_writing(self) -> None:  # the client does not read its answers: stop reading its requests
        self.write_paused = True
        self._pause()

    def resume_writing(self) -> None:
        self.write_paused = False
        self._resume()

    # -- helpers ------------------------------------------------------------------------------------------

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def _pause(self) -> None:
        if not self.paused and self.transport is not None and not self.closed:
            self.paused = True
            self.transport.pause_reading()

    def _resume(self) -> None:
        if self.paused and not self.busy and not self.write_paused and self.transport is not None \
                and not self.closed:
            self.paused = False
            self.transport.resume_reading()

    def _check_idle(self) -> None:
        if self.closed:
            return
        loop = asyncio.get_running_loop()
        idle = loop.time() - self.last_activity
        if idle >= IDLE_TIMEOUT_S and not self.busy:
            _LOGGER.info("modbus client %s idle for %.0f s: closing", self.address, idle)
            self.abort()
            return
        self.idle_handle = loop.call_later(max(1.0, IDLE_TIMEOUT_S - idle), self._check_idle)

    def _process(self) -> None:
        out: list[bytes] = []
        codec = self.codec
        server = self.server
        smap = server.map
        transport = self.transport
        while not self.busy and not self.closed:
            try:
                event = codec.next_event()
            except RemoteProtocolError as err:
                _LOGGER.info("modbus client %s broke framing (%s): closing", self.address, err)
                if out and transport is not None:
                    transport.write(b"".join(out))
                self.abort()
                return
            if isinstance(event, NeedData):
                break
            tid, unit, function = event.transaction_id, event.unit_id, event.function
            if unit != smap.unit_id and unit != UNIT_ID_TCP_ANY:
                out.append(encode_exception(tid, unit, function, EXC_GATEWAY_TARGET_FAILED))
            elif isinstance(event, BadRequest):
                out.append(encode_exception(tid, unit, function, event.exception_code))
            elif self.access is None:
                out.append(encode_exception(tid, unit, function, EXC_ILLEGAL_FUNCTION))
            elif isinstance(event, ReadRequest):
                try:
                    result = smap.read(function, event.address, event.count, server.lookup)
                except Exception:
                    _LOGGER.exception("modbus read %d+%d failed", event.address, event.count)
                    result = EXC_SERVER_DEVICE_FAILURE
                if isinstance(result, int):
                    out.append(encode_exception(tid, unit, function, result))
                else:
                    out.append(encode_registers(tid, unit, function, result))
            else:
                assert isinstance(event, WriteRequest)
                resolved = smap.resolve_write(event.address, event.values)
                if isinstance(resolved, int):
                    out.append(encode_exception(tid, unit, function, resolved))
                elif self.access != "write":  # a TLS role that may only read (MB-TCP-Security AuthZ)
                    server.audit("write_denied", self.address, principal=self.principal, address_written=event.address)
                    out.append(encode_exception(tid, unit, function, EXC_ILLEGAL_FUNCTION))
                else:
                    self.busy = True
                    server.spawn(self._write(event, resolved))
        if out and transport is not None and not self.closed:
            transport.write(b"".join(out) if len(out) > 1 else out[0])

    async def _write(self, request: WriteRequest, entries: list[tuple[Entry, float | None]]) -> None:
        try:
            answer = await self.server.write(self, request, entries)
        finally:
            self.busy = False
        if not self.closed and self.transport is not None:
            self.transport.write(answer)
            self._resume()
            self._process()
