"""The agent's Modbus client against the simulator's SDM630 served by a real pymodbus server."""

from __future__ import annotations

import asyncio
import math
import struct
from collections.abc import Awaitable, Callable
from typing import Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.clock import ManualClock
from edge_agent.config import ModbusPoint, ModbusTcpDevice
from edge_agent.config.codec import Encoding
from edge_agent.errors import DeviceGarbage, DeviceRejected, DeviceUnreachable
from edge_agent.protocols.modbus.client import ModbusClient
from edge_agent.protocols.modbus.link import ModbusLink
from edge_agent.protocols.modbus.planner import plan_reads
from edge_sim.devices.meters.registers import float32
from edge_sim.devices.modbus_servers import ModbusTcpMeterServer
from edge_sim.simulator import Simulator
from tests.support import LOOPBACK, free_port, mbpoll_float
from tests.test_codec import SPECIAL_REGISTERS, any_encoding

SDM630_POINTS = [
    ModbusPoint(name="total_power", table="input", address=0x34, unit="W"),
    ModbusPoint(name="import_energy", table="input", address=0x48, unit="kWh"),
    ModbusPoint(name="voltage_l1", table="input", address=0x00, unit="V"),
    ModbusPoint(name="frequency", table="input", address=0x46, unit="Hz"),
]


def meter(port: int, points: list[ModbusPoint] = SDM630_POINTS, timeout_s: float = 1.0) -> ModbusTcpDevice:
    return ModbusTcpDevice(
        name="meter-main", protocol="modbus-tcp", host=LOOPBACK, port=port, points=points, timeout_s=timeout_s
    )


def sdm630_port(sim: Simulator) -> int:
    """The information centre's main meter: an SDM630, unit 1."""
    server = sim.hosts["main-info-centre"]
    assert isinstance(server, ModbusTcpMeterServer)
    return server.port


@pytest.mark.integration
async def test_reads_what_the_meter_shows(sim: Simulator, clock: ManualClock) -> None:
    clock.advance(600)
    await sim.step()
    async with ModbusClient(meter(sdm630_port(sim))) as client:
        results = {r.point: r for r in await client.read([p.name for p in SDM630_POINTS])}
    truth = sim.circuit("info-centre-main-meter")
    assert all(r.error is None for r in results.values())
    assert results["total_power"].value == pytest.approx(truth.power_w(), rel=1e-6)
    assert results["import_energy"].value == pytest.approx(truth.import_kwh(), rel=1e-6)
    assert results["voltage_l1"].value == pytest.approx(220.0)
    assert results["frequency"].value == pytest.approx(60.0)
    assert truth.power_w() > 10_000  # a summer afternoon: offices, control room and cooling


def test_planner_reads_a_meter_in_one_request() -> None:
    blocks = plan_reads(SDM630_POINTS)
    assert len(blocks) == 2  # voltage at 0x00 is too far from the power block to be worth one request
    assert (blocks[0].start, blocks[0].count) == (0x00, 2)
    assert (blocks[1].start, blocks[1].count) == (0x34, 0x4A - 0x34)


def test_planner_splits_register_tables() -> None:
    points = [*SDM630_POINTS, ModbusPoint(name="demand_period", table="holding", address=2)]
    tables = [b.table for b in plan_reads(points)]
    assert tables == ["input", "input", "holding"]


@pytest.mark.integration
async def test_word_order_little_reads_the_words_swapped(sim: Simulator) -> None:
    """A point configured low-word-first decodes the meter's high-word-first float as CDAB would."""
    swapped = ModbusPoint(name="p", table="input", address=0x34, order="CDAB")
    async with ModbusClient(meter(sdm630_port(sim), [swapped])) as client:
        [result] = await client.read(["p"])
    high, low = float32(sim.circuit("info-centre-main-meter").power_w())
    expected = struct.unpack(">f", struct.pack(">HH", low, high))[0]
    assert result.value == pytest.approx(expected, rel=1e-6)
    assert result.value != pytest.approx(sim.circuit("info-centre-main-meter").power_w(), rel=1e-3)


@pytest.mark.integration
async def test_illegal_address_is_a_per_point_error_naming_the_register(sim: Simulator) -> None:
    points = [*SDM630_POINTS[:1], ModbusPoint(name="bogus", table="input", address=0x1000)]
    async with ModbusClient(meter(sdm630_port(sim), points)) as client:
        results = {r.point: r for r in await client.read(["total_power", "bogus"])}
    assert results["total_power"].error is None
    error = results["bogus"].error
    assert isinstance(error, DeviceRejected)
    assert error.code == "modbus exception 2"
    assert "input registers 4096+2" in str(error)
    assert error.device == "meter-main"


@pytest.mark.integration
async def test_holding_register_write_and_read_back(sim: Simulator) -> None:
    period = ModbusPoint(name="demand_period", table="holding", address=2, unit="min")
    async with ModbusClient(meter(sdm630_port(sim), [period])) as client:
        assert (await client.read(["demand_period"]))[0].value == 15.0
        await client.write("demand_period", 30.0)
        assert (await client.read(["demand_period"]))[0].value == 30.0


@pytest.mark.integration
async def test_nobody_listening_is_unreachable() -> None:
    with pytest.raises(DeviceUnreachable) as caught:
        async with ModbusClient(meter(free_port())):
            pass
    assert "meter-main" in str(caught.value)


