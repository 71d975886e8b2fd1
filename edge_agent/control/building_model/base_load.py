"""The building's non-HVAC base load: the main meter less the HVAC power, as an hourly profile by day
type (workday, or weekend and holiday) and hour of the day, the mean of the fitting days' hours.
Judged like a baseline: CV(RMSE) of hourly values on held-out days (ASHRAE Guideline 14 accepts at most
30% on hourly data)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime

import numpy as np

from edge_agent.control.calendar import OpeningHours

DAY_TYPES = ("workday", "weekend")
MAX_CV_RMSE = 0.30


@dataclass(frozen=True, slots=True)
class BaseLoadProfile:
    kw: dict[str, list[float | None]]  # day type -> 24 hourly means (None: never seen)

    def predict_kw(self, local: datetime, hours: OpeningHours) -> float | None:
        return self.kw[day_type(local.date(), hours)][local.hour]


@dataclass(frozen=True, slots=True)
class BaseLoadQuality:
    cv_rmse: float  # hourly, on held-out days
    nmbe: float
    fitting_hours: int
    held_out_hours: int


def day_type(day: date, hours: OpeningHours) -> str:
    return "weekend" if day.weekday() >= 5 or hours.is_holiday(day) else "workday"


def fit_base_load(
    hourly_kw: dict[datetime, float], fitting_days: set[date], hours: OpeningHours
) -> tuple[BaseLoadProfile, BaseLoadQuality]:
    """Hourly base load (hour start, building time -> kW): the profile of the fitting days, its quality on
    the other days."""
    bins: dict[str, list[list[float]]] = {kind: [[] for _ in range(24)] for kind in DAY_TYPES}
    for hour, kw in hourly_kw.items():
        if hour.date() in fitting_days:
            bins[day_type(hour.date(), hours)][hour.hour].append(kw)
    profile = BaseLoadProfile(
        {kind: [float(np.mean(v)) if v else None for v in bins[kind]] for kind in DAY_TYPES}
    )
    actual: list[float] = []
    errors: list[float] = []
    for hour, kw in hourly_kw.items():
        if hour.date() in fitting_days:
            continue
        predicted = profile.predict_kw(hour, hours)
        if predicted is None:
            continue
        actual.append(kw)
        errors.append(predicted - kw)
    mean = float(np.mean(actual)) if actual else math.nan
    quality = BaseLoadQuality(
        cv_rmse=float(np.sqrt(np.mean(np.square(errors)))) / mean if errors else math.nan,
        nmbe=float(np.sum(errors)) / (len(errors) * mean) if errors else math.nan,
        fitting_hours=sum(len(v) for kind in DAY_TYPES for v in bins[kind]),
        held_out_hours=len(errors),
    )
    return profile, quality
