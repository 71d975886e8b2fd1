"""`edge-agent decode`: registers shown every way a device might mean them, the plausible reading marked.

Pure decoding (decode_table.py) is tested directly, with hypothesis where a property holds for every value;
the command is tested with typed registers and live against the simulator's meters on loopback.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner, Result

from edge_agent.cli.app import app
from edge_agent.cli.decode_table import (
    PHASE_VOLTAGE,
    Cell,
    RegisterBlock,
    decode_block,
    judge,
    parse_quantity,
    parse_register,
    verdict,
)
from edge_agent.config.codec import ORDERS, Encoding, Order
from edge_sim.simulator import Simulator
from tests.support import LOOPBACK, free_port

runner = CliRunner()

IEM3255_VOLTAGE_L1 = 3027  # float32 ABCD, the simulator shows 220 V
B23_VOLTAGE_L1 = 0x5B00  # uint32 ABCD at 0.1 V


def cell(cells: list[Cell], offset: int, data_type: str, order: str) -> Cell:
    return next(c for c in cells if (c.offset, c.type, c.order) == (offset, data_type, order))


def json_cell(data: dict[str, Any], offset: int, data_type: str, order: str) -> dict[str, Any]:
    found: dict[str, Any] = next(
        c for c in data["cells"] if (c["offset"], c["type"], c["order"]) == (offset, data_type, order)
    )
    return found


# --- decode_table: the pure logic ---------------------------------------------------------------


@given(st.floats(min_value=180.5, max_value=259.5), st.sampled_from(ORDERS))
def test_a_voltage_in_any_order_is_plausible_in_that_order(volts: float, order: Order) -> None:
    registers = Encoding("float32", order).encode(volts)
    cells = decode_block(RegisterBlock((0, *registers, 0), at=1, width=2))
    right = cell(cells, 0, "float32", order)
    assert right.match is not None
    assert right.match.quantity is PHASE_VOLTAGE
    assert right.value == pytest.approx(volts, rel=1e-6)


@given(st.integers(min_value=-(2**31), max_value=2**31 - 1), st.sampled_from(ORDERS))
def test_every_int32_reads_back_in_its_own_order(value: int, order: Order) -> None:
    registers = Encoding("int32", order).encode(value)
    cells = decode_block(RegisterBlock(tuple(registers), width=2))
    assert cell(cells, 0, "int32", order).value == value


def test_offsets_either_side_and_missing_registers() -> None:
    registers = Encoding("float32").encode(230.5)  # 0x4366 0x8000
    cells = decode_block(RegisterBlock((0x1234, *registers, 0x0000), at=1, width=2, start=3026))
    assert {c.offset for c in cells} == {-1, 0, 1}
    at_zero = cell(cells, 0, "float32", "ABCD")
    assert at_zero.address == 3027
    assert at_zero.match is not None
    assert cell(cells, -1, "float32", "ABCD").match is None
    assert cell(cells, 1, "float32", "ABCD").match is None
    # an unreadable register leaves out every cell that needs it, and nothing else
    holed = decode_block(RegisterBlock((None, *registers, 0), at=1, width=2))
    assert {c.offset for c in holed} == {0, 1}


def test_a_scaled_integer_is_a_guess_until_the_scale_is_given() -> None:
    guess = judge(2200, True, [PHASE_VOLTAGE])
    assert guess is not None
    assert (guess.scale, guess.assumed) == (0.1, True)
    assert guess.value == pytest.approx(220)
    given_scale = judge(2200, True, [PHASE_VOLTAGE], scale=0.1)
    assert given_scale is not None
    assert not given_scale.assumed
    assert judge(2200, False, [PHASE_VOLTAGE]) is None  # floats are never scaled
    assert judge(0, True, [parse_quantity("anything=-1..1")]) is None  # zero says nothing
    assert judge(1e-40, False, [parse_quantity("tiny=-1..1")]) is None  # a subnormal: wrong word order


def test_verdict_points_at_the_right_address() -> None:
    shifted = RegisterBlock((0, 0, 230), at=1, width=1, start=100)  # a 16-bit 230 V, one register later
    text = verdict(shifted, decode_block(shifted))
    assert "offset +1" in text
    assert "address 102" in text
    registers = Encoding("float32").encode(230.5)
    right = RegisterBlock((0x0000, *registers, 0x0000), at=1, width=2, start=100)
    assert verdict(right, decode_block(right)).startswith("At the address given (offset 0): float32 ABCD.")


def test_parsing_registers_and_ranges() -> None:
    assert [parse_register(t) for t in ("0x4366", "17254", "0b1", "0xFFFF")] == [0x4366, 17254, 1, 0xFFFF]
    for bad in ("0x10000", "-1", "volts", ""):
        with pytest.raises(ValueError, match="register"):
            parse_register(bad)
    current = parse_quantity("current=0.5..80A")
    assert (current.name, current.low, current.high, current.unit) == ("current", 0.5, 80, "A")
    assert parse_quantity("pf=-1..1").low == -1
    for bad in ("current", "x=5..1", "x=a..b"):
        with pytest.raises(ValueError, match=r"NAME=LOW\.\.HIGH|above"):
            parse_quantity(bad)


# --- the command, typed registers --------------------------------------------------------------


def test_typed_registers_show_the_voltage_marked_in_its_order() -> None:
    result = runner.invoke(app, ["decode", "0x4366", "0x8000"])
    assert result.exit_code == 0, result.output
    assert "230.5 ✓" in result.stdout
    assert "float32 ABCD: 230.5 (phase voltage 180..260 V)" in result.stdout
    assert "At the address given (offset 0): float32 ABCD." in result.stdout
    for order in ("ABCD", "CDAB", "BADC", "DCBA"):
        assert order in result.stdout


def test_typed_registers_as_json_with_offsets_either_side() -> None:
    result = runner.invoke(
        app, ["decode", "0", "0x4366", "0x8000", "0", "--at", "1", "--address", "3027", "--json"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    right = json_cell(data, 0, "float32", "ABCD")
    assert right["address"] == 3027
    assert right["value"] == 230.5
    assert right["plausible"]["range"] == "phase voltage"
    assert json_cell(data, -1, "float32", "ABCD")["plausible"] is None
    assert json_cell(data, 1, "float32", "ABCD")["plausible"] is None
    assert {c["type"] for c in data["cells"]} >= {"int16", "uint16", "int32", "uint32", "float32"}


def test_a_user_range_replaces_the_built_in_ones() -> None:
    # 0x42C8 0x0000 is 100.0: no voltage or frequency, but a plausible current for this range
    plain = runner.invoke(app, ["decode", "0x42C8", "0", "--json"])
    assert json_cell(json.loads(plain.stdout), 0, "float32", "ABCD")["plausible"] is None
    ranged = runner.invoke(app, ["decode", "0x42C8", "0", "--range", "current=50..150A", "--json"])
    assert ranged.exit_code == 0, ranged.output
    mark = json_cell(json.loads(ranged.stdout), 0, "float32", "ABCD")["plausible"]
    assert (mark["range"], mark["unit"]) == ("current", "A")


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["decode", "0x4366", "0xZZ"], "REGISTERS"),
        (["decode", "0x10000"], "REGISTERS"),
        (["decode"], "REGISTERS"),
        (["decode", "1", "--range", "volts"], "--range"),
        (["decode", "1", "2", "--at", "2"], "--at"),
        (["decode", "1", "--address", "0x1ffff"], "--address"),
        (["decode", "--host", LOOPBACK], "--address"),
        (["decode", "1", "--host", LOOPBACK, "--address", "3"], "REGISTERS"),
        (["decode", "--host", LOOPBACK, "--serial", "/dev/ttyUSB0", "--address", "3"], "--host/--serial"),
        (["decode", "1", "--count", "5"], "--count"),
        (["decode", "1", "--scale", "0"], "--scale"),
    ],
)
def test_bad_arguments_exit_2_naming_the_argument(args: list[str], named: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert named in result.output


# --- the command, live from the simulator -------------------------------------------------------


async def invoke(args: list[str]) -> Result:
    """The CLI in a worker thread (it runs its own event loop) while the simulator serves in this one."""
    async with asyncio.timeout(15):
        return await asyncio.to_thread(runner.invoke, app, args)


def meter_port(sim: Simulator, name: str) -> str:
    endpoint = next(e for e in sim.endpoints() if e.name == name)
    return endpoint.address.rsplit(":", 1)[1]


@pytest.mark.integration
@pytest.mark.integration
async def test_live_read_marks_the_meters_voltage_at_its_address(sim: Simulator) -> None:
    port = meter_port(sim, "library-main-meter")
    args = ["decode", "--host", LOOPBACK, "--port", port, "--address", str(IEM3255_VOLTAGE_L1)]
    result = await invoke([*args, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [r["address"] for r in data["registers"]] == [3026, 3027, 3028, 3029]
    right = json_cell(data, 0, "float32", "ABCD")
    assert right["value"] == pytest.approx(220, abs=1)
    assert right["plausible"]["range"] == "phase voltage"
    assert json_cell(data, 1, "float32", "ABCD")["plausible"] is None
    assert json_cell(data, -1, "float32", "ABCD")["plausible"] is None
    table = await invoke(args)
    assert "At the address given (offset 0): float32 ABCD" in table.stdout
    assert "holding, unit 1" in table.stdout


@pytest.mark.integration
@pytest.mark.integration
async def test_live_read_of_a_scaled_integer_skips_a_refused_register(sim: Simulator) -> None:
    port = meter_port(sim, "library-hvac-meter")  # ABB B23, unit 1 behind the sub-meter gateway
    args = ["decode", "--host", LOOPBACK, "--port", port, "--address", hex(B23_VOLTAGE_L1), "--scale", "0.1"]
    result = await invoke([*args, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["registers"][0]["value"] is None  # 0x5AFF is not in the meter's map: refused, shown as such
    right = json_cell(data, 0, "uint32", "ABCD")
    assert right["plausible"]["value"] == pytest.approx(220)
    assert not right["plausible"]["scale_assumed"]


@pytest.mark.integration
@pytest.mark.integration
async def test_live_read_failures_exit_1_naming_host_and_unit(sim: Simulator) -> None:
    port = meter_port(sim, "library-main-meter")
    absent = await invoke(["decode", "--host", LOOPBACK, "--port", port, "--unit", "7", "--address", "3027"])
    assert absent.exit_code == 1
    assert f"{LOOPBACK}:{port} unit 7" in absent.output
    assert "exception 11" in absent.output
    closed = free_port()
    refused = await invoke(["decode", "--host", LOOPBACK, "--port", str(closed), "--address", "0"])
    assert refused.exit_code == 1
    assert f"{LOOPBACK}:{closed}" in refused.output
    assert "cannot connect" in refused.output
