"""The rule-based demand limiter: the fallback whenever the model is missing, fails or is not trusted.

Setpoint offsets of ENERGY_OFFSET_K all day while open, raised to the shed level from the 15-minute
projection against the target (Guideline 36 setpoint levels), the plant and fan limited with it (the plant's
levels are shares of where it runs, not of its rating: the guards turn them into what is written); outdoor air
by CO2 from a lower floor while closed; daylit lighting dimmed while open; and the occupied setpoints started
early before opening, earlier the colder it is. Stateless: rate limits, holds, staggered release and the
warm-up's plant, fan and supply air are the guards' job.
"""

from __future__ import annotations

from edge_agent.control.decision import Decision
from edge_agent.control.features import Features
from edge_agent.control.limits import ENERGY_OFFSET_K, MAX_OFFSET_K

SETPOINT_LEVELS_K = (0.0, 0.56, 1.1, MAX_OFFSET_K)  # Guideline 36 demand-limit levels 0-3
PLANT_LEVELS_PCT = (100.0, 90.0, 80.0, 70.0)  # of the plant's highest draw over the last day
FAN_LEVELS_PCT = (100.0, 95.0, 90.0, 80.0)
LEVEL_RATIOS = (0.92, 0.97, 1.02)  # projection / target at which levels 1, 2, 3 begin
CO2_RELAXED_PPM, CO2_FULL_PPM = 600.0, 900.0  # outdoor air from its minimum to design between these
COOLING_ABOVE_C, HEATING_BELOW_C = 16.0, 12.0  # outdoor temperatures of the cooling and heating seasons
PRECONDITION_H, PRECONDITION_H_PER_K, PRECONDITION_MAX_H = 1.5, 0.15, 4.0  # lead before opening


def shed_level(features: Features) -> int:
    if features.demand_target <= 0:
        return 0
    ratio = features.interval_projection / features.demand_target
    return sum(ratio >= threshold for threshold in LEVEL_RATIOS)


class RuleBasedPolicy:
    name = "rules"

    def __init__(
        self,
        ventilation_min_pct: float = 30.0,
        ventilation_closed_pct: float = 10.0,
        lighting_floor_pct: float = 20.0,
        energy_offset_k: float = ENERGY_OFFSET_K,
    ) -> None:
        self.ventilation_min_pct = ventilation_min_pct
        self.ventilation_closed_pct = ventilation_closed_pct
        self.lighting_floor_pct = lighting_floor_pct
        self.energy_offset_k = energy_offset_k  # always while open: inside the comfort band, it saves

    def decide(self, features: Features) -> Decision:
        level = shed_level(features)
        cooling = features.outdoor_temperature >= COOLING_ABOVE_C
        heating = features.outdoor_temperature <= HEATING_BELOW_C
        # Start early, the earlier the colder it is: the guards limit the plant and fan meanwhile, so the
        # warm-up is spread instead of peaking.
        lead_h = PRECONDITION_H
        if heating:
            lead_h += PRECONDITION_H_PER_K * (HEATING_BELOW_C - features.outdoor_temperature)
        early = 0 < features.hours_to_open <= min(PRECONDITION_MAX_H, lead_h)
        span = (features.co2_max - CO2_RELAXED_PPM) / (CO2_FULL_PPM - CO2_RELAXED_PPM)
        floor = self.ventilation_min_pct if features.open else self.ventilation_closed_pct
        ventilation = floor + (100 - floor) * min(1.0, max(0.0, span))
        return Decision(
            cooling_offset=max(SETPOINT_LEVELS_K[level], self.energy_offset_k) if cooling else 0.0,
            heating_offset=max(SETPOINT_LEVELS_K[level], self.energy_offset_k) if heating else 0.0,
            plant_limit=PLANT_LEVELS_PCT[level],
            fan_limit=FAN_LEVELS_PCT[level],
            ventilation_limit=ventilation,
            lighting_floor=self.lighting_floor_pct if features.open else 100.0,
            precondition=1.0 if early else 0.0,
        )
