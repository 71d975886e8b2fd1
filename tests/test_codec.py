"""The register codec: round trips over every type and order, vectors a technician would recognise, errors."""

from __future__ import annotations

import math
import struct
from typing import Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pymodbus.client import ModbusTcpClient

from edge_agent.config.codec import (
    FLOAT_TYPES,
    INTEGER_TYPES,
    ORDERS,
    BlockDecoder,
    DataType,
    Decoded,
    Encoding,
    Order,
    integer_range,
)

NUMERIC_TYPES = INTEGER_TYPES + FLOAT_TYPES
STRUCT_CODES = {"int16": "h", "uint16": "H", "int32": "i", "uint32": "I", "int64": "q", "uint64": "Q"}
STRUCT_CODES |= {"float32": "f", "float64": "d"}

WORD_ORDERS: tuple[Literal["big", "little"], ...] = ("big", "little")
types_and_orders = st.tuples(st.sampled_from(NUMERIC_TYPES), st.sampled_from(ORDERS))


def value_of(data_type: DataType, allow_nan: bool = True) -> st.SearchStrategy[float]:
    if data_type == "float32":
        return st.floats(width=32, allow_nan=allow_nan)
    if data_type == "float64":
        return st.floats(allow_nan=allow_nan)
    low, high = integer_range(data_type)
    return st.integers(low, high)


def by_hand(data_type: DataType, order: Order, value: float) -> list[int]:
    """An independent spelling of the orders: big-endian bytes, words reversed and/or bytes swapped."""
    data = struct.pack(">" + STRUCT_CODES[data_type], value)
    words = [data[i : i + 2] for i in range(0, len(data), 2)]
    if order in ("CDAB", "DCBA"):
        words.reverse()
    if order in ("BADC", "DCBA"):
        words = [w[::-1] for w in words]
    return [int.from_bytes(w, "big") for w in words]


def same(a: float | str | None, b: float) -> bool:
    assert isinstance(a, float)
    return (math.isnan(a) and math.isnan(b)) or a == b


# --- round trips ------------------------------------------------------------------------------------


@given(st.data(), types_and_orders)
def test_any_value_round_trips_in_every_order(
    data: st.DataObject, type_and_order: tuple[DataType, Order]
) -> None:
    data_type, order = type_and_order
    encoding = Encoding(data_type, order)
    value = data.draw(value_of(data_type))
    registers = encoding.encode(value)
    assert len(registers) == encoding.registers
    assert all(0 <= r <= 0xFFFF for r in registers)
    decoded = encoding.decode(registers)
    assert decoded.raw == value or same(decoded.raw, value)
    assert same(decoded.value, float(value))
    assert not decoded.not_available


@given(st.data(), types_and_orders)
def test_orders_match_an_independent_byte_shuffle(
    data: st.DataObject, type_and_order: tuple[DataType, Order]
) -> None:
    data_type, order = type_and_order
    value = data.draw(value_of(data_type, allow_nan=False))
    assert Encoding(data_type, order).encode(value) == by_hand(data_type, order, value)


@given(st.data(), st.sampled_from(NUMERIC_TYPES), st.sampled_from(WORD_ORDERS))
def test_word_orders_agree_with_pymodbus(
    data: st.DataObject, data_type: DataType, word_order: Literal["big", "little"]
) -> None:
    """pymodbus' word_order 'big' is ABCD, 'little' is CDAB (it does no byte swap)."""
    value = data.draw(value_of(data_type, allow_nan=False))
    encoding = Encoding(data_type, "ABCD" if word_order == "big" else "CDAB")
    pymodbus_type = getattr(ModbusTcpClient.DATATYPE, data_type.upper())
    registers = ModbusTcpClient.convert_to_registers(value, pymodbus_type, word_order=word_order)
    assert encoding.encode(value) == registers
    assert encoding.decode(registers).raw == value


