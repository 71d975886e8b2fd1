"""A Modbus link: one connection (a TCP device, an RTU-over-TCP gateway, or an RS-485 bus) through its wire
(modbus_wire.py) and the discipline of that wire: one request at a time, writes ahead of reads, a silent
gap between frames.

Devices that share a link (units on one bus) take turns through `call`. Every turn is bounded by the
unit's timeout (a watchdog: asyncio.timeout at a fraction of its cost per request), so a silent unit holds
the wire for at most its own timeout, and its supervisor's backoff keeps it off the wire while it stays
silent: it cannot starve the others.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.framer import FramerType

from edge_agent.config import ModbusDevice, ModbusRtuDevice, ModbusRtuTcpDevice
from edge_agent.protocols.modbus.tcp import TcpWire
from edge_agent.protocols.modbus.wire import PymodbusWire, Wire
from edge_agent.protocols.watchdog import Watchdog

T = TypeVar("T")
WRITE, READ = 0, 1  # lower goes first
RESYNC_S = 0.1  # after a request was abandoned mid-frame, let a late answer pass before the next one


@dataclass(frozen=True, slots=True)
class LinkStatistics:
    link: str
    requests: int
    waiting: int
    connected: bool


class Link(Protocol):
    """What a Modbus client asks of the wire it shares: a ModbusLink, or a Modbus TCP endpoint's connections
    (endpoint.py)."""

    def join(self, unit: str) -> None: ...

    @property
    def rounds(self) -> int:
        """How many full time budgets a request may take, waiting for turns and its own included."""
        ...

    async def connect(self, *, timeout_s: float) -> None:
        """Make sure the link is connected (ConnectionError when it cannot be)."""
        ...

    async def call(
        self, operation: Callable[[Wire], Awaitable[T]], *, timeout_s: float, write: bool = False
    ) -> T: ...

    def close(self) -> None: ...


class Turns:
    """A lock for `slots` holders at once, handed to waiters by priority, then arrival: writes overtake
    queued reads."""

    def __init__(self, slots: int = 1) -> None:
        self._free = slots
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._arrivals = itertools.count()

    def __len__(self) -> int:
        return sum(1 for *_, future in self._waiters if not future.done())

    def take(self) -> bool:
        """The turn now if nobody has it (no waiting, no coroutine: most turns on a link of one device)."""
        if not self._free or self._waiters:
            return False
        self._free -= 1
        return True

    async def acquire(self, priority: int) -> None:
        if self.take():
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (priority, next(self._arrivals), future))
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release()  # granted and cancelled in the same breath: pass the turn on
            raise

    def release(self) -> None:
        while self._waiters:
            *_, future = heapq.heappop(self._waiters)
            if not future.done():
                future.set_result(None)
                return
        self._free += 1


class ModbusLink:
    def __init__(self, key: str, wire: Wire, frame_gap_s: float = 0.0) -> None:
        self.key = key
        self._wire = wire
        self._gap_s = frame_gap_s
        self._turns = Turns()
        self._watchdog = Watchdog()  # bounds each turn
        self._last_frame_end = 0.0
        self._resync = False
        self._requests = 0
        self._units: set[str] = set()

    def statistics(self) -> LinkStatistics:
        return LinkStatistics(self.key, self._requests, len(self._turns), self._wire.connected)

    def join(self, unit: str) -> None:
        """A unit (by device name) that will take turns on this link, to size the wait for a turn. A unit
        joins again with every client made for it (every reconnect): it still counts once."""
        self._units.add(unit)

    @property
    def units(self) -> int:
        return len(self._units)

    @property
    def rounds(self) -> int:
        return max(1, len(self._units))  # one request at a time: every other unit's turn, then its own

    async def connect(self, *, timeout_s: float) -> None:
        await self.call(_nothing, timeout_s=timeout_s)

    async def call(
        self, operation: Callable[[Wire], Awaitable[T]], *, timeout_s: float, write: bool = False
    ) -> T:
        """Run one request on the wire when it is this caller's turn; connects first if needed. The turn
        (connect, gap and request) lasts at most `timeout_s`: the unit's time budget on the wire. Waiting
        for the turn is not part of it; the caller bounds the whole call."""
        if not self._turns.take():
            await self._turns.acquire(WRITE if write else READ)
        loop = asyncio.get_running_loop()
        try:
            with self._watchdog.within(timeout_s):
                if not self._wire.connected:
                    await self._wire.connect()
                quiet = self._last_frame_end + (RESYNC_S if self._resync else self._gap_s) - loop.time()
                if quiet > 0:
                    await asyncio.sleep(quiet)
                self._resync = False
                self._requests += 1
                try:
                    return await operation(self._wire)
                except asyncio.CancelledError:
                    self._resync = True  # abandoned mid-frame: its answer may still come
                    raise
        finally:
            self._last_frame_end = loop.time()
            self._turns.release()

    def close(self) -> None:
        self._watchdog.close()
        self._wire.close()


async def _nothing(_wire: Wire) -> None:
    """A turn on the link that only makes sure it is connected."""


def link_for(device: ModbusDevice) -> ModbusLink:
    """A new link for a device; devices with the same `device.link` key share one (the agent sees to it).
    For RTU, pymodbus' own retries and reconnects are off, and its timer runs longer than the link's bound."""
    timeout = device.timeout_s + 1
    if isinstance(device, ModbusRtuDevice):
        serial = AsyncModbusSerialClient(
            device.serial_port,
            framer=FramerType.RTU,
            baudrate=device.baudrate,
            parity=device.parity,
            stopbits=device.stopbits,
            bytesize=8,
            timeout=timeout,
            retries=0,
            reconnect_delay=0,
        )
        return ModbusLink(device.link, PymodbusWire(serial), device.gap_s)
    if isinstance(device, ModbusRtuTcpDevice):
        gateway = AsyncModbusTcpClient(
            device.host,
            port=device.port,
            framer=FramerType.RTU,
            timeout=timeout,
            retries=0,
            reconnect_delay=0,
        )
        return ModbusLink(device.link, PymodbusWire(gateway), device.frame_gap_ms / 1000)
    return ModbusLink(device.link, TcpWire(device.host, device.port))
