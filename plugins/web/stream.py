"""Live states for every open page and integration: one bus subscription fanned out to many SSE streams.

Contract:
- One plain (inline) bus subscriber for ``state_changed``: each change is encoded to bytes once, whatever
  the number of clients, and put on every interested client's bounded queue without waiting. The publisher
  never blocks on a slow client (bus contract); a client whose queue is full is cut off and reconnects
  to a fresh snapshot (the browser's ``EventSource`` does so by itself).
- A client that registers gets every change made after ``register`` returns; ``snapshot`` built right
  after (in the same loop turn) covers everything before, so nothing is missed (duplicates are harmless:
  a state event carries the whole state).
- Events: ``snapshot`` (a list of states), ``state`` (one state; ``state: null`` when it was removed),
  ``enrollment`` (the queue changed), ``expired`` (the session ended; the stream closes after it).
- A single timer puts a keep-alive on every queue every ``STREAM_KEEPALIVE_S``; the handler checks its
  session then, so an expired session's stream ends within that time.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable, Iterable
from typing import Any, Final

from gateway.bus import Event, EventBus
from gateway.states import EVENT_STATE_CHANGED, State

from .const import DOMAIN, MAX_STREAM_FILTERS, MAX_STREAMS, STREAM_KEEPALIVE_S, STREAM_QUEUE_EVENTS
from .sse import encode_comment, encode_event

KEEPALIVE: Final = encode_comment("keep-alive")
CLOSE: Final = b""  # the sentinel that ends a client's loop


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def to_json(value: Any) -> str:
    """Compact JSON that browsers can parse: NaN and infinities become null, unknown types their str()."""
    try:
        return json.dumps(value, separators=(",", ":"), default=str, allow_nan=False)
    except ValueError:
        return json.dumps(_finite(value), separators=(",", ":"), default=str, allow_nan=False)


def state_dict(state: State) -> dict[str, Any]:
    return state.as_dict()


class StreamClient:
    """One open stream: its queue and what it asked for."""

    __slots__ = ("filters", "overflowed", "prefixes", "queue")

    def __init__(self, filters: Iterable[str] = ()) -> None:
        wanted = list(filters)[:MAX_STREAM_FILTERS]
        self.filters = frozenset(f for f in wanted if not f.endswith("*"))
        self.prefixes = tuple(f[:-1] for f in wanted if f.endswith("*"))
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=STREAM_QUEUE_EVENTS)
        self.overflowed = False

    def wants(self, entity_id: str) -> bool:
        if not self.filters and not self.prefixes:
            return True
        return entity_id in self.filters or entity_id.startswith(self.prefixes)

    def push(self, data: bytes) -> bool:
        """Queue ``data``; False when the queue is full (the client is then cut off)."""
        try:
            self.queue.put_nowait(data)
        except asyncio.QueueFull:
            self.overflowed = True
            return False
        return True

    def close(self) -> None:
        # Make room if needed: the close sentinel must get through.
        while True:
            try:
                self.queue.put_nowait(CLOSE)
                return
            except asyncio.QueueFull:
                self.queue.get_nowait()


class TooManyStreams(Exception):
    """``MAX_STREAMS`` streams are open."""


class StreamHub:
    def __init__(self, bus: EventBus, *, enrollment_events: Iterable[str] = ()) -> None:
        self._clients: set[StreamClient] = set()
        self._seq = 0
        self._unsubscribe: list[Callable[[], None]] = [
            bus.subscribe(EVENT_STATE_CHANGED, self._on_state_changed, owner=DOMAIN),
            *(bus.subscribe(name, self._on_enrollment, owner=DOMAIN) for name in enrollment_events),
        ]
        self._keepalive: asyncio.TimerHandle | None = None
        self.keepalive_s = STREAM_KEEPALIVE_S
        self.dropped_clients = 0

    def __len__(self) -> int:
        return len(self._clients)

    # -- clients ----------------------------------------------------------------------------------------

    def register(self, filters: Iterable[str] = ()) -> StreamClient:
        if len(self._clients) >= MAX_STREAMS:
            raise TooManyStreams(f"{MAX_STREAMS} live streams are open")
        client = StreamClient(filters)
        self._clients.add(client)
        if self._keepalive is None:
            self._arm()
        return client

    def unregister(self, client: StreamClient) -> None:
        self._clients.discard(client)
        if not self._clients and self._keepalive is not None:
            self._keepalive.cancel()
            self._keepalive = None

    def snapshot(self, client: StreamClient, states: Iterable[State]) -> bytes:
        chosen = [state_dict(s) for s in states if client.wants(s.entity_id)]
        return encode_event("snapshot", to_json(chosen), id=str(self._seq))

    # -- fan-out ------------------------------------------------------------------------------------------

    def _fan_out(self, data: bytes, entity_id: str | None) -> None:
        cut: list[StreamClient] = []
        for client in self._clients:
            if entity_id is not None and not client.wants(entity_id):
                continue
            if not client.push(data):
                cut.append(client)
        for client in cut:
            self._clients.discard(client)
            self.dropped_clients += 1
            client.close()

    def _on_state_changed(self, event: Event) -> None:
        if not self._clients:
            return
        self._seq += 1
        entity_id = event.data["entity_id"]
        new: State | None = event.data.get("new_state")
        payload = {"entity_id": entity_id, "state": state_dict(new) if new is not None else None,
                   "origin": event.origin}
        self._fan_out(encode_event("state", to_json(payload), id=str(self._seq)), entity_id)

    def _on_enrollment(self, event: Event) -> None:
        if not self._clients:
            return
        self._seq += 1
        payload = {"type": event.type, "kind": event.data.get("kind"), "identity": event.data.get("identity"),
                   "status": event.data.get("status")}
        self._fan_out(encode_event("enrollment", to_json(payload), id=str(self._seq)), None)

    def send_expired(self, client: StreamClient) -> None:
        client.push(encode_event("expired", "{}"))

    # -- keep-alive -----------------------------------------------------------------------------------------

    def _arm(self) -> None:
        self._keepalive = asyncio.get_running_loop().call_later(self.keepalive_s, self._tick)

    def _tick(self) -> None:
        self._keepalive = None
        self._fan_out(KEEPALIVE, None)
        if self._clients:
            self._arm()

    # -- stop -----------------------------------------------------------------------------------------------

    def close(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()
        if self._keepalive is not None:
            self._keepalive.cancel()
            self._keepalive = None
        for client in list(self._clients):
            client.close()
        self._clients.clear()
