"""What bounds control, stated once: each knob's range, and the limits of one building.

A policy decides within KNOBS (the ONNX model's outputs are clipped to them); the guards then keep what is
written within a building's `Limits`: its occupied setpoints, comfort band and margins, rate limits, holds,
and opening hours. The configuration's `[control]` section is turned into Limits in one place
(service/control_setup.py); the simulator study and training use the defaults or their own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from edge_agent.control.calendar import OpeningHours

MAX_OFFSET_K = 2.2  # the furthest setpoints move: ASHRAE Guideline 36's demand-limit level 3
MAX_PRECOOL_K = 4.0  # the furthest cooling setpoints go below the occupied one (the planner's pre-cooling)
ENERGY_OFFSET_K = 0.7  # kept all day while open: the comfort edge (27 C less 0.3 K) above the 26 C setpoint
# (the policies' scale: the guards map it onto the site's `Limits.energy_offset_k`)


class Knob(NamedTuple):
    unit: str
    low: float
    high: float
    neutral: float  # the value that changes nothing in the building


KNOBS: dict[str, Knob] = {
    # Zone cooling setpoints raised; below 0 lowered (pre-cooling: the planner's, never the rules')
    "cooling_offset": Knob("K", -MAX_PRECOOL_K, MAX_OFFSET_K, 0.0),
    "heating_offset": Knob("K", 0.0, MAX_OFFSET_K, 0.0),  # zone heating setpoints lowered
    # The plant's demand limit, as a share of where the plant runs (its recent draw, known with its
    # rating configured; else of its rating): the guards turn it into the share of rated input written,
    # no lower than `Limits.plant_floor_pct` (guards.py, _PlantWatch).
    "plant_limit": Knob("%", 0.0, 100.0, 100.0),
    "fan_limit": Knob("%", 50.0, 100.0, 100.0),  # the air handler's fan speed cap
    "ventilation_limit": Knob("%", 10.0, 100.0, 100.0),  # outdoor air, share of design (CO2-guarded)
    "lighting_floor": Knob("%", 10.0, 100.0, 100.0),  # lowest dimming level in daylit zones
    "precondition": Knob("1 to start early", 0.0, 1.0, 0.0),  # occupied setpoints before opening
}


@dataclass(frozen=True, slots=True)
class Limits:
    """One building's bounds on what control writes (guards.py says what each does)."""

    hours: OpeningHours = field(default_factory=OpeningHours)
    cooling_base_c: float = 26.0  # occupied setpoints (Korean public buildings: cooling >= 26, heating <= 20)
    heating_base_c: float = 20.0
    comfort_low_c: float = 19.0
    comfort_high_c: float = 27.0
    comfort_margin_k: float = 0.3
    comfort_hysteresis_k: float = 0.3  # offsets raised past the edge again only this far inside
    release_k_per_min: float = 0.1  # setpoints given back at most this fast (no rebound peak)
    max_offset_k: float = MAX_OFFSET_K
    max_step_k: float = 0.56
    release_zones_per_step: int = 2
    hold_s: float = 900.0
    warm_up_plant_pct: float = 60.0  # plant (share of where it runs) and fan limits while zones start
    # early, before opening
    warm_up_fan_pct: float = 70.0
    precool_floor_c: float = 22.0  # the lowest cooling setpoint pre-cooling writes
    precool_lead_h: float = 4.0  # pre-cooling starts at most this long before opening
    energy_offset_k: float = ENERGY_OFFSET_K  # offsets up to this are an energy measure, not shedding
    plant_floor_pct: float = 20.0  # the lowest plant limit written, share of rated input
    plant_rated_kw: float | None = None  # the plant's rated electric input, what its draw is a share of
    # (None: limits are shares of the rating; unmetered, whether one binds is not known)
    plant_release_pct_per_min: float = 2.0  # a plant limit raised at most this fast (% of rated input)
    plant_binds_within_pct: float = 5.0  # a plant limit binds when the plant draws this close to it
    futility_after_s: float = 900.0
    futility_min_drop: float = 0.02
    cooldown_s: float = 3600.0
    co2_limit_ppm: float = 1000.0
    co2_margin_ppm: float = 100.0
    illuminance_floor_lux: float = 500.0
    dimming_step_pct: float = 10.0


DEFAULT_LIMITS = Limits()
