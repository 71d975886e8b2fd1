"""Modbus register values to numbers and back: the one place that knows byte and word orders.

Standard library only. An `Encoding` is built once per point (it precomputes its struct formats);
`decode` and `encode` are then cheap enough for thousands of points a second.

Orders, named as integrators know them. Write the value's big-endian bytes as A B C D (32-bit) or
A B C D E F G H (64-bit), split into 16-bit words with the most significant word first:

| order  | 32-bit registers | 64-bit registers     | meaning                                     |
|--------|------------------|----------------------|---------------------------------------------|
| "ABCD" | AB CD            | AB CD EF GH          | big-endian: high word first                 |
| "CDAB" | CD AB            | GH EF CD AB          | word order reversed, bytes normal           |
| "BADC" | BA DC            | BA DC FE HG          | bytes swapped within each word, high first  |
| "DCBA" | DC BA            | HG FE DC BA          | little-endian: both reversed                |

16-bit values have one word: "ABCD" and "CDAB" both mean the normal order, "BADC" and "DCBA" swap
its two bytes. Strings read forward register by register (word order never reverses text); "BADC"
and "DCBA" swap the two bytes of each register.

A `BlockDecoder` decodes all the points of one block of registers (one Modbus request) together: one
struct call per byte/word order for every number in the block, then scale, offset and sentinels as above.

"Not available": meters report a missing quantity with a sentinel raw value. Such a value decodes to
`Decoded(value=None, not_available=True)`, a quality flag for the caller, never a number. Sentinels
are raw values (before scale and offset); for signed types either spelling is accepted (0x8000 or
-32768 for int16). `not_available="auto"` uses ABB's convention: all bits set for unsigned types and
bitfields (0xFFFF, 0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF), the largest positive value for signed types
(0x7FFF, 0x7FFFFFFF, 0x7FFFFFFFFFFFFFFF), NaN for floats. Without a NaN sentinel, float NaN and
infinities decode as they are; with one, only NaN is flagged (infinities still decode).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal, get_args

DataType = Literal[
    "bool", "int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64",
    "string", "bitfield",
]  # fmt: skip
Order = Literal["ABCD", "CDAB", "BADC", "DCBA"]

DATA_TYPES: Final[tuple[DataType, ...]] = get_args(DataType)
ORDERS: Final[tuple[Order, ...]] = get_args(Order)

# type: (struct code, registers, signed)
_NUMERIC: Final[dict[str, tuple[str, int, bool]]] = {
    "int16": ("h", 1, True),
    "uint16": ("H", 1, False),
    "int32": ("i", 2, True),
    "uint32": ("I", 2, False),
    "int64": ("q", 4, True),
    "uint64": ("Q", 4, False),
    "float32": ("f", 2, True),
    "float64": ("d", 4, True),
}
INTEGER_TYPES: Final[tuple[DataType, ...]] = ("int16", "uint16", "int32", "uint32", "int64", "uint64")
FLOAT_TYPES: Final[tuple[DataType, ...]] = ("float32", "float64")

# Registers are packed with one endianness and the value unpacked with another; the pair gives the
# order: same endianness keeps the bytes in place, "<" on the registers swaps bytes within each word,
# "<" on the value reverses all bytes (so "<" on both reverses the words only).
_ENDIAN: Final[dict[str, tuple[str, str]]] = {
    "ABCD": (">", ">"),
    "CDAB": ("<", "<"),
    "BADC": ("<", ">"),
    "DCBA": (">", "<"),
}
_FLOAT32_MAX: Final[float] = struct.unpack(">f", b"\x7f\x7f\xff\xff")[0]


def integer_range(data_type: str) -> tuple[int, int]:
    """The raw range of an integer type, for example (-32768, 32767) for int16."""
    _, words, signed = _NUMERIC[data_type]
    bits = 16 * words
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)


@dataclass(frozen=True, slots=True)
class Decoded:
    """A decoded value: `value` is None exactly when the device said "not available"."""

    value: float | str | None
    not_available: bool = False
    raw: int | float | str | None = None
    """The value before scale and offset (an exact int for integer types and bitfields)."""


@dataclass(frozen=True, slots=True)
class Encoding:
    """How one point sits in registers. Build once, then `decode` and `encode` many times.

    type: see `DataType`. "bool" is one coil or discrete-input bit (`registers` counts it as 1);
        "bitfield" is a field of a uint16 register (uint32 with count=2), chosen by `bit` (0-based)
        or by `mask`; a mask's value is shifted down to its lowest set bit (mask 0x00F0 of 0x0050
        is 5).
    order: byte and word order, see the module docstring.
    scale, offset: value = raw * scale + offset (numbers and bitfields only).
    count: registers of a string (required) or of a bitfield (1 or 2, default 1).
    not_available: raw sentinel values, or "auto" (see the module docstring).
    """

    type: DataType
    order: Order = "ABCD"
    scale: float = 1.0
    offset: float = 0.0
    count: int | None = None
    bit: int | None = None
    mask: int | None = None
    not_available: tuple[float, ...] | Literal["auto"] = ()

    _registers: int = field(init=False, repr=False, compare=False)
    _words: struct.Struct = field(init=False, repr=False, compare=False)
    _value: struct.Struct | None = field(init=False, repr=False, compare=False)
    _identity: bool = field(init=False, repr=False, compare=False)
    _sentinels: frozenset[float] = field(init=False, repr=False, compare=False)
    _nan_sentinel: bool = field(init=False, repr=False, compare=False)
    _na_raw: int | float | None = field(init=False, repr=False, compare=False)
    _field_mask: int = field(init=False, repr=False, compare=False)
    _shift: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.type not in DATA_TYPES:
            raise ValueError(f"unknown type {self.type!r} (expected one of {', '.join(DATA_TYPES)})")
        if self.order not in ORDERS:
            raise ValueError(f"unknown order {self.order!r} (expected one of {', '.join(ORDERS)})")
        if not (math.isfinite(self.scale) and self.scale != 0 and math.isfinite(self.offset)):
            raise ValueError(f"scale must be finite and non-zero, offset finite: {self.scale}, {self.offset}")
        identity = self.scale == 1.0 and self.offset == 0.0
        words_endian, value_endian = _ENDIAN[self.order]
        value: struct.Struct | None = None
        field_mask, shift = 0, 0
        if self.type in _NUMERIC:
            code, registers, _ = _NUMERIC[self.type]
            value = struct.Struct(value_endian + code)
            if self.count not in (None, registers):
                raise ValueError(f"{self.type} occupies {registers} registers, not count={self.count}")
        elif self.type == "bitfield":
            registers = 1 if self.count is None else self.count
            if registers not in (1, 2):
                raise ValueError(f"a bitfield is 1 or 2 registers, not count={self.count}")
            value = struct.Struct(value_endian + ("H" if registers == 1 else "I"))
            field_mask, shift = self._bitfield(16 * registers)
        else:  # bool or string: no arithmetic, no sentinels
            if not identity or self.not_available:
                raise ValueError(f"scale, offset and not_available do not apply to {self.type}")
            if self.type == "bool":
                registers = 1
            else:
                if self.count is None or self.count < 1:
                    raise ValueError(f"a string needs count (registers) >= 1, not {self.count}")
                registers = self.count
                words_endian = ">" if self.order in ("ABCD", "CDAB") else "<"
        set_ = object.__setattr__
        set_(self, "_registers", registers)
        set_(self, "_words", struct.Struct(f"{words_endian}{registers}H"))
        set_(self, "_value", value)
        set_(self, "_identity", identity)
        set_(self, "_field_mask", field_mask)
        set_(self, "_shift", shift)
        self._set_sentinels()

    def _bitfield(self, bits: int) -> tuple[int, int]:
        if (self.bit is None) == (self.mask is None):
            raise ValueError("a bitfield needs exactly one of bit or mask")
        if self.bit is not None:
            if not 0 <= self.bit < bits:
                raise ValueError(f"bit {self.bit} is outside a {bits}-bit register value (0..{bits - 1})")
            return 1 << self.bit, self.bit
        assert self.mask is not None
        shift = (self.mask & -self.mask).bit_length() - 1
        width = self.mask >> shift
        if not 0 < self.mask < 1 << bits or width & (width + 1):
            raise ValueError(f"mask {self.mask:#x} is not one run of bits within {bits} bits")
        return self.mask, shift

    def _set_sentinels(self) -> None:
        sentinels: list[float] = []
        nan = False
        if self.not_available == "auto":
            if self.type in FLOAT_TYPES:
                nan = True
            elif self.type == "bitfield":
                sentinels.append((1 << (16 * self._registers)) - 1)
            else:
                sentinels.append(integer_range(self.type)[1])
        elif self.type in FLOAT_TYPES:
            nan = any(math.isnan(s) for s in self.not_available)
            sentinels = [float(s) for s in self.not_available if not math.isnan(s)]
        else:
            bits = 16 * self._registers
            signed = self.type in INTEGER_TYPES and _NUMERIC[self.type][2]
            for s in self.not_available:
                if not math.isfinite(s) or s != int(s) or not -(1 << (bits - 1)) <= s < 1 << bits:
                    raise ValueError(f"not-available value {s} is not a {bits}-bit raw value")
                raw = int(s)
                if signed and raw >= 1 << (bits - 1):
                    raw -= 1 << bits
                elif not signed and raw < 0:
                    raw += 1 << bits
                sentinels.append(raw)
        na_raw: float | None = math.nan if nan else (sentinels[0] if sentinels else None)
        object.__setattr__(self, "_sentinels", frozenset(sentinels))
        object.__setattr__(self, "_nan_sentinel", nan)
        object.__setattr__(self, "_na_raw", na_raw)

    @property
    def registers(self) -> int:
        """How many registers (for "bool": bits) the point occupies."""
        return self._registers

    def _unpack(self, registers: Sequence[int]) -> bytes:
        if len(registers) != self._registers:
            raise ValueError(f"{self.type} needs {self._registers} registers, received {len(registers)}")
        try:
            return self._words.pack(*registers)
        except struct.error as exc:
            raise ValueError(f"registers must be integers 0..65535: {list(registers)!r}") from exc

    def value_of(self, raw: float) -> float | None:
        """A raw number's value (`decode` without the registers): None for a "not available" sentinel.
        Numbers and bitfields only."""
        if raw in self._sentinels or (self._nan_sentinel and math.isnan(raw)):
            return None
        if self._field_mask:
            raw = (int(raw) & self._field_mask) >> self._shift
        return float(raw) if self._identity else raw * self.scale + self.offset

    def decode(self, registers: Sequence[int] | bool) -> Decoded:
        """Registers as read (for "bool": a list of one bit, or the bit itself) to a value.

        Raises ValueError for a wrong register count or a register outside 0..65535.
        """
        if isinstance(registers, bool):
            registers = (registers,)
        data = self._unpack(registers)
        value_struct = self._value
        if value_struct is None:
            if self.type == "bool":
                if registers[0] not in (0, 1):
                    raise ValueError(f"a bit must be 0 or 1, not {registers[0]!r}")
                return Decoded(float(registers[0]), raw=int(registers[0]))
            text = data.rstrip(b"\x00 ").decode()
            return Decoded(text, raw=text)
        raw: int | float = value_struct.unpack(data)[0]
        if raw in self._sentinels or (self._nan_sentinel and math.isnan(raw)):
            return Decoded(None, not_available=True, raw=raw)
        if self._field_mask:
            raw = (int(raw) & self._field_mask) >> self._shift
        if self._identity:
            return Decoded(float(raw), raw=raw)
        return Decoded(raw * self.scale + self.offset, raw=raw)

    def encode(self, value: float | str | None) -> list[int]:
        """A value to registers, the inverse of `decode`: raw = (value - offset) / scale.

        Integer types round to the nearest raw value; a raw value outside the type raises ValueError
        naming the type and its range. None encodes the not-available sentinel, if there is one.
        A bitfield encodes into an otherwise zero register: merge it with the other bits yourself.
        """
        if value is None:
            if self._na_raw is None:
                raise ValueError(f"{self.type} has no not-available value to encode None with")
            raw: int | float = self._na_raw
        elif self.type == "string":
            if not isinstance(value, str):
                raise ValueError(f"a string encodes str, not {value!r}")
            data = value.encode()
            if len(data) > 2 * self._registers:
                raise ValueError(f"{value!r} is {len(data)} bytes, longer than {self._registers} registers")
            return list(self._words.unpack(data.ljust(2 * self._registers, b"\x00")))
        elif isinstance(value, str):
            raise ValueError(f"{self.type} encodes a number, not {value!r}")
        elif self.type == "bool":
            if value not in (0, 1):
                raise ValueError(f"a bool encodes 0 or 1, not {value!r}")
            return [int(value)]
        else:
            raw = self._raw(value)
        assert self._value is not None
        try:
            return list(self._words.unpack(self._value.pack(raw)))
        except (struct.error, OverflowError) as exc:
            raise ValueError(f"{value} does not fit {self.type}") from exc

    def _raw(self, value: float) -> int | float:
        scaled = value if self._identity else (value - self.offset) / self.scale
        if self.type in FLOAT_TYPES:
            if self.type == "float32" and math.isfinite(scaled) and abs(scaled) > _FLOAT32_MAX:
                raise ValueError(
                    f"{value} is out of range for float32 (raw -{_FLOAT32_MAX:.7g}..{_FLOAT32_MAX:.7g})"
                )
            return float(scaled)
        if self.type == "bitfield":
            low, high = 0, self._field_mask >> self._shift
        else:
            low, high = integer_range(self.type)
        if not math.isfinite(scaled):
            raise ValueError(f"{value} is out of range for {self.type} (raw {low}..{high})")
        raw = scaled if isinstance(scaled, int) else round(scaled)
        if not low <= raw <= high:
            raise ValueError(f"{value} is out of range for {self.type} (raw {low}..{high})")
        return raw << self._shift if self.type == "bitfield" else raw


_ToValue = Callable[[float], float | None]


class BlockDecoder:
    """Decodes the points of one block of `count` registers at once; build it once per planned request.

    `points` are (offset in the block, encoding) pairs. Numbers are unpacked by one precompiled struct per
    byte/word order in use, from the block's registers packed once (twice when an order swaps the bytes
    of each register); strings, bitfields, bools and points overlapping another are decoded one by one.
    `decode` gives, point by point, what `Encoding.decode` would: the value, None for "not available".
    """

    __slots__ = ("_big", "_little", "_one_by_one", "_size", "_structs", "_swapped")

    def __init__(self, count: int, points: Sequence[tuple[int, Encoding]]) -> None:
        self._size = len(points)
        self._big = struct.Struct(f">{count}H")
        self._little = struct.Struct(f"<{count}H")
        self._one_by_one: list[tuple[int, int, Encoding]] = []  # (index, offset, encoding)
        # (words endian, value endian) -> the numbers in that order: (offset, index, encoding)
        groups: dict[tuple[str, str], list[tuple[int, int, Encoding]]] = {}
        for index, (offset, encoding) in enumerate(points):
            if encoding.type in _NUMERIC and 0 <= offset <= count - encoding.registers:
                groups.setdefault(_ENDIAN[encoding.order], []).append((offset, index, encoding))
            else:
                self._one_by_one.append((index, offset, encoding))
        # One struct a group, reading its points in address order; pad bytes skip the registers between.
        self._structs: list[tuple[bool, struct.Struct, list[tuple[int, _ToValue]]]] = []
        for (words_endian, value_endian), numbers in groups.items():
            layout, end = [value_endian], 0
            taken: list[tuple[int, _ToValue]] = []
            for offset, index, encoding in sorted(numbers, key=lambda n: n[0]):
                if offset < end:  # overlaps the point before: decoded on its own
                    self._one_by_one.append((index, offset, encoding))
                    continue
                pad = f"{2 * (offset - end)}x" if offset > end else ""
                layout.append(pad + _NUMERIC[encoding.type][0])
                end = offset + encoding.registers
                plain = encoding._identity and not encoding._sentinels and not encoding._nan_sentinel
                to_value: _ToValue = float if plain else encoding.value_of
                taken.append((index, to_value))
            self._structs.append((words_endian == "<", struct.Struct("".join(layout)), taken))
        self._swapped = any(little_words for little_words, _, _ in self._structs)

    def decode(self, registers: Sequence[int]) -> list[float | str | None]:
        """The points' values, in the order given when built; None for "not available".

        Raises ValueError for registers that are not `count` integers 0..65535 (unused ones included), or
        a point `Encoding.decode` refuses: decode such a block point by point to find out which.
        """
        try:
            big = self._big.pack(*registers)
            little = self._little.pack(*registers) if self._swapped else big
        except struct.error as exc:
            raise ValueError(f"registers must be {self._big.size // 2} integers 0..65535") from exc
        values: list[float | str | None] = [None] * self._size
        for little_words, numbers, taken in self._structs:
            raws = numbers.unpack_from(little if little_words else big)
            for (index, to_value), raw in zip(taken, raws, strict=True):
                values[index] = to_value(raw)
        for index, offset, encoding in self._one_by_one:
            values[index] = encoding.decode(registers[offset : offset + encoding.registers]).value
        return values
