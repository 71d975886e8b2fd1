"""Simulated meters (Eastron SDM630, Schneider iEM3255, ABB B23) read back by clients written by others:
mbpoll (libmodbus) over TCP and RTU with the datasheet register numbers, and pymodbus's serial client on
the socat bus. Plus the register encoders and the sliding-window demand calculator."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pymodbus import FramerType
from pymodbus.client import AsyncModbusSerialClient
from pymodbus.exceptions import ModbusException

from edge_sim.devices.meters.abb_b23 import AbbB23
from edge_sim.devices.meters.base import MeterReading
from edge_sim.devices.meters.demand import SlidingDemand
from edge_sim.devices.meters.iem3255 import Iem3255
from edge_sim.devices.meters.registers import RegisterBlock, float32, int16, int32, int64, uint16, uint64
from edge_sim.devices.meters.sdm630 import Sdm630
from edge_sim.devices.modbus_servers import ModbusRtuMeterBus, ModbusTcpMeterServer
from tests.support import LOOPBACK, free_port

MBPOLL = shutil.which("mbpoll") or "/usr/bin/mbpoll"
MBPOLL_TIMEOUT_S = 10.0
READING = MeterReading(
    power_w=45678.5,
    import_kwh=12345.67,
    export_kwh=1.5,
    demand_w=41000.0,
    max_demand_w=63000.0,
    voltage_v=221.5,
    frequency_hz=59.98,
    power_factor=0.93,
)
ILLEGAL_ADDRESS = "Illegal data address"
SIX_DIGITS = 1e-5  # mbpoll prints floats with six significant digits


@dataclass
class Poll:
    returncode: int | None
    values: dict[int, str]  # mbpoll reference -> value as printed
    output: str


async def mbpoll(*args: str) -> Poll:
    """One mbpoll poll (stdout and stderr together), in a subprocess: the server runs in this event loop."""
    proc = await asyncio.create_subprocess_exec(
        MBPOLL, "-1", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), MBPOLL_TIMEOUT_S)
    except TimeoutError:
        proc.kill()
        await proc.communicate()
        raise
    text = out.decode(errors="replace")
    values = {int(m[1]): m[2] for m in re.finditer(r"^\[(\d+)\]:\s+(\S+)", text, re.MULTILINE)}
    return Poll(proc.returncode, values, text)


async def tcp_read(port: int, unit: int, *args: str) -> dict[int, str]:
    poll = await mbpoll("-m", "tcp", "-p", str(port), "-a", str(unit), *args, LOOPBACK)
    assert poll.returncode == 0, poll.output
    return poll.values


def floats(values: dict[int, str]) -> list[float]:
    return [float(v) for _, v in sorted(values.items())]


def ints(values: dict[int, str]) -> list[int]:
    return [int(v) for _, v in sorted(values.items())]


def words(values: dict[int, str]) -> list[int]:
    return [int(v, 16) for _, v in sorted(values.items())]


def integer(registers: list[int], signed: bool = False) -> int:
    """Big-endian words (high word first) as one integer."""
    raw = b"".join(r.to_bytes(2, "big") for r in registers)
    return int.from_bytes(raw, "big", signed=signed)


@pytest.fixture
async def meters() -> AsyncIterator[ModbusTcpMeterServer]:
    async with ModbusTcpMeterServer(LOOPBACK, free_port(), [Sdm630(1), Iem3255(2), AbbB23(3)]) as server:
        yield server


# --- Eastron SDM630: input registers 3xxxx, float32 high word first -------------------------------------


@pytest.mark.integration
async def test_sdm630_shows_power_and_energy(meters: ModbusTcpMeterServer) -> None:
    await meters.show(1, READING)
    port = meters.port
    [power] = floats(await tcp_read(port, 1, "-t", "3:float", "-B", "-r", "53"))
    assert power == pytest.approx(READING.power_w, rel=SIX_DIGITS)
    imported, exported = floats(await tcp_read(port, 1, "-t", "3:float", "-B", "-r", "73", "-c", "2"))
    assert imported == pytest.approx(READING.import_kwh, rel=SIX_DIGITS)
    assert exported == pytest.approx(READING.export_kwh, rel=SIX_DIGITS)
    [total] = floats(await tcp_read(port, 1, "-t", "3:float", "-B", "-r", "343"))
    assert total == pytest.approx(READING.import_kwh + READING.export_kwh, rel=SIX_DIGITS)
    [demand_period] = floats(await tcp_read(port, 1, "-t", "4:float", "-B", "-r", "3"))
    assert demand_period == 15.0


@pytest.mark.integration
async def test_sdm630_block_read_of_40_parameters(meters: ModbusTcpMeterServer) -> None:
    """The meter's limit of 40 parameters per request, read as one block from 30001."""
    await meters.show(1, READING)
    values = await tcp_read(meters.port, 1, "-t", "3:float", "-B", "-r", "1", "-c", "40")
    assert len(values) == 40
    by_register = {ref: float(v) for ref, v in values.items()}
    assert [by_register[r] for r in (1, 3, 5)] == pytest.approx([READING.voltage_v] * 3, rel=SIX_DIGITS)
    assert [by_register[r] for r in (7, 9, 11)] == pytest.approx([READING.current_a] * 3, rel=SIX_DIGITS)
    assert by_register[13] == pytest.approx(READING.power_w / 3, rel=SIX_DIGITS)
    assert by_register[63] == pytest.approx(READING.power_factor, rel=SIX_DIGITS)
    assert by_register[71] == pytest.approx(READING.frequency_hz, rel=SIX_DIGITS)
    assert by_register[21] == 0.0  # a parameter the simulator does not fill
    beyond = await mbpoll("-m", "tcp", "-p", str(meters.port), "-t", "3", "-r", "345", LOOPBACK)
    assert beyond.returncode != 0
    assert ILLEGAL_ADDRESS in beyond.output


