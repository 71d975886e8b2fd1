"""Simulated SDM630 meters for the acquisition benchmark, in the benchmark's process or in one of their own
(a real meter is a separate device: its work does not share the agent's CPU).

Run alone: python -m bench.meters --units 10 [--delay-s 0.002]; prints the port, serves until SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import AsyncIterator

from tests.support import LOOPBACK

from edge_sim.devices.meters.base import MeterReading
from edge_sim.devices.meters.sdm630 import Sdm630
from edge_sim.devices.modbus_servers import ModbusTcpMeterServer
from edge_sim.faults import Fault, FaultKind

READING = MeterReading(
    power_w=42_000.0, import_kwh=123_456.0, export_kwh=0.0, demand_w=40_000.0, max_demand_w=50_000.0
)
STOP_TIMEOUT_S = 30.0  # to start serving, or to stop (a loaded host starts Python slowly)


async def meter_server(units: int, answer_delay_s: float = 0.0) -> ModbusTcpMeterServer:
    """Units 1..`units` on one loopback port, showing READING; each answers `answer_delay_s` late."""
    server = ModbusTcpMeterServer(LOOPBACK, 0, [Sdm630(unit_id=u) for u in range(1, units + 1)])
    await server.__aenter__()
    for unit in range(1, units + 1):
        await server.show(unit, READING)
        if answer_delay_s:
            server.set_fault(unit, Fault(FaultKind.SLOW, delay_s=answer_delay_s))
    return server


@contextlib.asynccontextmanager
async def meters(units: int, answer_delay_s: float = 0.0, separate: bool = False) -> AsyncIterator[int]:
    """The meters' port, served in this process or (`separate`) in a child process of their own."""
    if not separate:
        server = await meter_server(units, answer_delay_s)
        try:
            yield server.port
        finally:
            await server.__aexit__(None, None, None)
        return
    args = ["--units", str(units), "--delay-s", str(answer_delay_s)]
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.meters", *args, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert child.stdout is not None
        line = await asyncio.wait_for(child.stdout.readline(), STOP_TIMEOUT_S)
        if not line:
            raise RuntimeError("the meter process ended before serving")
        yield int(line)
    finally:
        if child.returncode is None:
            child.send_signal(signal.SIGTERM)
        await asyncio.wait_for(child.wait(), STOP_TIMEOUT_S)


async def _serve(units: int, answer_delay_s: float) -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    server = await meter_server(units, answer_delay_s)
    try:
        print(server.port, flush=True)
        await stop.wait()
    finally:
        await server.__aexit__(None, None, None)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--units", type=int, default=10)
    parser.add_argument("--delay-s", type=float, default=0.0)
    options = parser.parse_args()
    asyncio.run(_serve(options.units, options.delay_s))