@given(
    st.tuples(st.sampled_from(INTEGER_TYPES), st.sampled_from(ORDERS)),
    st.integers(-(2**40), 2**40),
    st.sampled_from([0.1, 0.01, 0.001, 10.0, -0.5]),
    st.floats(-1000, 1000),
    st.floats(-0.45, 0.45),
)
def test_scaled_integers_encode_to_the_nearest_raw_value(
    type_and_order: tuple[DataType, Order], raw: int, scale: float, offset: float, fraction: float
) -> None:
    data_type, order = type_and_order
    low, high = integer_range(data_type)
    raw = min(max(raw, low), high)
    encoding = Encoding(data_type, order, scale=scale, offset=offset)
    value = (raw + fraction) * scale + offset
    decoded = encoding.decode(encoding.encode(value))
    assert decoded.raw == raw
    assert decoded.value == pytest.approx(value, abs=0.5 * abs(scale) + 1e-9 * abs(value))


@given(
    st.sampled_from(FLOAT_TYPES),
    st.sampled_from(ORDERS),
    st.floats(-1e6, 1e6),
    st.sampled_from([1.0, 0.001, 1000.0, -2.0]),
    st.floats(-1000, 1000),
)
def test_scaled_floats_round_trip_within_float_precision(
    data_type: DataType, order: Order, value: float, scale: float, offset: float
) -> None:
    encoding = Encoding(data_type, order, scale=scale, offset=offset)
    decoded = encoding.decode(encoding.encode(value))
    assert isinstance(decoded.value, float)
    precision = 1e-6 if data_type == "float32" else 1e-12
    assert decoded.value == pytest.approx(value, abs=precision * (abs(value) + abs(offset)) + 1e-30)


@pytest.mark.parametrize("order", ORDERS)
def test_infinities_and_negative_zero_survive(order: Order) -> None:
    for data_type in FLOAT_TYPES:
        encoding = Encoding(data_type, order, not_available="auto")
        for value in (math.inf, -math.inf):
            assert encoding.decode(encoding.encode(value)) == Decoded(value, raw=value)
        negative_zero = encoding.decode(encoding.encode(-0.0)).value
        assert isinstance(negative_zero, float)
        assert math.copysign(1.0, negative_zero) == -1.0


@given(st.text(max_size=12).map(lambda s: s.rstrip("\x00 ")), st.sampled_from(ORDERS))
def test_strings_round_trip(text: str, order: Order) -> None:
    encoding = Encoding("string", order, count=20)
    assert encoding.decode(encoding.encode(text)).value == text


# --- known vectors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("order", "registers"),
    [
        ("ABCD", [0x4366, 0x8000]),
        ("CDAB", [0x8000, 0x4366]),
        ("BADC", [0x6643, 0x0080]),
        ("DCBA", [0x0080, 0x6643]),
    ],
)
def test_float32_230_5_in_each_order(order: Order, registers: list[int]) -> None:
    encoding = Encoding("float32", order)
    assert encoding.encode(230.5) == registers
    assert encoding.decode(registers) == Decoded(230.5, raw=230.5)


@pytest.mark.parametrize(
    ("order", "registers"),
    [
        ("ABCD", [0x0102, 0x0304, 0x0506, 0x0708]),
        ("CDAB", [0x0708, 0x0506, 0x0304, 0x0102]),
        ("BADC", [0x0201, 0x0403, 0x0605, 0x0807]),
        ("DCBA", [0x0807, 0x0605, 0x0403, 0x0201]),
    ],
)
def test_64_bit_orders(order: Order, registers: list[int]) -> None:
    assert Encoding("uint64", order).encode(0x0102030405060708) == registers


@pytest.mark.parametrize(("order", "registers"), [("ABCD", [0x0102]), ("CDAB", [0x0102]), ("BADC", [0x0201])])
def test_16_bit_orders_swap_bytes_or_nothing(order: Order, registers: list[int]) -> None:
    assert Encoding("uint16", order).encode(0x0102) == registers


