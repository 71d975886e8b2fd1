"""A block of Modbus registers decoded every way a device might mean it, and which readings look plausible.

The commonest commissioning mistakes are a wrong byte/word order and an address one off (datasheets number
registers from 1, the wire from 0). `decode_block` shows a value at the address given and one register
either side, as every integer and float type in all four orders (codec.py does the decoding), and judges
each against plausibility ranges: a mains voltage near 230 V in one cell and nonsense in the others settles
both questions at once.

Standard library and codec.py only: no I/O.
"""

from __future__ import annotations

import functools
import math
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from edge_agent.config.codec import ORDERS, DataType, Encoding, Order

INTEGER_SCALES: Final[tuple[float, ...]] = (1.0, 0.1, 0.01, 0.001)
"""Scales tried on integer readings for a user's range (meters count volts in 0.1 V, hertz in 0.01 Hz)."""
OFFSETS: Final[tuple[int, ...]] = (-1, 0, 1)
DECODED_TYPES: Final[tuple[DataType, ...]] = (
    "int16", "uint16", "int32", "uint32", "float32", "int64", "uint64", "float64",
)  # fmt: skip
_REGISTERS: Final[dict[str, int]] = {
    "int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2, "int64": 4, "uint64": 4, "float64": 4,
}  # fmt: skip
_FLOAT32_TINY: Final[float] = struct.unpack(">f", b"\x00\x80\x00\x00")[0]  # smallest normal float32


@dataclass(frozen=True, slots=True)
class Quantity:
    """A plausibility range: a reading of this quantity lies within [low, high] (in `unit`).

    scales: what integer readings are multiplied by before the check (1 first; 0.1 catches a voltage
        counted in tenths). Floats are checked as they are.
    floor: magnitudes at or below it never count (a power factor of 0.001 is more likely noise).
    Zero never counts for any range: a register of zeros says nothing about order or address.
    """

    name: str
    unit: str
    low: float
    high: float
    scales: tuple[float, ...] = (1.0,)
    floor: float = 0.0

    def admits(self, value: float) -> bool:
        return (
            math.isfinite(value) and value != 0 and abs(value) > self.floor and self.low <= value <= self.high
        )

    def describe(self) -> str:
        unit = f" {self.unit}" if self.unit else ""
        return f"{self.name} {self.low:g}..{self.high:g}{unit}"


PHASE_VOLTAGE = Quantity("phase voltage", "V", 180, 260, scales=(1.0, 0.1, 0.01))
LINE_VOLTAGE = Quantity("line voltage", "V", 320, 450, scales=(1.0, 0.1, 0.01))
FREQUENCY = Quantity("frequency", "Hz", 49, 61, scales=(1.0, 0.1, 0.01))
POWER_FACTOR = Quantity("power factor", "", -1, 1, scales=(0.001,), floor=0.05)
BUILTIN_QUANTITIES: Final[tuple[Quantity, ...]] = (PHASE_VOLTAGE, LINE_VOLTAGE, FREQUENCY, POWER_FACTOR)

_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_RANGE = re.compile(
    rf"^\s*(?P<name>[^=]+?)\s*=\s*(?P<low>{_NUMBER})\s*\.\.\s*(?P<high>{_NUMBER})\s*(?P<unit>\S*)\s*$"
)


def parse_quantity(text: str) -> Quantity:
    """'NAME=LOW..HIGH[UNIT]', for example 'current=0.5..80A'; raises ValueError saying what is wrong."""
    match = _RANGE.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not NAME=LOW..HIGH[UNIT], e.g. 'voltage=207..253V'")
    low, high = float(match["low"]), float(match["high"])
    if not (math.isfinite(low) and math.isfinite(high)) or low > high:
        raise ValueError(f"{text!r}: low {low:g} must not be above high {high:g}")
    return Quantity(match["name"], match["unit"], low, high, scales=INTEGER_SCALES)


def parse_register(text: str) -> int:
    """A register value as typed: decimal, 0x hex, 0b binary or 0o octal; 0..65535 (ValueError otherwise)."""
    try:
        value = int(text.replace("_", ""), 0)
    except ValueError:
        raise ValueError(f"{text!r} is not a register value (decimal, or hex such as 0x4366)") from None
    if not 0 <= value <= 0xFFFF:
        raise ValueError(f"{text!r} is outside a 16-bit register (0..65535, 0x0000..0xFFFF)")
    return value


