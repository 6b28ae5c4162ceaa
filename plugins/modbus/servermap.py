"""The server's register map: which state sits at which register, and what a request may do. Sans-IO.

Contract:
- Built once from the validated ``server:`` block: input registers (FC4) mirror states; holding registers
  (FC3 reads, FC6/FC16 writes) mirror states and, only where ``writable: true``, turn writes into service
  calls. Entries never overlap (checked at build time).
- ``read(function, address, count, lookup)`` returns the registers or an exception code: 0x02 when any
  register in the range is unmapped (AP §7: "the data address received in the query is not an allowable
  address"). A state that is missing or not a number reads as NaN (float) or the SunSpec "not implemented"
  pattern (integers), never as an exception (protocol note §3).
- ``resolve_write(address, values)`` returns the (entry, value) pairs to apply or an exception code: 0x01
  when the server has no writable register at all (a read-only server, protocol note §3), 0x02 when any
  register written is not writable or a write covers only part of a multi-register value.
- ``raw = round(value / scale)`` on the way out, ``value = raw * scale`` on the way in: the same meaning of
  ``scale`` as in the meter maps.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .const import (
    EXC_ILLEGAL_DATA_ADDRESS,
    EXC_ILLEGAL_FUNCTION,
    FC_READ_HOLDING,
    FC_READ_INPUT,
    REGISTER_SPACE,
)

# type -> (registers, struct format, not-available pattern). The patterns are SunSpec's "not implemented"
# values, which energy managers already understand.
SERVER_TYPES: dict[str, tuple[int, str, int]] = {
    "int16": (1, ">h", 0x8000),
    "uint16": (1, ">H", 0xFFFF),
    "int32": (2, ">i", 0x8000_0000),
    "uint32": (2, ">I", 0xFFFF_FFFF),
    "float32": (2, ">f", 0x7FC0_0000),  # quiet NaN
}
_LIMITS = {
    "int16": (-0x8000 + 1, 0x7FFF),  # -32768 is the not-available pattern
    "uint16": (0, 0xFFFE),
    "int32": (-0x8000_0000 + 1, 0x7FFF_FFFF),
    "uint32": (0, 0xFFFF_FFFE),
}

StateLookup = Callable[[str], Any]  # entity id -> the state's value (or None)


@dataclass(frozen=True, slots=True, kw_only=True)
class Entry:
    table: int  # FC_READ_INPUT or FC_READ_HOLDING
    address: int
    entity: str | None
    type: str = "float32"
    word_order: str = "big"
    scale: float = 1.0
    writable: bool = False
    service: str | None = None  # "domain.name"
    field: str | None = None  # the service data key that receives the value
    data: tuple[tuple[str, Any], ...] = ()  # constant service data sent with every write
    description: str = ""

    @property
    def words(self) -> int:
        return SERVER_TYPES[self.type][0]

    def encode(self, value: Any) -> list[int]:
        count, _fmt, missing = SERVER_TYPES[self.type]
        raw: int | float
        if isinstance(value, bool):
            value = int(value)
        if not isinstance(value, int | float) or not math.isfinite(value):
            words = _split(missing, count)
        elif self.type == "float32":
            raw = value / self.scale
            words = list(struct.unpack(">HH", struct.pack(">f", raw))) if abs(raw) < 3.4e38 else _split(
                missing, count)
        else:
            raw = round(value / self.scale)
            low, high = _LIMITS[self.type]
            words = _split(raw & ((1 << (16 * count)) - 1), count) if low <= raw <= high else _split(missing, count)
        return words[::-1] if self.word_order == "little" else words

    def decode(self, words: list[int]) -> float | None:
        """A written value in the entity's unit; None for NaN or the not-available pattern."""
        count, fmt, missing = SERVER_TYPES[self.type]
        if self.word_order == "little":
            words = words[::-1]
        raw = struct.unpack(fmt, struct.pack(f">{count}H", *words))[0]
        unsigned = 0
        for w in words:
            unsigned = (unsigned << 16) | w
        if unsigned == missing or (isinstance(raw, float) and not math.isfinite(raw)):
            return None
        return float(raw) * self.scale


def _split(value: int, count: int) -> list[int]:
    return [(value >> (16 * (count - 1 - i))) & 0xFFFF for i in range(count)]


class ServerMap:
    def __init__(self, entries: list[Entry], unit_id: int) -> None:
        self.unit_id = unit_id
        self.entries = sorted(entries, key=lambda e: (e.table, e.address))
        self._cells: dict[int, dict[int, tuple[Entry, int]]] = {FC_READ_INPUT: {}, FC_READ_HOLDING: {}}
        for entry in self.entries:
            cells = self._cells[entry.table]
            if entry.address + entry.words > REGISTER_SPACE:
                raise ValueError(f"register {entry.address} ({entry.type}) runs past 65535")
            for i in range(entry.words):
                if entry.address + i in cells:
                    other = cells[entry.address + i][0]
                    raise ValueError(f"{_table(entry.table)} register {entry.address + i} is used by both "
                                     f"{other.entity or other.service} and {entry.entity or entry.service}")
                cells[entry.address + i] = (entry, i)
        self.writable = any(e.writable for e in self.entries)
        # Encoded words per entity, reused while the value is unchanged: a read is then dict lookups only.
        self._cache: dict[Entry, tuple[Any, list[int]]] = {}

    def read(self, function: int, address: int, count: int, lookup: StateLookup) -> list[int] | int:
        cells = self._cells[function]
        out: list[int] = []
        cache = self._cache
        a = address
        end = address + count
        while a < end:
            cell = cells.get(a)
            if cell is None:
                return EXC_ILLEGAL_DATA_ADDRESS
            entry, index = cell
            value = lookup(entry.entity) if entry.entity else None
            cached = cache.get(entry)
            if cached is None or cached[0] != value or type(cached[0]) is not type(value):
                cached = (value, entry.encode(value))
                cache[entry] = cached
            take = cached[1][index:index + (end - a)]
            out.extend(take)
            a += len(take)
        return out

    def resolve_write(self, address: int, values: tuple[int, ...]) -> list[tuple[Entry, float | None]] | int:
        if not self.writable:
            return EXC_ILLEGAL_FUNCTION
        cells = self._cells[FC_READ_HOLDING]
        out: list[tuple[Entry, float | None]] = []
        a = address
        end = address + len(values)
        while a < end:
            cell = cells.get(a)
            if cell is None:
                return EXC_ILLEGAL_DATA_ADDRESS
            entry, index = cell
            # A multi-register value is written whole or not at all: half a float is no value.
            if not entry.writable or index != 0 or a + entry.words > end:
                return EXC_ILLEGAL_DATA_ADDRESS
            out.append((entry, entry.decode(list(values[a - address:a - address + entry.words]))))
            a += entry.words
        return out

    def describe(self) -> list[str]:
        """The published map, one line per entry (logged at start, printed in the docs)."""
        lines = []
        for e in self.entries:
            what = e.entity or "-"
            if e.writable:
                what += f" <- write calls {e.service} ({e.field})"
            lines.append(f"{_table(e.table)} {e.address}-{e.address + e.words - 1} {e.type} "
                         f"{e.word_order} scale {e.scale:g}: {what}")
        return lines


def _table(function: int) -> str:
    return "input" if function == FC_READ_INPUT else "holding"