@pytest.mark.integration
async def test_sdm630_demand_registers_after_a_demand_profile(meters: ModbusTcpMeterServer) -> None:
    """60 kW for 20 minutes then 30 kW for 10: the last 15 minutes average 40 kW, the peak window 60 kW."""
    demand = SlidingDemand()
    energy_kwh = 0.0
    for minute in range(31):
        demand.add(minute * 60.0, energy_kwh)
        energy_kwh += (60.0 if minute < 20 else 30.0) / 60
    reading = MeterReading(
        power_w=30000.0,
        import_kwh=energy_kwh,
        export_kwh=0.0,
        demand_w=demand.demand_w,
        max_demand_w=demand.max_demand_w,
    )
    await meters.show(1, reading)
    present, peak = floats(await tcp_read(meters.port, 1, "-t", "3:float", "-B", "-r", "85", "-c", "2"))
    assert present == pytest.approx(40000.0, rel=SIX_DIGITS)
    assert peak == pytest.approx(60000.0, rel=SIX_DIGITS)


# --- Schneider iEM3255: holding registers, number - 1 on the wire, kW and int64 Wh ----------------------


@pytest.mark.integration
async def test_iem3255_shows_power_in_kw_and_energy_in_wh(meters: ModbusTcpMeterServer) -> None:
    await meters.show(2, READING)
    port = meters.port
    [power_kw] = floats(await tcp_read(port, 2, "-t", "4:float", "-B", "-r", "3060"))
    assert power_kw == pytest.approx(READING.power_w / 1000, rel=SIX_DIGITS)
    [current] = floats(await tcp_read(port, 2, "-t", "4:float", "-B", "-r", "3000"))
    assert current == pytest.approx(READING.current_a, rel=SIX_DIGITS)
    [voltage] = floats(await tcp_read(port, 2, "-t", "4:float", "-B", "-r", "3028"))
    assert voltage == pytest.approx(READING.voltage_v, rel=SIX_DIGITS)
    [power_factor] = floats(await tcp_read(port, 2, "-t", "4:float", "-B", "-r", "3084"))
    assert power_factor == pytest.approx(READING.power_factor, rel=SIX_DIGITS)
    [frequency] = floats(await tcp_read(port, 2, "-t", "4:float", "-B", "-r", "3110"))
    assert frequency == pytest.approx(READING.frequency_hz, rel=SIX_DIGITS)
    energy = words(await tcp_read(port, 2, "-t", "4:hex", "-r", "3204", "-c", "8"))
    assert integer(energy[:4], signed=True) == round(READING.import_kwh * 1000)
    assert integer(energy[4:], signed=True) == round(READING.export_kwh * 1000)


