"""A site of one zoo building under its own city's weather: the stock weather generator (Seoul's normals)
shifted by the city's difference to Seoul in the scenario's season."""

from __future__ import annotations

from datetime import datetime

from edge_sim.physics.climate import Scenario, Weather
from edge_sim.physics.sun import KST
from edge_sim.site.site import Site
from edge_sim.zoo.distributions import SEOUL, City
from edge_sim.zoo.generate import ZooSpec, make_building

SUMMER_MONTHS = (6, 7, 8, 9)
WINTER_MONTHS = (11, 12, 1, 2, 3)


def city_offset_k(city: City, scenario: Scenario) -> float:
    month = scenario.start.astimezone(KST).month
    summer, winter = city.august_c - SEOUL.august_c, city.january_c - SEOUL.january_c
    if month in SUMMER_MONTHS:
        return summer
    if month in WINTER_MONTHS:
        return winter
    return (summer + winter) / 2


class ZooSite(Site):
    def __init__(self, start: datetime, zoo: ZooSpec, scenario: Scenario, weather_seed: int) -> None:
        if start.tzinfo is None:
            raise ValueError("the site's start time needs a UTC offset")
        self.now = start
        self.weather = Weather(weather_seed, scenario.offset_k + city_offset_k(zoo.city, scenario))
        self.outdoor = self.weather.sample(start)
        initial = 24.0 if self.outdoor.temperature_c > 18 else 19.0
        self.buildings = {zoo.name: make_building(zoo, initial)}
