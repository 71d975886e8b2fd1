"""The counterfactual: what the building would have drawn without control, for the savings report.

In the field the baseline is a time-of-week-and-temperature model (TOWT, after Mathieu et al., "Quantifying
changes in building electricity use", LBNL 2011, the model behind many M&V tools):

    kW = a[day type, hour] + sum_k b[hour, k] * T_k(outdoor temperature)

- day type: 'open' or 'closed' (weekends, holidays; the configured opening days), hour: 0-23 local time;
- T_k: the outdoor temperature cut at KNOTS_C into segments (piecewise linear, continuous), with a set of
  slopes for each hour of the day. (TOWT proper has one set for occupied hours and one for the rest; on the
  simulated library, whose morning start-up depends on the weather, that left an hourly CV(RMSE) of 25-47%
  on unseen weeks, and slopes per hour bring it to 6-11%.)

It is fitted by least squares on hourly means of the building's demand and outdoor temperature from a period
without control (mode off or shadow, at least two weeks spanning the weather to come), and stored as JSON.
`quality` carries the fit's CV(RMSE) and NMBE on its own data; ASHRAE Guideline 14 asks for at most 30% and
within +-10% on hourly data. A prediction for an hour bin never seen in fitting is None, and one more than
EXTRAPOLATION_K outside the fitted temperature range is flagged: the savings report counts both. The fit
also keeps what the savings' uncertainty needs (uncertainty.py): its parameter count and its residuals'
lag-1 autocorrelation; a file written before it kept them gives savings without an uncertainty.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Protocol

import numpy as np

from edge_agent.control.calendar import OpeningHours
from edge_agent.control.savings.uncertainty import Residuals
from edge_agent.errors import ModelError

KNOTS_C = (5.0, 12.0, 18.0, 24.0, 30.0)
SEGMENTS = len(KNOTS_C) + 1
EXTRAPOLATION_K = 3.0
DAY_TYPES = ("open", "closed")
MODEL_NAME = "towt"


class Baseline(Protocol):
    @property
    def name(self) -> str: ...

    def demand_kw(self, local: datetime, outdoor_c: float | None) -> tuple[float | None, bool]:
        """Expected demand without control (None: unknown), and whether it is an extrapolation."""
        ...


def temperature_segments(outdoor_c: float) -> list[float]:
    """The outdoor temperature split at KNOTS_C into pieces that sum to it: below the first knot, one per
    span between knots (0 up to its width), and above the last."""
    pieces = [min(outdoor_c, KNOTS_C[0])]
    pieces += [min(max(outdoor_c - low, 0.0), high - low) for low, high in pairwise(KNOTS_C)]
    pieces.append(max(outdoor_c - KNOTS_C[-1], 0.0))
    return pieces


@dataclass(frozen=True, slots=True)
class HourSample:
    local: datetime  # start of the hour, building time
    outdoor_c: float  # hourly mean
    demand_kw: float  # hourly mean


@dataclass(frozen=True, slots=True)
class FitQuality:
    samples: int  # hours
    cv_rmse: float  # RMSE / mean, on the fitting data
    nmbe: float  # mean bias / mean
    first: str  # ISO dates of the fitting period
    last: str
    outdoor_range_c: tuple[float, float]
    parameters: int | None = None  # p: the design's rank; None in files from before it was kept
    autocorrelation: float | None = None  # lag-1, of consecutive hours' residuals

    def residuals(self) -> Residuals | None:
        """The fit's error as Guideline 14 counts it (CV(RMSE) over n - p), for the savings' uncertainty."""
        n, p = self.samples, self.parameters
        if p is None or self.autocorrelation is None or n <= p:
            return None
        return Residuals(n, p, self.cv_rmse * (n / (n - p)) ** 0.5, self.autocorrelation)


@dataclass(frozen=True, slots=True)
class TowtBaseline:
    intercepts: dict[str, list[float | None]]  # day type -> 24 hourly intercepts (None: never seen)
    slopes: list[list[float]]  # per hour of the day: SEGMENTS slopes, kW per K
    hours: OpeningHours
    quality: FitQuality
    name: str = MODEL_NAME

    def demand_kw(self, local: datetime, outdoor_c: float | None) -> tuple[float | None, bool]:
        intercept = self.intercepts[_day_type(self.hours, local)][local.hour]
        if intercept is None or outdoor_c is None:
            return None, False
        slopes = self.slopes[local.hour]
        value = intercept + sum(b * t for b, t in zip(slopes, temperature_segments(outdoor_c), strict=True))
        low, high = self.quality.outdoor_range_c
        return max(0.0, value), not low - EXTRAPOLATION_K <= outdoor_c <= high + EXTRAPOLATION_K

    def to_json(self) -> str:
        return json.dumps(
            {
                "model": MODEL_NAME,
                "knots_c": list(KNOTS_C),
                "intercepts": self.intercepts,
                "slopes": self.slopes,
                "quality": asdict(self.quality),
            },
            indent=2,
        )


def _day_type(hours: OpeningHours, local: datetime) -> str:
    opening = local.replace(hour=hours.open_hour, minute=0, second=0, microsecond=0)
    return "open" if hours.is_open(opening) else "closed"


def _row(hours: OpeningHours, sample: HourSample) -> list[float]:
    row = [0.0] * (48 + 24 * SEGMENTS)
    row[DAY_TYPES.index(_day_type(hours, sample.local)) * 24 + sample.local.hour] = 1.0
    offset = 48 + sample.local.hour * SEGMENTS
    row[offset : offset + SEGMENTS] = temperature_segments(sample.outdoor_c)
    return row


def fit_towt(samples: Iterable[HourSample], hours: OpeningHours) -> TowtBaseline:
    """Least squares over hourly samples from a period without control."""
    data = list(samples)
    if len(data) < 7 * 24:
        raise ValueError(f"{len(data)} hours of data: a baseline needs at least a week, better two or more")
    x = np.array([_row(hours, s) for s in data])
    y = np.array([s.demand_kw for s in data])
    coefficients, _, rank, _ = np.linalg.lstsq(x, y, rcond=None)
    seen = x[:, :48].sum(axis=0) > 0
    fitted = x @ coefficients
    mean = float(y.mean())
    intercepts = {
        day: [float(coefficients[i * 24 + h]) if seen[i * 24 + h] else None for h in range(24)]
        for i, day in enumerate(DAY_TYPES)
    }
    slopes = [
        [float(b) for b in coefficients[48 + h * SEGMENTS : 48 + (h + 1) * SEGMENTS]] for h in range(24)
    ]
    outdoor = [s.outdoor_c for s in data]
    quality = FitQuality(
        samples=len(data),
        cv_rmse=float(np.sqrt(np.mean((y - fitted) ** 2)) / mean),
        nmbe=float((y - fitted).sum() / (len(y) * mean)),
        first=min(s.local for s in data).date().isoformat(),
        last=max(s.local for s in data).date().isoformat(),
        outdoor_range_c=(min(outdoor), max(outdoor)),
        parameters=int(rank),
        autocorrelation=_lag1_autocorrelation([s.local for s in data], y - fitted),
    )
    return TowtBaseline(intercepts, slopes, hours, quality)


def _lag1_autocorrelation(hours: list[datetime], residuals: np.ndarray) -> float:
    """sum(e_t e_t+1) / sum(e_t^2) over the pairs of samples an hour apart (a gap breaks the chain)."""
    order = sorted(range(len(hours)), key=hours.__getitem__)
    pairs = [(a, b) for a, b in pairwise(order) if hours[b] - hours[a] == timedelta(hours=1)]
    energy = float(np.sum(residuals**2))
    if not pairs or energy == 0:
        return 0.0
    lagged = sum(float(residuals[a] * residuals[b]) for a, b in pairs)
    return lagged / energy * len(hours) / len(pairs)


def load_towt(path: Path, hours: OpeningHours) -> TowtBaseline:
    """A baseline file written by TowtBaseline.to_json; ModelError naming what is wrong."""
    try:
        data = json.loads(path.read_text())
        if data.get("model") != MODEL_NAME or tuple(data["knots_c"]) != KNOTS_C:
            raise ModelError(str(path), f"not a {MODEL_NAME} baseline with knots {list(KNOTS_C)}")
        intercepts = {day: [_number_or_none(v) for v in data["intercepts"][day]] for day in DAY_TYPES}
        slopes = [[float(v) for v in hour] for hour in data["slopes"]]
        if any(len(v) != 24 for v in intercepts.values()) or [len(v) for v in slopes] != [SEGMENTS] * 24:
            raise ModelError(str(path), f"needs 24 intercepts per day type and {SEGMENTS} slopes per hour")
        q = data["quality"]
        quality = FitQuality(
            int(q["samples"]), float(q["cv_rmse"]), float(q["nmbe"]), str(q["first"]), str(q["last"]),
            (float(q["outdoor_range_c"][0]), float(q["outdoor_range_c"][1])),
            None if q.get("parameters") is None else int(q["parameters"]),
            None if q.get("autocorrelation") is None else float(q["autocorrelation"]),
        )  # fmt: skip
    except OSError as error:
        raise ModelError(str(path), f"cannot read: {error.strerror}") from None
    except (ValueError, KeyError, TypeError, IndexError) as error:
        raise ModelError(str(path), f"not a valid baseline file: {type(error).__name__} {error}") from None
    return TowtBaseline(intercepts, slopes, hours, quality)


def _number_or_none(value: object) -> float | None:
    if value is None:
        return None
    if not isinstance(value, int | float):
        raise TypeError(f"intercept {value!r} is not a number")
    return float(value)
