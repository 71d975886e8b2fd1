"""A winter morning before opening, through the agent's control loop: the zones start early with the plant
and fan limited, and the air handler's supply air is raised to the heating setpoint until the rooms are warm,
then given back to the air handler's own reset."""

from __future__ import annotations

from datetime import datetime

from edge_agent.acquisition.latest import LatestValues
from edge_agent.clock import ManualClock
from edge_agent.config.control import ControlConfig
from edge_agent.control.loop import ControlLoop
from edge_agent.readings import Quality, Reading, utc_now
from edge_agent.service.control_setup import control_settings, control_setup
from tests.test_control_fallback import Building

MONDAY_6AM = datetime.fromisoformat("2026-01-12T06:00:00+09:00")  # -6 C, three hours before opening
UNITS = {
    "meter/total_power": "kW",
    "ahu/outdoor_air_temperature": "degC",
    "vav/zone_temperature": "degC",
    "ahu/supply_air_setpoint": "degC",
    "plant/demand_limit": "%",
    "ahu/fan_speed_limit": "%",
    "vav/sp": "degC",
}


def feed(latest: LatestValues, zone_c: float) -> None:
    values = {
        "meter/total_power": 60.0,
        "ahu/outdoor_air_temperature": -6.0,
        "vav/zone_temperature": zone_c,
        "vav/sp": 15.0,  # the night setback
    }
    readings = []
    for ref, value in values.items():
        device, point = ref.split("/")
        readings.append(Reading(device, point, value, UNITS[ref], Quality.GOOD, utc_now()))
    latest.update(readings)


async def test_a_warm_up_raises_the_supply_air_until_the_rooms_are_warm() -> None:
    config = ControlConfig.model_validate(
        {
            "mode": "active",
            "demand_target_kw": 150.0,
            "demand": "meter/total_power",
            "outdoor_temperature": "ahu/outdoor_air_temperature",
            "plant_limit": "plant/demand_limit",
            "fan_limit": "ahu/fan_speed_limit",
            "supply_air_setpoint": "ahu/supply_air_setpoint",
            "zones": [{"name": "z", "temperature": "vav/zone_temperature", "heating_setpoint": "vav/sp"}],
        }
    )
    latest = LatestValues(dict.fromkeys(UNITS, 1.0))
    building = Building(latest)
    clock = ManualClock(MONDAY_6AM)
    write_ranges = {
        "ahu/supply_air_setpoint": (12.0, 24.0),
        "plant/demand_limit": (50.0, 100.0),
        "ahu/fan_speed_limit": (50.0, 100.0),
        "vav/sp": (15.0, 24.0),
    }
    loop = ControlLoop(
        "gw", control_setup(config, UNITS, write_ranges), control_settings(config), building, clock=clock
    )
    feed(latest, zone_c=16.5)
    await loop.step()
    assert dict(building.writes) == {
        "vav/sp": 20.0,  # occupied heating setpoint, three hours early
        "plant/demand_limit": 60.0,
        "ahu/fan_speed_limit": 70.0,
        "ahu/supply_air_setpoint": 20.0,
    }
    building.writes.clear()
    clock.advance(60.0)
    feed(latest, zone_c=20.2)  # warm: the air handler's own supply-air reset again
    await loop.step()
    assert ("ahu/supply_air_setpoint", None) in building.writes
    assert "vav/sp" in loop.actuator.held  # still early: the occupied setpoint stays


async def test_a_metered_plant_in_watts_is_limited_where_it_runs() -> None:
    """`plant_power` (W) and `plant_rated_kw`: a 200 kW plant drawing 40 kW is warmed up at 60% of its
    day's highest draw (24 kW, 12% of its rating) instead of 60% of its rating, which would not bind."""
    config = ControlConfig.model_validate(
        {
            "mode": "active",
            "demand_target_kw": 150.0,
            "demand": "meter/total_power",
            "outdoor_temperature": "ahu/outdoor_air_temperature",
            "plant_limit": "plant/demand_limit",
            "plant_power": "plant/plant_power",
            "plant_rated_kw": 200.0,
            "plant_limit_floor_pct": 10.0,
            "zones": [{"name": "z", "temperature": "vav/zone_temperature", "heating_setpoint": "vav/sp"}],
        }
    )
    units = {**UNITS, "plant/plant_power": "W"}
    latest = LatestValues(dict.fromkeys(units, 1.0))
    building = Building(latest)
    clock = ManualClock(MONDAY_6AM)
    write_ranges = {"plant/demand_limit": (10.0, 100.0), "vav/sp": (15.0, 24.0)}
    loop = ControlLoop(
        "gw", control_setup(config, units, write_ranges), control_settings(config), building, clock=clock
    )
    feed(latest, zone_c=16.5)
    latest.update([Reading("plant", "plant_power", 40_000.0, "W", Quality.GOOD, utc_now())])
    assert loop.observe(clock.now()).plant_kw == 40.0
    await loop.step()
    assert dict(building.writes)["plant/demand_limit"] == 12.0
