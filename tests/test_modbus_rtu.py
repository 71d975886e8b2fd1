"""Modbus RTU: units sharing an RS-485 bus (a real socat pty pair) take turns on the wire, writes go
first, and a silent unit cannot starve the others. Also RTU framing over TCP, as a serial gateway does."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator

import pytest
from pymodbus.framer import FramerType

from edge_agent.acquisition.poller import DevicePoller, Health
from edge_agent.clock import ManualClock
from edge_agent.config import ModbusPoint, ModbusRtuDevice, ModbusRtuTcpDevice, PollerConfig
from edge_agent.protocols.modbus.client import ModbusClient
from edge_agent.protocols.modbus.link import ModbusLink, link_for
from edge_agent.protocols.modbus.wire import Wire
from edge_agent.readings import Reading
from edge_sim.devices.meters.base import MeterReading
from edge_sim.devices.meters.sdm630 import Sdm630
from edge_sim.devices.modbus_servers import ModbusRtuMeterBus, ModbusTcpMeterServer
from edge_sim.faults import Fault, FaultKind
from edge_sim.simulator import Simulator
from edge_sim.site_meters import RS485
from tests.conftest import SIM_START
from tests.support import LOOPBACK, async_wait_until, free_base_port, free_port

pytestmark = pytest.mark.integration

SDM630_POWER = ModbusPoint(name="power", table="input", address=0x34, unit="W")
B23_POWER = ModbusPoint(name="power", table="holding", address=0x5B14, type="int32", scale=0.01, unit="W")
IEM3255_POWER = ModbusPoint(name="power", table="holding", address=3059, scale=1000, unit="W")
UNITS = {1: SDM630_POWER, 2: B23_POWER, 3: IEM3255_POWER}  # the information centre's sub-meters


@pytest.fixture
async def site_with_bus() -> AsyncIterator[Simulator]:
    async with Simulator(ManualClock(SIM_START), free_base_port(), control=False) as running:
        yield running


def unit(sim: Simulator, unit_id: int, timeout_s: float = 1.0) -> ModbusRtuDevice:
    bus = sim.hosts[RS485]
    assert isinstance(bus, ModbusRtuMeterBus)
    return ModbusRtuDevice(
        name=f"unit-{unit_id}",
        protocol="modbus-rtu",
        serial_port=bus.client_port,
        unit_id=unit_id,
        points=[UNITS[unit_id]],
        timeout_s=timeout_s,
    )


@contextlib.asynccontextmanager
async def shared_link(device: ModbusRtuDevice) -> AsyncIterator[ModbusLink]:
    link = link_for(device)
    try:
        yield link
    finally:
        link.close()


async def test_three_models_on_one_bus_read_concurrently(site_with_bus: Simulator) -> None:
    devices = [unit(site_with_bus, u) for u in UNITS]
    async with shared_link(devices[0]) as link:
        clients = [ModbusClient(d, link) for d in devices]
        async with asyncio.timeout(10):
            results = await asyncio.gather(*(c.read(["power"]) for c in clients))
        stats = link.statistics()
    truth = {
        1: site_with_bus.circuit("info-centre-hvac-meter").power_w(),
        2: site_with_bus.circuit("info-centre-lighting-meter").power_w(),
        3: site_with_bus.circuit("info-centre-plugs-meter").power_w(),
    }
    for unit_id, [result] in zip(UNITS, results, strict=True):
        assert result.error is None, result.error
        assert result.value == pytest.approx(truth[unit_id], rel=1e-5, abs=0.02)
    assert stats.requests == 3
    assert stats.waiting == 0


async def test_one_request_on_the_wire_at_a_time_with_a_gap(site_with_bus: Simulator) -> None:
    device = unit(site_with_bus, 1)
    spans: list[tuple[float, float]] = []
    loop = asyncio.get_running_loop()
    async with shared_link(device) as link:

        async def timed_read() -> None:
            async def operation(wire: Wire) -> None:
                started = loop.time()
                await wire.read("input", 1, 0x34, 2)
                spans.append((started, loop.time()))

            await link.call(operation, timeout_s=5)

        async with asyncio.timeout(15):
            await asyncio.gather(*(timed_read() for _ in range(8)))
    spans.sort()
    gaps = [b[0] - a[1] for a, b in itertools.pairwise(spans)]
    assert len(spans) == 8
    assert min(gaps) >= device.gap_s * 0.9  # never overlapping, and the silent interval kept


async def test_writes_go_ahead_of_queued_reads(site_with_bus: Simulator) -> None:
    device = unit(site_with_bus, 1)
    order: list[str] = []
    async with shared_link(device) as link:
        holding, hold = asyncio.Event(), asyncio.Event()

        async def holder(_client: object) -> None:
            holding.set()
            await hold.wait()

        async def record(name: str) -> None:
            async def operation(_client: object) -> None:
                order.append(name)

            await link.call(operation, timeout_s=5, write=name.startswith("write"))

        first = asyncio.create_task(link.call(holder, timeout_s=5))
        async with asyncio.timeout(5):
            await holding.wait()  # the first call has the link
        queued = [
            asyncio.create_task(record(n)) for n in ("read-1", "read-2", "write-1", "read-3", "write-2")
        ]
        await async_wait_until(lambda: link.statistics().waiting == 5, 5, "the five calls queued")
        hold.set()
        async with asyncio.timeout(5):
            await asyncio.gather(first, *queued)
    assert order == ["write-1", "write-2", "read-1", "read-2", "read-3"]


async def test_reconnecting_units_do_not_grow_the_bus(site_with_bus: Simulator) -> None:
    """Every reconnect makes a new client for the unit (the poller's factory): the bus still counts three
    units, so a read's time budget (every unit's turn ahead of it) stays three timeouts."""
    devices = [unit(site_with_bus, u, timeout_s=0.5) for u in UNITS]
    async with shared_link(devices[0]) as link:
        budgets: list[float] = []
        for _ in range(20):
            for device in devices:
                async with ModbusClient(device, link) as client:
                    [result] = await client.read(["power"])
                    assert result.error is None, result.error
                    budgets.append(client.read_budget_s(["power"]))
    assert link.units == 3
    assert set(budgets[len(devices) :]) == {3 * 0.5}  # once every unit has joined: 2 s grew to 42 s


async def test_a_silent_unit_does_not_starve_the_others(site_with_bus: Simulator) -> None:
    await site_with_bus.inject("info-centre-lighting-meter", Fault(FaultKind.OFFLINE))  # unit 2
    devices = [unit(site_with_bus, u, timeout_s=0.4) for u in UNITS]
    polls: dict[str, int] = {d.name: 0 for d in devices}

    def sink_for(name: str):  # type: ignore[no-untyped-def]
        async def sink(readings: list[Reading]) -> None:
            if all(r.value is not None for r in readings):
                polls[name] += 1

        return sink

    async with shared_link(devices[0]) as link:
        pollers = [
            DevicePoller(
                d,
                [PollerConfig(device=d.name, interval_s=0.5)],
                lambda d=d: ModbusClient(d, link),  # type: ignore[misc]
                sink_for(d.name),
            )
            for d in devices
        ]
        tasks = [asyncio.create_task(p.run()) for p in pollers]
        try:
            await asyncio.sleep(4.0)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    assert pollers[1].statistics().health is Health.DOWN
    assert polls["unit-2"] == 0
    assert polls["unit-1"] >= 6  # 4 s at 0.5 s: 8 due, some slack for the silent neighbour's turns
    assert polls["unit-3"] >= 6


async def test_rtu_framing_over_tcp() -> None:
    port = free_port()
    reading = MeterReading(12_345.0, 1_000.0, 0.0, 12_000.0, 13_000.0)
    async with ModbusTcpMeterServer(LOOPBACK, port, [Sdm630(unit_id=7)], framer=FramerType.RTU) as gateway:
        await gateway.show(7, reading)
        device = ModbusRtuTcpDevice(
            name="gw-7", protocol="modbus-rtu-tcp", host=LOOPBACK, port=port, unit_id=7, points=[SDM630_POWER]
        )
        async with ModbusClient(device) as client, asyncio.timeout(5):
            [result] = await client.read(["power"])
    assert result.value == pytest.approx(12_345.0)
