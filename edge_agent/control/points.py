"""The narrow way control and commands reach devices: a point's latest reading, a write at a priority, and
who holds the point now. Points are named 'device/point'; the agent implements this over its pollers
(service/points.py), tests over a dictionary."""

from __future__ import annotations

from typing import NamedTuple, Protocol

from edge_agent.readings import Reading


class Holder(NamedTuple):
    """Who commands a point now. `priority` is the active BACnet priority (1 highest), None when every
    slot is relinquished; points without priorities (Modbus) have `prioritised` False. `slots`: the
    priority array as read (index 0 is priority 1), when there is one."""

    prioritised: bool
    priority: int | None = None
    slots: tuple[float | None, ...] | None = None


class Points(Protocol):
    def latest(self, ref: str) -> Reading | None:
        """The latest checked reading of a point (stale ones marked so), or None if none arrived yet."""
        ...

    async def write(self, ref: str, value: float | None, priority: int | None) -> None:
        """A value (None: relinquish) at a priority (None: the device's default); DeviceError if refused."""
        ...

    async def holder(self, ref: str) -> Holder:
        """Who commands the point now (BACnet: from its priority array); DeviceError when unreadable."""
        ...
