"""A VAV zone's sequence (Guideline 36, simplified): cooling and heating PI loops on the active setpoints.

Cooling loop 0-100% drives airflow from the minimum to the cooling maximum. Heating loop 0-50% raises the
discharge temperature from the supply air temperature to at most 11 K above the heating setpoint (reheat),
50-100% raises airflow to the heating maximum. Occupied mode starts before opening by an optimal-start
lead of 30 minutes per kelvin the zone is away from its occupied band, between 1 and 3 hours; out of hours
the zone floats between setback setpoints and asks for the air handler only when it leaves them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from edge_sim.bms.pi import PiLoop
from edge_sim.site.schedules import Schedule

OCCUPIED_COOLING_C = 26.0  # Korean public buildings: cooling at least 26 C
OCCUPIED_HEATING_C = 20.0  # and heating at most 20 C (Energy Use Rationalization Act, art. 31)
UNOCCUPIED_COOLING_C = 30.0
UNOCCUPIED_HEATING_C = 15.0
MIN_PRESTART_H = 1.0
MAX_PRESTART_H = 3.0
PRESTART_H_PER_K = 0.5
MIN_FLOW_SHARE = 0.3  # VAV minimum, share of the cooling maximum
HEATING_FLOW_SHARE = 1.0
MAX_REHEAT_ABOVE_SETPOINT_K = 11.0
LOOP_KP = 0.5  # 50% per kelvin
LOOP_TI_S = 900.0


@dataclass(frozen=True, slots=True)
class ZoneCommand:
    flow_m3_s: float
    discharge_temp_c: float  # before the plant's shortfalls
    cooling_loop: float
    heating_loop: float
    wants_air: bool  # occupied, or out of its setback band


class ZoneSequence:
    def __init__(self, schedule: Schedule, max_flow_m3_s: float) -> None:
        self.schedule = schedule
        self.max_flow_m3_s = max_flow_m3_s
        self.cooling = PiLoop(LOOP_KP, LOOP_TI_S)
        self.heating = PiLoop(LOOP_KP, LOOP_TI_S)

    def occupied(self, local: datetime, t_zone: float) -> bool:
        if self.schedule.is_open(local):
            return True
        away_k = max(0.0, OCCUPIED_HEATING_C - t_zone, t_zone - OCCUPIED_COOLING_C)
        lead_h = min(MAX_PRESTART_H, max(MIN_PRESTART_H, PRESTART_H_PER_K * away_k))
        return self.schedule.is_open(local + timedelta(hours=lead_h))

    def setpoints(self, local: datetime, t_zone: float) -> tuple[float, float]:
        """(cooling, heating) of the zone's own schedule."""
        if self.occupied(local, t_zone):
            return OCCUPIED_COOLING_C, OCCUPIED_HEATING_C
        return UNOCCUPIED_COOLING_C, UNOCCUPIED_HEATING_C

    def update(
        self,
        *,
        occupied: bool,
        t_zone: float,
        cooling_sp: float,
        heating_sp: float,
        sat_c: float,
        dt_s: float,
    ) -> ZoneCommand:
        heating_sp = min(heating_sp, cooling_sp - 0.56)  # Guideline 36: at least 0.56 K apart
        cool = self.cooling.update(t_zone - cooling_sp, dt_s)
        heat = self.heating.update(heating_sp - t_zone, dt_s)
        minimum = MIN_FLOW_SHARE * self.max_flow_m3_s if occupied else 0.0
        flow = minimum + cool * (self.max_flow_m3_s - minimum)
        discharge = sat_c
        if heat > 0:
            max_discharge = heating_sp + MAX_REHEAT_ABOVE_SETPOINT_K
            discharge = sat_c + min(1.0, heat / 0.5) * max(0.0, max_discharge - sat_c)
            heating_flow = max(minimum, HEATING_FLOW_SHARE * self.max_flow_m3_s * max(0.0, heat - 0.5) / 0.5)
            flow = max(flow, heating_flow, MIN_FLOW_SHARE * self.max_flow_m3_s)
        wants_air = occupied or cool > 0 or heat > 0
        if not wants_air:
            flow = 0.0
        return ZoneCommand(flow, discharge, cool, heat, wants_air)
