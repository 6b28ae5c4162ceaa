"""The gateway side: states out, commands in, discovery and availability, over one ``MqttLink``.

Contract:
- Every ``state_changed`` marks its entity in a coalescing ``Outbox``; a pump task publishes the *current*
  state of due entities (latest value wins, at most once per ``min_interval``), retained, and the attributes
  message only when unit or attributes changed. paho gets a batch only once it has written the previous one
  (and at most ``MAX_UNACKED_QOS1`` QoS 1 messages await their PUBACK); what cannot wait in the outbox is
  dropped and counted in ``sensor.mqtt_dropped``.
- After every CONNACK: ``online`` (retained, QoS 1; the will says ``offline``), subscriptions, then every
  current state (and discovery config) republished, whatever was sent before.
- A message on ``<prefix>/cmd/<domain>/<service>`` becomes ``services.call`` with
  ``Context(origin="mqtt", principal=<our MQTT user or client id>[ (claims <v5 user property>)],
  role=OPERATOR)`` when the service is in ``commands.allow`` (policy: MQTT-002); the answer goes to the v5
  response topic with its correlation data, else to ``.../result``. Refusals are answered within a rate
  budget, counted, logged at most once a minute, and never stop the plugin.
- A removed entity (``new_state`` None) gets empty retained messages on its state, attributes and discovery
  config topics, which deletes them at the broker and in Home Assistant.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gateway.context import Context, Role
from gateway.errors import GatewayError, ServiceNotFound, ServiceValidationError, Unauthorized
from gateway.security import audit as audit_events
from gateway.states import EVENT_STATE_CHANGED

from .codec import (
    ERR_BAD_TOPIC,
    ERR_BUSY,
    ERR_FAILED,
    ERR_INVALID,
    ERR_NOT_ALLOWED,
    ERR_NOT_FOUND,
    ERR_RATE_LIMITED,
    ERR_RETAINED,
    ERR_TIMEOUT,
    ERR_UNAUTHORIZED,
    CommandError,
    CommandRequest,
    InboundMessage,
    ReplyTarget,
    decode_command,
    encode_attributes,
    encode_reply,
    encode_value,
    reply_target,
)
from .const import (
    AUDIT_FLUSH_TIMEOUT_S,
    COMMAND_BURST,
    COMMAND_RATE_PER_S,
    COMMAND_TIMEOUT_S,
    DOMAIN,
    DROPPED_ENTITY,
    DROPPED_STATE_INTERVAL_S,
    ERROR_LOG_INTERVAL_S,
    ERROR_REPLY_BURST,
    ERROR_REPLY_RATE_PER_S,
    HA_STATUS_SUFFIX,
    MAX_CONCURRENT_COMMANDS,
    MAX_PENDING_ENTITIES,
    MAX_QUEUED_MESSAGES,
    MAX_UNACKED_QOS1,
    PAYLOAD_OFFLINE,
    PAYLOAD_ONLINE,
    PUMP_BATCH,
)
from .discovery import DeviceInfo, config_payload, config_topic
from .limits import TokenBucket
from .outbox import Outbox
from .topics import Topics

if TYPE_CHECKING:
    from gateway.bus import Event
    from gateway.core import Gateway

    from .client import LinkHandler, MqttLink

_LOGGER = logging.getLogger(__name__)

# QoS 1 messages count against paho's queue limit; our bound must keep us under it, or paho would refuse
# publishes (MQTT_ERR_QUEUE_SIZE) that we meant to flow-control ourselves. Replies and the availability
# message may come on top of a full discovery window, hence the margin.
assert MAX_UNACKED_QOS1 + 100 <= MAX_QUEUED_MESSAGES


@dataclass(frozen=True, slots=True, kw_only=True)
class BridgeOptions:
    prefix: str
    qos: int = 0
    min_interval_s: float = 1.0
    commands_enabled: bool = False
    allow: frozenset[str] | None = frozenset()  # None: every service (MQTT-002 accepted as a risk)
    principal: str = "mqtt"  # the MQTT user name we connect as, else our client id
    discovery_enabled: bool = False
    discovery_prefix: str = "homeassistant"
    device: DeviceInfo | None = None


class MqttBridge:
    """Implements ``LinkHandler``; owns the outboxes, the pump task and the running commands."""

    def __init__(self, gw: Gateway, options: BridgeOptions, link_factory: Callable[[LinkHandler], MqttLink]) -> None:
        self._gw = gw
        self.options = options
        self.topics = Topics(options.prefix)
        self._loop = asyncio.get_running_loop()
        self._states_out = Outbox(min_interval=options.min_interval_s, max_pending=MAX_PENDING_ENTITIES)
        self._discovery_out = Outbox(min_interval=0.0, max_pending=MAX_PENDING_ENTITIES)
        self._discovery = options.discovery_enabled and options.device is not None
        self._ha_status = f"{options.discovery_prefix}/{HA_STATUS_SUFFIX}"
        self._forbidden_reply_roots = (options.prefix, options.discovery_prefix)
        self._attrs_sent: dict[str, tuple[str | None, Any]] = {}
        self._config_sent: dict[str, bytes] = {}
        self._unacked: set[int] = set()  # our QoS 1 mids awaiting PUBACK
        self._qos1_topics: dict[int, str] = {}
        self._refused_publish: set[str] = set()
        self._blocked = False
        self._wake = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None
        self._stats_timer: asyncio.TimerHandle | None = None
        self._pump_task: asyncio.Task[None] | None = None
        self._commands: set[asyncio.Task[None]] = set()
        self._side_tasks: set[asyncio.Task[Any]] = set()
        now = self._loop.time()
        self._command_bucket = TokenBucket(rate=COMMAND_RATE_PER_S, burst=COMMAND_BURST, now=now)
        self._error_bucket = TokenBucket(rate=ERROR_REPLY_RATE_PER_S, burst=ERROR_REPLY_BURST, now=now)
        self._unsubscribe: Callable[[], None] | None = None
        self.publish_failures = 0
        self.refused_commands = 0
        self.suppressed_replies = 0
        self._refused_since_log = 0
        self._last_refusal_log = -ERROR_LOG_INTERVAL_S
        self._reported: tuple[int, int, int] | None = None
        self._stopping = False
        self.link = link_factory(self)

    # -- life cycle ---------------------------------------------------------------------------------------------

    async def start(self) -> None:
        self._report_stats()
        self._unsubscribe = self._gw.bus.subscribe(EVENT_STATE_CHANGED, self._on_state_changed, owner=DOMAIN)
        self._pump_task = self._loop.create_task(self._pump(), name="mqtt-pump")
        self.link.start()

    async def stop(self) -> None:
        self._stopping = True  # from here on, messages still read from the socket start nothing new
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        for handle in (self._timer, self._stats_timer):
            if handle is not None:
                handle.cancel()
        self._timer = self._stats_timer = None
        self._report_stats(again=False)  # the last figures stay readable after stop
        if self._side_tasks:
            # Audit records of refused commands: let them reach the database rather than lose them.
            await asyncio.wait(set(self._side_tasks), timeout=AUDIT_FLUSH_TIMEOUT_S)
        tasks = [t for t in (self._pump_task, *self._commands, *self._side_tasks) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.link.stop(final=[(self.topics.status, PAYLOAD_OFFLINE.encode())])

    @property
    def dropped(self) -> int:
        return self._states_out.dropped + self._discovery_out.dropped + self.publish_failures

    # -- states out ---------------------------------------------------------------------------------------------

    def _on_state_changed(self, event: Event) -> None:
        """Runs inline in ``states.set()``: keep it to a few dict operations."""
        data = event.data
        entity_id: str = data["entity_id"]
        new = data["new_state"]
        if new is not None and not self.link.connected:
            return  # the snapshot after the next CONNACK sends it; only removals must be remembered
        now = self._loop.time()
        self._states_out.mark(entity_id, now)
        if new is None:
            self._states_out.forget(entity_id)
        if self._discovery:
            old = data["old_state"]
            if new is None or old is None or old.unit != new.unit \
                    or old.attributes.get("friendly_name") != new.attributes.get("friendly_name"):
                self._discovery_out.mark(entity_id, now)
        if not self._wake.is_set():
            self._wake.set()

    def _arm_timer(self) -> None:
        due = self._states_out.next_due()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if due is not None:
            self._timer = self._loop.call_at(due, self._wake.set)

    async def _pump(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._drain():
                # More is due: yield once so the loop writes what paho holds and runs other callbacks, then
                # go on (Event.wait() on a set event returns without yielding, hence the sleep).
                self._wake.set()
                await asyncio.sleep(0)
                continue
            self._arm_timer()

    def _drain(self) -> bool:
        """Hand one batch to paho; ``True`` when more is due and paho may take it after the loop has run."""
        link = self.link
        if not link.connected:
            return False
        if link.want_write:
            self._blocked = True  # link_writable() wakes us once paho has written its buffer
            return False
        now = self._loop.time()
        room = MAX_UNACKED_QOS1 - len(self._unacked)
        budget = PUMP_BATCH
        if self._discovery and room > 0:
            keys = self._discovery_out.take(now, min(budget, room))
            for entity_id in keys:
                self._publish_discovery(entity_id)
            budget -= len(keys)
            room -= len(keys)
        if self.options.qos:
            budget = min(budget, room)
        if budget > 0:
            for entity_id in self._states_out.take(now, budget):
                self._publish_state(entity_id)
        more = self._states_out.ready(now) or (self._discovery and self._discovery_out.ready(now))
        if more and len(self._unacked) >= MAX_UNACKED_QOS1:
            self._blocked = True  # link_published() wakes us when half the QoS 1 window is free again
            return False
        return more and link.connected

    def _send(self, topic: str, payload: bytes, *, qos: int, retain: bool,
              correlation_data: bytes | None = None) -> bool:
        mid = self.link.publish(topic, payload, qos=qos, retain=retain, correlation_data=correlation_data)
        if mid is None:
            self.publish_failures += 1
            return False
        if qos:
            self._unacked.add(mid)
            self._qos1_topics[mid] = topic
        return True

    def _publish_state(self, entity_id: str) -> None:
        state = self._gw.states.get(entity_id)
        topics = self.topics
        if state is None:
            # Removed: an empty retained message deletes the retained value at the broker (MQTT 5 §3.3.1.3).
            self._send(topics.state(entity_id), b"", qos=1, retain=True)
            self._send(topics.attributes(entity_id), b"", qos=1, retain=True)
            self._attrs_sent.pop(entity_id, None)
            return
        self._send(topics.state(entity_id), encode_value(state.value), qos=self.options.qos, retain=True)
        sent = self._attrs_sent.get(entity_id)
        if sent is None or sent[0] != state.unit or sent[1] != state.attributes:
            payload = encode_attributes(state.unit, state.attributes)
            if self._send(topics.attributes(entity_id), payload, qos=self.options.qos, retain=True):
                self._attrs_sent[entity_id] = (state.unit, state.attributes)

    def _publish_discovery(self, entity_id: str) -> None:
        device = self.options.device
        assert device is not None
        topic = config_topic(self.options.discovery_prefix, device.node_id, entity_id)
        state = self._gw.states.get(entity_id)
        if state is None:
            self._send(topic, b"", qos=1, retain=True)  # HA deletes the entity on an empty config
            self._config_sent.pop(entity_id, None)
            return
        payload = json.dumps(config_payload(entity_id, state.unit, state.attributes, topics=self.topics,
                                            device=device), separators=(",", ":")).encode()
        if self._config_sent.get(entity_id) != payload and self._send(topic, payload, qos=1, retain=True):
            self._config_sent[entity_id] = payload

    def _mark_everything(self) -> None:
        now = self._loop.time()
        self._attrs_sent.clear()
        self._config_sent.clear()
        for state in self._gw.states.all():
            self._states_out.mark(state.entity_id, now, force=True)
            if self._discovery:
                self._discovery_out.mark(state.entity_id, now, force=True)
        self._wake.set()

    def _report_stats(self, *, again: bool = True) -> None:
        """``sensor.mqtt_dropped``: what could not be published, updated at most every few seconds."""
        if again:
            self._stats_timer = self._loop.call_later(DROPPED_STATE_INTERVAL_S, self._report_stats)
        figures = (self.dropped, self.refused_commands, self.publish_failures)
        if figures == self._reported:
            return
        self._reported = figures
        self._gw.states.set(DROPPED_ENTITY, figures[0], attributes={
            "friendly_name": "MQTT messages dropped",
            "publish_failures": figures[2],
            "refused_commands": figures[1],
        }, owner=DOMAIN)

    # -- LinkHandler --------------------------------------------------------------------------------------------

    def link_connected(self) -> None:
        if self._stopping:
            return
        self._unacked.clear()
        self._qos1_topics.clear()
        self._blocked = False
        self._send(self.topics.status, PAYLOAD_ONLINE.encode(), qos=1, retain=True)
        filters = []
        if self.options.commands_enabled:
            filters.append(self.topics.command_filter)
        if self._discovery:
            filters.append(self._ha_status)
        self.link.subscribe(filters, qos=1)
        self._mark_everything()

    def link_lost(self) -> None:
        self._unacked.clear()
        self._qos1_topics.clear()

    def link_refused(self, reason: str) -> None:
        # A broker refusing the gateway's credentials is a security event: a changed password file, a revoked
        # account, or someone else's broker answering at that address.
        self._audit({"plugin": DOMAIN, "event": "broker_refused", "broker": self.link.settings.broker,
                     "reason": reason}, Context(origin=DOMAIN, principal=self.options.principal))

    def link_writable(self) -> None:
        if self._blocked and len(self._unacked) < MAX_UNACKED_QOS1:
            self._blocked = False
            self._wake.set()

    def link_published(self, mid: int, failure: str | None) -> None:
        self._unacked.discard(mid)
        topic = self._qos1_topics.pop(mid, None)
        if failure is not None and topic is not None:
            # MQTT 5 reports an ACL denial in the PUBACK (0x87); 3.1.1 drops silently (protocols/mqtt.md §1).
            root = topic.split("/", 1)[0]
            if root not in self._refused_publish:
                self._refused_publish.add(root)
                _LOGGER.error("mqtt: broker %s refused our publish to %s: %s (check the broker's ACL for %s "
                              "and mqtt.prefix)", self.link.settings.broker, topic, failure, self.options.principal)
        if self._blocked and len(self._unacked) <= MAX_UNACKED_QOS1 // 2 and not self.link.want_write:
            self._blocked = False
            self._wake.set()

    def link_message(self, message: InboundMessage) -> None:
        if self._stopping:
            return
        if self._discovery and message.topic == self._ha_status:
            if message.payload == PAYLOAD_ONLINE.encode():
                # HA restarted (its birth message): it may have lost retained configs; send everything again.
                self._mark_everything()
            return
        if not self.options.commands_enabled or self.topics.parse_command(message.topic) is None:
            return
        if not message.payload:
            return  # a zero-length PUBLISH clears a retained message (§3.3.1.3); it is not a command
        now = self._loop.time()
        reply = reply_target(message, self.topics, forbidden_roots=self._forbidden_reply_roots)
        if not self._command_bucket.allow(now):
            self._refuse(reply, CommandError(ERR_RATE_LIMITED, "too many commands; slow down"), message, now)
            return
        if reply.note is not None:
            self._refuse(reply, CommandError(ERR_BAD_TOPIC, f"response topic refused: {reply.note}"), message, now)
            return
        try:
            request = decode_command(message, self.topics, allow=self.options.allow, reply=reply)
        except CommandError as err:
            self._refuse(reply, err, message, now)
            if err.code == ERR_RETAINED:
                self._send(message.topic, b"", qos=1, retain=True)  # so it is not delivered again
            return
        if len(self._commands) >= MAX_CONCURRENT_COMMANDS:
            self._refuse(reply, CommandError(ERR_BUSY, "too many commands running; try again"), message, now)
            return
        task = self._loop.create_task(self._execute(request), name=f"mqtt-cmd-{request.domain}.{request.service}")
        self._commands.add(task)
        task.add_done_callback(self._commands.discard)

    # -- commands in --------------------------------------------------------------------------------------------

    def _context(self, claimed: str | None) -> Context:
        principal = self.options.principal
        if claimed:
            principal = f"{principal} (claims {claimed})"  # a claim in the audit trail, never an identity
        return Context(origin=DOMAIN, principal=principal, role=Role.OPERATOR)

    def _reply(self, target: ReplyTarget, payload: bytes) -> None:
        self._send(target.topic, payload, qos=1, retain=False, correlation_data=target.correlation_data)

    def _refuse(self, reply: ReplyTarget, err: CommandError, message: InboundMessage, now: float) -> None:
        self.refused_commands += 1
        self._refused_since_log += 1
        if now - self._last_refusal_log >= ERROR_LOG_INTERVAL_S:
            _LOGGER.warning("mqtt: refused a command on %s: %s (%s); %d refused since the last report",
                            message.topic, err.code, err.message, self._refused_since_log)
            self._last_refusal_log = now
            self._refused_since_log = 0
        if not self._error_bucket.allow(now):
            self.suppressed_replies += 1
            return
        self._reply(reply, encode_reply(ok=False, code=err.code, error=err.message))
        if err.code == ERR_NOT_ALLOWED:
            parsed = self.topics.parse_command(message.topic)
            service = ".".join(parsed) if parsed else message.topic
            self._audit_refusal(service, err.code, self._context(None))

    def _audit_refusal(self, service: str, code: str, context: Context) -> None:
        self._audit({"plugin": DOMAIN, "event": "command_refused", "service": service, "reason": code}, context)

    def _audit(self, data: dict[str, Any], context: Context) -> None:
        if self._stopping:
            return  # stop() has already waited for the audit tasks; a late one would be cut off
        task = self._loop.create_task(self._gw.audit.append(audit_events.EVENT_SECURITY, data, context=context))
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

    async def _execute(self, request: CommandRequest) -> None:
        context = self._context(request.claimed_user)
        name = f"{request.domain}.{request.service}"
        try:
            async with asyncio.timeout(COMMAND_TIMEOUT_S):
                result = await self._gw.services.call(request.domain, request.service, request.data, context)
        except ServiceNotFound:
            err = CommandError(ERR_NOT_FOUND, f"no service {name}")
        except ServiceValidationError as exc:
            err = CommandError(ERR_INVALID, str(exc))
        except Unauthorized:
            err = CommandError(ERR_UNAUTHORIZED, f"{name} needs a higher role than MQTT commands have (operator)")
            self._audit_refusal(name, ERR_UNAUTHORIZED, context)
        except TimeoutError:
            err = CommandError(ERR_TIMEOUT, f"{name} did not finish within {COMMAND_TIMEOUT_S:g} s")
        except GatewayError as exc:
            err = CommandError(ERR_FAILED, str(exc))
        except Exception as exc:
            _LOGGER.exception("mqtt: command %s failed", name)
            err = CommandError(ERR_FAILED, f"{name} failed ({type(exc).__name__})")
        else:
            self._reply(request.reply, encode_reply(ok=True, result=result))
            return
        self.refused_commands += 1
        self._reply(request.reply, encode_reply(ok=False, code=err.code, error=err.message))
