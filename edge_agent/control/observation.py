"""What the control loop sees at one step: the building's time, weather, demand and zones.

The agent builds it from LatestValues (stale or bad values become None); the in-process study builds it
from the simulated site. Everything downstream (features, policies, guards) only sees this.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class ZoneObservation:
    name: str
    temperature_c: float | None
    cooling_setpoint_c: float | None
    heating_setpoint_c: float | None
    co2_ppm: float | None = None
    illuminance_lux: float | None = None
    dimming_pct: float | None = None


@dataclass(frozen=True, slots=True)
class Observation:
    at: datetime  # building time, timezone-aware
    outdoor_c: float | None
    demand_kw: float | None  # the building's main meter, now
    zones: tuple[ZoneObservation, ...]
    plant_kw: float | None = None  # the plant's electric power, when metered (optional)

    def missing(self) -> list[str]:
        """The inputs the policies cannot do without that are absent, stale or bad."""
        names = []
        if self.outdoor_c is None:
            names.append("outdoor temperature")
        if self.demand_kw is None:
            names.append("building demand")
        names += [f"{z.name} temperature" for z in self.zones if z.temperature_c is None]
        return names
