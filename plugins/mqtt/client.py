"""The socket adapter: one paho-mqtt 2.x client driven by the asyncio event loop.

Why the event loop and not paho's own thread (protocols/mqtt.md §4, options A and B): we drive paho from
asyncio through its socket callbacks (``on_socket_open`` -> ``add_reader``, ``on_socket_register_write``
-> ``add_writer``, ``loop_read``/``loop_write``/``loop_misc``), as Home Assistant's MQTT client and paho's
``examples/loop_asyncio.py`` do, because

- every paho callback (CONNACK, messages, PUBACKs) then runs on the loop: the plugin calls ``states`` and
  ``services`` directly, with no ``call_soon_threadsafe`` hand-off per message and no lock shared with a
  second thread; at 10,000 state changes/s a network thread would also contend with the loop for the GIL;
- the reconnect policy is ours: paho's built-in reconnect (only inside ``loop_forever``) has no jitter and
  retries refused credentials every few seconds; ours backs off with jitter (``limits.Backoff``) and slows
  right down after an authentication failure;
- no thread outlives the plugin, which the test suite checks after every test.

What blocks stays off the loop: paho's ``connect()`` resolves the name, opens TCP and runs the TLS handshake
synchronously, so it runs in the default executor. The socket callbacks it fires from that thread are
handed to the loop with ``call_soon_threadsafe``, in order; nothing else touches paho outside the loop, and
nothing publishes before the CONNACK (``connected``), so the executor never races the loop for paho's state.

Contract: ``MqttLink.start()`` connects and keeps connecting until ``stop()``; the handler hears
``link_connected()`` after every successful CONNACK, ``link_lost()`` after every loss, each message and each
publish completion. A failed attempt is logged once per distinct cause at ERROR (naming the broker and the
reason: the CONNACK reason code or the TLS verification error) and at DEBUG while it repeats.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import logging
import socket
import ssl
import threading
from dataclasses import dataclass, field
from typing import Any, Protocol

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from .codec import InboundMessage
from .const import (
    BACKOFF_FACTOR,
    BACKOFF_INITIAL_S,
    BACKOFF_JITTER,
    BACKOFF_MAX_S,
    CONNACK_TIMEOUT_S,
    CONNECT_TIMEOUT_S,
    MAX_INBOUND_PACKET_BYTES,
    MAX_INFLIGHT_QOS1,
    MAX_QUEUED_MESSAGES,
    MISC_INTERVAL_S,
    PROTOCOL_V5,
    STOP_FLUSH_TIMEOUT_S,
)
from .limits import Backoff

_LOGGER = logging.getLogger(__name__)

# CONNACK reason codes that mean "these credentials will not do" (MQTT 5 §3.2.2.2: 0x86 Bad User Name or
# Password, 0x87 Not authorized, 0x8C Bad authentication method; paho maps the 3.1.1 return codes 4 and 5
# onto 0x86 and 0x87). Mosquitto 2.0.11 answers a wrong password with 0x87 (protocols/mqtt.md §1).
AUTH_REASON_CODES = frozenset({0x86, 0x87, 0x8C})
# SSL pending-data drain: decrypted bytes already in the SSL object do not make the socket readable again,
# so after each read we keep reading while the SSL object holds data, up to this many packets per wake-up.
MAX_PACKETS_PER_READ = 1_000


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkSettings:
    host: str
    port: int
    client_id: str
    protocol: str = PROTOCOL_V5
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    keepalive_s: float = 30.0
    ssl_context: ssl.SSLContext | None = None
    will_topic: str | None = None
    will_payload: bytes = b""

    @property
    def broker(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


class LinkHandler(Protocol):
    """What the link tells the plugin. Every method runs on the event loop and must not raise."""

    def link_connected(self) -> None: ...

    def link_lost(self) -> None: ...

    def link_message(self, message: InboundMessage) -> None: ...

    def link_published(self, mid: int, failure: str | None) -> None:
        """A QoS 1 message was acknowledged (``failure``: the PUBACK reason, e.g. "Not authorized")."""

    def link_writable(self) -> None:
        """paho has written everything it held to the socket (``want_write`` went false)."""

    def link_refused(self, reason: str) -> None:
        """The broker refused our CONNECT (reason: the CONNACK reason); called once per distinct reason."""


class ConnectFailure(Exception):
    """One connection attempt failed; ``reason`` is what the installer needs to read."""

    def __init__(self, reason: str, *, refused: bool = False, auth: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.refused = refused  # the broker answered (CONNACK) and said no
        self.auth = auth  # ... because of our credentials


def describe_os_error(err: BaseException) -> str:
    """The reason a connect() raised, in the installer's words."""
    if isinstance(err, ssl.SSLCertVerificationError):
        return f"TLS certificate verify failed: {err.verify_message} (check mqtt.tls.ca and the broker's " \
               "certificate names)"
    if isinstance(err, ssl.SSLError):
        return f"TLS handshake failed: {err.reason or err}"
    if isinstance(err, socket.gaierror):
        return f"cannot resolve the host name ({err.strerror})"
    if isinstance(err, ConnectionRefusedError):
        return "connection refused (is the broker running and listening on this port?)"
    if isinstance(err, TimeoutError):
        return f"no answer within {CONNECT_TIMEOUT_S:g} s"
    if isinstance(err, OSError):
        return err.strerror or str(err)
    return f"{type(err).__name__}: {err}"