@pytest.mark.integration
async def test_iem3255_answers_its_block_and_nothing_else(meters: ModbusTcpMeterServer) -> None:
    port = str(meters.port)
    for start in ("3000", "3087"):  # registers 3000-3211 in two requests of 125
        assert len(await tcp_read(meters.port, 2, "-t", "4:hex", "-r", start, "-c", "125")) == 125
    for args in (["-t", "4", "-r", "3766", "-c", "2"], ["-t", "3", "-r", "3060"]):  # demand; input table
        poll = await mbpoll("-m", "tcp", "-p", port, "-a", "2", *args, LOOPBACK)
        assert poll.returncode != 0
        assert ILLEGAL_ADDRESS in poll.output


# --- ABB B23: holding registers at the manual's hex addresses, scaled big-endian integers ---------------


@pytest.mark.integration
async def test_abb_b23_shows_power_energy_and_scaled_values(meters: ModbusTcpMeterServer) -> None:
    await meters.show(3, READING)
    port = meters.port
    [power] = ints(await tcp_read(port, 3, "-0", "-t", "4:int", "-B", "-r", str(0x5B14)))
    assert power == round(READING.power_w * 100)
    energy = words(await tcp_read(port, 3, "-0", "-t", "4:hex", "-r", str(0x5000), "-c", "12"))
    assert integer(energy[0:4]) == round(READING.import_kwh * 100)
    assert integer(energy[4:8]) == round(READING.export_kwh * 100)
    assert integer(energy[8:12], signed=True) == round((READING.import_kwh - READING.export_kwh) * 100)
    voltages = ints(await tcp_read(port, 3, "-0", "-t", "4:int", "-B", "-r", str(0x5B00), "-c", "3"))
    assert voltages == [round(READING.voltage_v * 10)] * 3
    [current] = ints(await tcp_read(port, 3, "-0", "-t", "4:int", "-B", "-r", str(0x5B0C)))
    assert current == round(READING.current_a * 100)
    [frequency] = ints(await tcp_read(port, 3, "-0", "-t", "4", "-r", str(0x5B2C)))
    assert frequency == round(READING.frequency_hz * 100)
    [power_factor] = ints(await tcp_read(port, 3, "-0", "-t", "4", "-r", str(0x5B3A)))
    assert power_factor == round(READING.power_factor * 1000)

    await meters.show(
        3, MeterReading(power_w=-1234.5, import_kwh=1.0, export_kwh=2.0, demand_w=0, max_demand_w=0)
    )
    [power] = ints(await tcp_read(port, 3, "-0", "-t", "4:int", "-B", "-r", str(0x5B14)))
    assert power == -123450


@pytest.mark.integration
async def test_abb_b23_quantities_it_does_not_measure_read_not_available(
    meters: ModbusTcpMeterServer,
) -> None:
    await meters.show(3, READING)
    port = meters.port
    reactive_energy = words(await tcp_read(port, 3, "-0", "-t", "4:hex", "-r", str(0x500C), "-c", "12"))
    assert reactive_energy[:8] == [0xFFFF] * 8  # import and export: uint64
    assert reactive_energy[8:] == [0x7FFF, 0xFFFF, 0xFFFF, 0xFFFF]  # net: int64
    reactive_power = words(await tcp_read(port, 3, "-0", "-t", "4:hex", "-r", str(0x5B1C), "-c", "2"))
    assert reactive_power == [0x7FFF, 0xFFFF]  # int32
    neutral_current = words(await tcp_read(port, 3, "-0", "-t", "4:hex", "-r", str(0x5B12), "-c", "2"))
    assert neutral_current == [0xFFFF, 0xFFFF]  # uint32
    assert len(await tcp_read(port, 3, "-0", "-t", "4:hex", "-r", str(0x5000), "-c", "24")) == 24
    assert len(await tcp_read(port, 3, "-0", "-t", "4:hex", "-r", str(0x5B00), "-c", "62")) == 62


