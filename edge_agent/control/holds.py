"""The write journal: every value we hold on a device, written down durably before the write is sent.

A hold is kept until the device confirmed its release, so after a crash (kill -9, power loss) the next start
knows what is still ours out there and gives it back (control/recovery.py). Control's holds carry a lease;
central's (write_point commands) carry none: they are listed, never released by the agent on its own. The
durable file is store/holds.py; `MemoryJournal` serves tests and a loop run without one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

Owner = Literal["control", "central"]


@dataclass(frozen=True, slots=True)
class Hold:
    point: str  # 'device/point'
    priority: int | None  # BACnet: the priority written at; None: Modbus (restored on release)
    value: float  # what we wrote (or are about to write)
    previous: float | None  # our earlier value at this slot, while a change is in flight
    restore: float | None  # Modbus: the value before our first write, written back on release
    since: datetime  # wall clock (UTC) of our first write of this hold
    lease_until: datetime | None  # wall clock; None: no lease (central's holds)
    owner: Owner = "control"

    @property
    def key(self) -> tuple[str, int, str]:
        return self.point, self.priority or 0, self.owner

    def ours(self, found: float, stored: Callable[[str, float], float] = lambda _ref, v: v) -> bool:
        """Whether `found` (a slot or register read now) is our value, or the one a change in flight was
        replacing. `stored`: what the device keeps of a value written (its resolution: a scaled register)."""
        for value in (self.value, self.previous):
            if value is not None:
                mine = stored(self.point, value)
                if abs(found - mine) <= 1e-6 * max(1.0, abs(mine)):  # a BACnet REAL keeps ~7 digits
                    return True
        return False


class HoldJournal(Protocol):
    async def record(self, hold: Hold) -> None:
        """Durably (on disk when this returns); JournalError when it cannot: the write must not be sent."""
        ...

    async def remove(self, hold: Hold) -> None:
        """Forget a hold the device gave back; JournalError when it cannot (the next start checks again)."""
        ...

    def holds(self) -> list[Hold]:
        """Every hold written down, oldest first."""
        ...


class MemoryJournal:
    """A journal that survives nothing: for tests, and for a loop run without a file."""

    def __init__(self, holds: list[Hold] | None = None) -> None:
        self._holds = {h.key: h for h in holds or []}

    async def record(self, hold: Hold) -> None:
        self._holds[hold.key] = hold

    async def remove(self, hold: Hold) -> None:
        self._holds.pop(hold.key, None)

    def holds(self) -> list[Hold]:
        return sorted(self._holds.values(), key=lambda h: h.since)