def _source_address(host: str) -> str:
    """The local address paho binds before connecting (it always passes one to ``create_connection``).

    paho's default "" binds the wildcard address; for a loopback broker we bind the loopback address the
    kernel would choose anyway, so the socket never touches another interface (the test suite's bind guard
    checks exactly that). Other brokers keep the default: the routing table picks the interface."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return ""
    if ip.is_loopback:
        return "::1" if ip.version == 6 else "127.0.0.1"
    return ""


class MqttLink:
    """A paho client, its socket registered with the loop, and the reconnect task around it."""

    def __init__(self, settings: LinkSettings, handler: LinkHandler, *, backoff: Backoff | None = None) -> None:
        self.settings = settings
        self._handler = handler
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._v5 = settings.protocol == PROTOCOL_V5
        self._client = self._make_client()
        self._sock: Any = None  # the socket registered with the loop (paho's SocketLike)
        self._misc: asyncio.TimerHandle | None = None
        self._connack: asyncio.Future[ReasonCode] | None = None
        self._connecting: asyncio.Future[MQTTErrorCode] | None = None
        self._lost = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._backoff = backoff or Backoff(initial=BACKOFF_INITIAL_S, factor=BACKOFF_FACTOR,
                                           maximum=BACKOFF_MAX_S, jitter=BACKOFF_JITTER)
        self._last_failure: str | None = None
        self._lost_reason: str | None = None
        self._subscriptions: dict[int, tuple[str, ...]] = {}
        self._unacked: set[int] = set()  # mids of QoS 1 messages awaiting their PUBACK
        self._refused_filters: set[str] = set()
        self.connected = False
        self.connects = 0
        self.failures = 0

    # -- paho set-up -------------------------------------------------------------------------------------------

    def _make_client(self) -> paho.Client:
        s = self.settings
        if self._v5:
            client = paho.Client(CallbackAPIVersion.VERSION2, client_id=s.client_id,
                                 protocol=MQTTProtocolVersion.MQTTv5, reconnect_on_failure=False)
        else:
            # clean_session: the broker must not queue commands for us while we are away (stale commands are
            # dangerous, protocols/mqtt.md §2); the v5 equivalent is clean_start with no session expiry.
            client = paho.Client(CallbackAPIVersion.VERSION2, client_id=s.client_id, clean_session=True,
                                 protocol=MQTTProtocolVersion.MQTTv311, reconnect_on_failure=False)
        # An exception in a callback must not unwind through paho's read loop (protocols/mqtt.md §1); ours
        # catch their own, this is the second net.
        client.suppress_exceptions = True
        client.connect_timeout = CONNECT_TIMEOUT_S
        client.max_inflight_messages_set(MAX_INFLIGHT_QOS1)
        client.max_queued_messages_set(MAX_QUEUED_MESSAGES)
        if s.username is not None:
            client.username_pw_set(s.username, s.password)
        if s.ssl_context is not None:
            client.tls_set_context(s.ssl_context)
        if s.will_topic:
            client.will_set(s.will_topic, s.will_payload, qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        # on_publish stays unset until a QoS 1 message is out (see publish()): with a VERSION2 on_publish,
        # paho builds a ReasonCode and a Properties object for every QoS 0 message it writes, about 20 us
        # each here, which would double the cost of publishing a state.
        client.on_subscribe = self._on_subscribe
        client.on_socket_open = self._on_socket_open
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_socket_register_write
        client.on_socket_unregister_write = self._on_socket_unregister_write
        return client

    # -- socket callbacks (paho calls these; from the executor during connect()) --------------------------------

    def _on_loop(self, fn: Any, *args: Any) -> None:
        if threading.get_ident() == self._loop_thread:
            fn(*args)
        else:
            with contextlib.suppress(RuntimeError):  # the loop closed under a late connect(): nothing to do
                self._loop.call_soon_threadsafe(fn, *args)

    def _on_socket_open(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self._on_loop(self._attach, sock)

    def _on_socket_close(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self._on_loop(self._detach, sock)

    def _on_socket_register_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self._on_loop(self._want_write, sock, True)

    def _on_socket_unregister_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self._on_loop(self._want_write, sock, False)

    def _attach(self, sock: Any) -> None:
        if self._stopping or sock.fileno() < 0:
            return  # a connect() that finished after stop(): paho closes it when the client goes
        self._sock = sock
        self._loop.add_reader(sock, self._readable)
        self._schedule_misc()

    def _detach(self, sock: Any) -> None:
        if sock is None or sock is not self._sock:
            return  # an old socket paho closes while opening a new one; we let go of it already
        self._loop.remove_reader(sock)
        self._loop.remove_writer(sock)
        self._sock = None
        if self._misc is not None:
            self._misc.cancel()
            self._misc = None
        was_connected, self.connected = self.connected, False
        # paho resends unacknowledged QoS 1 messages after a reconnect; their PUBACKs no longer concern us.
        self._unacked.clear()
        self._client.on_publish = None
        if self._connack is not None and not self._connack.done():
            reason = self._lost_reason or "the broker closed the connection before CONNACK"
            self._connack.set_exception(ConnectFailure(reason))
        self._lost.set()
        if was_connected:
            self._handler.link_lost()

    def _want_write(self, sock: Any, want: bool) -> None:
        if sock is not self._sock or sock is None:
            return
        if want:
            self._loop.add_writer(sock, self._writable)
        else:
            self._loop.remove_writer(sock)
            try:
                self._handler.link_writable()
            except Exception:
                _LOGGER.exception("mqtt: handling a drained write buffer failed")

    def _readable(self) -> None:
        client = self._client
        sock = self._sock
        for _ in range(MAX_PACKETS_PER_READ):
            client.loop_read()
            if self._sock is not sock or not isinstance(sock, ssl.SSLSocket) or not sock.pending():
                break

    def _writable(self) -> None:
        self._client.loop_write()

    def _schedule_misc(self) -> None:
        if self._misc is None:
            self._misc = self._loop.call_later(MISC_INTERVAL_S, self._misc_tick)

    def _misc_tick(self) -> None:
        self._misc = None
        if self._sock is None:
            return
        self._client.loop_misc()  # PINGREQ when due; closes the socket when the PINGRESP never came
        if self._sock is not None:
            self._schedule_misc()

    # -- protocol callbacks (on the loop, from loop_read/loop_write) --------------------------------------------

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, reason: ReasonCode,
                    properties: Any) -> None:
        if self._connack is not None and not self._connack.done():
            self._connack.set_result(reason)
        if reason.is_failure:
            return
        self.connected = True
        self.connects += 1
        try:
            self._handler.link_connected()
        except Exception:
            _LOGGER.exception("mqtt: handling the connection to %s failed", self.settings.broker)

    def _on_disconnect(self, client: paho.Client, userdata: Any, flags: Any, reason: ReasonCode,
                       properties: Any) -> None:
        # Called before the socket closes; remembered for the log line of the loss (session taken over,
        # not authorized, keep-alive timeout ...).
        from_broker = getattr(flags, "is_disconnect_packet_from_server", False)
        self._lost_reason = f"{'broker sent DISCONNECT: ' if from_broker else ''}{reason}"

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            return  # MQTT 5 §1.5.4: topics are UTF-8; a broker that delivers anything else is broken
        props = getattr(msg, "properties", None)
        response_topic = getattr(props, "ResponseTopic", None) if props is not None else None
        correlation = getattr(props, "CorrelationData", None) if props is not None else None
        user_props = getattr(props, "UserProperty", None) if props is not None else None
        message = InboundMessage(
            topic=topic,
            payload=bytes(msg.payload),
            retain=bool(msg.retain),
            qos=int(msg.qos),
            response_topic=response_topic if isinstance(response_topic, str) else None,
            correlation_data=bytes(correlation) if isinstance(correlation, bytes | bytearray) else None,
            user_properties=tuple((str(k), str(v)) for k, v in user_props) if isinstance(user_props, list) else (),
        )
        try:
            self._handler.link_message(message)
        except Exception:
            _LOGGER.exception("mqtt: handling a message on %s failed", topic)

    def _on_publish(self, client: paho.Client, userdata: Any, mid: int, reason: ReasonCode,
                    properties: Any) -> None:
        if mid not in self._unacked:
            return  # a QoS 0 message written while a QoS 1 one was outstanding
        self._unacked.discard(mid)
        if not self._unacked:
            client.on_publish = None
        try:
            self._handler.link_published(mid, str(reason) if reason.is_failure else None)
        except Exception:
            _LOGGER.exception("mqtt: handling a publish acknowledgement failed")

    def _on_subscribe(self, client: paho.Client, userdata: Any, mid: int, reasons: list[ReasonCode],
                      properties: Any) -> None:
        filters = self._subscriptions.pop(mid, ())
        for topic, reason in zip(filters, reasons, strict=False):
            if reason.is_failure and topic not in self._refused_filters:
                self._refused_filters.add(topic)
                _LOGGER.error("mqtt: broker %s refused the subscription to %s: %s (check the broker's ACL "
                              "for user %s)", self.settings.broker, topic, reason,
                              self.settings.username or "(anonymous)")

    # -- what the plugin calls ----------------------------------------------------------------------------------

    def publish(self, topic: str, payload: bytes, *, qos: int = 0, retain: bool = False,
                correlation_data: bytes | None = None) -> int | None:
        """Hand one message to paho; its mid, or ``None`` when not connected or paho refused it."""
        if not self.connected:
            return None
        properties = None
        if correlation_data is not None and self._v5:
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            properties.CorrelationData = correlation_data
        if qos and self._client.on_publish is None:
            self._client.on_publish = self._on_publish
        try:
            info = self._client.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        except ValueError as err:  # an invalid topic: a bug of ours, never worth a crash
            _LOGGER.warning("mqtt: not publishing to %r: %s", topic, err)
            return None
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            return None
        if qos:
            self._unacked.add(info.mid)
        return info.mid

    @property
    def want_write(self) -> bool:
        """paho still holds messages it has not written to the socket."""
        return self._client.want_write()

    def subscribe(self, filters: list[str], *, qos: int = 1) -> None:
        if not self.connected or not filters:
            return
        if self._v5:
            # noLocal: never receive what we publish ourselves. retainAsPublished: the retain flag arrives as
            # the sender set it, also on live delivery (MQTT 5 §3.8.3.1), so a command published retained is
            # recognised at once and not only when the broker replays it at the next subscribe.
            options = SubscribeOptions(qos=qos, noLocal=True, retainAsPublished=True)
            result, mid = self._client.subscribe([(f, options) for f in filters])
        else:
            result, mid = self._client.subscribe([(f, qos) for f in filters])
        if result == MQTTErrorCode.MQTT_ERR_SUCCESS and mid is not None:
            self._subscriptions[mid] = tuple(filters)

    def start(self) -> None:
        self._task = self._loop.create_task(self._run(), name=f"mqtt-link-{self.settings.broker}")

    async def stop(self, final: list[tuple[str, bytes]] | None = None) -> None:
        """Publish ``final`` (retained, QoS 1) if connected, disconnect cleanly, and let go of everything."""
        self._stopping = True
        # One budget for the whole stop (the loader gives a plugin 2 s): a hung broker must not hold us up.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(STOP_FLUSH_TIMEOUT_S):
                if self._task is not None:
                    self._task.cancel()
                    await asyncio.wait({self._task})
                if self._connecting is not None and not self._connecting.done():
                    await asyncio.wait({self._connecting})
                if self.connected:
                    for topic, payload in final or []:
                        self._client.publish(topic, payload, qos=1, retain=True)
                    # A normal DISCONNECT: the broker drops the will (we published "offline" just before).
                    self._client.disconnect()
                    await self._lost.wait()
        sock = self._sock
        self._detach(sock)
        for name in ("on_socket_open", "on_socket_close", "on_socket_register_write",
                     "on_socket_unregister_write", "on_connect", "on_disconnect", "on_message", "on_publish",
                     "on_subscribe"):
            setattr(self._client, name, None)
        if sock is not None:
            sock.close()
        late = self._client.socket()  # a connect() that completed after stop() began
        if late is not None:
            late.close()

    # -- the reconnect loop -------------------------------------------------------------------------------------

    async def _run(self) -> None:
        while not self._stopping:
            try:
                await self._connect_once()
            except ConnectFailure as failure:
                self.failures += 1
                # Refused credentials will be refused again: wait the longest delay (const.BACKOFF_MAX_S).
                delay = self._backoff.maximum if failure.auth else self._backoff.next_delay()
                self._report(failure, delay)
                await asyncio.sleep(delay)
                continue
            self._backoff.reset()
            if self._last_failure is not None:
                _LOGGER.warning("mqtt: connected to broker %s again", self.settings.broker)
            else:
                _LOGGER.info("mqtt: connected to broker %s as %s", self.settings.broker,
                             self.settings.username or self.settings.client_id)
            self._last_failure = None
            if self._stopping:
                break
            await self._lost.wait()
            if self._stopping:
                break
            delay = self._backoff.next_delay()
            _LOGGER.warning("mqtt: lost the connection to broker %s (%s); reconnecting in %.1f s",
                            self.settings.broker, self._lost_reason or "connection closed", delay)
            await asyncio.sleep(delay)

    def _report(self, failure: ConnectFailure, delay: float) -> None:
        s = self.settings
        if failure.refused:
            text = f"mqtt: broker {s.broker} refused the connection: {failure.reason}"
            if failure.auth:
                text += f" (check mqtt.username '{s.username or ''}' and mqtt.password, and the broker's " \
                        f"password file and ACL); retrying every {delay:.0f} s"
        else:
            text = f"mqtt: cannot connect to broker {s.broker}: {failure.reason}"
        if failure.reason != self._last_failure:
            _LOGGER.error("%s", text)
            self._last_failure = failure.reason
            if failure.refused:
                try:
                    self._handler.link_refused(failure.reason)
                except Exception:
                    _LOGGER.exception("mqtt: handling a refused connection failed")
        else:
            _LOGGER.debug("%s (again; next attempt in %.1f s)", text, delay)

    async def _connect_once(self) -> None:
        s = self.settings
        # Let go of any socket from the previous attempt on the loop, before paho closes it in the executor.
        self._detach(self._sock)
        self._lost = asyncio.Event()
        self._lost_reason = None
        self._connack = self._loop.create_future()
        self._subscriptions.clear()
        kwargs: dict[str, Any] = {"keepalive": int(s.keepalive_s), "bind_address": _source_address(s.host)}
        if self._v5:
            # Clean start, no session expiry: the broker keeps nothing for us between connections (§2).
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            # MQTT 5 §3.1.2.11.4: the broker must not send us larger packets; it drops them instead. Bounds
            # what a client allowed on our command topic can make us buffer.
            props.MaximumPacketSize = MAX_INBOUND_PACKET_BYTES
            kwargs.update(clean_start=True, properties=props)
        connect = functools.partial(self._client.connect, s.host, s.port, **kwargs)
        self._connecting = self._loop.run_in_executor(None, connect)
        try:
            rc = await asyncio.shield(self._connecting)
        except asyncio.CancelledError:
            raise
        except Exception as err:  # whatever connect() raises is one failed attempt, never the end of the task
            raise ConnectFailure(describe_os_error(err)) from None
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise ConnectFailure(paho.error_string(rc))
        try:
            # asyncio.timeout rather than wait_for: Python 3.11's wait_for swallows a cancellation that arrives
            # as the CONNACK does, and stop() would then wait forever for this task.
            async with asyncio.timeout(CONNACK_TIMEOUT_S):
                reason = await self._connack
        except TimeoutError:
            self._detach(self._sock)
            raise ConnectFailure(f"no CONNACK within {CONNACK_TIMEOUT_S:g} s") from None
        if reason.is_failure:
            raise ConnectFailure(f"{reason} (CONNACK reason code 0x{reason.value:02X})", refused=True,
                                 auth=reason.value in AUTH_REASON_CODES)
