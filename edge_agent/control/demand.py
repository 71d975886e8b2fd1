"""The billed quantity: the clock-aligned 15-minute average demand (:00, :15, :30, :45).

Fed with the building's power at each control step, it knows the open interval's average so far, a
projection of where that interval will end, and the highest closed interval this month (KST; the billing
peak as far as the gateway has seen it: `MonthPeak` carries it across restarts, see peak_file.py).

Without a target from the operator, control stays under the month's peak, which costs nothing extra. Only
intervals while the building is open count towards that target: night and weekend load says nothing about
the peak to expect (a target from it would limit the plant at dawn, before it even starts). Until
MIN_OPEN_INTERVALS of them are known this month, last month's open-hours peak stands in; without that
there is no target, and nothing is shed to meet one.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from edge_agent.control.calendar import OpeningHours
from edge_agent.control.savings.tariff import to_kst

INTERVAL_S = 15 * 60
_INTERVAL = timedelta(seconds=INTERVAL_S)
MIN_OPEN_INTERVALS = 32  # eight open hours: a working day's worth before the month's own peak is the target
FULL_SHARE = 0.9  # an interval seen for less than this share (a start or gap inside it) is not counted


@dataclass(frozen=True, slots=True)
class MonthPeak:
    """What the gateway knows of one billing month's demand (15-minute averages, kW)."""

    month: str  # 'YYYY-MM', Korean time
    peak_kw: float = 0.0  # highest closed interval
    open_peak_kw: float = 0.0  # highest closed interval while the building was open
    open_intervals: int = 0  # closed intervals while open
    previous_open_peak_kw: float | None = None  # last month's, if enough of it was seen

    @property
    def known(self) -> bool:
        """Enough of the month's open hours seen for its own open-hours peak to be the target."""
        return self.open_intervals >= MIN_OPEN_INTERVALS

    def target_kw(self) -> float | None:
        """The demand to stay under when the operator sets none (None: no target, nothing shed)."""
        if self.known:
            return self.open_peak_kw
        if self.previous_open_peak_kw is None:
            return None
        return max(self.previous_open_peak_kw, self.open_peak_kw)

    def next_month(self, month: str) -> MonthPeak:
        """The record for a later `month`: this one's open-hours peak stands in if it is the month before."""
        carried = self.open_peak_kw if self.known and _month_after(self.month) == month else None
        return MonthPeak(month, previous_open_peak_kw=carried)


def billing_month(at: datetime) -> str:
    return f"{to_kst(at):%Y-%m}"


def _month_after(month: str) -> str:
    year, number = int(month[:4]), int(month[5:])
    return f"{year + number // 12:04d}-{number % 12 + 1:02d}"


@dataclass(frozen=True, slots=True)
class IntervalState:
    start: datetime  # the open interval's start
    elapsed_s: float  # covered by samples so far
    average_kw: float  # energy so far / elapsed time (0 before the first sample)
    projection_kw: float  # energy so far + the latest power for the rest, over the whole interval
    peak_kw: float  # highest closed interval this month
    target_kw: float | None = None  # without the operator's: the month's open-hours peak (MonthPeak)


def interval_start(at: datetime) -> datetime:
    """The start of the clock-aligned 15-minute interval containing `at` (aware datetimes only)."""
    return at.replace(minute=at.minute - at.minute % 15, second=0, microsecond=0)


class IntervalDemand:
    def __init__(self, month: MonthPeak | None = None) -> None:
        """`month`: what a previous run knew of the billing month (a later month is started from it)."""
        self._start: datetime | None = None
        self._energy_kws = 0.0  # kW x s in the open interval
        self._elapsed_s = 0.0
        self._last_kw = 0.0
        self._last_at: datetime | None = None
        self._hours: OpeningHours | None = None  # the building's, as of the latest sample
        self.month = month

    @property
    def peak_kw(self) -> float:
        return 0.0 if self.month is None else self.month.peak_kw

    def _month_of(self, at: datetime) -> MonthPeak:
        month = billing_month(at)
        if self.month is None:
            return MonthPeak(month)
        return self.month if self.month.month == month else self.month.next_month(month)

    def add(self, at: datetime, power_kw: float, hours: OpeningHours | None = None) -> None:
        """The building's power at `at`, held since the previous sample (or from now on, for the first).
        `hours`: when the building is open (only intervals then count towards the target; None: all)."""
        self._hours = hours
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
            month, average = self._month_of(self._start), self._energy_kws / INTERVAL_S
            month = replace(month, peak_kw=max(month.peak_kw, average))
            if self._hours is None or self._hours.is_open(to_kst(self._start)):
                seen = self._elapsed_s >= FULL_SHARE * INTERVAL_S  # counted only when seen (nearly) whole
                month = replace(
                    month,
                    open_peak_kw=max(month.open_peak_kw, average),
                    open_intervals=month.open_intervals + int(seen),
                )
            self.month = month
        self._start, self._energy_kws, self._elapsed_s = new_start, 0.0, 0.0

    def state(self, at: datetime) -> IntervalState:
        start = interval_start(at)
        month = self._month_of(at)
        if self._start is None or start != self._start:  # nothing yet in this interval
            return IntervalState(start, 0.0, self._last_kw, self._last_kw, month.peak_kw, month.target_kw())
        average = self._energy_kws / self._elapsed_s if self._elapsed_s > 0 else self._last_kw
        remaining = max(0.0, INTERVAL_S - self._elapsed_s)
        projection = (self._energy_kws + self._last_kw * remaining) / INTERVAL_S
        return IntervalState(start, self._elapsed_s, average, projection, month.peak_kw, month.target_kw())
