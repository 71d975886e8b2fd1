"""The agent's Modbus client against the simulator's SDM630 served by a real pymodbus server."""

from __future__ import annotations

import struct

import pytest

from edge_agent.clock import ManualClock
from edge_agent.config import ModbusPoint, ModbusTcpDevice
from edge_agent.errors import DeviceRejected, DeviceUnreachable
from edge_agent.planner import plan_reads
from edge_agent.protocols.modbus import ModbusClient
from edge_sim.devices.meters.registers import float32
from edge_sim.devices.modbus_servers import ModbusTcpMeterServer
from edge_sim.simulator import Simulator
from tests.support import LOOPBACK, free_port, mbpoll_float

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


async def test_word_order_little_reads_the_words_swapped(sim: Simulator) -> None:
    """A point configured low-word-first decodes the meter's high-word-first float as CDAB would."""
    swapped = ModbusPoint(name="p", table="input", address=0x34, order="CDAB")
    async with ModbusClient(meter(sdm630_port(sim), [swapped])) as client:
        [result] = await client.read(["p"])
    high, low = float32(sim.circuit("info-centre-main-meter").power_w())
    expected = struct.unpack(">f", struct.pack(">HH", low, high))[0]
    assert result.value == pytest.approx(expected, rel=1e-6)
    assert result.value != pytest.approx(sim.circuit("info-centre-main-meter").power_w(), rel=1e-3)


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


async def test_holding_register_write_and_read_back(sim: Simulator) -> None:
    period = ModbusPoint(name="demand_period", table="holding", address=2, unit="min")
    async with ModbusClient(meter(sdm630_port(sim), [period])) as client:
        assert (await client.read(["demand_period"]))[0].value == 15.0
        await client.write("demand_period", 30.0)
        assert (await client.read(["demand_period"]))[0].value == 30.0


async def test_nobody_listening_is_unreachable() -> None:
    with pytest.raises(DeviceUnreachable) as caught:
        async with ModbusClient(meter(free_port())):
            pass
    assert "meter-main" in str(caught.value)


async def test_mbpoll_reads_the_same_power(sim: Simulator) -> None:
    """An independent client (mbpoll, libmodbus) agrees with the datasheet's register 30053."""
    power = await mbpoll_float(sdm630_port(sim), 53)
    assert power == pytest.approx(sim.circuit("info-centre-main-meter").power_w(), rel=1e-5)


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
