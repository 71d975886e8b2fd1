"""Commissioning data from the simulator, stepped in-process: a building run on its own sequences (control
off) for some days, read every 5 minutes as the agent's pollers would store it, and a site configuration
whose [control] section names those points."""

from __future__ import annotations

import functools
from dataclasses import replace
from datetime import datetime, timedelta

from edge_agent.readings import Quality, Reading
from edge_sim.physics.climate import SCENARIOS
from edge_sim.site.site import Site
from edge_sim.site.specs import INFO_CENTRE_BUILDING, LIBRARY_BUILDING, BuildingSpec

READ_EVERY_STEPS = 5  # one reading of every point each 5 simulated minutes
WARM_UP = timedelta(days=1)

# Another building than the two shipped: three zones of the library's plan with a smaller floor (less
# mass), lower ceilings (less air), more glass, poorer walls and leakier envelope: other R and C.
ANNEX_BUILDING = BuildingSpec(
    "annex",
    "a held-out variant: lighter, leakier, glassier than the library",
    tuple(
        replace(
            zone,
            name=f"annex-{zone.name}",
            params=replace(
                zone.params,
                floor_area_m2=zone.params.floor_area_m2 * 0.6,
                height_m=zone.params.height_m * 0.8,
                window_area_m2=zone.params.window_area_m2 * 1.5,
                u_opaque=0.9,
                infiltration_ach=0.6,
            ),
        )
        for zone in LIBRARY_BUILDING.zones[:3]
    ),
)
BUILDINGS = {b.name: b for b in (LIBRARY_BUILDING, ANNEX_BUILDING, INFO_CENTRE_BUILDING)}


@functools.cache
def commissioning(building: str, days: int, scenario: str = "summer", seed: int = 1) -> tuple[Reading, ...]:
    """`days` days ending where the scenario week starts, after a day's warm-up: zone temperatures and
    setpoints (`<zone>-vav`), outdoor temperature (`ahu`), main meter in kW (`main-meter`, an iEM3255)
    and HVAC power in W (`hvac-meter`, a B23)."""
    spec = BUILDINGS[building]
    begin = SCENARIOS[scenario].start - timedelta(days=days)
    site = Site(begin - WARM_UP, seed=seed, offset_k=SCENARIOS[scenario].offset_k, specs=(spec,))
    b = site.building(spec.name)
    readings: list[Reading] = []
    step = 0
    while site.now < begin + timedelta(days=days):
        site.advance(60.0)
        step += 1
        if site.now <= begin or step % READ_EVERY_STEPS:
            continue
        now: datetime = site.now
        for zone in b.zones:
            device = f"{zone.name}-vav"
            readings += [
                Reading(device, "zone_temperature", zone.thermal.t_air, "degC", Quality.GOOD, now),
                Reading(device, "cooling_setpoint", zone.cooling_sp, "degC", Quality.GOOD, now),
                Reading(device, "heating_setpoint", zone.heating_sp, "degC", Quality.GOOD, now),
            ]
        readings += [
            Reading("ahu", "outdoor_air_temperature", site.outdoor.temperature_c, "degC", Quality.GOOD, now),
            Reading("main-meter", "total_power", b.power.total / 1000, "kW", Quality.GOOD, now),
            Reading("hvac-meter", "total_power", b.power.hvac, "W", Quality.GOOD, now),
        ]
    return tuple(readings)


def rows(readings: tuple[Reading, ...]) -> list[tuple[str, datetime, float]]:
    return [(f"{r.device}/{r.point}", r.ts, float(r.value or 0.0)) for r in readings]


def site_toml(building: str, buffer: str, *, zones: list[str] | None = None, extra: str = "") -> str:
    """A site configuration for the building's points; `zones`: only these (default: all); `extra`: more
    [control] keys."""
    spec = BUILDINGS[building]
    names = zones if zones is not None else [z.name for z in spec.zones]
    zone_lines = ",\n".join(
        f'  {{ name = "{n}", temperature = "{n}-vav/zone_temperature",'
        f' cooling_setpoint = "{n}-vav/cooling_setpoint", heating_setpoint = "{n}-vav/heating_setpoint" }}'
        for n in names
    )
    devices = "".join(
        f'\n[[devices]]\nname = "{z.name}-vav"\nprotocol = "bacnet-ip"\nhost = "127.0.0.1:47808"\n'
        f'instance = {1300 + i}\nprofile = "edge-sim-vav"\n'
        for i, z in enumerate(spec.zones)
    )
    return f"""
[buffer]
path = "{buffer}"

[bacnet]
local_address = "127.0.0.1:0"

[control]
demand = "main-meter/total_power"
outdoor_temperature = "ahu/outdoor_air_temperature"
open_days = [0, 1, 2, 3, 4, 5, 6]
close_hour = 22
{extra}
zones = [
{zone_lines}
]

[[devices]]
name = "main-meter"
protocol = "modbus-tcp"
host = "127.0.0.1"
profile = "schneider-iem3255"

[[devices]]
name = "hvac-meter"
protocol = "modbus-tcp"
host = "127.0.0.1"
unit_id = 2
profile = "abb-b23"

[[devices]]
name = "ahu"
protocol = "bacnet-ip"
host = "127.0.0.1:47808"
instance = 1200
profile = "edge-sim-ahu"
{devices}"""