@pytest.mark.integration
async def test_tcp_server_rejects_unknown_units(meters: ModbusTcpMeterServer) -> None:
    poll = await mbpoll("-m", "tcp", "-p", str(meters.port), "-a", "9", "-t", "4", "-r", "3060", LOOPBACK)
    assert poll.returncode != 0
    assert "Target device failed to respond" in poll.output  # exception 0x0B, as a gateway answers
    with pytest.raises(KeyError):
        await meters.show(9, READING)
    with pytest.raises(ValueError, match="twice"):
        ModbusTcpMeterServer(LOOPBACK, 0, [Sdm630(1), AbbB23(1)])


# --- RTU: several meters on one socat bus --------------------------------------------------------------


def rtu_reading(unit: int) -> MeterReading:
    return MeterReading(
        power_w=1000.0 * unit, import_kwh=10.0 * unit, export_kwh=0.0, demand_w=0, max_demand_w=0
    )


@pytest.mark.integration
async def test_rtu_bus_serves_several_meters_and_cleans_up() -> None:
    async with ModbusRtuMeterBus([Sdm630(1), Iem3255(2), AbbB23(3)], baudrate=9600) as bus:
        for unit in (1, 2, 3):
            await bus.show(unit, rtu_reading(unit))
        socat_pid, client_port = bus.socat_pid, Path(bus.client_port)

        client = AsyncModbusSerialClient(
            bus.client_port, framer=FramerType.RTU, baudrate=9600, timeout=1, retries=0, reconnect_delay=0
        )
        try:
            assert await client.connect()
            sdm = await client.read_input_registers(0x0034, count=2, device_id=1)
            iem = await client.read_holding_registers(3059, count=2, device_id=2)
            abb = await client.read_holding_registers(0x5B14, count=2, device_id=3)
            with pytest.raises(ModbusException):  # no unit 9 on the bus: silence, the client times out
                await client.read_holding_registers(3059, count=2, device_id=9)
        finally:
            client.close()
        float32_type, int32_type = client.DATATYPE.FLOAT32, client.DATATYPE.INT32
        assert client.convert_from_registers(sdm.registers, float32_type) == pytest.approx(1000.0)
        assert client.convert_from_registers(iem.registers, float32_type) == pytest.approx(2.0)  # kW
        assert client.convert_from_registers(abb.registers, int32_type) == 300000  # 0.01 W

        rtu = ("-m", "rtu", "-b", "9600", "-P", "none")
        polls = [
            await mbpoll(*rtu, "-a", "1", "-t", "3:float", "-B", "-r", "53", bus.client_port),
            await mbpoll(*rtu, "-a", "2", "-t", "4:float", "-B", "-r", "3060", bus.client_port),
            await mbpoll(*rtu, "-a", "3", "-0", "-t", "4:int", "-B", "-r", str(0x5B14), bus.client_port),
        ]
        assert all(p.returncode == 0 for p in polls), [p.output for p in polls]
        assert [float(v) for p in polls for v in p.values.values()] == pytest.approx([1000.0, 2.0, 300000.0])
    assert_cleaned_up(socat_pid, client_port)


@pytest.mark.integration
async def test_rtu_bus_cleans_up_when_the_body_fails() -> None:
    bus = ModbusRtuMeterBus([Sdm630(1)])
    started: list[tuple[int | None, Path]] = []

    async def fail_inside() -> None:
        async with bus:
            started.append((bus.socat_pid, Path(bus.client_port)))
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await fail_inside()
    assert_cleaned_up(*started[0])
    with pytest.raises(RuntimeError, match="not running"):
        await bus.show(1, READING)


def assert_cleaned_up(socat_pid: int | None, client_port: Path) -> None:
    """socat is gone (reaped: its pid no longer exists) and so is the bus's temporary directory."""
    assert socat_pid is not None
    with pytest.raises(ProcessLookupError):
        os.kill(socat_pid, 0)
    assert client_port.name == "bus-client"
    assert not client_port.parent.exists()


