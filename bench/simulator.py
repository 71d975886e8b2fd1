"""How fast the simulator runs.

1. In-process stepper: simulated seconds per wall-clock second for a scenario week with KPIs (goal: a
   simulated week in under 30 s on 2 cores), against a reference measured in the same run: the bare 3R2C
   zone integration of the same number of zone-steps, the floor any building model has to pay.
2. Networked servers: Modbus requests per second a raw pymodbus client gets from the running simulator (the
   physics stepping at speed 60 in the same process), against a bare pymodbus server with the same
   registers, in the same run.
Run: .venv/bin/python -m bench.simulator
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.server import ModbusTcpServer
from tests.support import free_base_port

from edge_agent.clock import ScaledClock
from edge_sim.devices.meters.sdm630 import Sdm630
from edge_sim.devices.modbus_servers import ModbusTcpMeterServer
from edge_sim.layout import DEFAULT_START
from edge_sim.physics.zone import ThermalZone, ZoneLoads, ZoneParameters
from edge_sim.simulator import Simulator
from edge_sim.site.site import CONTROL_STEP_S
from edge_sim.study import WARM_UP, run_scenario

WEEK_S = 7 * 86400


def reference_zone_steps_per_s(steps: int) -> float:
    zone = ThermalZone(ZoneParameters(floor_area_m2=500, window_area_m2=50, opaque_area_m2=300), 24.0, 24.0)
    loads = ZoneLoads(convective=5000.0, radiant=5000.0, supply_m3_s=2.0, supply_temp_c=14.0)
    start = time.perf_counter()
    for _ in range(steps):
        zone.advance(CONTROL_STEP_S, 30.0, loads)
    return steps / (time.perf_counter() - start)


REQUESTS = 2000


async def _request_rate(port: int) -> float:
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=2, retries=0, reconnect_delay=0)
    await client.connect()
    try:
        start = time.perf_counter()
        for _ in range(REQUESTS):
            response = await client.read_input_registers(0x34, count=22, device_id=1)
            if response.isError():
                raise RuntimeError(f"the server answered {response}")
        return REQUESTS / (time.perf_counter() - start)
    finally:
        client.close()


async def networked_rates() -> tuple[float, float]:
    """(simulator requests/s, bare pymodbus server requests/s)."""
    clock = ScaledClock(datetime.fromisoformat(DEFAULT_START), speed=60)
    async with Simulator(clock, free_base_port(), serial_bus=False, control=False) as sim:
        server = sim.hosts["main-info-centre"]
        assert isinstance(server, ModbusTcpMeterServer)
        simulated = await _request_rate(server.port)
    bare = ModbusTcpServer([Sdm630(unit_id=1).sim_device()], address=("127.0.0.1", 0))
    await bare.serve_forever(background=True)
    try:
        listener = bare.transport
        assert isinstance(listener, asyncio.Server)
        reference = await _request_rate(int(listener.sockets[0].getsockname()[1]))
    finally:
        await bare.shutdown()  # type: ignore[no-untyped-call]
    return simulated, reference


def main() -> None:
    start = time.perf_counter()
    result = run_scenario("summer", seed=0)
    wall = time.perf_counter() - start
    simulated = WEEK_S + WARM_UP.total_seconds()
    zones = len(result.kpis["site"].discomfort_kh)
    zone_steps = int(simulated / CONTROL_STEP_S) * zones
    ref_rate = reference_zone_steps_per_s(zone_steps)
    site_rate = zone_steps / wall
    print(f"scenario week + {WARM_UP.days}-day warm-up, {zones} zones, {CONTROL_STEP_S:.0f} s steps")
    print(
        f"in-process stepper: {wall:.2f} s wall for {simulated / 86400:.0f} simulated days"
        " (goal: a week in under 30 s)"
    )
    print(f"  {simulated / wall:,.0f} simulated s per wall s")
    print(f"reference: bare 3R2C zone integration, {ref_rate:,.0f} zone-steps/s")
    print(f"ratio site zone-steps/s to bare zone-steps/s: {site_rate / ref_rate:.3f}")
    simulated, reference = asyncio.run(networked_rates())
    print(f"Modbus TCP requests/s from the running simulator: {simulated:,.0f} ({REQUESTS} block reads)")
    print(f"reference: bare pymodbus server, same registers: {reference:,.0f}")
    print(f"ratio simulator / bare server: {simulated / reference:.2f}")


if __name__ == "__main__":
    main()
