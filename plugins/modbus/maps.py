"""Register maps: device knowledge as data, the read plan, and decoding. Sans-IO: no sockets, no clock.

Contract:
- ``load_map(model)`` reads ``devices/<model>.yaml`` (package data) and ``parse_map(data)`` validates a map
  given inline (``model: custom``); both return a frozen ``DeviceMap`` or raise ``vol.Invalid`` naming the
  point and the problem. A map never contains broadcast or out-of-range addresses, or a point that a single
  request cannot read.
- ``plan_reads(points, max_gap, max_block)`` returns the fewest contiguous reads (``Block``) covering every
  point: greedy left to right per function code, which is optimal for intervals on a line with a length cap
  (the first block must start at the lowest point; extending it as far as allowed never needs more blocks
  later). A point and its SunSpec scale-factor register are one interval, so they always share a request
  (protocol note §2.5: "Read the value and its SF in the same request").
- ``decode(block, registers)`` turns one answered block into ``{quantity: value}``: SI units after scaling,
  ``None`` for "not available" (NaN, the map's sentinels, a not-implemented scale factor); implausible values
  are left out and reported in ``rejected`` (logged by the caller, never clamped).
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import cache
from importlib import resources
from typing import Any

import voluptuous as vol
import yaml

from .const import (
    DEFAULT_MAX_GAP,
    FC_READ_HOLDING,
    FC_READ_INPUT,
    MAX_READ_REGISTERS,
    PLAUSIBLE,
    REGISTER_SPACE,
)

# The standard quantities every meter map may fill, with the unit their state carries. Readings are scaled
# to these units by the map (kWh -> Wh with scale 1000), so consumers never convert.
QUANTITIES: dict[str, str] = {
    "power": "W",
    "power_l1": "W",
    "power_l2": "W",
    "power_l3": "W",
    "current_l1": "A",
    "current_l2": "A",
    "current_l3": "A",
    "voltage_l1": "V",
    "voltage_l2": "V",
    "voltage_l3": "V",
    "energy_import": "Wh",
    "energy_export": "Wh",
    "frequency": "Hz",
}

# type -> (registers, struct format, kind). "acc32" is SunSpec's accumulator (uint32 where 0 = not
# implemented); kinds decide which "not available" sentinels apply.
TYPES: dict[str, tuple[int, str, str]] = {
    "int16": (1, ">h", "signed"),
    "uint16": (1, ">H", "unsigned"),
    "int32": (2, ">i", "signed"),
    "uint32": (2, ">I", "unsigned"),
    "acc32": (2, ">I", "unsigned"),
    "int64": (4, ">q", "signed"),
    "uint64": (4, ">Q", "unsigned"),
    "float32": (2, ">f", "float"),
    "float64": (4, ">d", "float"),
}
WORD_ORDERS = ("big", "little")  # big = high word first (ABCD), little = low word first (CDAB)
# Sentinels a map may declare as "not available": all bits set (ABB unsigned, SunSpec uint16), the signed
# maximum (ABB 0x7FFF...), the signed minimum (SunSpec int16 0x8000), zero (SunSpec acc32).
SENTINELS = ("all_ones", "signed_max", "signed_min", "zero")
SUNSSF_NOT_IMPLEMENTED = -0x8000

_KEY = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_MODEL = re.compile(r"^[a-z0-9_]+$")


@dataclass(frozen=True, slots=True, kw_only=True)
class Point:
    """One quantity: where it lives and how to turn its registers into a value in ``unit``."""

    key: str
    address: int
    function: int
    type: str
    word_order: str = "big"
    byte_swap: bool = False  # BADC devices: swap the two bytes of every register (protocol note §1)
    scale: float = 1.0
    scale_factor: int | None = None  # address of a SunSpec sunssf register: value x 10^sf
    unit: str
    not_available: frozenset[str] = frozenset()

    @property
    def words(self) -> int:
        return TYPES[self.type][0]

    @property
    def span(self) -> tuple[int, int]:
        """[first, end) registers that must be read together for this point."""
        first, end = self.address, self.address + self.words
        if self.scale_factor is not None:
            first, end = min(first, self.scale_factor), max(end, self.scale_factor + 1)
        return first, end


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceMap:
    model: str
    title: str
    points: tuple[Point, ...]
    max_gap: int = DEFAULT_MAX_GAP
    max_block: int = MAX_READ_REGISTERS
    sunspec_model: int | None = None  # addresses are offsets from the model's ID register when set
    source: str = ""

    def at_base(self, base: int) -> DeviceMap:
        """A SunSpec map with absolute addresses, the model's ID register found at ``base``."""
        points = tuple(
            replace(p, address=base + p.address,
                    scale_factor=None if p.scale_factor is None else base + p.scale_factor)
            for p in self.points
        )
        for p in points:
            if p.span[1] > REGISTER_SPACE:
                raise vol.Invalid(f"{p.key}: SunSpec block at {base} runs past register 65535")
        return replace(self, points=points, sunspec_model=None)


