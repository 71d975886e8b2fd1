"""The control loop's pace: a fixed-rate schedule on the building's clock.

Decisions fall on multiples of the step (building time since the Unix epoch: every :00 for 60 s, every
:00/:15/:30/:45 for 900 s), however long each step takes, so they never drift. A step that runs past the
next slot skips it, counted, instead of crowding late decisions together. Works on any Clock: the wall
clock, or a simulated building's faster one (it sleeps building seconds / speed and checks the clock
again on waking). A clock set back is followed at once rather than waited out.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from edge_agent.clock import Clock

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class FixedRate:
    def __init__(
        self,
        clock: Clock,
        period_s: float,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        if period_s <= 0:
            raise ValueError(f"the period must be positive, got {period_s}")
        self._clock = clock
        self.period_s = period_s
        self._sleep = sleep  # wall-clock seconds
        self._slot: int | None = None  # index of the slot last returned
        self.skipped = 0  # slots passed without a decision (a step, or the process, overran them)

    def _index(self, at: datetime) -> float:
        return (at - _EPOCH).total_seconds() / self.period_s

    def at(self, slot: int) -> datetime:
        return _EPOCH + timedelta(seconds=slot * self.period_s)

    async def next(self) -> datetime:
        """Wait for the next slot and return its time; slots already passed are skipped and counted."""
        now = self._index(self._clock.now())
        due = math.ceil(now) if self._slot is None else self._slot + 1  # on a slot at start: now
        if due <= now and self._slot is not None:  # the last step ran past this slot: on to the next
            self.skipped += math.floor(now) + 1 - due
            due = math.floor(now) + 1
        while True:
            now = self._index(self._clock.now())
            if due > now + 1:  # the clock was set back: the next slot from the new time
                due = math.ceil(now)
            if due <= now:
                break
            await self._sleep((due - now) * self.period_s / self._clock.speed)
        self._slot = due
        return self.at(due)
