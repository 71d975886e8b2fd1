"""A seeded weather generator from Seoul climate normals (KMA 1991-2020, rounded).

Daily mean temperature = monthly normal + a scenario offset + an AR(1) day-to-day anomaly; the diurnal cycle
is a cosine with its minimum near sunrise (05:30) and maximum at 14:30; cloudiness per day scales the
clear-sky irradiance; relative humidity swings against the temperature. Outdoor CO2 is 420 ppm.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from edge_sim.physics.sun import KST, clear_sky_ghi, solar_position

# month: (daily mean C, mean daily range K, mean relative humidity %, mean clearness 0-1)
SEOUL_NORMALS: dict[int, tuple[float, float, float, float]] = {
    1: (-2.0, 7.5, 56, 0.70),
    2: (0.7, 8.5, 55, 0.68),
    3: (6.1, 9.5, 56, 0.62),
    4: (12.6, 10.0, 57, 0.62),
    5: (18.2, 9.5, 63, 0.60),
    6: (22.4, 8.0, 70, 0.50),
    7: (25.3, 6.5, 79, 0.40),
    8: (26.1, 7.5, 75, 0.50),
    9: (21.6, 8.5, 70, 0.58),
    10: (15.0, 9.5, 64, 0.66),
    11: (7.5, 8.5, 61, 0.62),
    12: (0.2, 7.5, 58, 0.68),
}
OUTDOOR_CO2_PPM = 420.0
ANOMALY_SD_K = 2.0  # day-to-day standard deviation of the daily mean
ANOMALY_PERSISTENCE = 0.7  # AR(1) coefficient: a hot day tends to follow a hot day


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    start: datetime  # local midnight, Monday
    days: int
    offset_k: float  # a peak week is hotter (or colder) than the normal
    description: str


SCENARIOS = {
    "summer": Scenario(
        "summer", datetime(2026, 8, 3, tzinfo=KST), 7, +1.5, "summer peak week: a heat wave in early August"
    ),
    "winter": Scenario(
        "winter", datetime(2026, 1, 12, tzinfo=KST), 7, -2.5, "winter peak week: a cold snap in mid January"
    ),
    "shoulder": Scenario(
        "shoulder", datetime(2026, 4, 20, tzinfo=KST), 7, 0.0, "shoulder week: late April, cool mornings"
    ),
}


@dataclass(frozen=True, slots=True)
class WeatherSample:
    temperature_c: float
    relative_humidity: float  # %
    ghi_w_m2: float  # global horizontal irradiance
    sun_altitude_deg: float
    sun_azimuth_deg: float
    co2_ppm: float = OUTDOOR_CO2_PPM


@dataclass(frozen=True, slots=True)
class _Day:
    mean_c: float
    range_k: float
    humidity: float
    clearness: float


class Weather:
    """Deterministic for a given seed and offset: the same call gives the same sample."""

    def __init__(self, seed: int = 0, offset_k: float = 0.0) -> None:
        self.seed = seed
        self.offset_k = offset_k
        self._days: dict[date, _Day] = {}
        self._anchor: date | None = None

    def _day(self, day: date) -> _Day:
        cached = self._days.get(day)
        if cached is not None:
            return cached
        if self._anchor is None:
            self._anchor = day - timedelta(days=1)
        # Walk the AR(1) chain from the anchor so any day is reproducible whatever order it is asked in.
        anomaly, current = 0.0, self._anchor
        rng = random.Random(f"{self.seed}:{self._anchor.isoformat()}")
        while current < day:
            current += timedelta(days=1)
            anomaly = ANOMALY_PERSISTENCE * anomaly + rng.gauss(0, ANOMALY_SD_K * math.sqrt(1 - 0.49))
            clear_draw, range_draw = rng.random(), rng.gauss(0, 1)
            if current in self._days:
                continue
            mean, daily_range, humidity, clearness = _interpolated_normals(current)
            sky = min(1.0, max(0.15, clearness + 0.35 * (clear_draw - 0.5) * 2))
            self._days[current] = _Day(
                mean + self.offset_k + anomaly,
                max(3.0, daily_range * (0.6 + 0.5 * sky) + range_draw),
                min(95.0, humidity + 15 * (0.5 - sky)),
                sky,
            )
        if day < self._anchor:
            raise ValueError(f"weather asked for {day}, before the first day it generated ({self._anchor})")
        return self._days[day]

    def sample(self, when: datetime) -> WeatherSample:
        local = when.astimezone(KST)
        day = self._day(local.date())
        hour = local.hour + local.minute / 60 + local.second / 3600
        # cosine with its trough at 05:30 and crest at 14:30 (asymmetric: 9 h rise, 15 h fall)
        if 5.5 <= hour < 14.5:
            phase = math.pi * (hour - 5.5) / 9.0
            shape = -math.cos(phase)
        else:
            since_peak = (hour - 14.5) % 24
            shape = math.cos(math.pi * since_peak / 15.0)
        temperature = day.mean_c + 0.5 * day.range_k * shape
        humidity = min(100.0, max(15.0, day.humidity - 1.6 * (temperature - day.mean_c)))
        altitude, azimuth = solar_position(local)
        ghi = clear_sky_ghi(altitude) * day.clearness
        return WeatherSample(temperature, humidity, ghi, altitude, azimuth)


def _interpolated_normals(day: date) -> tuple[float, float, float, float]:
    """Monthly normals interpolated between mid-months, so there are no steps at month boundaries."""
    mid = date(day.year, day.month, 15)
    neighbour_month = day.month + (1 if day >= mid else -1)
    year = day.year + (neighbour_month - 1) // 12
    neighbour_month = (neighbour_month - 1) % 12 + 1
    neighbour_mid = date(year, neighbour_month, 15)
    span = abs((neighbour_mid - mid).days)
    weight = abs((day - mid).days) / span
    a, b = SEOUL_NORMALS[day.month], SEOUL_NORMALS[neighbour_month]
    return (
        a[0] + (b[0] - a[0]) * weight,
        a[1] + (b[1] - a[1]) * weight,
        a[2] + (b[2] - a[2]) * weight,
        a[3] + (b[3] - a[3]) * weight,
    )