def test_integer_vectors() -> None:
    assert Encoding("int32").encode(-2) == [0xFFFF, 0xFFFE]
    assert Encoding("int32").decode([0xFFFF, 0xFFFE]).value == -2.0
    assert Encoding("uint64").encode(123456789012) == [0x0000, 0x001C, 0xBE99, 0x1A14]
    assert Encoding("uint64").decode([0x0000, 0x001C, 0xBE99, 0x1A14]).raw == 123456789012
    # Schneider iEM3255 energy: int64 Wh, the full 64 bits kept exact in raw.
    assert Encoding("int64").decode([0x7FFF, 0xFFFF, 0xFFFF, 0xFFFE]).raw == 2**63 - 2


def test_abb_b23_points() -> None:
    energy = Encoding("uint64", scale=0.01, not_available="auto")
    assert energy.decode([0, 0, 0x00BC, 0x614E]).value == pytest.approx(123456.78)
    assert energy.decode([0xFFFF] * 4) == Decoded(None, not_available=True, raw=2**64 - 1)
    assert energy.encode(123456.78) == [0, 0, 0x00BC, 0x614E]
    assert energy.encode(None) == [0xFFFF] * 4

    power = Encoding("int32", scale=0.01, not_available="auto")
    assert power.decode([0xFFFF, 0xCFC7]).value == pytest.approx(-123.45)  # raw -12345: exporting
    assert power.decode([0x7FFF, 0xFFFF]).not_available
    assert power.decode([0x7FFF, 0xFFFE]).value == pytest.approx(21474836.46)

    power_factor = Encoding("int16", scale=0.001, not_available="auto")
    assert power_factor.decode([0xFC4A]).value == pytest.approx(-0.95)
    assert power_factor.decode([0x7FFF]).value is None

    assert Encoding("uint32", scale=0.1).decode([0x0000, 0x08FD]).value == pytest.approx(230.1)
    assert Encoding("uint16", scale=0.01, not_available="auto").decode([0xFFFF]).not_available


def test_sentinels_only_when_asked_for() -> None:
    assert Encoding("int32").decode([0x7FFF, 0xFFFF]).value == 2147483647.0
    nan = Encoding("float32").decode([0x7FC0, 0x0000]).value
    assert isinstance(nan, float)
    assert math.isnan(nan)
    assert Encoding("float32", not_available="auto").decode([0x7FC0, 0x0000]).not_available
    assert Encoding("float64", "DCBA", not_available="auto").decode([0, 0, 0, 0xF87F]).not_available


def test_explicit_sentinels_take_either_spelling_for_signed_types() -> None:
    for spelling in (0x8000, -32768):
        encoding = Encoding("int16", not_available=(spelling,))
        assert encoding.decode([0x8000]).not_available
        assert encoding.encode(None) == [0x8000]
    assert Encoding("float32", not_available=(-1.0,)).decode([0xBF80, 0]).not_available
    assert Encoding("bitfield", bit=0, not_available="auto").decode([0xFFFF]).not_available


def test_string_vectors() -> None:
    assert Encoding("string", count=3).decode([0x5344, 0x4D36, 0x3330]).value == "SDM630"
    assert Encoding("string", count=3).encode("SDM630") == [0x5344, 0x4D36, 0x3330]
    assert Encoding("string", count=5).decode([0x5344, 0x4D36, 0x3330, 0x2000, 0x0020]).value == "SDM630"
    assert Encoding("string", "BADC", count=3).decode([0x4453, 0x364D, 0x3033]).value == "SDM630"
    assert Encoding("string", "CDAB", count=3).decode([0x5344, 0x4D36, 0x3330]).value == "SDM630"


def test_bitfields() -> None:
    assert Encoding("bitfield", bit=3).decode([0x0008]).value == 1.0
    assert Encoding("bitfield", bit=3).decode([0xFFF7]).value == 0.0
    assert Encoding("bitfield", mask=0x00F0).decode([0x0153]).value == 5.0
    assert Encoding("bitfield", mask=0x00F0).encode(5) == [0x0050]
    assert Encoding("bitfield", count=2, bit=17).decode([0x0002, 0x0000]).value == 1.0
    assert Encoding("bitfield", "CDAB", count=2, bit=17).decode([0x0000, 0x0002]).value == 1.0
    assert Encoding("bitfield", "BADC", bit=8).decode([0x0001]).value == 1.0


