"""The site: the two buildings under one sky, stepped in-process on simulated time (no network)."""

from __future__ import annotations

from datetime import datetime, timedelta

from edge_sim.physics.climate import Weather, WeatherSample
from edge_sim.site.building import Building
from edge_sim.site.specs import BUILDINGS, BuildingSpec

CONTROL_STEP_S = 60.0


class Site:
    def __init__(
        self,
        start: datetime,
        *,
        seed: int = 0,
        offset_k: float = 0.0,
        specs: tuple[BuildingSpec, ...] = BUILDINGS,
    ) -> None:
        if start.tzinfo is None:
            raise ValueError("the site's start time needs a UTC offset")
        self.now = start
        self.weather = Weather(seed, offset_k)
        self.outdoor: WeatherSample = self.weather.sample(start)
        initial = 24.0 if self.outdoor.temperature_c > 18 else 19.0
        self.buildings = {spec.name: Building(spec, initial) for spec in specs}

    def building(self, name: str) -> Building:
        return self.buildings[name]

    def advance(self, seconds: float) -> None:
        """Move the site forward, in control steps of at most CONTROL_STEP_S."""
        remaining = seconds
        while remaining > 1e-9:
            dt = min(CONTROL_STEP_S, remaining)
            self.now += timedelta(seconds=dt)
            self.outdoor = self.weather.sample(self.now)
            for building in self.buildings.values():
                building.step(self.now, dt, self.outdoor)
            remaining -= dt

    def advance_to(self, when: datetime) -> None:
        self.advance(max(0.0, (when - self.now).total_seconds()))
