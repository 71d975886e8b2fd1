"""Daily savings against the baseline, for the carbon platform: avoided kWh, peak kW, cost and tCO2eq.

Each control step brings the building's metered demand; the baseline (baseline.py) says what it would have
been without control. Both are integrated over the same steps only (a step without a baseline value counts
in `hours_without_baseline`, in neither total), split at the clock-aligned 15-minute intervals the tariff
bills, so `avoided = baseline - actual` compares like with like. A day closes at local midnight and its
report goes out once; `today()` is the open day so far. Month-to-date peaks give the demand charge avoided.
A day the agent was not running throughout says so in `hours_covered`. The avoided energy carries its
uncertainty at 68% and 90% confidence (ASHRAE Guideline 14, uncertainty.py) from the baseline fit's
residuals, and whether it is within the baseline's noise.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta

from edge_agent.control.savings.baseline import Baseline, TowtBaseline
from edge_agent.control.savings.tariff import GRID_EMISSION_FACTOR, EmissionFactor, Tariff, tariff_for, to_kst
from edge_agent.control.savings.uncertainty import Residuals, SavingsUncertainty, savings_uncertainty

INTERVAL = timedelta(minutes=15)


def interval_start(t: datetime) -> datetime:
    """The start of the clock-aligned 15-minute interval `t` is in."""
    return t.replace(minute=t.minute - t.minute % 15, second=0, microsecond=0)


@dataclass(frozen=True, slots=True)
class Totals:
    energy_kwh: float
    peak_kw: float  # the day's highest clock-aligned 15-minute average
    energy_cost_krw: float  # time-of-use energy charge
    emissions_t: float  # tCO2eq


@dataclass(frozen=True, slots=True)
class DailySavings:
    gateway: str
    day: date  # the building's local date
    baseline_model: str
    hours_covered: float  # steps with both a metered demand and a baseline value
    hours_without_baseline: float
    hours_extrapolated: float  # baseline outside the temperatures it was fitted on
    actual: Totals
    baseline: Totals
    avoided: Totals  # baseline - actual
    uncertainty: SavingsUncertainty | None  # of avoided energy; None: the baseline has no residual stats
    month_peak_kw: float  # month to date, metered
    month_baseline_peak_kw: float
    demand_charge_avoided_krw: float  # (baseline - metered) month-to-date peak x the demand rate
    tariff: str
    emission_factor_t_per_mwh: float
    emission_factor_year: int | None
    final: bool  # False: the day is still open

    def to_json(self) -> bytes:
        data = asdict(self)
        data["day"] = self.day.isoformat()
        return json.dumps(data, separators=(",", ":"), allow_nan=False).encode()


@dataclass(slots=True)
class _Series:
    kwh: float = 0.0
    cost_krw: float = 0.0
    intervals: dict[datetime, float] = field(default_factory=dict)  # interval start -> kWh

    def add(self, start: datetime, kwh: float, price: float) -> None:
        self.kwh += kwh
        self.cost_krw += kwh * price
        interval = interval_start(start)
        self.intervals[interval] = self.intervals.get(interval, 0.0) + kwh

    def peak_kw(self) -> float:
        return max(self.intervals.values(), default=0.0) / 0.25

    def totals(self, factor: EmissionFactor) -> Totals:
        return Totals(self.kwh, self.peak_kw(), self.cost_krw, self.kwh / 1000 * factor.value_t_per_mwh)


@dataclass(slots=True)
class _Day:
    day: date
    actual: _Series = field(default_factory=_Series)
    baseline: _Series = field(default_factory=_Series)
    covered_s: float = 0.0
    without_baseline_s: float = 0.0
    extrapolated_s: float = 0.0


class SavingsTracker:
    def __init__(
        self,
        gateway: str,
        baseline: Baseline,
        *,
        tariff_for: Callable[[date], Tariff] = tariff_for,
        emission_factor: EmissionFactor = GRID_EMISSION_FACTOR,
        residuals: Residuals | None = None,
    ) -> None:
        """`residuals`: the baseline fit's, for the savings' uncertainty (default: a TOWT baseline's own)."""
        self._gateway = gateway
        self._baseline = baseline
        if residuals is None and isinstance(baseline, TowtBaseline):
            residuals = baseline.quality.residuals()
        self._residuals = residuals
        self._tariff_for = tariff_for
        self._factor = emission_factor
        self._day: _Day | None = None
        self._month: tuple[int, int] | None = None  # the month of the closed days in _month_peaks
        self._month_peaks = (0.0, 0.0)  # metered, baseline: the highest of the month's closed days

    def add(
        self, end: datetime, dt_s: float, demand_kw: float, outdoor_c: float | None
    ) -> list[DailySavings]:
        """One step of `dt_s` seconds ending at `end` at `demand_kw`; the days it closed, in order."""
        local_end = to_kst(end)
        expected, extrapolated = self._baseline.demand_kw(local_end, outdoor_c)
        closed: list[DailySavings] = []
        t = local_end - timedelta(seconds=dt_s)
        while t < local_end:
            segment_end = min(local_end, interval_start(t) + INTERVAL)
            if self._day is None or t.date() != self._day.day:
                if self._day is not None:
                    closed.append(self._close())
                self._day = _Day(t.date())
            seconds = (segment_end - t).total_seconds()
            day = self._day
            if expected is None:
                day.without_baseline_s += seconds
            else:
                price = self._tariff_for(t.date()).energy_price(t)
                day.actual.add(t, demand_kw * seconds / 3600, price)
                day.baseline.add(t, expected * seconds / 3600, price)
                day.covered_s += seconds
                day.extrapolated_s += seconds if extrapolated else 0.0
            t = segment_end
        return closed

    def today(self) -> DailySavings | None:
        return None if self._day is None else self._report(self._day, final=False)

    def _close(self) -> DailySavings:
        assert self._day is not None
        report = self._report(self._day, final=True)
        self._month = (report.day.year, report.day.month)
        self._month_peaks = (report.month_peak_kw, report.month_baseline_peak_kw)
        return report

    def _report(self, day: _Day, *, final: bool) -> DailySavings:
        actual, baseline = day.actual.totals(self._factor), day.baseline.totals(self._factor)
        same_month = self._month == (day.day.year, day.day.month)
        earlier, earlier_baseline = self._month_peaks if same_month else (0.0, 0.0)
        month_peak, month_baseline_peak = (
            max(earlier, actual.peak_kw),
            max(earlier_baseline, baseline.peak_kw),
        )
        tariff = self._tariff_for(day.day)
        avoided_kwh = baseline.energy_kwh - actual.energy_kwh
        return DailySavings(
            gateway=self._gateway,
            day=day.day,
            baseline_model=self._baseline.name,
            hours_covered=day.covered_s / 3600,
            hours_without_baseline=day.without_baseline_s / 3600,
            hours_extrapolated=day.extrapolated_s / 3600,
            actual=actual,
            baseline=baseline,
            avoided=Totals(
                avoided_kwh,
                baseline.peak_kw - actual.peak_kw,
                baseline.energy_cost_krw - actual.energy_cost_krw,
                baseline.emissions_t - actual.emissions_t,
            ),
            uncertainty=None
            if self._residuals is None
            else savings_uncertainty(self._residuals, baseline.energy_kwh, avoided_kwh, day.covered_s / 3600),
            month_peak_kw=month_peak,
            month_baseline_peak_kw=month_baseline_peak,
            demand_charge_avoided_krw=(month_baseline_peak - month_peak) * tariff.demand_krw_per_kw_month,
            tariff=tariff.name,
            emission_factor_t_per_mwh=self._factor.value_t_per_mwh,
            emission_factor_year=self._factor.year,
            final=final,
        )
