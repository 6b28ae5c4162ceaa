"""One meter's polling state: its read plan, availability, retry and back-off. Sans-IO: the adapter
(``client.py``) does the reads and passes their results in; nothing here sleeps or touches a socket.

Contract:
- ``MeterSession.blocks`` is the current read plan. ``block_refused(block)`` (the device answered 0x02 to a
  merged read) replaces that block by reads of contiguous points only, once; the plan never grows beyond one
  read per point.
- ``poll_succeeded()`` / ``poll_failed()`` return True when availability changed (the adapter then sets every
  entity to a value or to ``unavailable``). A meter is unavailable after one poll whose every retry failed,
  and available again after the next complete poll: it comes back by itself.
- ``next_delay()`` is the wait before the next poll: the poll interval while the meter answers, doubling per
  failed poll up to ``MAX_BACKOFF_S`` while it does not. ``retry_delay(n)`` is the wait before retry ``n``
  inside one poll.
- A SunSpec map starts with no blocks (``needs_base``); ``set_base(address)`` places it where the walk found
  the model's ID register.
- SunSpec helpers (``sunspec_*``) parse the discovery reads; the walk itself is a loop in the adapter.
"""

from __future__ import annotations

from dataclasses import dataclass

from .const import MAX_BACKOFF_S, RETRY_BACKOFF_S, SUNSPEC_END, SUNSPEC_MARKER
from .maps import Block, DeviceMap, plan_reads


@dataclass(frozen=True, slots=True, kw_only=True)
class MeterSpec:
    """What the adapter needs to know about one configured meter."""

    name: str
    unit_id: int
    poll_interval_s: float
    timeout_s: float
    retries: int


class MeterSession:
    def __init__(self, spec: MeterSpec, device: DeviceMap) -> None:
        self.spec = spec
        self.device = device
        # A SunSpec map has relative addresses until the walk found its model (``set_base``).
        self.blocks: list[Block] = [] if device.sunspec_model is not None else self._plan()
        self.available: bool | None = None  # None until the first poll ends
        self.failed_polls = 0
        self._split: set[tuple[int, int, int]] = set()

    @property
    def needs_base(self) -> bool:
        return self.device.sunspec_model is not None

    def set_base(self, base: int) -> None:
        self.device = self.device.at_base(base)
        self.blocks = self._plan()

    def _plan(self) -> list[Block]:
        return plan_reads(self.device.points, max_gap=self.device.max_gap, max_block=self.device.max_block)

    def entity_id(self, key: str) -> str:
        return f"sensor.{self.spec.name}_{key}"

    def block_refused(self, block: Block) -> bool:
        """Replace a merged block the device refused; False when it cannot be split further."""
        if len(block.points) == 1 or (block.function, block.address, block.count) in self._split:
            return False
        smaller = plan_reads(block.points, max_gap=0, max_block=self.device.max_block)
        if len(smaller) == 1:
            return False
        for b in smaller:
            self._split.add((b.function, b.address, b.count))
        index = self.blocks.index(block)
        self.blocks[index:index + 1] = smaller
        return True

    def poll_succeeded(self) -> bool:
        changed = self.available is not True
        self.available = True
        self.failed_polls = 0
        return changed

    def poll_failed(self) -> bool:
        changed = self.available is not False
        self.available = False
        self.failed_polls += 1
        return changed

    def next_delay(self) -> float:
        interval = self.spec.poll_interval_s
        if self.failed_polls == 0:
            return interval
        return float(min(interval * 2 ** min(self.failed_polls, 16), max(MAX_BACKOFF_S, interval)))

    def retry_delay(self, attempt: int) -> float:
        """Before retry ``attempt`` (1-based) of one request; stays well inside a poll interval."""
        return float(min(RETRY_BACKOFF_S * 2 ** (attempt - 1), self.spec.poll_interval_s / 2))


def sunspec_marker(registers: list[int]) -> bool:
    return tuple(registers[:2]) == SUNSPEC_MARKER


def sunspec_header(registers: list[int]) -> tuple[int, int] | None:
    """(model id, length) of a model header, or None at the end marker."""
    model, length = registers[0], registers[1]
    if model == SUNSPEC_END:
        return None
    return model, length
