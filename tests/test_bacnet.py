"""The agent's BACnet client against the simulator's room controller served by a real bacpypes3 stack."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from edge_agent.config import BacnetConfig, BacnetDevice, BacnetPoint
from edge_agent.errors import DeviceRejected, DeviceUnreachable
from edge_agent.protocols.bacnet import BacnetClient, local_stack
from edge_agent.protocols.bacnet_app import BacnetApplication
from edge_sim.clock import ManualClock
from edge_sim.simulator import Simulator
from tests.support import LOOPBACK, free_port

POINTS = [
    BacnetPoint(name="zone_temperature", object="analog-input,1", unit="degC"),
    BacnetPoint(name="cooling_setpoint", object="analog-value,1", unit="degC"),
    BacnetPoint(name="missing", object="analog-input,99", unit="degC"),
]


def room(address: str, instance: int = 1301) -> BacnetDevice:
    return BacnetDevice(name="room-101", protocol="bacnet-ip", host=address, instance=instance, points=POINTS)


@pytest.fixture
async def stack() -> AsyncIterator[BacnetApplication]:
    async with local_stack(BacnetConfig(local_address=f"{LOOPBACK}:0")) as running:
        yield running


READING_ROOM = "library-reading-1-vav"


def reading_room(sim: Simulator) -> BacnetDevice:
    return room(sim.controller(READING_ROOM).info.address)


async def test_reads_zone_temperature_and_setpoint(
    sim: Simulator, clock: ManualClock, stack: BacnetApplication
) -> None:
    clock.advance(900)
    await sim.step()
    client = BacnetClient(reading_room(sim), stack)
    async with asyncio.timeout(5), client:
        results = {r.point: r for r in await client.read(["zone_temperature", "cooling_setpoint"])}
    zone = sim.site.building("library").zone("reading-1")
    assert results["zone_temperature"].value == pytest.approx(zone.thermal.t_air, abs=1e-4)
    assert results["cooling_setpoint"].value == 26.0


async def test_unknown_object_is_a_per_point_error(sim: Simulator, stack: BacnetApplication) -> None:
    client = BacnetClient(reading_room(sim), stack)
    async with asyncio.timeout(5), client:
        results = {r.point: r for r in await client.read(["zone_temperature", "missing"])}
    assert results["zone_temperature"].error is None
    error = results["missing"].error
    assert isinstance(error, DeviceRejected)
    assert error.code == "object:unknownObject"
    assert "analog-input,99" in str(error)


async def test_write_at_priority_then_relinquish(sim: Simulator, stack: BacnetApplication) -> None:
    client = BacnetClient(reading_room(sim), stack)
    async with asyncio.timeout(5), client:
        zone = sim.site.building("library").zone("reading-1")
        await client.write("cooling_setpoint", 27.5, priority=10)
        await sim.step()
        assert zone.overrides.cooling_sp == 27.5  # the simulated controller obeys it
        await client.write("cooling_setpoint", None, priority=10)
        await sim.step()
        assert zone.overrides.cooling_sp is None  # back to its own sequence
        assert (await client.read(["cooling_setpoint"]))[0].value == 26.0


async def test_sensor_refuses_a_write(sim: Simulator, stack: BacnetApplication) -> None:
    client = BacnetClient(reading_room(sim), stack)
    async with asyncio.timeout(5), client:
        with pytest.raises(DeviceRejected) as caught:
            await client.write("zone_temperature", 10.0)
    assert caught.value.code == "property:writeAccessDenied"


async def test_silent_device_is_bounded_by_the_caller(stack: BacnetApplication) -> None:
    client = BacnetClient(room(f"{LOOPBACK}:{free_port()}"), stack)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.5):
            await client.open()


async def test_silent_device_becomes_unreachable_when_the_stack_gives_up(stack: BacnetApplication) -> None:
    client = BacnetClient(room(f"{LOOPBACK}:{free_port()}"), stack)
    with pytest.raises(DeviceUnreachable) as caught:
        async with asyncio.timeout(10):
            await client.open()
    assert caught.value.code == "abort noResponse"
    assert "room-101" in str(caught.value)
