"""A Modbus TCP endpoint: the devices at one host:port (units behind a gateway, or one device) share at most
`max_connections` connections, each carrying at most `in_flight` requests at once.

A request takes a slot (writes first, then in arrival order), goes on the first connection with room
(a further connection is opened only while the open ones are full) and is matched to its answer by
transaction id (tcp.py). Each request is bounded by its unit's own timeout: a unit that does not answer
holds one slot for its timeout, no longer, and its poller's backoff keeps it off the wire while it stays
silent. A timeout is the unit's failure, not the connection's: the connection is closed (and opened again
at the next request) only when it breaks, or when as many requests in a row as there are units on the
endpoint time out on it with no answer in between.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from edge_agent.config import ModbusTcpDevice
from edge_agent.errors import ExceptionAnswer, MalformedAnswer
from edge_agent.protocols.modbus.link import READ, WRITE, LinkStatistics, Turns
from edge_agent.protocols.modbus.tcp import TcpWire
from edge_agent.protocols.modbus.wire import Wire
from edge_agent.protocols.watchdog import Watchdog

T = TypeVar("T")


class _Connection:
    """One of the endpoint's connections and what is going on on it."""

    def __init__(self, host: str, port: int) -> None:
        self.wire = TcpWire(host, port)
        self.in_flight = 0
        self.silent = 0  # requests timed out in a row on it, with no answer in between
        self.connecting = asyncio.Lock()

    @property
    def used(self) -> bool:
        return self.in_flight > 0 or self.wire.connected

    async def connect(self) -> None:
        async with self.connecting:  # requests that share it wait for one connect
            if not self.wire.connected:
                await self.wire.connect()
                self.silent = 0


class TcpEndpoint:
    def __init__(self, key: str, host: str, port: int, max_connections: int = 1, in_flight: int = 1) -> None:
        self.key = key
        self._connections = [_Connection(host, port) for _ in range(max_connections)]
        self._in_flight = in_flight
        self._slots = slots = max_connections * in_flight
        self._turns = Turns(slots)
        self._watchdog_of_each_slot = tuple(Watchdog() for _ in range(slots))  # each bounds one request
        self._watchdogs = list(self._watchdog_of_each_slot)  # the free slots'
        self._units: set[str] = set()
        self._requests = 0

    def statistics(self) -> LinkStatistics:
        connected = any(c.wire.connected for c in self._connections)
        return LinkStatistics(self.key, self._requests, len(self._turns), connected)

    def join(self, unit: str) -> None:
        """A unit (by device name) on this endpoint, to size the wait for a slot; it counts once."""
        self._units.add(unit)

    @property
    def rounds(self) -> int:
        # every other unit may hold a slot for its whole budget: the others in turns of `slots`, then its own
        others = max(0, len(self._units) - 1)
        return -(-others // self._slots) + 1

    async def connect(self, *, timeout_s: float) -> None:
        """Nothing to do while a connection is open (a unit that connects does not queue for a slot)."""
        if not any(c.wire.connected for c in self._connections):
            await self.call(_nothing, timeout_s=timeout_s)

    async def call(
        self, operation: Callable[[Wire], Awaitable[T]], *, timeout_s: float, write: bool = False
    ) -> T:
        """Run one request on a connection with room, connecting it first if needed; the request (connect
        included) lasts at most `timeout_s`. Waiting for a slot is not part of it: the caller bounds that."""
        if not self._turns.take():
            await self._turns.acquire(WRITE if write else READ)
        connection = self._room()
        connection.in_flight += 1
        watchdog = self._watchdogs.pop()
        try:
            with watchdog.within(timeout_s):
                if not connection.wire.connected:
                    await connection.connect()
                self._requests += 1
                result = await operation(connection.wire)
        except TimeoutError:
            self._timed_out(connection)
            raise
        except (ExceptionAnswer, MalformedAnswer):
            connection.silent = 0  # something answered (a refusal, garbage): the connection works
            raise
        finally:
            self._watchdogs.append(watchdog)
            connection.in_flight -= 1
            self._turns.release()
        connection.silent = 0
        return result

    def _room(self) -> _Connection:
        """The first connection in use with room, else the first unused one (a slot is held: one has room)."""
        room = [c for c in self._connections if c.in_flight < self._in_flight]
        return next((c for c in room if c.used), room[0])

    def _timed_out(self, connection: _Connection) -> None:
        connection.silent += 1
        if connection.silent >= max(1, len(self._units)):  # nobody gets answers on it: it is dead
            connection.silent = 0
            connection.wire.close()

    def close(self) -> None:
        for watchdog in self._watchdog_of_each_slot:
            watchdog.close()
        for connection in self._connections:
            connection.wire.close()


async def _nothing(_wire: Wire) -> None:
    """A request that only makes sure its connection is open."""


def endpoint_for(device: ModbusTcpDevice) -> TcpEndpoint:
    """The endpoint of a device's host:port; devices with the same `device.link` share one (the agent sees
    to it), with the same `max_connections` and `in_flight` (the configuration checks)."""
    return TcpEndpoint(device.link, device.host, device.port, device.max_connections, device.in_flight)