@dataclass(frozen=True, slots=True)
class Match:
    """Why a reading is plausible: raw x `scale` = `value`, within `quantity`'s range. `assumed`: the
    scale was guessed (an integer reading plausible only once scaled), a weaker hint than an exact one."""

    quantity: Quantity
    scale: float
    value: float
    assumed: bool = False

    def describe(self) -> str:
        return f"{self.quantity.describe()}" + (f" at scale {self.scale:g}" if self.scale != 1 else "")


@dataclass(frozen=True, slots=True)
class Cell:
    """One reading of the block: `type` in `order`, starting `offset` registers from the address asked."""

    offset: int
    address: int | None  # of its first register, when the block's address is known
    type: DataType
    order: Order
    registers: tuple[int, ...]
    value: int | float  # exact for integer types
    match: Match | None


@dataclass(frozen=True, slots=True)
class RegisterBlock:
    """Registers as read or typed. `registers[at]` is where the value is expected to start; `width`
    registers wide at most (1, 2 or 4: which types are decoded). None marks a register that could not be
    read. `start` is the address of `registers[0]`, None when the registers were typed without one."""

    registers: tuple[int | None, ...]
    at: int = 0
    width: int = 4
    start: int | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.at < len(self.registers):
            raise ValueError(
                f"the value's first register ({self.at}) is outside the {len(self.registers)} given"
            )
        if self.width < 1:
            raise ValueError(f"width must be at least one register, not {self.width}")

    def address_of(self, index: int) -> int | None:
        return None if self.start is None else self.start + index

    def types(self) -> tuple[DataType, ...]:
        """The types decoded: as wide as `width` at most."""
        return tuple(t for t in DECODED_TYPES if _REGISTERS[t] <= self.width)


def judge(
    value: float, is_integer: bool, quantities: Sequence[Quantity], scale: float | None = None
) -> Match | None:
    """The first range that makes `value` plausible, with the scale that did; None when none does.

    Integer readings are tried at each range's scales (only `scale` when given); floats as they are. A
    match at the scale given (or 1) wins over one at a guessed scale. Float values below the smallest
    normal float32 never count: they come from a wrong word order.
    """
    if not math.isfinite(value) or (not is_integer and abs(value) < _FLOAT32_TINY):
        return None
    found: list[Match] = []
    for quantity in quantities:
        if not is_integer:
            scales: tuple[float, ...] = (1.0,)
        else:
            scales = (scale,) if scale is not None else quantity.scales
        for factor in scales:
            if quantity.admits(value * factor):
                assumed = is_integer and scale is None and factor != 1
                found.append(Match(quantity, factor, value * factor, assumed))
    return min(found, key=lambda m: m.assumed) if found else None  # an exact match first


@functools.cache
def _encoding(data_type: DataType, order: Order) -> Encoding:
    return Encoding(data_type, order)


def decode_block(
    block: RegisterBlock, quantities: Sequence[Quantity] = BUILTIN_QUANTITIES, scale: float | None = None
) -> list[Cell]:
    """Every reading of the block at offsets -1, 0 and +1, by offset, then type, then order.

    A cell is left out where its registers are not all there (before the first, past the last, or
    unreadable). `scale`, when given, is the only scale tried on integer readings.
    """
    cells: list[Cell] = []
    for offset in OFFSETS:
        first = block.at + offset
        for data_type in block.types():
            words = block.registers[first : first + _REGISTERS[data_type]] if first >= 0 else ()
            if len(words) != _REGISTERS[data_type] or any(w is None for w in words):
                continue
            present = tuple(w for w in words if w is not None)
            for order in ORDERS:
                raw = _encoding(data_type, order).decode(present).raw
                assert isinstance(raw, int | float)
                is_integer = isinstance(raw, int)
                match = judge(float(raw), is_integer, quantities, scale)
                cells.append(Cell(offset, block.address_of(first), data_type, order, present, raw, match))
    return cells


def format_value(cell: Cell) -> str:
    """A cell's reading as a technician reads it: integers exact, floats to their type's precision."""
    if isinstance(cell.value, int):
        return str(cell.value)
    if not math.isfinite(cell.value):
        return str(cell.value)
    return f"{cell.value:.7g}" if cell.type == "float32" else f"{cell.value:.15g}"


