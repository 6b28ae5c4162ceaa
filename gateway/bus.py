"""The event bus: publish/subscribe inside one process.

Contract:
- ``subscribe(pattern, handler)`` takes an exact event type (``state_changed``) or a prefix ending in ``*``
  (``ocpp.*``, or ``*`` for everything) and returns the unsubscribe callable.
- A plain function runs inline, in publication order. An exception in it is logged with the subscriber's
  owner and never reaches the publisher or the other subscribers.
- A coroutine function gets its own bounded queue and worker task: the publisher never waits for it. When
  the queue is full the event is dropped *for that subscriber only* and counted in ``dropped``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

from gateway.context import SYSTEM, Context

_LOGGER = logging.getLogger(__name__)

# A slow coroutine subscriber may fall this many events behind before we drop for it. A state burst from
# 3,000 OCPP stations is ~10,000 events; a subscriber that cannot keep that pace must not grow unbounded.
DEFAULT_QUEUE_SIZE = 10_000

MATCH_ALL = "*"

SyncHandler = Callable[["Event"], None]
AsyncHandler = Callable[["Event"], Awaitable[None]]
Handler = SyncHandler | AsyncHandler


class Event(NamedTuple):
    """Something that happened. ``origin`` names the publisher (a plugin name or ``core``).

    A NamedTuple rather than a frozen dataclass: equally immutable, and about three times cheaper to
    build, which is most of what ``fire()`` costs (bench/bus.py).
    """

    type: str
    data: dict[str, Any]
    origin: str = "core"
    time_fired: float = 0.0
    context: Context = SYSTEM


_new_tuple = tuple.__new__
_now = time.time


class Subscription:
    """One subscriber. Async subscribers own a bounded queue drained by a worker task."""

    __slots__ = (
        "_idle",
        "_queue",
        "_queue_size",
        "_wakeup",
        "_worker",
        "dropped",
        "handler",
        "is_async",
        "owner",
        "pattern",
    )

    def __init__(self, pattern: str, handler: Handler, owner: str, queue_size: int) -> None:
        self.pattern = pattern
        self.handler = handler
        self.owner = owner
        self.is_async = inspect.iscoroutinefunction(handler)
        self.dropped = 0
        self._queue: collections.deque[Event] = collections.deque()
        self._wakeup: asyncio.Event | None = None
        self._idle = asyncio.Event()  # set whenever the worker has emptied the queue
        self._worker: asyncio.Task[None] | None = None
        self._queue_size = queue_size

    def matches(self, event_type: str) -> bool:
        if self.pattern.endswith(MATCH_ALL):
            return event_type.startswith(self.pattern[:-1])
        return event_type == self.pattern

    @property
    def target(self) -> SyncHandler:
        """What ``fire()`` calls: the handler itself when it is a plain function, else the enqueuer."""
        return self.enqueue if self.is_async else self.handler  # type: ignore[return-value]

    def enqueue(self, event: Event) -> None:
        if len(self._queue) >= self._queue_size:
            self.dropped += 1
            return
        self._queue.append(event)
        self._idle.clear()
        if self._worker is None:
            self._wakeup = asyncio.Event()
            self._worker = asyncio.get_running_loop().create_task(
                self._drain(), name=f"bus-subscriber-{self.owner}"
            )
        assert self._wakeup is not None
        self._wakeup.set()

    async def _drain(self) -> None:
        assert self._wakeup is not None
        handler: AsyncHandler = self.handler  # type: ignore[assignment]  # is_async checked in deliver()
        while True:
            while self._queue:
                event = self._queue.popleft()
                try:
                    await handler(event)
                except Exception:
                    _LOGGER.exception("subscriber %s failed on %s", self.owner, event.type)
            self._idle.set()
            self._wakeup.clear()
            await self._wakeup.wait()

    @property
    def pending(self) -> int:
        return len(self._queue)

    async def stop(self, grace_s: float) -> None:
        """Let the worker finish what is queued (for up to ``grace_s``), then cancel it."""
        worker, self._worker = self._worker, None
        if worker is None:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace_s):
                await self._idle.wait()
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)


class EventBus:
    """Fires events to subscribers; see the module docstring for the delivery contract."""

    def __init__(self, *, queue_size: int = DEFAULT_QUEUE_SIZE) -> None:
        self._queue_size = queue_size
        self._exact: dict[str, list[Subscription]] = {}
        self._prefix: list[Subscription] = []
        # Resolved callables per event type; rebuilt after any (un)subscribe so that fire() is one dict
        # lookup and a loop of plain calls, whatever the number of prefix subscriptions.
        self._resolved: dict[str, tuple[SyncHandler, ...]] = {}
        self._owners: dict[SyncHandler, str] = {}  # target -> owner, read only when a subscriber raises

    def subscribe(self, pattern: str, handler: Handler, *, owner: str | None = None) -> Callable[[], None]:
        if not pattern or (MATCH_ALL in pattern[:-1]):
            raise ValueError(f"bad event pattern {pattern!r}: use an exact type or a prefix ending in '*'")
        owner = owner or str(getattr(handler, "__module__", None) or "?")
        sub = Subscription(pattern, handler, owner, self._queue_size)
        if pattern.endswith(MATCH_ALL):
            self._prefix.append(sub)
        else:
            self._exact.setdefault(pattern, []).append(sub)
        self._resolved.clear()

        def unsubscribe() -> None:
            if pattern.endswith(MATCH_ALL):
                if sub in self._prefix:
                    self._prefix.remove(sub)
            elif sub in self._exact.get(pattern, ()):
                self._exact[pattern].remove(sub)
            self._resolved.clear()
            self._owners.clear()
            if sub.is_async:
                asyncio.get_running_loop().create_task(sub.stop(0))

        return unsubscribe

    def _resolve(self, event_type: str) -> tuple[SyncHandler, ...]:
        subs = [*self._exact.get(event_type, ()), *(s for s in self._prefix if s.matches(event_type))]
        for sub in subs:
            self._owners[sub.target] = sub.owner
        resolved = tuple(s.target for s in subs)
        self._resolved[event_type] = resolved
        return resolved

    def fire(
        self,
        event_type: str,
        data: dict[str, Any] | None = None,
        *,
        origin: str = "core",
        context: Context = SYSTEM,
    ) -> Event:
        """Publish an event; returns it. Never raises because of a subscriber, never blocks."""
        # tuple.__new__ skips NamedTuple's Python-level __new__ (argument defaults): a third of fire()'s cost.
        event = _new_tuple(Event, (event_type, {} if data is None else data, origin, _now(), context))
        targets = self._resolved.get(event_type)
        if targets is None:
            targets = self._resolve(event_type)
        for target in targets:
            try:  # free when nothing raises (zero-cost exceptions, Python 3.11)
                target(event)
            except Exception:
                _LOGGER.exception("subscriber %s failed on %s", self._owners.get(target, "?"), event_type)
        return event

    def stats(self) -> list[dict[str, Any]]:
        """Per subscriber: pattern, owner, queued and dropped events (for diagnostics and the web UI)."""
        subs = [s for lst in self._exact.values() for s in lst] + self._prefix
        return [
            {"pattern": s.pattern, "owner": s.owner, "pending": s.pending, "dropped": s.dropped} for s in subs
        ]

    async def async_stop(self, grace_s: float = 1.0) -> None:
        subs = [s for lst in self._exact.values() for s in lst] + self._prefix
        await asyncio.gather(*(s.stop(grace_s) for s in subs if s.is_async))
