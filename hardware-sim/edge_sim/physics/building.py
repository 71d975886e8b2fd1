"""The walking skeleton's building: one reading-room zone, one cooling unit, lights and plugs, one meter.

The meter sees everything electric: cooling (compressor and fan), lighting and plug loads.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from edge_sim.physics.cooling import CoolingUnit
from edge_sim.physics.weather import SummerDay
from edge_sim.physics.zone import ThermalZone, ZoneLoads, ZoneParameters

OPEN_HOURS = (9, 22)  # the central library
PEOPLE_W_M2 = 8.0  # sensible gains from occupants
LIGHTING_W_M2 = 7.0
PLUG_W_M2 = 5.0
STANDBY_W_M2 = 1.5  # lighting and plug loads out of hours
SOLAR_GAIN_FACTOR = 0.4  # share of irradiance on the glazing that enters as heat (g-value x shading)


@dataclass(frozen=True, slots=True)
class MeterState:
    power_w: float
    import_energy_kwh: float


class SingleZoneBuilding:
    def __init__(self, initial_energy_kwh: float = 125_000.0) -> None:
        self.zone = ThermalZone(
            ZoneParameters(floor_area_m2=1000.0, window_area_m2=120.0, opaque_area_m2=1200.0),
            t_air=26.5,
            t_mass=26.2,
        )
        self.cooling = CoolingUnit(capacity_w=120_000.0, fan_w=4_000.0, initial_load_fraction=0.4)
        self.weather = SummerDay()
        self.cooling_setpoint = 26.0
        self.t_out = self.weather.mean_c
        self._energy_kwh = initial_energy_kwh
        self._power_w = 0.0

    def _occupied(self, local: datetime) -> bool:
        return OPEN_HOURS[0] <= local.hour < OPEN_HOURS[1]

    def advance(self, now: datetime, dt_s: float) -> None:
        """Move the building forward by dt_s seconds ending at `now` (a timezone-aware local time)."""
        area = self.zone.params.floor_area_m2
        occupied = self._occupied(now)
        self.t_out = self.weather.temperature(now)
        people = PEOPLE_W_M2 * area if occupied else 0.0
        lights_plugs = (LIGHTING_W_M2 + PLUG_W_M2 if occupied else STANDBY_W_M2) * area
        solar = SOLAR_GAIN_FACTOR * self.zone.params.window_area_m2 * self.weather.irradiance(now)
        self.cooling.control(self.zone.t_air, self.cooling_setpoint, dt_s)
        internal = people + lights_plugs
        loads = ZoneLoads(
            convective=0.5 * internal, radiant=0.5 * internal, solar=solar, cooling=self.cooling.cooling_w
        )
        self.zone.advance(dt_s, self.t_out, loads)
        self._power_w = self.cooling.electric_w(self.t_out) + lights_plugs
        self._energy_kwh += self._power_w * dt_s / 3.6e6

    @property
    def meter(self) -> MeterState:
        return MeterState(self._power_w, self._energy_kwh)
