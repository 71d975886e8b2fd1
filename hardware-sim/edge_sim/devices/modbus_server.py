"""A Modbus TCP server on loopback hosting simulated meters, one unit id each."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from types import TracebackType
from typing import Self

from pymodbus.server import ModbusTcpServer

from edge_sim.devices.sdm630 import Sdm630
from edge_sim.physics.building import MeterState

INPUT_REGISTERS_FC = 4

# pymodbus logs frame hex dumps at ERROR for every client that goes away; they are not our errors.
logging.getLogger("pymodbus").setLevel(logging.CRITICAL)


class MeterServer:
    def __init__(self, host: str, port: int, meters: Sequence[Sdm630]) -> None:
        self.host = host
        self.port = port
        self.meters = list(meters)
        self._server: ModbusTcpServer | None = None

    async def __aenter__(self) -> Self:
        server = ModbusTcpServer([m.sim_device() for m in self.meters], address=(self.host, self.port))
        await server.serve_forever(background=True)
        self._server = server
        listener = server.transport
        if isinstance(listener, asyncio.Server):  # learn the real port when port 0 was asked for
            self.port = listener.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._server is not None:
            await self._server.shutdown()  # type: ignore[no-untyped-call]
            self._server = None

    async def publish(self, unit_id: int, meter: MeterState) -> None:
        """Make the meter with this unit id show the given state."""
        if self._server is None:
            raise RuntimeError("meter server is not running")
        await self._server.async_setValues(unit_id, INPUT_REGISTERS_FC, 0, Sdm630.input_registers(meter))
