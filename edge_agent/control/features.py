"""Features: the policy's inputs, one named number each, built from an observation.

The ONNX model takes them as one float32 vector in FEATURE_UNITS' order; its metadata names them with
their units, and the agent refuses a model whose names differ (onnx_policy.py).
"""

from __future__ import annotations

from dataclasses import astuple, dataclass, fields
from datetime import datetime, timedelta
from statistics import fmean

import numpy as np
import numpy.typing as npt

from edge_agent.control.calendar import OpeningHours
from edge_agent.control.demand import IntervalState
from edge_agent.control.observation import Observation
from edge_agent.control.savings.tariff import Band, tariff_for, to_kst

HORIZON_H = 24.0
BAND_CODE: dict[Band, float] = {"light": 0.0, "mid": 1.0, "peak": 2.0}


@dataclass(frozen=True, slots=True)
class Features:
    hour_of_day: float
    day_of_week: float
    holiday: float
    open: float
    hours_to_open: float
    outdoor_temperature: float
    zone_temperature_mean: float
    zone_temperature_max: float
    zone_temperature_min: float
    cooling_setpoint_mean: float
    heating_setpoint_mean: float
    co2_max: float
    demand: float
    interval_average: float
    interval_projection: float
    interval_elapsed: float
    demand_target: float
    month_peak: float
    tou_band: float
    hours_to_peak_band: float

    def vector(self) -> npt.NDArray[np.float32]:
        return np.asarray([astuple(self)], dtype=np.float32)

    def out_of_range(self) -> list[str]:
        """Names of features outside the range the policies were built for."""
        return [
            name for name, (low, high) in FEATURE_RANGES.items() if not low <= getattr(self, name) <= high
        ]


FEATURE_UNITS: dict[str, str] = {
    "hour_of_day": "h",
    "day_of_week": "day (Monday 0)",
    "holiday": "1 on a public holiday",
    "open": "1 while open",
    "hours_to_open": "h",
    "outdoor_temperature": "degC",
    "zone_temperature_mean": "degC",
    "zone_temperature_max": "degC",
    "zone_temperature_min": "degC",
    "cooling_setpoint_mean": "degC",
    "heating_setpoint_mean": "degC",
    "co2_max": "ppm",
    "demand": "kW",
    "interval_average": "kW",
    "interval_projection": "kW",
    "interval_elapsed": "fraction of 15 min",
    "demand_target": "kW",
    "month_peak": "kW",
    "tou_band": "0 light, 1 mid, 2 peak",
    "hours_to_peak_band": "h",
}
assert list(FEATURE_UNITS) == [f.name for f in fields(Features)]

# Physically sensible inputs; outside them the model is not trusted (the rule-based limiter takes over).
FEATURE_RANGES: dict[str, tuple[float, float]] = {
    "outdoor_temperature": (-35.0, 45.0),
    "zone_temperature_mean": (0.0, 45.0),
    "zone_temperature_max": (0.0, 50.0),
    "zone_temperature_min": (-5.0, 45.0),
    "co2_max": (0.0, 10_000.0),
    "demand": (0.0, 100_000.0),
    "interval_projection": (0.0, 100_000.0),
}


def hours_to_peak_band(local: datetime) -> float:
    """0 during a peak tariff band; else hours until the next one, at most HORIZON_H."""
    tariff = tariff_for(local.date())
    if tariff.band(local) == "peak":
        return 0.0
    top = local.replace(minute=0, second=0, microsecond=0)
    for hour in range(1, int(HORIZON_H) + 1):
        moment = top + timedelta(hours=hour)
        if tariff_for(moment.date()).band(moment) == "peak":
            return (moment - local).total_seconds() / 3600
    return HORIZON_H


def build_features(
    observation: Observation, interval: IntervalState, target_kw: float | None, hours: OpeningHours
) -> Features:
    """Features of a complete observation (check `observation.missing()` first)."""
    local = to_kst(observation.at)
    temperatures = [z.temperature_c for z in observation.zones if z.temperature_c is not None]
    cooling = [z.cooling_setpoint_c for z in observation.zones if z.cooling_setpoint_c is not None]
    heating = [z.heating_setpoint_c for z in observation.zones if z.heating_setpoint_c is not None]
    co2 = [z.co2_ppm for z in observation.zones if z.co2_ppm is not None]
    demand = observation.demand_kw or 0.0
    # Without a target from the operator, staying under this month's open-hours peak costs nothing extra;
    # before that peak is known there is no target (0: nothing to shed for).
    target = target_kw or interval.target_kw or 0.0
    return Features(
        hour_of_day=local.hour + local.minute / 60,
        day_of_week=float(local.weekday()),
        holiday=float(hours.is_holiday(local.date())),
        open=float(hours.is_open(local)),
        hours_to_open=hours.hours_to_open(local, HORIZON_H),
        outdoor_temperature=observation.outdoor_c if observation.outdoor_c is not None else float("nan"),
        zone_temperature_mean=fmean(temperatures) if temperatures else float("nan"),
        zone_temperature_max=max(temperatures, default=float("nan")),
        zone_temperature_min=min(temperatures, default=float("nan")),
        cooling_setpoint_mean=fmean(cooling) if cooling else 26.0,
        heating_setpoint_mean=fmean(heating) if heating else 20.0,
        co2_max=max(co2, default=400.0),
        demand=demand,
        interval_average=interval.average_kw,
        interval_projection=interval.projection_kw,
        interval_elapsed=interval.elapsed_s / 900.0,
        demand_target=target,
        month_peak=interval.peak_kw,
        tou_band=BAND_CODE[tariff_for(local.date()).band(local)],
        hours_to_peak_band=hours_to_peak_band(local),
    )