def test_bools_from_coils() -> None:
    coil = Encoding("bool")
    assert coil.registers == 1
    assert coil.decode(True) == Decoded(1.0, raw=1)
    assert coil.decode([False]).value == 0.0
    assert coil.decode([1]).value == 1.0
    assert coil.encode(True) == [1]
    assert coil.encode(0) == [0]


# --- blocks: all the points of one request at once ------------------------------------------------------


@st.composite
def any_encoding(draw: st.DrawFn) -> Encoding:
    """Every type, order, scale, offset and kind of sentinel the codec knows."""
    data_type: DataType = draw(st.sampled_from([*NUMERIC_TYPES, "string", "bitfield", "bool"]))
    order: Order = draw(st.sampled_from(ORDERS))
    if data_type == "bool":
        return Encoding("bool")
    if data_type == "string":
        return Encoding("string", order, count=draw(st.integers(1, 3)))
    no_value: tuple[float, ...] = (math.nan,) if data_type in FLOAT_TYPES else (-1,)
    choices: list[tuple[float, ...] | Literal["auto"]] = [(), "auto", (0,), no_value]
    sentinels = draw(st.sampled_from(choices))
    scale = draw(st.sampled_from([1.0, 0.1, -2.0, 1e300]))
    offset = draw(st.sampled_from([0.0, -40.0]))
    if data_type == "bitfield":
        count = draw(st.sampled_from([1, 2]))
        bit = draw(st.integers(0, 16 * count - 1))
        return Encoding("bitfield", order, scale, offset, count=count, bit=bit, not_available=sentinels)
    return Encoding(data_type, order, scale, offset, not_available=sentinels)


# Register values that make sentinels, NaN and infinities likely: all ones, the largest and smallest
# signed values, a float32 NaN and infinity's high word, zero.
SPECIAL_REGISTERS = [0, 1, 0xFFFF, 0x7FFF, 0x8000, 0x7FC0, 0x7F80, 0xFF80]


@st.composite
def blocks(draw: st.DrawFn) -> tuple[list[tuple[int, Encoding]], list[int]]:
    """Points placed one after another with gaps, sometimes overlapping; the registers a device answered
    (now and then one too few, or one out of range)."""
    points: list[tuple[int, Encoding]] = []
    end = 0
    for encoding in draw(st.lists(any_encoding(), min_size=1, max_size=8)):
        offset = max(0, end + draw(st.integers(-2, 3)))
        points.append((offset, encoding))
        end = max(end, offset + encoding.registers)
    register = st.one_of(st.integers(0, 0xFFFF), st.sampled_from(SPECIAL_REGISTERS))
    registers = draw(st.lists(register, min_size=end, max_size=end + 2))
    if draw(st.integers(0, 19)) == 0:
        registers = registers[:-1]
    if registers and draw(st.integers(0, 19)) == 0:
        registers[draw(st.integers(0, len(registers) - 1))] = 0x10000
    return points, registers


def one_by_one(points: list[tuple[int, Encoding]], registers: list[int]) -> list[str] | None:
    """Each point decoded on its own, as exact text (NaN, -0.0 and int against float told apart); None
    when any point cannot be decoded."""
    try:
        return [repr(e.decode(registers[o : o + e.registers]).value) for o, e in points]
    except ValueError:
        return None


@given(blocks())
def test_a_block_decodes_exactly_as_its_points_one_by_one(
    block: tuple[list[tuple[int, Encoding]], list[int]],
) -> None:
    points, registers = block
    expected = one_by_one(points, registers)
    decoder = BlockDecoder(len(registers), points)
    if expected is None or not all(0 <= r <= 0xFFFF for r in registers):
        # A point the codec refuses, or a register out of range (even one between points): the caller
        # then decodes point by point, to find which point and why.
        with pytest.raises(ValueError):  # noqa: PT011 - a struct's, a point's or a string's message
            decoder.decode(registers)
    else:
        assert [repr(value) for value in decoder.decode(registers)] == expected
    with pytest.raises(ValueError, match=r"integers 0\.\.65535"):  # fewer registers than the block asked for
        BlockDecoder(len(registers) + 1, points).decode(registers)


