"""The running simulator: the building's physics on a clock, and its devices served on loopback.

Ports are laid out from a base port (layout.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Self

from edge_sim.clock import Clock
from edge_sim.devices.modbus_server import MeterServer
from edge_sim.devices.room_controller import RoomController
from edge_sim.devices.sdm630 import Sdm630
from edge_sim.layout import DEFAULT_BASE_PORT, DEFAULT_HOST, METER_UNIT_ID, ROOM_CONTROLLER_INSTANCE
from edge_sim.physics.building import SingleZoneBuilding

TICK_S = 0.1  # wall-clock seconds between physics updates


@dataclass(frozen=True, slots=True)
class Endpoint:
    """How a client reaches one simulated device."""

    name: str
    protocol: str
    host: str
    port: int
    detail: str  # 'unit 1' or 'device 1001'

    def line(self) -> str:
        return f"{self.name:<14} {self.protocol:<11} {self.host}:{self.port:<6} {self.detail}"


class Simulator:
    def __init__(self, clock: Clock, base_port: int = DEFAULT_BASE_PORT, host: str = DEFAULT_HOST) -> None:
        self.clock = clock
        self.host = host
        self.building = SingleZoneBuilding()
        self.meter_server = MeterServer(host, base_port, [Sdm630(METER_UNIT_ID)])
        self.room = RoomController(
            "room-101", f"{host}:{base_port + 1}", ROOM_CONTROLLER_INSTANCE, self.building.zone.t_air
        )
        self._last: datetime | None = None
        self._stack = contextlib.AsyncExitStack()

    def endpoints(self) -> list[Endpoint]:
        room_port = int(self.room.address.rsplit(":", 1)[1])
        return [
            Endpoint("meter-main", "modbus-tcp", self.host, self.meter_server.port, f"unit {METER_UNIT_ID}"),
            Endpoint("room-101", "bacnet-ip", self.host, room_port, f"device {ROOM_CONTROLLER_INSTANCE}"),
        ]

    async def __aenter__(self) -> Self:
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(self.meter_server)
            await stack.enter_async_context(self.room.stack)
            await self.step()
            task = asyncio.create_task(self._run(), name="edge-sim physics")
            stack.push_async_callback(_cancel, task)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._stack.aclose()

    async def step(self) -> None:
        """Advance the physics to the clock's now and show the new state on every device."""
        now = self.clock.now()
        dt_s = 0.0 if self._last is None else (now - self._last).total_seconds()
        self._last = now
        self.building.cooling_setpoint = self.room.setpoint()
        self.building.advance(now, dt_s)
        self.room.show(self.building.zone.t_air)
        await self.meter_server.publish(METER_UNIT_ID, self.building.meter)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            await self.step()


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
