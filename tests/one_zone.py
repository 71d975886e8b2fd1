"""The smallest control site the control-loop tests share: a main meter, an outdoor temperature, a plant
limit and one zone `z` with a cooling setpoint."""

from __future__ import annotations

from typing import Any

from edge_agent.config.control import ControlConfig

ONE_ZONE: dict[str, Any] = {
    "demand": "meter/total_power",
    "outdoor_temperature": "ahu/outdoor_air_temperature",
    "plant_limit": "plant/demand_limit",
    "zones": [
        {"name": "z", "temperature": "vav/zone_temperature", "cooling_setpoint": "vav/cooling_setpoint"}
    ],
}
VALUES = {  # point -> (value, unit): a hot afternoon, the building over a 100 kW target
    "meter/total_power": (150.0, "kW"),
    "ahu/outdoor_air_temperature": (31.0, "degC"),
    "vav/zone_temperature": (26.0, "degC"),
    "vav/cooling_setpoint": (26.0, "degC"),
    "plant/demand_limit": (100.0, "%"),
}
ALWAYS_OPEN: dict[str, Any] = {"open_days": list(range(7)), "close_hour": 22}  # open hours on any test day


def one_zone_control(**fields: Any) -> ControlConfig:
    """[control] for the one-zone site, `fields` added or replacing its own."""
    return ControlConfig.model_validate({**ONE_ZONE, **fields})
