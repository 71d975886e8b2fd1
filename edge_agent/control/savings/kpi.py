"""BOPTEST-style KPIs (discomfort, energy, 15-minute peak, cost, emissions) accumulated step by step.

Memory does not grow with the number of steps: only running sums, the open 15-minute interval and the open day
are kept. Power is taken as constant over each step; a step is split at the clock-aligned 15-minute demand
intervals (:00, :15, :30, :45) it crosses, which also splits it at every tariff hour.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from edge_agent.control.savings.tariff import GRID_EMISSION_FACTOR, EmissionFactor, Tariff, tariff_for, to_kst

_INTERVAL_US = 15 * 60 * 1_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


@dataclass(frozen=True)
class Kpis:
    hours: float  # time covered by steps
    discomfort_kh: dict[str, float]  # per zone, K.h
    tdis_kh: float  # mean of discomfort_kh over zones
    hvac_energy_kwh: float
    hvac_energy_kwh_per_m2: float
    total_energy_kwh: float
    total_energy_kwh_per_m2: float
    peak_15min_kw: float  # whole building: max over clock-aligned intervals of metered energy / 0.25 h
    peak_15min_start: datetime | None  # KST start of that interval
    peak_15min_w_per_m2: float
    energy_cost_krw: float  # integral of TOU price x total power
    demand_charge_krw: float  # one billing month's demand charge on peak_15min_kw (no 12-month ratchet)
    total_cost_krw: float
    emissions_t: float  # tCO2eq
    daily_peak_avg_kw: float  # mean over KST days of each day's highest 15-minute demand
    load_factor: float  # mean power over the period / peak_15min_kw


class KpiAccumulator:
    def __init__(
        self,
        zones: Mapping[str, float],
        *,
        tariff_for: Callable[[date], Tariff] = tariff_for,
        emission_factor: EmissionFactor = GRID_EMISSION_FACTOR,
    ) -> None:
        """zones: name -> floor area in m2."""
        if not zones or any(area <= 0 for area in zones.values()):
            raise ValueError("need at least one zone, each with a positive floor area")
        self._areas = dict(zones)
        self._floor_m2 = sum(zones.values())
        self._tariff_for = tariff_for
        self._factor = emission_factor
        self._discomfort_kh = dict.fromkeys(zones, 0.0)
        self._seconds = 0.0
        self._hvac_kwh = 0.0
        self._total_kwh = 0.0
        self._cost_krw = 0.0
        self._last_end_us: int | None = None
        # Open 15-minute interval, and the closed ones summarised.
        self._interval: int | None = None
        self._interval_kwh = 0.0
        self._interval_price = 0.0
        self._peak_kw: float | None = None
        self._peak_interval: int | None = None
        # Open KST day, and the closed ones summarised.
        self._day: date | None = None
        self._day_peak_kw = 0.0
        self._closed_days = 0
        self._closed_day_peaks_kw = 0.0

    def add(
        self,
        end: datetime,
        dt_s: float,
        *,
        zone_temperatures: Mapping[str, float],
        comfort_bands: Mapping[str, tuple[float, float]],
        hvac_w: float,
        total_w: float,
    ) -> None:
        """One step of length dt_s ending at `end` (aware datetime)."""
        if dt_s < 0:
            raise ValueError(f"negative step length {dt_s}")
        end_us = (to_kst(end) - _EPOCH) // _US
        start_us = end_us - round(dt_s * 1e6)
        if self._last_end_us is not None and start_us < self._last_end_us:
            raise ValueError(f"step starting {_from_us(start_us).isoformat()} overlaps the previous one")
        self._last_end_us = end_us

        hours = dt_s / 3600.0
        for zone in self._areas:
            lower, upper = comfort_bands[zone]
            temperature = zone_temperatures[zone]
            self._discomfort_kh[zone] += (
                max(0.0, lower - temperature) + max(0.0, temperature - upper)
            ) * hours
        self._seconds += dt_s
        self._hvac_kwh += hvac_w / 1000.0 * hours
        self._total_kwh += total_w / 1000.0 * hours

        t = start_us
        while t < end_us:
            interval = t // _INTERVAL_US
            segment_end = min(end_us, (interval + 1) * _INTERVAL_US)
            self._add_segment(interval, (segment_end - t) / 3.6e9 * total_w / 1000.0)
            t = segment_end

    def _add_segment(self, interval: int, kwh: float) -> None:
        if interval != self._interval:
            self._close_interval()
            start = _from_us(interval * _INTERVAL_US)
            self._interval = interval
            self._interval_kwh = 0.0
            self._interval_price = self._tariff_for(start.date()).energy_price(start)
        self._interval_kwh += kwh
        self._cost_krw += kwh * self._interval_price

    def _close_interval(self) -> None:
        if self._interval is None:
            return
        kw = self._interval_kwh / 0.25
        if self._peak_kw is None or kw > self._peak_kw:
            self._peak_kw, self._peak_interval = kw, self._interval
        day = _from_us(self._interval * _INTERVAL_US).date()
        if day != self._day:
            if self._day is not None:
                self._closed_days += 1
                self._closed_day_peaks_kw += self._day_peak_kw
            self._day, self._day_peak_kw = day, kw
        else:
            self._day_peak_kw = max(self._day_peak_kw, kw)

    def result(self) -> Kpis:
        """KPIs so far, counting the open (possibly partial) interval as metered; accumulation may go on."""
        peak_kw, peak_interval = self._peak_kw, self._peak_interval
        day, day_peak_kw = self._day, self._day_peak_kw
        days, day_peaks_kw = self._closed_days, self._closed_day_peaks_kw
        if self._interval is not None:  # close the open interval on copies of the state
            kw = self._interval_kwh / 0.25
            if peak_kw is None or kw > peak_kw:
                peak_kw, peak_interval = kw, self._interval
            open_day = _from_us(self._interval * _INTERVAL_US).date()
            if open_day == day:
                day_peak_kw = max(day_peak_kw, kw)
            else:
                if day is not None:
                    days, day_peaks_kw = days + 1, day_peaks_kw + day_peak_kw
                day, day_peak_kw = open_day, kw
        if day is not None:
            days, day_peaks_kw = days + 1, day_peaks_kw + day_peak_kw

        peak = peak_kw if peak_kw is not None else 0.0
        hours = self._seconds / 3600.0
        mean_kw = self._total_kwh / hours if hours > 0 else 0.0
        demand_krw = peak * self._demand_rate(peak_interval)
        return Kpis(
            hours=hours,
            discomfort_kh=dict(self._discomfort_kh),
            tdis_kh=sum(self._discomfort_kh.values()) / len(self._discomfort_kh),
            hvac_energy_kwh=self._hvac_kwh,
            hvac_energy_kwh_per_m2=self._hvac_kwh / self._floor_m2,
            total_energy_kwh=self._total_kwh,
            total_energy_kwh_per_m2=self._total_kwh / self._floor_m2,
            peak_15min_kw=peak,
            peak_15min_start=None if peak_interval is None else _from_us(peak_interval * _INTERVAL_US),
            peak_15min_w_per_m2=peak * 1000.0 / self._floor_m2,
            energy_cost_krw=self._cost_krw,
            demand_charge_krw=demand_krw,
            total_cost_krw=self._cost_krw + demand_krw,
            emissions_t=self._total_kwh / 1000.0 * self._factor.value_t_per_mwh,
            daily_peak_avg_kw=day_peaks_kw / days if days else 0.0,
            load_factor=mean_kw / peak if peak > 0 else 0.0,
        )

    def _demand_rate(self, interval: int | None) -> float:
        """Demand charge rate of the tariff in force when the peak happened."""
        if interval is None:
            return 0.0
        return self._tariff_for(_from_us(interval * _INTERVAL_US).date()).demand_krw_per_kw_month


def _from_us(us: int) -> datetime:
    return to_kst(_EPOCH + us * _US)


_Row = tuple[str, Callable[[Kpis], str]]
_ROWS: tuple[_Row, ...] = (
    ("period (h)", lambda k: f"{k.hours:,.1f}"),
    ("discomfort tdis, zone mean (K.h)", lambda k: f"{k.tdis_kh:,.2f}"),
    ("HVAC energy (kWh)", lambda k: f"{k.hvac_energy_kwh:,.1f}"),
    ("HVAC energy (kWh/m2)", lambda k: f"{k.hvac_energy_kwh_per_m2:,.3f}"),
    ("total energy (kWh)", lambda k: f"{k.total_energy_kwh:,.1f}"),
    ("total energy (kWh/m2)", lambda k: f"{k.total_energy_kwh_per_m2:,.3f}"),
    ("peak 15-min demand (kW)", lambda k: f"{k.peak_15min_kw:,.1f}"),
    ("peak 15-min demand (W/m2)", lambda k: f"{k.peak_15min_w_per_m2:,.1f}"),
    (
        "peak interval start (KST)",
        lambda k: "-" if k.peak_15min_start is None else k.peak_15min_start.strftime("%Y-%m-%d %H:%M"),
    ),
    ("average daily peak (kW)", lambda k: f"{k.daily_peak_avg_kw:,.1f}"),
    ("load factor (mean/peak)", lambda k: f"{k.load_factor:.3f}"),
    ("energy cost (KRW)", lambda k: f"{k.energy_cost_krw:,.0f}"),
    ("demand charge, 1 month (KRW)", lambda k: f"{k.demand_charge_krw:,.0f}"),
    ("total cost (KRW)", lambda k: f"{k.total_cost_krw:,.0f}"),
    ("emissions (tCO2eq)", lambda k: f"{k.emissions_t:,.3f}"),
)


def format_table(rows: Mapping[str, Kpis]) -> str:
    """Plain-text table: KPI names and units down the first column, one column per entry of `rows`."""
    names = list(rows)
    zones = sorted({zone for kpis in rows.values() for zone in kpis.discomfort_kh})
    lines: list[list[str]] = [["KPI", *names]]
    for label, cell in _ROWS[:2]:
        lines.append([label, *(cell(rows[name]) for name in names)])
    for zone in zones:
        values = (rows[name].discomfort_kh.get(zone) for name in names)
        lines.append([f"  discomfort {zone} (K.h)", *("-" if v is None else f"{v:,.2f}" for v in values)])
    for label, cell in _ROWS[2:]:
        lines.append([label, *(cell(rows[name]) for name in names)])
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    return "\n".join(
        "  ".join(
            [line[0].ljust(widths[0]), *(v.rjust(w) for v, w in zip(line[1:], widths[1:], strict=True))]
        )
        for line in lines
    )
