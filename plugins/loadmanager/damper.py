"""From allocated currents to the commands actually sent: decreases at once, increases damped. Sans-IO.

Contract:
- A target below what was last requested is sent at once, whatever its size (the fuse comes first), rounded
  down to ``DECREASE_QUANTUM_A`` but not below the charger's minimum, so creeping decreases come in 0.5 A steps.
- A target above it is sent only when it has stayed above for ``INCREASE_HOLD_S``, at least
  ``INCREASE_INTERVAL_S`` after the previous increase, and is at least ``INCREASE_HYSTERESIS_A`` higher;
  a paused charger is restarted no sooner than ``RESTART_DELAY_S`` after it was paused. So every command sent is
  at most the current allocation: damping can only lower currents, never break the allocator's guarantees.
- An unchanged value is sent again every ``REFRESH_S``; a failed command is retried after ``RETRY_S``.
- Before the first command the value in force is unknown (unless the charger reported it): the first target is
  sent at once, as if it were a decrease.
- ``next_deadline()`` says when a held increase, a refresh or a retry falls due.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from .const import (
    DECREASE_QUANTUM_A,
    INCREASE_HOLD_S,
    INCREASE_HYSTERESIS_A,
    INCREASE_INTERVAL_S,
    REFRESH_S,
    RESTART_DELAY_S,
    RETRY_S,
)

_TOLERANCE_A = 1e-6


@dataclass(slots=True)
class Track:
    """What we know about one charger's limit."""

    requested_a: float | None = None  # the newest value we asked for (None: unknown)
    requested_at: float = -math.inf
    increased_at: float = -math.inf
    higher_since: float | None = None  # since when the target has stayed above requested_a
    paused_at: float | None = None  # when it last went from a current to 0
    failed: bool = False


class Damper:
    def __init__(self) -> None:
        self.tracks: dict[str, Track] = {}

    def requested(self, charger: str) -> float | None:
        track = self.tracks.get(charger)
        return None if track is None else track.requested_a

    def forget(self, charger: str) -> None:
        self.tracks.pop(charger, None)

    def plan(
        self, targets: Mapping[str, float], now: float, reported: Mapping[str, float | None] | None = None,
        minimums: Mapping[str, float] | None = None,
    ) -> dict[str, float]:
        """The commands to send now: charger id -> current (A). Records them as requested."""
        commands: dict[str, float] = {}
        tracks = self.tracks
        minimums = minimums or {}
        for charger, target in targets.items():
            track = tracks.get(charger)
            if track is None:
                track = tracks[charger] = Track(requested_a=(reported or {}).get(charger))
            value = self._decide(track, target, now, minimums.get(charger, 0.0))
            if value is not None:
                self._record(track, value, now)
                commands[charger] = value
        return commands

    @staticmethod
    def _decide(track: Track, target: float, now: float, minimum: float) -> float | None:
        requested = track.requested_a
        if requested is None or target < requested - _TOLERANCE_A:
            track.higher_since = None
            if target > 0.0 and requested is not None:
                value = max(math.floor(target / DECREASE_QUANTUM_A + 1e-9) * DECREASE_QUANTUM_A, minimum)
                return value if value <= target else target
            return target  # unknown, or a pause: at once and exact
        if target >= requested + INCREASE_HYSTERESIS_A - _TOLERANCE_A:
            if track.higher_since is None:
                track.higher_since = now
            ready = (
                now - track.higher_since >= INCREASE_HOLD_S
                and now - track.increased_at >= INCREASE_INTERVAL_S
                and (requested > 0.0 or track.paused_at is None or now - track.paused_at >= RESTART_DELAY_S)
            )
            if ready:
                return target
            if track.failed and now - track.requested_at >= RETRY_S:
                return requested  # the last command failed: repeat it while the increase waits
            return None
        # Equal, or higher by less than the hysteresis: keep what was sent.
        track.higher_since = None
        if now - track.requested_at >= (RETRY_S if track.failed else REFRESH_S):
            return requested
        return None

    @staticmethod
    def _record(track: Track, value: float, now: float) -> None:
        previous = track.requested_a
        if previous is not None and value > previous + _TOLERANCE_A:
            track.increased_at = now
            track.higher_since = None
        if value <= 0.0 and (previous is None or previous > 0.0):
            track.paused_at = now
        track.requested_a = value
        track.requested_at = now
        track.failed = False

    def result(self, charger: str, value: float, ok: bool, now: float) -> None:
        """The outcome of a command. A failure is retried after ``RETRY_S`` (with the newest target then)."""
        track = self.tracks.get(charger)
        if track is None or track.requested_a is None or abs(track.requested_a - value) > _TOLERANCE_A:
            return  # a newer command has been planned since; its outcome is what counts
        if not ok:
            track.failed = True
            track.requested_at = now

    def next_deadline(self) -> float | None:
        best = math.inf
        for track in self.tracks.values():
            if track.requested_a is None:
                continue
            due = track.requested_at + (RETRY_S if track.failed else REFRESH_S)
            if track.higher_since is not None:
                hold = max(track.higher_since + INCREASE_HOLD_S, track.increased_at + INCREASE_INTERVAL_S)
                if track.requested_a <= 0.0 and track.paused_at is not None:
                    hold = max(hold, track.paused_at + RESTART_DELAY_S)
                due = min(due, hold)
            best = min(best, due)
        return None if math.isinf(best) else best