# --- register encoders ---------------------------------------------------------------------------------


def test_encoders_are_big_endian_high_word_first() -> None:
    assert float32(1.0) == [0x3F80, 0x0000]
    assert float32(-2.5) == [0xC020, 0x0000]
    assert int16(-1) == [0xFFFF]
    assert uint16(0x1234) == [0x1234]
    assert int32(-2) == [0xFFFF, 0xFFFE]
    assert int32(0x12345678) == [0x1234, 0x5678]
    assert uint64(0x0001_0002_0003_0004) == [1, 2, 3, 4]
    assert int64(-1) == [0xFFFF] * 4
    with pytest.raises(ValueError, match="does not fit"):
        uint16(70000)
    with pytest.raises(ValueError, match="does not fit"):
        uint64(-1)


def test_register_block_refuses_writes_outside_it() -> None:
    block = RegisterBlock.zeros(3, 100, 4)
    block.put(102, [7, 8])
    assert block.write().registers == [0, 0, 7, 8]
    with pytest.raises(IndexError):
        block.put(103, [1, 2])
    with pytest.raises(IndexError):
        block.put(99, [1])


# --- sliding-window demand -----------------------------------------------------------------------------


def feed(
    demand: SlidingDemand, power_kw: list[float], step_s: float, t0_s: float = 0.0, kwh: float = 0.0
) -> float:
    """Feed a power profile (one value per step) as cumulative energy samples; return the final kWh."""
    demand.add(t0_s, kwh)
    for i, kw in enumerate(power_kw, start=1):
        kwh += kw * step_s / 3600
        demand.add(t0_s + i * step_s, kwh)
    return kwh


def test_constant_load_gives_its_power_as_demand() -> None:
    demand = SlidingDemand()
    feed(demand, [60.0] * 20, 60.0)
    assert demand.demand_w == pytest.approx(60000.0)
    assert demand.max_demand_w == pytest.approx(60000.0)
    irregular = SlidingDemand()
    feed(irregular, [60.0] * (20 * 60 // 7), 7.0)  # samples that do not line up with the window
    assert irregular.demand_w == pytest.approx(60000.0)


def test_step_from_0_to_100_kw_for_30_minutes() -> None:
    demand = SlidingDemand()
    kwh = feed(demand, [0.0] * 15, 60.0)  # a quiet quarter of an hour first
    seen: dict[int, float] = {}
    for minute in range(1, 36):
        kwh += (100.0 if minute <= 30 else 0.0) / 60
        seen[minute] = demand.add((15 + minute) * 60.0, kwh)
    assert seen[5] == pytest.approx(100000.0 * 5 / 15)
    assert seen[10] == pytest.approx(100000.0 * 10 / 15)
    assert seen[15] == pytest.approx(100000.0)
    assert seen[20] == pytest.approx(100000.0)
    assert seen[35] == pytest.approx(100000.0 * 10 / 15)  # 5 minutes after the step ended
    assert demand.max_demand_w == pytest.approx(100000.0)


def test_short_history_averages_over_elapsed_time_and_sets_no_peak() -> None:
    demand = SlidingDemand()
    feed(demand, [100.0] * 5, 60.0)
    assert demand.demand_w == pytest.approx(100000.0)
    assert demand.max_demand_w == 0.0  # peaks count full 15-minute windows only
    assert SlidingDemand().add(0.0, 5.0) == 0.0


def test_memory_is_bounded_at_any_sample_rate() -> None:
    demand = SlidingDemand(resolution_s=1.0)
    feed(demand, [42.0] * 36000, 0.1)  # an hour at 10 samples per second
    assert len(demand) <= 900 + 3
    assert demand.demand_w == pytest.approx(42000.0)


def test_samples_must_come_in_time_order() -> None:
    demand = SlidingDemand()
    demand.add(100.0, 1.0)
    with pytest.raises(ValueError, match="older"):
        demand.add(99.0, 1.1)