@dataclass(frozen=True, slots=True)
class Block:
    """One read request: ``count`` registers from ``address`` with ``function`` (3 or 4)."""

    function: int
    address: int
    count: int
    points: tuple[Point, ...] = field(default=())


@dataclass(slots=True)
class Decoded:
    values: dict[str, float | None]
    rejected: dict[str, float]


# -- loading ---------------------------------------------------------------------------------------------


def _address(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise vol.Invalid(f"expected a register address (0..65535, PDU numbering), got {value!r}")
    if not 0 <= value < REGISTER_SPACE:
        raise vol.Invalid(f"register address {value} outside 0..65535 (use PDU addresses: 30001 -> 0)")
    return value


def _function(value: Any) -> int:
    if value not in (FC_READ_HOLDING, FC_READ_INPUT):
        raise vol.Invalid(f"expected function 3 (holding) or 4 (input), got {value!r}")
    return int(value)


def _scale(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value == 0:
        raise vol.Invalid(f"expected a finite non-zero scale, got {value!r}")
    return float(value)


_POINT_FIELDS: dict[Any, Any] = {
    vol.Required("address"): _address,
    vol.Optional("function"): _function,
    vol.Optional("type"): vol.In(list(TYPES)),
    vol.Optional("word_order"): vol.In(list(WORD_ORDERS)),
    vol.Optional("byte_swap"): bool,
    vol.Optional("scale"): _scale,
    vol.Optional("scale_factor"): _address,
    vol.Optional("unit"): vol.All(str, vol.Length(min=1, max=16)),
    vol.Optional("not_available"): [vol.In(list(SENTINELS))],
}

MAP_SCHEMA = vol.Schema({
    vol.Optional("title", default=""): str,
    vol.Optional("source", default=""): str,
    vol.Optional("function", default=FC_READ_HOLDING): _function,
    vol.Optional("type", default="uint16"): vol.In(list(TYPES)),
    vol.Optional("word_order", default="big"): vol.In(list(WORD_ORDERS)),
    vol.Optional("byte_swap", default=False): bool,
    vol.Optional("not_available", default=[]): [vol.In(list(SENTINELS))],
    vol.Optional("max_gap", default=DEFAULT_MAX_GAP): vol.All(int, vol.Range(min=0, max=MAX_READ_REGISTERS)),
    vol.Optional("max_block", default=MAX_READ_REGISTERS): vol.All(int, vol.Range(min=1, max=MAX_READ_REGISTERS)),
    vol.Optional("sunspec_model"): vol.All(int, vol.Range(min=1, max=65534)),
    vol.Required("points"): vol.All(dict, vol.Length(min=1), {str: _POINT_FIELDS}),
})


def parse_map(data: Any, *, model: str = "custom") -> DeviceMap:
    """Validate a map (a file's content or a ``custom:`` block) and build its points."""
    conf = MAP_SCHEMA(data)
    points: list[Point] = []
    for key, spec in conf["points"].items():
        if not _KEY.match(key):
            raise vol.Invalid(f"point {key!r}: use lower-case letters, digits and _ (it becomes an entity id)")
        unit = spec.get("unit", QUANTITIES.get(key))
        if unit is None:
            raise vol.Invalid(f"point {key!r} is not a standard quantity ({', '.join(QUANTITIES)}): give its unit")
        if key in QUANTITIES and unit != QUANTITIES[key]:
            raise vol.Invalid(f"point {key!r} must be in {QUANTITIES[key]} (scale it: kWh -> Wh is scale 1000)")
        point = Point(
            key=key,
            address=spec["address"],
            function=spec.get("function", conf["function"]),
            type=spec.get("type", conf["type"]),
            word_order=spec.get("word_order", conf["word_order"]),
            byte_swap=spec.get("byte_swap", conf["byte_swap"]),
            scale=spec.get("scale", 1.0),
            scale_factor=spec.get("scale_factor"),
            unit=unit,
            not_available=frozenset(spec.get("not_available", conf["not_available"])),
        )
        first, end = point.span
        if end > REGISTER_SPACE:
            raise vol.Invalid(f"point {key!r} at {point.address} runs past register 65535")
        if end - first > conf["max_block"]:
            raise vol.Invalid(f"point {key!r} and its scale factor are {end - first} registers apart: "
                              f"more than one request ({conf['max_block']}) can read")
        points.append(point)
    return DeviceMap(model=model, title=conf["title"] or model, points=tuple(points), max_gap=conf["max_gap"],
                     max_block=conf["max_block"], sunspec_model=conf.get("sunspec_model"), source=conf["source"])


def _devices() -> Any:
    return resources.files(__package__).joinpath("devices")


@cache
def known_models() -> tuple[str, ...]:
    """The shipped map files, by model name (file stem)."""
    return tuple(sorted(p.name.removesuffix(".yaml") for p in _devices().iterdir() if p.name.endswith(".yaml")))


@cache
def load_map(model: str) -> DeviceMap:
    if not _MODEL.match(model) or model not in known_models():
        raise vol.Invalid(f"unknown meter model {model!r}; shipped: {', '.join(known_models())}, or custom")
    text = _devices().joinpath(f"{model}.yaml").read_text(encoding="utf-8")
    try:
        return parse_map(yaml.safe_load(text), model=model)
    except vol.Invalid as err:
        raise vol.Invalid(f"devices/{model}.yaml: {err}") from None


# -- planning --------------------------------------------------------------------------------------------


def plan_reads(points: Iterable[Point], *, max_gap: int = DEFAULT_MAX_GAP,
               max_block: int = MAX_READ_REGISTERS) -> list[Block]:
    """The fewest contiguous reads that cover ``points`` (see the module contract)."""
    max_block = min(max_block, MAX_READ_REGISTERS)
    by_function: dict[int, list[Point]] = {}
    for p in points:
        by_function.setdefault(p.function, []).append(p)
    blocks: list[Block] = []
    for function in sorted(by_function):
        current: list[Point] = []
        first = end = 0
        for p in sorted(by_function[function], key=lambda p: p.span):
            p_first, p_end = p.span
            if current and p_first - end <= max_gap and max(end, p_end) - first <= max_block:
                current.append(p)
                end = max(end, p_end)
                continue
            if current:
                blocks.append(Block(function, first, end - first, tuple(current)))
            current, first, end = [p], p_first, p_end
        if current:
            blocks.append(Block(function, first, end - first, tuple(current)))
    return blocks


def split_block(block: Block) -> list[Block]:
    """One block per point span: the fallback for devices that refuse a merged read (exception 0x02)."""
    return [Block(block.function, p.span[0], p.span[1] - p.span[0], (p,)) for p in block.points]


# -- decoding --------------------------------------------------------------------------------------------


def _sentinel(na: frozenset[str], unsigned: int, bits: int) -> bool:
    return (
        ("all_ones" in na and unsigned == (1 << bits) - 1)
        or ("signed_max" in na and unsigned == (1 << (bits - 1)) - 1)
        or ("signed_min" in na and unsigned == 1 << (bits - 1))
        or ("zero" in na and unsigned == 0)
    )


@cache
def _family(key: str) -> str | None:
    for family in PLAUSIBLE:
        if key == family or key.startswith(family + "_"):
            return family
    return None


def decode_point(point: Point, block_address: int, data: bytes) -> float | None:
    """One point's value from a block's bytes (big-endian registers); ``None`` = not available."""
    count, fmt, kind = TYPES[point.type]
    start = 2 * (point.address - block_address)
    raw_bytes = data[start:start + 2 * count]
    if point.word_order == "little":  # reverse the words: big-endian from here on
        raw_bytes = b"".join(raw_bytes[i:i + 2] for i in range(2 * count - 2, -1, -2))
    if point.byte_swap:
        raw_bytes = bytes(b for i in range(0, 2 * count, 2) for b in (raw_bytes[i + 1], raw_bytes[i]))
    raw = struct.unpack(fmt, raw_bytes)[0]
    if kind == "float":
        if not math.isfinite(raw):
            return None
    elif point.not_available and _sentinel(point.not_available, int.from_bytes(raw_bytes, "big"), 16 * count):
        return None
    value = float(raw) * point.scale
    if point.scale_factor is not None:
        sf = struct.unpack_from(">h", data, 2 * (point.scale_factor - block_address))[0]
        if sf == SUNSSF_NOT_IMPLEMENTED or not -10 <= sf <= 10:  # SunSpec: sunssf range is -10..10
            return None
        value = value * 10.0**sf
    return value


def decode(block: Block, registers: list[int]) -> Decoded:
    if len(registers) < block.count:
        raise ValueError(f"block {block.address}+{block.count}: device answered {len(registers)} registers")
    data = struct.pack(f">{block.count}H", *registers[:block.count])
    out = Decoded({}, {})
    for point in block.points:
        value = decode_point(point, block.address, data)
        family = _family(point.key)
        if value is not None and family is not None:
            low, high = PLAUSIBLE[family]
            if not low <= value <= high:
                out.rejected[point.key] = value
                continue
        out.values[point.key] = value
    return out


def units(device: DeviceMap) -> Mapping[str, str]:
    return {p.key: p.unit for p in device.points}
