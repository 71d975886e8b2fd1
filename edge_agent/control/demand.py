"""The billed quantity: the clock-aligned 15-minute average demand (:00, :15, :30, :45).

Fed with the building's power at each control step, it knows the open interval's average so far, a
projection of where that interval will end, and the highest closed interval (this month's billing peak,
as far as this process has seen it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

INTERVAL_S = 15 * 60
_INTERVAL = timedelta(seconds=INTERVAL_S)


@dataclass(frozen=True, slots=True)
class IntervalState:
    start: datetime  # the open interval's start
    elapsed_s: float  # covered by samples so far
    average_kw: float  # energy so far / elapsed time (0 before the first sample)
    projection_kw: float  # energy so far + the latest power for the rest, over the whole interval
    peak_kw: float  # highest closed interval since start (or since the month began)


def interval_start(at: datetime) -> datetime:
    """The start of the clock-aligned 15-minute interval containing `at` (aware datetimes only)."""
    return at.replace(minute=at.minute - at.minute % 15, second=0, microsecond=0)


class IntervalDemand:
    def __init__(self) -> None:
        self._start: datetime | None = None
        self._energy_kws = 0.0  # kW x s in the open interval
        self._elapsed_s = 0.0
        self._last_kw = 0.0
        self._last_at: datetime | None = None
        self.peak_kw = 0.0
        self._month: tuple[int, int] | None = None

    def add(self, at: datetime, power_kw: float) -> None:
        """The building's power at `at`, held since the previous sample (or from now on, for the first)."""
        if self._last_at is not None and at > self._last_at:
            self._integrate(self._last_at, at)
        self._last_at, self._last_kw = at, power_kw
        if self._start is None:
            self._start = interval_start(at)

    def _integrate(self, begin: datetime, end: datetime) -> None:
        while begin < end:
            start = interval_start(begin)
            if start != self._start:
                self._close(start)
            boundary = min(end, start + _INTERVAL)
            seconds = (boundary - begin).total_seconds()
            self._energy_kws += self._last_kw * seconds
            self._elapsed_s += seconds
            begin = boundary

    def _close(self, new_start: datetime) -> None:
        if self._start is not None and self._elapsed_s > 0:
            month = (self._start.year, self._start.month)
            if month != self._month:
                self._month, self.peak_kw = month, 0.0
            self.peak_kw = max(self.peak_kw, self._energy_kws / INTERVAL_S)
        self._start, self._energy_kws, self._elapsed_s = new_start, 0.0, 0.0

    def state(self, at: datetime) -> IntervalState:
        start = interval_start(at)
        if self._start is None or start != self._start:  # nothing yet in this interval
            return IntervalState(start, 0.0, self._last_kw, self._last_kw, self.peak_kw)
        average = self._energy_kws / self._elapsed_s if self._elapsed_s > 0 else self._last_kw
        remaining = max(0.0, INTERVAL_S - self._elapsed_s)
        projection = (self._energy_kws + self._last_kw * remaining) / INTERVAL_S
        return IntervalState(start, self._elapsed_s, average, projection, self.peak_kw)
