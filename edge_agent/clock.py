"""Injectable clocks: the building's time. In the field it is the wall clock; driving a simulated plant
(`edge-sim run --speed`, a customer's digital twin) it can run faster, from a chosen start."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    speed: float  # building seconds per wall-clock second

    def now(self) -> datetime:
        """The current building time, timezone-aware."""
        ...

    def jump(self, seconds: float) -> None:
        """Step the time forward at once (a clock correction, a reboot without a real-time clock)."""
        ...


class ScaledClock:
    """Building time = start + wall-clock time elapsed since creation x speed."""

    def __init__(self, start: datetime, speed: float = 1.0) -> None:
        if start.tzinfo is None:
            raise ValueError("the simulation start time needs a UTC offset, e.g. 2026-08-05T14:00+09:00")
        if speed <= 0:
            raise ValueError(f"speed must be positive, got {speed}")
        self.start = start
        self.speed = speed
        self._t0 = time.monotonic()
        self._jumped_s = 0.0

    def now(self) -> datetime:
        elapsed = (time.monotonic() - self._t0) * self.speed
        return self.start + timedelta(seconds=elapsed + self._jumped_s)

    def jump(self, seconds: float) -> None:
        self._jumped_s += seconds


class WallClock:
    """The real time, UTC."""

    speed = 1.0

    def now(self) -> datetime:
        return datetime.now(UTC)

    def jump(self, seconds: float) -> None:
        raise NotImplementedError("the wall clock is corrected by the system, not by the agent")


class ManualClock:
    """A clock that moves only when told to: for tests and in-process stepping."""

    speed = 1.0

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("the simulation start time needs a UTC offset")
        self._now = start

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)

    def jump(self, seconds: float) -> None:
        self.advance(seconds)
