"""Zoo buildings on the stock physics: the VAV building with a heat-pump or a chiller-and-boiler plant, each
with an unconditioned base load (lifts, pumps, servers with their own cooling, outdoor lighting) on the
plug meter, so the base-load share can be set without heating the zones.
"""

from __future__ import annotations

from datetime import datetime

from edge_sim.physics.climate import WeatherSample
from edge_sim.physics.sun import KST
from edge_sim.site.building import DESIGN_OUTDOOR_C, Building, _design_cooling_w
from edge_sim.site.specs import BuildingSpec
from edge_sim.zoo.distributions import OTHER_CLOSED_SHARE
from edge_sim.zoo.plants import BoilerSection, ChillerSection

DESIGN_STATIC_PA = 250.0


class ZooBuilding(Building):
    """A stock VAV building with a heat-pump plant, plus `other_w` of unconditioned base load while open."""

    def __init__(self, spec: BuildingSpec, start_temp_c: float, other_w: float = 0.0) -> None:
        super().__init__(spec, start_temp_c)
        self.other_w = other_w
        self._open = False

    def step(self, now: datetime, dt_s: float, weather: WeatherSample) -> None:
        local = now.astimezone(KST)
        self._open = any(z.spec.schedule.is_open(local) for z in self.zones)
        super().step(now, dt_s, weather)

    def other_now_w(self) -> float:
        return self.other_w * (1.0 if self._open else OTHER_CLOSED_SHARE)

    def _meter(self, dt_s: float) -> None:
        super()._meter(dt_s)
        other = self.other_now_w()
        self.power.plugs += other
        self.energy_kwh["plugs"] += other * dt_s / 3600 / 1000

    def design_hvac_w(self) -> float:
        """Electric HVAC demand on the design summer hour: the coincident coil load at the plant's full-load
        COP, and the fan at design flow."""
        cooling = _design_cooling_w(self.spec) / self.cooling.cop_full_load(DESIGN_OUTDOOR_C)
        flow = self.ahu.fan.design_flow_m3_s
        return cooling + self.ahu.fan.power_w(flow, DESIGN_STATIC_PA)

    def design_base_w(self) -> float:
        """Non-HVAC demand on the design hour: lights and plugs at full, and the other base load."""
        zones = sum(
            (z.spec.lighting_w_m2 + z.spec.plug_w_m2) * z.spec.params.floor_area_m2 for z in self.zones
        )
        return zones + self.other_w


class ChillerBuilding(ZooBuilding):
    """VAV on a water-cooled chiller for cooling and a gas boiler for heating (and reheat)."""

    def __init__(self, spec: BuildingSpec, start_temp_c: float, other_w: float = 0.0) -> None:
        super().__init__(spec, start_temp_c, other_w)
        stock_cooling, stock_heating = self.cooling, self.heating
        self.cooling = ChillerSection("cooling", stock_cooling.capacity_w, supply_temp_c=7.0, min_plr=0.2)
        self.heating = BoilerSection("heating", stock_heating.capacity_w, supply_temp_c=60.0, min_plr=0.3)
