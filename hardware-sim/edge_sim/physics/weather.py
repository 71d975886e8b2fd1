"""Outdoor conditions. For now a clear summer day in Seoul: a diurnal cosine and a half-sine sun.

August normals (shared/DOMAIN.md): daily mean about 26.5 C, daily max about 31 C near 15:00.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class SummerDay:
    mean_c: float = 26.5
    amplitude_c: float = 4.5
    peak_hour: float = 15.0
    sunrise_h: float = 5.5
    sunset_h: float = 19.5
    peak_irradiance_w_m2: float = 800.0

    def temperature(self, local: datetime) -> float:
        hour = local.hour + local.minute / 60 + local.second / 3600
        return self.mean_c + self.amplitude_c * math.cos(2 * math.pi * (hour - self.peak_hour) / 24)

    def irradiance(self, local: datetime) -> float:
        """Global irradiance on a window, W/m2."""
        hour = local.hour + local.minute / 60 + local.second / 3600
        if not self.sunrise_h < hour < self.sunset_h:
            return 0.0
        phase = (hour - self.sunrise_h) / (self.sunset_h - self.sunrise_h)
        return self.peak_irradiance_w_m2 * math.sin(math.pi * phase)
