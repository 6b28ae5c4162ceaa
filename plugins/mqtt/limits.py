"""Rate limits and reconnect back-off. Pure: the caller passes the clock and the random source.

Contract:
- ``TokenBucket(rate, burst)``: ``allow(now)`` is true at most ``burst`` times at once and ``rate`` times a
  second on average; time going backwards (a stepped clock) never creates tokens.
- ``Backoff``: ``next_delay()`` grows from ``initial`` by ``factor`` up to ``maximum``, each value scaled by a
  random factor in ``[1 - jitter, 1]``; ``reset()`` starts over after a successful connection.
"""

from __future__ import annotations

import random
from collections.abc import Callable


class TokenBucket:
    __slots__ = ("_stamp", "_tokens", "burst", "rate")

    def __init__(self, *, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._stamp = now

    def allow(self, now: float) -> bool:
        elapsed = now - self._stamp
        if elapsed > 0:
            self._tokens = min(float(self.burst), self._tokens + elapsed * self.rate)
            self._stamp = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class Backoff:
    __slots__ = ("_rng", "attempts", "factor", "initial", "jitter", "maximum")

    def __init__(self, *, initial: float, factor: float, maximum: float, jitter: float,
                 rng: Callable[[], float] = random.random) -> None:
        if not 0 <= jitter <= 1 or initial <= 0 or factor < 1 or maximum < initial:
            raise ValueError("backoff needs 0 <= jitter <= 1, initial > 0, factor >= 1, maximum >= initial")
        self.initial = initial
        self.factor = factor
        self.maximum = maximum
        self.jitter = jitter
        self._rng = rng
        self.attempts = 0

    def ceiling(self) -> float:
        """The delay before jitter for the next attempt."""
        return min(self.maximum, self.initial * self.factor ** min(self.attempts, 64))

    def next_delay(self) -> float:
        delay = self.ceiling() * (1.0 - self.jitter * self._rng())
        self.attempts += 1
        return delay

    def reset(self) -> None:
        self.attempts = 0
