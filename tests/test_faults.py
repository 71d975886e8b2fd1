"""Every fault the simulator injects, seen from the client side (issue 3, item 5)."""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import AsyncIterator

import pytest

from edge_agent.clock import ManualClock
from edge_agent.config import BacnetConfig, ModbusPoint
from edge_agent.errors import DeviceGarbage, DeviceRejected, DeviceUnreachable
from edge_agent.protocols.bacnet.app import BacnetApplication
from edge_agent.protocols.bacnet.client import BacnetClient, local_stack
from edge_agent.protocols.modbus.client import ModbusClient
from edge_sim.control import send
from edge_sim.faults import Fault, FaultKind
from edge_sim.simulator import Simulator
from tests.support import LOOPBACK
from tests.test_bacnet import reading_room
from tests.test_modbus import SDM630_POINTS, meter, sdm630_port

pytestmark = pytest.mark.integration

METER = "info-centre-main-meter"
POWER = [SDM630_POINTS[0]]  # total_power, float32 at 30053


async def read_power(sim: Simulator, timeout_s: float = 1.0) -> float | None:
    async with ModbusClient(meter(sdm630_port(sim), POWER, timeout_s=timeout_s)) as client:
        async with asyncio.timeout(timeout_s + 0.5):
            [result] = await client.read(["total_power"])
    if result.error is not None:
        raise result.error
    return result.value


@pytest.fixture
async def stack() -> AsyncIterator[BacnetApplication]:
    async with local_stack(BacnetConfig(local_address=f"{LOOPBACK}:0")) as running:
        yield running


async def test_offline_meter_does_not_answer_then_comes_back(sim: Simulator) -> None:
    await sim.inject(METER, Fault(FaultKind.OFFLINE))
    with pytest.raises((DeviceUnreachable, TimeoutError)):
        await read_power(sim, timeout_s=0.5)
    await sim.inject(METER, None)
    assert await read_power(sim) == pytest.approx(sim.circuit(METER).power_w(), rel=1e-6)


async def test_slow_meter_answers_late(sim: Simulator) -> None:
    await sim.inject(METER, Fault(FaultKind.SLOW, delay_s=0.6))
    started = time.monotonic()
    value = await read_power(sim, timeout_s=3.0)
    assert time.monotonic() - started >= 0.55
    assert value == pytest.approx(sim.circuit(METER).power_w(), rel=1e-6)


@pytest.mark.parametrize("code", [4, 6])
async def test_exception_code(sim: Simulator, code: int) -> None:
    await sim.inject(METER, Fault(FaultKind.EXCEPTION, code=code))
    with pytest.raises(DeviceRejected) as caught:
        await read_power(sim)
    assert caught.value.code == f"modbus exception {code}"


async def test_corrupt_answer_is_garbage(sim: Simulator) -> None:
    await sim.inject(METER, Fault(FaultKind.CORRUPT))
    with pytest.raises(DeviceGarbage, match="answered 1 registers"):
        await read_power(sim)


async def test_swapped_word_order(sim: Simulator) -> None:
    await sim.inject(METER, Fault(FaultKind.SWAP_WORDS))
    value = await read_power(sim)
    high, low = struct.unpack(">HH", struct.pack(">f", sim.circuit(METER).power_w()))
    assert value == pytest.approx(struct.unpack(">f", struct.pack(">HH", low, high))[0], rel=1e-6)


async def test_stuck_meter_stops_changing(sim: Simulator, clock: ManualClock) -> None:
    point = [ModbusPoint(name="import_energy", table="input", address=0x48, unit="kWh")]
    async with ModbusClient(meter(sdm630_port(sim), point)) as client:
        before = (await client.read(["import_energy"]))[0].value
        await sim.inject(METER, Fault(FaultKind.STUCK))
        clock.advance(600)
        await sim.step()
        stuck = (await client.read(["import_energy"]))[0].value
        await sim.inject(METER, None)
        await sim.step()
        after = (await client.read(["import_energy"]))[0].value
    assert stuck == before
    assert after is not None
    assert before is not None
    assert after > before


async def test_bacnet_device_stops_answering_then_comes_back(
    sim: Simulator, stack: BacnetApplication
) -> None:
    client = BacnetClient(reading_room(sim), stack)
    await sim.inject("library-reading-1-vav", Fault(FaultKind.OFFLINE))
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.5):
            await client.read(["zone_temperature"])
    await sim.inject("library-reading-1-vav", None)
    async with asyncio.timeout(5):
        [result] = await client.read(["zone_temperature"])
    assert result.error is None


async def test_bacnet_stuck_sensor(sim: Simulator, clock: ManualClock, stack: BacnetApplication) -> None:
    client = BacnetClient(reading_room(sim), stack)
    await sim.inject("library-reading-1-vav", Fault(FaultKind.STUCK))
    async with asyncio.timeout(5):
        [before] = await client.read(["zone_temperature"])
        clock.advance(1800)
        await sim.step()
        [after] = await client.read(["zone_temperature"])
    zone = sim.site.building("library").zone("reading-1")
    assert after.value == before.value
    assert zone.thermal.t_air != pytest.approx(before.value, abs=1e-3)  # the room moved on; the sensor not


async def test_bacnet_device_refuses_modbus_only_faults(sim: Simulator) -> None:
    with pytest.raises(ValueError, match="Modbus devices only"):
        await sim.inject("library-plant", Fault(FaultKind.SLOW, delay_s=1))


async def test_clock_jump_moves_the_building_and_its_meters(sim: Simulator) -> None:
    circuit = sim.circuit(METER)
    energy, power, before = circuit.import_kwh(), circuit.power_w(), sim.site.now
    answer = await send(LOOPBACK, sim.control_port or 0, {"op": "clock-jump", "seconds": 3600})
    await sim.step()
    assert answer["ok"] is True
    assert (sim.site.now - before).total_seconds() == pytest.approx(3600, abs=1)
    assert circuit.import_kwh() - energy == pytest.approx(power / 1000, rel=0.5)  # about an hour's worth


async def test_control_channel_sets_clears_and_refuses(sim: Simulator) -> None:
    port = sim.control_port or 0
    answer = await send(LOOPBACK, port, {"op": "set", "device": METER, "fault": "exception", "code": 6})
    assert answer["faults"] == {METER: "exception"}
    with pytest.raises(DeviceRejected):
        await read_power(sim)
    assert (await send(LOOPBACK, port, {"op": "clear", "device": METER}))["faults"] == {}
    assert await read_power(sim) is not None
    bad = await send(LOOPBACK, port, {"op": "set", "device": "no-such-device", "fault": "offline"})
    assert bad["ok"] is False
    assert "no-such-device" in bad["error"]
    assert (await send(LOOPBACK, port, {"op": "explode"}))["ok"] is False