def test_a_block_mixing_orders_types_and_an_overlap() -> None:
    # 230.5 in each order, a scaled uint16 showing its sentinel, a string and a bitfield in one block
    registers = [0x4366, 0x8000, 0x8000, 0x4366, 0x6643, 0x0080, 0x0080, 0x6643, 0xFFFF, 0x4453, 0x364D, 9]
    points = [(2 * i, Encoding("float32", order)) for i, order in enumerate(ORDERS)]
    points += [
        (8, Encoding("uint16", scale=0.1, not_available="auto")),
        (9, Encoding("string", "BADC", count=2)),
    ]
    points += [(11, Encoding("bitfield", bit=3)), (0, Encoding("int16"))]  # the last overlaps the first
    values = BlockDecoder(len(registers), points).decode(registers)
    assert values == [230.5, 230.5, 230.5, 230.5, None, "SDM6", 1.0, float(0x4366)]


# --- errors -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("encoding", "registers"),
    [
        (Encoding("float32"), [1, 2, 3]),
        (Encoding("uint64"), [1]),
        (Encoding("int16"), []),
        (Encoding("string", count=3), [1, 2]),
        (Encoding("bool"), [True, False]),
    ],
)
def test_wrong_register_count_names_both_counts(encoding: Encoding, registers: list[int]) -> None:
    message = f"{encoding.type} needs {encoding.registers} registers, received {len(registers)}"
    with pytest.raises(ValueError, match=message):
        encoding.decode(registers)


def test_registers_must_be_16_bit() -> None:
    with pytest.raises(ValueError, match=r"0\.\.65535"):
        Encoding("float32").decode([0x10000, 0])
    with pytest.raises(ValueError, match="0 or 1"):
        Encoding("bool").decode([2])


@pytest.mark.parametrize(
    ("encoding", "value", "message"),
    [
        (Encoding("int16"), 32768, r"int16 \(raw -32768\.\.32767\)"),
        (Encoding("uint16"), -1, r"uint16 \(raw 0\.\.65535\)"),
        (Encoding("uint32", scale=0.1), 429496729.6, r"uint32 \(raw 0\.\.4294967295\)"),
        (Encoding("int64"), 2**63, "int64"),
        (Encoding("uint64"), math.nan, "uint64"),
        (Encoding("int32"), math.inf, "int32"),
        (Encoding("float32"), 1e39, "float32"),
        (Encoding("bitfield", mask=0x00F0), 16, "bitfield"),
    ],
)
def test_encode_out_of_range_names_the_type(encoding: Encoding, value: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        encoding.encode(value)


def test_other_encode_errors() -> None:
    with pytest.raises(ValueError, match="longer than 3 registers"):
        Encoding("string", count=3).encode("SDM630M")
    with pytest.raises(ValueError, match="no not-available value"):
        Encoding("int16").encode(None)
    with pytest.raises(ValueError, match="encodes a number"):
        Encoding("int16").encode("12")


@pytest.mark.parametrize(
    "build",
    [
        lambda: Encoding("int24"),  # type: ignore[arg-type]
        lambda: Encoding("float32", "BACD"),  # type: ignore[arg-type]
        lambda: Encoding("float32", scale=0.0),
        lambda: Encoding("string"),
        lambda: Encoding("string", count=2, scale=0.1),
        lambda: Encoding("bool", not_available="auto"),
        lambda: Encoding("bitfield"),
        lambda: Encoding("bitfield", bit=16),
        lambda: Encoding("bitfield", mask=0b1010),
        lambda: Encoding("int32", count=4),
        lambda: Encoding("int16", not_available=(0x10000,)),
    ],
)
def test_bad_encodings_are_refused_when_built(build: object) -> None:
    assert callable(build)
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        build()
