"""A VRF (EHP multi-split) building: an indoor unit per zone on one outdoor unit, and an energy-recovery
ventilator for outdoor air. No central air handler: no supply-air or fan-speed knob; the outdoor unit takes
a demand limit (the plant limit), which caps the capacity all indoor units share.

Each indoor unit delivers its zone's cooling (heating) loop times its capacity, scaled down together when the
outdoor unit cannot serve them all; its fan runs from 30% to 100% of its flow with the loop. The ventilator
brings the zones' outdoor air at 60% sensible recovery. Outdoor-unit COP follows the stock heat-pump curves
with a 10 C evaporating (40 C condensing) side, and an inverter down to 15% part load.
"""

from __future__ import annotations

from datetime import datetime

from edge_sim.physics.climate import WeatherSample
from edge_sim.physics.plant import PlantSection
from edge_sim.physics.zone import RHO_CP_AIR
from edge_sim.site.building import (
    DESIGN_OUTDOOR_C,
    DESIGN_WINTER_C,
    DIVERSITY,
    PLANT_MARGIN,
    SIZING_MARGIN,
    _design_sensible_w,
)
from edge_sim.site.specs import BuildingSpec
from edge_sim.zoo.buildings import ZooBuilding

INDOOR_DT_K = 10.0  # indoor-unit air leaves about 10 K colder than the room at full cooling
INDOOR_FAN_PA = 120.0
ERV_FAN_PA = 400.0  # both ventilator fans and the recovery core
FAN_EFFICIENCY = 0.5
ERV_RECOVERY = 0.6
MIN_FAN_SHARE = 0.3


class VrfBuilding(ZooBuilding):
    def __init__(self, spec: BuildingSpec, start_temp_c: float, other_w: float = 0.0) -> None:
        super().__init__(spec, start_temp_c, other_w)
        self.unit_w = [SIZING_MARGIN * _design_sensible_w(z.spec) for z in self.zones]
        self.unit_flow = [w / (RHO_CP_AIR * INDOOR_DT_K) for w in self.unit_w]
        ventilation = sum(z.spec.ventilation_m3_s for z in self.zones)
        oa_cooling = (1 - ERV_RECOVERY) * ventilation * RHO_CP_AIR * (DESIGN_OUTDOOR_C - 26.0)
        oa_heating = (1 - ERV_RECOVERY) * ventilation * RHO_CP_AIR * (20.0 - DESIGN_WINTER_C)
        outdoor_unit = PLANT_MARGIN * (DIVERSITY * sum(self.unit_w) + oa_cooling)
        self.cooling = PlantSection("cooling", outdoor_unit, supply_temp_c=10.0, min_plr=0.15, min_on_s=300.0)
        self.heating = PlantSection(
            "heating", max(outdoor_unit, oa_heating), supply_temp_c=40.0, min_plr=0.15, min_on_s=300.0
        )
        self.fan_w = 0.0

    def _air_handler(self, local: datetime, dt_s: float, weather: WeatherSample) -> None:
        ahu = self.ahu
        commands = [z.command for z in self.zones]
        occupied = any(z.sequence.occupied(local, z.thermal.t_air) for z in self.zones)
        cooling = [c.cooling_loop * w for c, w in zip(commands, self.unit_w, strict=True)]
        heating = [min(1.0, c.heating_loop / 0.5) * w for c, w in zip(commands, self.unit_w, strict=True)]
        delivered_c, delivered_h = self._plant(sum(cooling), sum(heating), weather, dt_s)
        share_c = delivered_c / sum(cooling) if sum(cooling) > 0 else 0.0
        share_h = delivered_h / sum(heating) if sum(heating) > 0 else 0.0
        vent_share = (
            1.0
            if ahu.ventilation_limit_pct is None
            else max(0.0, min(100.0, ahu.ventilation_limit_pct)) / 100
        )
        t_out = weather.temperature_c
        indoor_total = ventilation_total = 0.0
        for i, (zone, command) in enumerate(zip(self.zones, commands, strict=True)):
            t_in = zone.thermal.t_air
            loop = max(command.cooling_loop, min(1.0, command.heating_loop / 0.5))
            on = command.wants_air or loop > 0
            flow = self.unit_flow[i] * (MIN_FAN_SHARE + (1 - MIN_FAN_SHARE) * loop) if on else 0.0
            net_cooling_w = share_c * cooling[i] - share_h * heating[i]
            discharge = t_in - net_cooling_w / (RHO_CP_AIR * flow) if flow > 0 else t_in
            vent = zone.spec.ventilation_m3_s * vent_share if occupied else 0.0
            vent_temp = t_out + ERV_RECOVERY * (t_in - t_out)
            zone.flow_m3_s = flow + vent
            zone.discharge_temp_c = (
                (flow * discharge + vent * vent_temp) / zone.flow_m3_s if zone.flow_m3_s else t_in
            )
            indoor_total += flow
            ventilation_total += vent
        ahu.running = indoor_total > 0
        ahu.flow_m3_s = indoor_total + ventilation_total
        ahu.oa_fraction = ventilation_total / ahu.flow_m3_s if ahu.flow_m3_s > 0 else 0.0
        ahu.fan_speed_pct = 100 * indoor_total / sum(self.unit_flow)
        self.fan_w = (indoor_total * INDOOR_FAN_PA + ventilation_total * ERV_FAN_PA) / FAN_EFFICIENCY

    def _meter(self, dt_s: float) -> None:
        super()._meter(dt_s)
        stock_fans = self.power.fans  # the stock air handler's fan law, replaced by the units' fans
        self.power.fans = self.fan_w
        self.energy_kwh["hvac"] += (self.fan_w - stock_fans) * dt_s / 3600 / 1000

    def design_hvac_w(self) -> float:
        cooling = self.cooling.capacity_w / PLANT_MARGIN / self.cooling.cop_full_load(DESIGN_OUTDOOR_C)
        ventilation = sum(z.spec.ventilation_m3_s for z in self.zones)
        return cooling + (sum(self.unit_flow) * INDOOR_FAN_PA + ventilation * ERV_FAN_PA) / FAN_EFFICIENCY
