"""Fit a building: every configured zone's grey-box model and the base-load profile, from 15-minute
slots of commissioning data, judged on held-out days (the last quarter of the days, at least two), then
refitted on all days for the file. Anything that makes the fit unfit to act on is a refusal, said in
words: too few days, too few conditioned hours, a setpoint that never moved, points without readings, a
held-out error above its bound."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import numpy as np

from edge_agent.control.building_model.base_load import (
    MAX_CV_RMSE,
    BaseLoadProfile,
    BaseLoadQuality,
    fit_base_load,
)
from edge_agent.control.building_model.series import SLOT, SlotSeries
from edge_agent.control.building_model.zone import (
    MAX_ONE_STEP_RMSE_K,
    MAX_SIMULATION_RMSE_K,
    MIN_CONDITIONED_HOURS,
    MIN_SETPOINT_RANGE_K,
    SIM_HOURS,
    ZoneInputs,
    ZoneModel,
    ZoneQuality,
    fit_zone,
    judge_zone,
    setpoint_range_k,
)
from edge_agent.control.calendar import OpeningHours
from edge_agent.control.setup import ZonePoints

MIN_DAYS = 7  # days with data; two weeks spanning the weather to come are better
DAY_COVERAGE = 0.5  # a day counts when half its slots have an outdoor temperature
HELD_OUT_SHARE = 0.25
MIN_HELD_OUT_DAYS = 2


@dataclass(frozen=True, slots=True)
class ModelPoints:
    """The configuration's point names the model was fitted on ('device/point')."""

    zones: tuple[ZonePoints, ...]
    outdoor_temperature: str | None
    demand: str | None
    demand_in_watts: bool = False
    hvac_power: str | None = None  # the HVAC sub-meter, when there is one
    hvac_in_watts: bool = False

    def wanted(self) -> frozenset[str]:
        refs = [self.outdoor_temperature, self.demand, self.hvac_power]
        refs += [r for z in self.zones for r in (z.temperature, z.cooling_setpoint, z.heating_setpoint)]
        return frozenset(r for r in refs if r is not None)


@dataclass(frozen=True, slots=True)
class FittedZone:
    model: ZoneModel
    quality: ZoneQuality


@dataclass(slots=True)
class BuildingFit:
    points: ModelPoints
    fitted_at: datetime
    first: datetime | None = None  # data span, building time
    last: datetime | None = None
    days: list[date] = field(default_factory=list)
    held_out_days: list[date] = field(default_factory=list)
    zones: dict[str, FittedZone] = field(default_factory=dict)
    base_load: BaseLoadProfile | None = None
    base_load_quality: BaseLoadQuality | None = None
    base_load_note: str | None = None  # why there is no base-load profile
    refusals: list[str] = field(default_factory=list)

    @property
    def accepted(self) -> bool:
        return not self.refusals


def _grid(
    series: SlotSeries, point: str | None, slots: list[datetime], scale: float = 1.0
) -> np.ndarray | None:
    if point is None:
        return None
    means = series.means(point)
    return np.array([means.get(s, math.nan) / scale for s in slots], dtype=np.float64)


def fit_building(
    series: SlotSeries, points: ModelPoints, hours: OpeningHours, now: datetime | None = None
) -> BuildingFit:
    fit = BuildingFit(points, now or datetime.now(UTC))
    if not points.zones:
        fit.refusals.append("no zones in [control]: nothing to model")
    if points.outdoor_temperature is None:
        fit.refusals.append("no outdoor temperature point ([control] outdoor_temperature)")
    span = series.span()
    if span is None:
        fit.refusals.append("no readings of the configured points")
    if fit.refusals or span is None or points.outdoor_temperature is None:
        return fit
    fit.first, fit.last = span
    slots = [fit.first + i * SLOT for i in range(int((fit.last - fit.first) / SLOT) + 1)]
    outdoor = _grid(series, points.outdoor_temperature, slots)
    assert outdoor is not None
    per_day: dict[date, int] = {}
    for slot, value in zip(slots, outdoor, strict=True):
        if not math.isnan(value):
            per_day[slot.date()] = per_day.get(slot.date(), 0) + 1
    fit.days = sorted(d for d, n in per_day.items() if n >= DAY_COVERAGE * timedelta(days=1) / SLOT)
    if len(fit.days) < MIN_DAYS:
        fit.refusals.append(
            f"{len(fit.days)} day{'' if len(fit.days) == 1 else 's'} of data with an outdoor temperature"
            f" ({fit.first:%Y-%m-%d %H:%M} to {fit.last:%Y-%m-%d %H:%M}): a building model needs at least"
            f" {MIN_DAYS}, better 14 spanning the weather to come"
        )
        return fit
    held = max(MIN_HELD_OUT_DAYS, round(HELD_OUT_SHARE * len(fit.days)))
    fit.held_out_days = fit.days[-held:]
    held_out = np.array([s.date() in fit.held_out_days for s in slots])
    fitting = np.array([s.date() in fit.days and s.date() not in fit.held_out_days for s in slots])
    hvac = _grid(series, points.hvac_power, slots, 1000.0 if points.hvac_in_watts else 1.0)
    for zone in points.zones:
        _fit_one_zone(fit, series, zone, _Grid(slots, outdoor, hvac, fitting, held_out))
    _fit_base_load(fit, series, slots, hvac, hours)
    return fit


