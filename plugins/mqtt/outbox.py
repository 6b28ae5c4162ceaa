"""What is waiting to be published, coalesced per entity. Pure: the caller passes the clock in.

Contract:
- ``mark(key, now)`` records that ``key`` (an entity id) changed. A key is held at most once whatever the
  number of changes: the publisher reads the *current* state when the key comes out, so the latest value
  wins and intermediate values are skipped (counted in ``coalesced``).
- A key comes out of ``take(now, limit)`` no earlier than ``min_interval`` after it last came out; with
  ``min_interval == 0`` it comes out as soon as it is marked. ``force=True`` ignores the interval (the
  snapshot after a reconnect).
- At most ``max_pending`` keys wait; marking a new key beyond that drops it and counts it in ``dropped``.
  Nothing else grows: memory is bounded by ``max_pending`` plus one timestamp per key seen (``forget``
  removes a key's timestamp when its entity is removed).
- Keys come out in the order they became due.
"""

from __future__ import annotations

import collections
import heapq


class Outbox:
    __slots__ = ("_heap", "_last", "_ready", "_ready_set", "_waiting", "coalesced", "dropped", "max_pending",
                 "min_interval")

    def __init__(self, *, min_interval: float, max_pending: int) -> None:
        self.min_interval = min_interval
        self.max_pending = max_pending
        # A deque plus a set rather than an ordered dict: popping from the front of a dict leaves holes that
        # later pops skip one by one, which turns a 50,000-key drain quadratic.
        self._ready: collections.deque[str] = collections.deque()
        self._ready_set: set[str] = set()
        self._waiting: dict[str, float] = {}  # key -> due time
        self._heap: list[tuple[float, str]] = []  # (due, key); stale entries are skipped lazily
        self._last: dict[str, float] = {}  # key -> when it last came out (only kept when min_interval > 0)
        self.dropped = 0
        self.coalesced = 0

    def __len__(self) -> int:
        return len(self._ready_set) + len(self._waiting)

    def __contains__(self, key: str) -> bool:
        return key in self._ready_set or key in self._waiting

    def _make_ready(self, key: str) -> None:
        self._ready.append(key)
        self._ready_set.add(key)

    def mark(self, key: str, now: float, *, force: bool = False) -> bool:
        """Queue ``key``; ``False`` when it was dropped because ``max_pending`` keys already wait."""
        if key in self._ready_set:
            self.coalesced += 1
            return True
        due = self._waiting.get(key)
        if due is not None:
            if force:
                del self._waiting[key]
                self._make_ready(key)
            else:
                self.coalesced += 1
            return True
        if len(self._ready_set) + len(self._waiting) >= self.max_pending:
            self.dropped += 1
            return False
        if force or self.min_interval <= 0:
            self._make_ready(key)
            return True
        last = self._last.get(key)
        if last is None or now - last >= self.min_interval:
            self._make_ready(key)
        else:
            due = last + self.min_interval
            self._waiting[key] = due
            heapq.heappush(self._heap, (due, key))
        return True

    def _promote(self, now: float) -> None:
        heap, waiting = self._heap, self._waiting
        while heap and heap[0][0] <= now:
            due, key = heapq.heappop(heap)
            if waiting.get(key) == due:
                del waiting[key]
                self._make_ready(key)

    def take(self, now: float, limit: int) -> list[str]:
        """Up to ``limit`` keys that are due, oldest first."""
        if self._heap:
            self._promote(now)
        ready, ready_set = self._ready, self._ready_set
        count = min(limit, len(ready))
        out = [ready.popleft() for _ in range(count)]
        ready_set.difference_update(out)
        if self.min_interval > 0:
            last = self._last
            for key in out:
                last[key] = now
        return out

    def ready(self, now: float) -> bool:
        return bool(self._ready) or bool(self._heap and self._heap[0][0] <= now)

    def next_due(self) -> float | None:
        """When the earliest waiting key becomes due (``None`` if none waits); ready keys are due now."""
        while self._heap and self._waiting.get(self._heap[0][1]) != self._heap[0][0]:
            heapq.heappop(self._heap)  # stale: the key was forced out or forgotten
        return self._heap[0][0] if self._heap else None

    def forget(self, key: str) -> None:
        """Drop the key's interval bookkeeping (its entity is gone); a pending mark stays pending."""
        self._last.pop(key, None)

    def clear(self) -> None:
        self._ready.clear()
        self._ready_set.clear()
        self._waiting.clear()
        self._heap.clear()