@pytest.mark.integration
async def test_mbpoll_reads_the_same_power(sim: Simulator) -> None:
    """An independent client (mbpoll, libmodbus) agrees with the datasheet's register 30053."""
    power = await mbpoll_float(sdm630_port(sim), 53)
    assert power == pytest.approx(sim.circuit("info-centre-main-meter").power_w(), rel=1e-5)


@pytest.mark.integration
async def test_illegal_address_in_a_merged_block_is_split_and_remembered(sim: Simulator) -> None:
    points = [
        ModbusPoint(name="total_energy", table="input", address=0x0156, unit="kWh"),
        ModbusPoint(name="beyond_the_map", table="input", address=0x0158),  # the SDM630 map ends at 0x0157
    ]
    async with ModbusClient(meter(sdm630_port(sim), points)) as client:
        first = {r.point: r for r in await client.read(["total_energy", "beyond_the_map"])}
        requests_first = client.requests
        second = {r.point: r for r in await client.read(["total_energy", "beyond_the_map"])}
        requests_second = client.requests - requests_first
    assert first["total_energy"].value == pytest.approx(sim.circuit("info-centre-main-meter").import_kwh())
    assert isinstance(first["beyond_the_map"].error, DeviceRejected)
    assert "input registers 344+2" in str(first["beyond_the_map"].error)
    assert requests_first == 3  # the merged block refused, then each point alone
    assert requests_second == 2  # remembered: no more failed merged requests
    assert second["total_energy"].error is None


@pytest.mark.integration
@pytest.mark.parametrize("multiple", [False, True], ids=["05-06", "15-16"])
async def test_writes_with_single_or_multiple_functions(sim: Simulator, multiple: bool) -> None:
    points = [
        ModbusPoint(name="relay", table="coil", address=0, type="bool"),
        ModbusPoint(name="demand_period", table="holding", address=2, unit="min"),
        ModbusPoint(name="register", table="holding", address=5, type="uint16"),
    ]
    device = meter(sdm630_port(sim), points).model_copy(update={"multiple_writes": multiple})
    async with ModbusClient(device) as client:
        await client.write("relay", 1.0)
        await client.write("register", 1234.0)
        await client.write("demand_period", 30.0)
        results = {r.point: r.value for r in await client.read(["relay", "register", "demand_period"])}
    assert results == {"relay": 1.0, "register": 1234.0, "demand_period": 30.0}


# --- decoding a whole block gives every point what decoding it alone would --------------------------------


class Answers:
    """A link to a device whose input registers hold `registers` (no network: decoding only)."""

    units = 1

    def __init__(self, registers: list[int]) -> None:
        self.registers = registers

    def join(self, unit: str) -> None:
        pass

    async def call(self, operation: Callable[[Any], Awaitable[Any]], **_: object) -> Any:
        return await operation(self)

    async def read(self, table: str, unit: int, start: int, count: int) -> list[int]:
        return self.registers[start : start + count]


def as_point(name: str, address: int, encoding: Encoding) -> ModbusPoint:
    sentinels = encoding.not_available
    return ModbusPoint(
        name=name,
        table="input",
        address=address,
        type=encoding.type,
        order=encoding.order,
        scale=encoding.scale,
        offset=encoding.offset,
        count=encoding.count,
        bit=encoding.bit,
        not_available="auto" if sentinels == "auto" else [int(s) for s in sentinels],
    )


def read_alone(point: ModbusPoint, registers: list[int]) -> tuple[float | None, bool, str | None]:
    """(value, unavailable, error message) of one point decoded on its own."""
    try:
        decoded = point.codec.decode(registers[point.address : point.address + point.registers])
    except ValueError as exc:
        return None, False, f"cannot decode: {exc}"
    if isinstance(decoded.value, float) and math.isfinite(decoded.value):
        return decoded.value, False, None
    if decoded.not_available:
        return None, True, None
    return None, False, f"not a finite number: {decoded.value!r}"


# Points a configuration can have: no bools in registers, integer sentinels only.
configurable = any_encoding().filter(lambda e: e.type != "bool" and e.not_available != (math.nan,))


@settings(deadline=None)  # an event loop for every example: slow on a busy machine, never wrong
@given(st.lists(st.tuples(configurable, st.integers(-2, 30)), min_size=1, max_size=12), st.data())
def test_a_block_read_gives_each_point_what_reading_it_alone_gives(
    placed: list[tuple[Encoding, int]], data: st.DataObject
) -> None:
    points: list[ModbusPoint] = []
    end = 0
    for index, (encoding, gap) in enumerate(placed):  # gaps (some past max_gap) and overlaps
        points.append(as_point(f"p{index}", max(0, end + gap), encoding))
        end = points[-1].address + points[-1].registers
    end = max(p.address + p.registers for p in points)
    register = st.one_of(st.integers(0, 0xFFFF), st.sampled_from(SPECIAL_REGISTERS))
    registers = data.draw(st.lists(register, min_size=end, max_size=end))
    client = ModbusClient(meter(502, points), cast(ModbusLink, Answers(registers)))
    results = asyncio.run(client.read([p.name for p in points]))
    by_name = {p.name: p for p in points}
    assert sorted(r.point for r in results) == sorted(by_name)
    for result in results:
        value, unavailable, message = read_alone(by_name[result.point], registers)
        assert repr(result.value) == repr(value)
        assert result.unavailable is unavailable
        if message is None:
            assert result.error is None
        else:
            assert isinstance(result.error, DeviceGarbage)
            assert str(result.error).endswith(message)