@dataclass(frozen=True, slots=True)
class _Grid:
    """The slots of the data and what every zone shares: outdoor temperature, HVAC power, the day split."""

    slots: list[datetime]
    outdoor: np.ndarray
    hvac: np.ndarray | None
    fitting: np.ndarray  # bool per slot
    held_out: np.ndarray


def _fit_one_zone(fit: BuildingFit, series: SlotSeries, zone: ZonePoints, grid: _Grid) -> None:
    slots, outdoor, hvac = grid.slots, grid.outdoor, grid.hvac
    fitting, held_out = grid.fitting, grid.held_out
    temperature = _grid(series, zone.temperature, slots)
    assert temperature is not None
    if np.isnan(temperature).all():
        fit.refusals.append(f"zone {zone.name}: no readings of its temperature ({zone.temperature})")
        return
    if zone.cooling_setpoint is None and zone.heating_setpoint is None:
        fit.refusals.append(f"zone {zone.name}: no setpoint point configured: its control cannot be learnt")
        return
    data = ZoneInputs(
        slots,
        temperature,
        outdoor,
        _grid(series, zone.cooling_setpoint, slots),
        _grid(series, zone.heating_setpoint, slots),
        hvac,
    )
    for ref, values in (
        (zone.cooling_setpoint, data.cooling_setpoint),
        (zone.heating_setpoint, data.heating_setpoint),
    ):
        if ref is not None and values is not None and np.isnan(values).all():
            fit.refusals.append(f"zone {zone.name}: no readings of its setpoint ({ref})")
            return
    moved = setpoint_range_k(data)
    if moved < MIN_SETPOINT_RANGE_K:
        fit.refusals.append(
            f"zone {zone.name}: its setpoint moved {moved:.2f} K in the data (less than"
            f" {MIN_SETPOINT_RANGE_K} K): no excitation, its effect cannot be learnt"
        )
        return
    model, samples, hours = fit_zone(data, fitting)
    if hours < MIN_CONDITIONED_HOURS:
        fit.refusals.append(
            f"zone {zone.name}: {hours:.0f} conditioned (open) hours among the fitting days, fewer than"
            f" {MIN_CONDITIONED_HOURS:.0f}"
        )
        return
    quality = judge_zone(model, data, held_out, samples, hours)
    if not quality.held_out_samples or math.isnan(quality.simulation_rmse_k):
        fit.refusals.append(
            f"zone {zone.name}: no complete held-out hours to judge the fit on (gaps in the data)"
        )
        return
    if quality.one_step_rmse_k > MAX_ONE_STEP_RMSE_K:
        fit.refusals.append(
            f"zone {zone.name}: held-out one-step error {quality.one_step_rmse_k:.2f} K RMSE, above"
            f" {MAX_ONE_STEP_RMSE_K} K"
        )
    if quality.simulation_rmse_k > MAX_SIMULATION_RMSE_K:
        fit.refusals.append(
            f"zone {zone.name}: held-out {SIM_HOURS}-hour simulation error {quality.simulation_rmse_k:.2f} K"
            f" RMSE, above {MAX_SIMULATION_RMSE_K} K"
        )
    final, _, _ = fit_zone(data, fitting | held_out)  # the file carries the fit on every day
    fit.zones[zone.name] = FittedZone(final, quality)


def _fit_base_load(
    fit: BuildingFit, series: SlotSeries, slots: list[datetime], hvac: np.ndarray | None, hours: OpeningHours
) -> None:
    points = fit.points
    if points.demand is None:
        fit.base_load_note = "no main meter ([control] demand): no base-load profile"
        return
    if hvac is None:
        fit.base_load_note = (
            "no HVAC power point (--hvac-power): the base load cannot be told from the HVAC's"
        )
        return
    demand = _grid(series, points.demand, slots, 1000.0 if points.demand_in_watts else 1.0)
    assert demand is not None
    base = demand - hvac
    by_hour: dict[datetime, list[float]] = {}
    for slot, value in zip(slots, base, strict=True):
        if not math.isnan(value) and slot.date() in fit.days:
            by_hour.setdefault(slot.replace(minute=0), []).append(float(value))
    hourly = {hour: float(np.mean(v)) for hour, v in by_hour.items()}
    if not hourly:
        fit.refusals.append(f"base load: no slot with both {points.demand} and {points.hvac_power}")
        return
    fitting_days = set(fit.days) - set(fit.held_out_days)
    _, quality = fit_base_load(hourly, fitting_days, hours)
    if not quality.held_out_hours:
        fit.refusals.append("base load: no held-out hour of a day type seen in fitting")
        return
    if quality.cv_rmse > MAX_CV_RMSE:
        fit.refusals.append(
            f"base load: held-out hourly CV(RMSE) {quality.cv_rmse:.1%}, above ASHRAE Guideline 14's"
            f" {MAX_CV_RMSE:.0%}"
        )
    everything, _ = fit_base_load(hourly, set(fit.days), hours)
    fit.base_load, fit.base_load_quality = everything, quality
