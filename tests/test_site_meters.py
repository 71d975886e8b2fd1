"""The site's meters over the wire: what a gateway reads adds up, as a building engineer checks it."""

from __future__ import annotations

import pytest

from edge_agent.clock import ManualClock
from edge_agent.config import ModbusPoint, ModbusTcpDevice
from edge_agent.protocols.modbus.client import ModbusClient
from edge_sim.devices.modbus_servers import ModbusTcpMeterServer
from edge_sim.simulator import Simulator
from tests.support import LOOPBACK

pytestmark = pytest.mark.integration

IEM3255 = [
    ModbusPoint(name="power", table="holding", address=3059, type="float32", scale=1000, unit="W"),
    ModbusPoint(name="energy", table="holding", address=3203, type="int64", scale=0.001, unit="kWh"),
]
ABB_B23 = [
    ModbusPoint(name="power", table="holding", address=0x5B14, type="int32", scale=0.01, unit="W"),
    ModbusPoint(name="energy", table="holding", address=0x5000, type="uint64", scale=0.01, unit="kWh"),
]
SDM630 = [
    ModbusPoint(name="power", table="input", address=0x34, unit="W"),
    ModbusPoint(name="energy", table="input", address=0x48, unit="kWh"),
]


async def read(port: int, unit_id: int, points: list[ModbusPoint]) -> dict[str, float]:
    device = ModbusTcpDevice(
        name=f"unit-{unit_id}",
        protocol="modbus-tcp",
        host=LOOPBACK,
        port=port,
        unit_id=unit_id,
        points=points,
    )
    async with ModbusClient(device) as client:
        results = await client.read([p.name for p in points])
    assert all(r.error is None for r in results), results
    return {r.point: r.value for r in results if r.value is not None}


def port_of(sim: Simulator, host: str) -> int:
    server = sim.hosts[host]
    assert isinstance(server, ModbusTcpMeterServer)
    return server.port


async def test_library_sub_meters_add_up_to_the_main_meter(sim: Simulator, clock: ManualClock) -> None:
    clock.advance(1800)
    await sim.step()
    main = await read(port_of(sim, "main-library"), 1, IEM3255)
    gateway = port_of(sim, "gateway")
    hvac = await read(gateway, 1, ABB_B23)
    lighting = await read(gateway, 2, SDM630)
    plugs = await read(gateway, 3, SDM630)
    subs = [hvac, lighting, plugs]
    # Three models, three encodings (kW float32, W int32 x 0.01, W float32): one balance.
    assert sum(m["power"] for m in subs) == pytest.approx(main["power"], rel=1e-5)
    assert sum(m["energy"] for m in subs) == pytest.approx(main["energy"], abs=0.01)
    assert main["power"] > 20_000  # an open library on a summer afternoon