def plausible_readings(
    cells: Sequence[Cell], *, assumed: bool = False
) -> list[tuple[Cell, tuple[Order, ...]]]:
    """The plausible cells (only those at a guessed scale with `assumed`), one per reading: a 16-bit
    reading is the same in ABCD and CDAB (and in BADC and DCBA), so those come as one with both orders."""
    grouped: dict[tuple[int, str, int | float], list[Cell]] = {}
    for cell in cells:
        if cell.match is not None and cell.match.assumed == assumed:
            grouped.setdefault((cell.offset, cell.type, cell.value), []).append(cell)
    return [(group[0], tuple(c.order for c in group)) for group in grouped.values()]


def describe_reading(cell: Cell, orders: Sequence[Order]) -> str:
    """'offset +0 (address 3027) float32 ABCD: 230.5 (phase voltage 180..260 V)'."""
    where = f"address {cell.address}" if cell.address is not None else "as typed"
    text = f"offset {cell.offset:+d} ({where}) {cell.type} {'/'.join(orders)}: {format_value(cell)}"
    if cell.match is None:
        return text
    if cell.match.scale != 1:
        text += f" x {cell.match.scale:g} = {cell.match.value:.6g}"
    return f"{text} ({cell.match.describe()})"


# A two-register reading at offset 0 and one of these at offset -1 or +1 share the register that holds
# the value's high word: the same value seen one register off with the words the other way round.
_SHARED_HIGH_WORD: Final[dict[tuple[int, Order], Order]] = {
    (-1, "CDAB"): "ABCD", (-1, "DCBA"): "BADC", (1, "ABCD"): "CDAB", (1, "BADC"): "DCBA",
}  # fmt: skip


def _echoes(cell: Cell, at_zero: Sequence[Cell]) -> bool:
    partner = _SHARED_HIGH_WORD.get((cell.offset, cell.order))
    return _REGISTERS[cell.type] == 2 and any(c.type == cell.type and c.order == partner for c in at_zero)


def verdict(block: RegisterBlock, cells: Sequence[Cell]) -> str:
    """What the plausible readings say about the address and order, in a sentence or two."""
    exact = [c for c in cells if c.match is not None and not c.match.assumed]
    if not exact:
        if any(c.match is not None for c in cells):
            return (
                "Plausible only at a guessed scale (~): check the datasheet's resolution, then give --scale."
            )
        return (
            "Nothing plausible at any offset: check the table (holding or input), the unit id, "
            "or give --range for the quantity you expect."
        )
    at_zero = [c for c in exact if c.offset == 0]
    if at_zero:
        names = ", ".join(dict.fromkeys(f"{c.type} {c.order}" for c in at_zero))
        text = f"At the address given (offset 0): {names}."
        others = [c for c in exact if c.offset != 0 and not _echoes(c, at_zero)]
        if others:
            text += (
                " Readings one register off are plausible too: check a second register to settle the address."
            )
        return text
    offsets = sorted({c.offset for c in exact})
    if len(offsets) == 1:
        where = "" if block.start is None else f" (address {block.start + block.at + offsets[0]})"
        return f"Plausible only at offset {offsets[0]:+d}: the value probably starts one register off{where}."
    return "Plausible one register either side, not at the address given: check a second register."


def block_json(
    block: RegisterBlock, cells: Sequence[Cell], quantities: Sequence[Quantity]
) -> dict[str, object]:
    """The whole decoding as JSON data: registers, ranges, every cell, and the verdict."""
    return {
        "registers": [{"address": block.address_of(i), "value": v} for i, v in enumerate(block.registers)],
        "value_index": block.at,
        "width": block.width,
        "ranges": [
            {"name": q.name, "unit": q.unit, "low": q.low, "high": q.high, "scales": list(q.scales)}
            for q in quantities
        ],
        "cells": [cell_json(c) for c in cells],
        "verdict": verdict(block, cells),
    }


def cell_json(cell: Cell) -> dict[str, object]:
    """A cell as JSON data (non-finite floats as strings)."""
    value = cell.value if isinstance(cell.value, int) or math.isfinite(cell.value) else str(cell.value)
    match = cell.match
    return {
        "offset": cell.offset,
        "address": cell.address,
        "type": cell.type,
        "order": cell.order,
        "registers": list(cell.registers),
        "value": value,
        "plausible": None
        if match is None
        else {
            "range": match.quantity.name,
            "unit": match.quantity.unit,
            "low": match.quantity.low,
            "high": match.quantity.high,
            "scale": match.scale,
            "scale_assumed": match.assumed,
            "value": match.value,
        },
    }
