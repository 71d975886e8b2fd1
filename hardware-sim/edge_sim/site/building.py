"""One building: zones on a VAV air handler, an air-source heat-pump plant, lighting and plug loads, and
the electricity they draw, metered as HVAC, lighting and plugs (the main meter is their sum).

`Building.step` advances one control step: lighting and occupancy, the zones' own sequences (or the
agent's overrides), the air handler, the plant, then the physics of every zone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from edge_sim.bms.ahu import SAT_MAX_C, AhuSequence
from edge_sim.bms.zone import ZoneCommand, ZoneSequence
from edge_sim.physics.airside import Fan, MixedAir, coil_loads, mix
from edge_sim.physics.climate import WeatherSample
from edge_sim.physics.lighting import lighting_power_w, work_plane_lux
from edge_sim.physics.plant import PlantSection
from edge_sim.physics.sun import KST, facade_factor
from edge_sim.physics.zone import RHO_CP_AIR, ThermalZone, ZoneLoads
from edge_sim.site.specs import BuildingSpec, ZoneSpec

DESIGN_OUTDOOR_C = 33.0  # Seoul summer design dry bulb (about 1% exceedance)
DESIGN_OUTDOOR_RH = 60.0
DESIGN_WINTER_C = -12.0  # Seoul winter design dry bulb (about 99%)
DESIGN_IRRADIANCE_W_M2 = 600.0  # on the main facade
SIZING_DT_K = 12.0  # zone supply air at 14 C against 26 C
SIZING_MARGIN = 1.15
DIVERSITY = 0.85  # zone peaks do not coincide
PLANT_MARGIN = 1.2
COMFORT_OCCUPIED = (19.0, 27.0)  # KPI comfort band: Korean setpoints 20/26, 1 K either side
COMFORT_UNOCCUPIED = (15.0, 30.0)


@dataclass
class ZoneOverrides:
    """What the network has commanded at some priority; None: the controller's own sequence."""

    cooling_sp: float | None = None
    heating_sp: float | None = None
    dimming_pct: float | None = None


@dataclass
class Zone:
    spec: ZoneSpec
    thermal: ThermalZone
    sequence: ZoneSequence
    overrides: ZoneOverrides = field(default_factory=ZoneOverrides)
    command: ZoneCommand = field(default_factory=lambda: ZoneCommand(0.0, 20.0, 0.0, 0.0, False))
    cooling_sp: float = 26.0
    heating_sp: float = 20.0
    dimming_pct: float = 0.0
    baseline_dimming_pct: float = 0.0  # what the lighting schedule asks for
    illuminance_lux: float = 0.0
    people: float = 0.0
    flow_m3_s: float = 0.0
    discharge_temp_c: float = 20.0
    lighting_w: float = 0.0
    plug_w: float = 0.0

    @property
    def name(self) -> str:
        return self.spec.name

    def comfort_band(self, local: datetime) -> tuple[float, float]:
        return COMFORT_OCCUPIED if self.spec.schedule.is_open(local) else COMFORT_UNOCCUPIED


@dataclass
class Power:
    """Electric power by what the sub-meters see, W."""

    cooling: float = 0.0
    heating: float = 0.0
    fans: float = 0.0
    lighting: float = 0.0
    plugs: float = 0.0

    @property
    def hvac(self) -> float:
        return self.cooling + self.heating + self.fans

    @property
    def total(self) -> float:
        return self.hvac + self.lighting + self.plugs


@dataclass
class AirHandler:
    fan: Fan
    sequence: AhuSequence = field(default_factory=AhuSequence)
    running: bool = False
    flow_m3_s: float = 0.0
    oa_fraction: float = 0.0
    mixed_temp_c: float = 20.0
    sat_setpoint_c: float = SAT_MAX_C
    sat_c: float = SAT_MAX_C
    fan_speed_pct: float = 0.0
    fan_speed_cap_pct: float | None = None  # overrides from the network
    sat_override_c: float | None = None
    ventilation_limit_pct: float | None = None  # outdoor air as a share of design (demand-controlled)


def _design_sensible_w(spec: ZoneSpec) -> float:
    p = spec.params
    area = p.floor_area_m2
    internal = spec.design_people * spec.people_w + (spec.lighting_w_m2 + spec.plug_w_m2) * area
    solar = p.window_area_m2 * spec.shgc * DESIGN_IRRADIANCE_W_M2
    envelope = (p.h_win + p.h_em) * (DESIGN_OUTDOOR_C - 26.0)
    return internal + solar + envelope


def _design_cooling_w(spec: BuildingSpec) -> float:
    """Coincident peak coil load: the zones' sensible peaks with diversity, plus the outdoor air."""
    zones = DIVERSITY * sum(_design_sensible_w(z) for z in spec.zones)
    outdoor_air = sum(z.ventilation_m3_s for z in spec.zones)
    mixed = MixedAir(1.0, DESIGN_OUTDOOR_C)
    oa_cooling, _ = coil_loads(outdoor_air, mixed, 26.0, DESIGN_OUTDOOR_C, DESIGN_OUTDOOR_RH)
    return zones + oa_cooling


def _design_heating_w(spec: BuildingSpec) -> float:
    """Envelope and ventilation losses at the winter design temperature, unoccupied gains ignored."""
    dt = 20.0 - DESIGN_WINTER_C
    envelope = sum((z.params.h_win + z.params.h_em) * dt for z in spec.zones)
    outdoor_air = sum(z.ventilation_m3_s for z in spec.zones) * RHO_CP_AIR * dt
    return envelope + outdoor_air


class Building:
    def __init__(self, spec: BuildingSpec, start_temp_c: float) -> None:
        self.spec = spec
        self.zones: list[Zone] = []
        for zone_spec in spec.zones:
            max_flow = SIZING_MARGIN * _design_sensible_w(zone_spec) / (RHO_CP_AIR * SIZING_DT_K)
            self.zones.append(
                Zone(
                    zone_spec,
                    ThermalZone(zone_spec.params, start_temp_c, start_temp_c),
                    ZoneSequence(zone_spec.schedule, max_flow),
                )
            )
        design_flow = sum(z.sequence.max_flow_m3_s for z in self.zones)
        self.ahu = AirHandler(Fan(design_flow))
        design_coil = design_flow * RHO_CP_AIR * (DESIGN_OUTDOOR_C * 0.3 + 26.0 * 0.7 - 13.0) * 1.3
        self.cooling = PlantSection("cooling", PLANT_MARGIN * design_coil, supply_temp_c=7.0)
        self.heating = PlantSection(
            "heating", 0.8 * PLANT_MARGIN * design_coil, supply_temp_c=45.0, min_plr=0.3
        )
        self.demand_limit_pct: float | None = None  # plant demand limit commanded from the network
        self.power = Power()
        self.energy_kwh = {"hvac": 0.0, "lighting": 0.0, "plugs": 0.0}

    def zone(self, name: str) -> Zone:
        for zone in self.zones:
            if zone.name == name:
                return zone
        raise KeyError(name)

    @property
    def main_energy_kwh(self) -> float:
        return sum(self.energy_kwh.values())

    def step(self, now: datetime, dt_s: float, weather: WeatherSample) -> None:
        local = now.astimezone(KST)
        for zone in self.zones:
            self._zone_loads_and_lights(zone, local, weather)
            self._zone_control(zone, local, dt_s)
        self._air_handler(local, dt_s, weather)
        self._zones_physics(dt_s, weather)
        self._meter(dt_s)

    def _zone_loads_and_lights(self, zone: Zone, local: datetime, weather: WeatherSample) -> None:
        spec = zone.spec
        area = spec.params.floor_area_m2
        is_open = spec.schedule.is_open(local)
        zone.people = spec.design_people * spec.schedule.occupancy(local)
        zone.baseline_dimming_pct = 100.0 if is_open else 100.0 * self.spec.night_lighting_share
        override = zone.overrides.dimming_pct
        zone.dimming_pct = zone.baseline_dimming_pct if override is None else override
        zone.lighting_w = lighting_power_w(zone.dimming_pct, spec.lighting_w_m2, area)
        zone.illuminance_lux = work_plane_lux(
            zone.dimming_pct, spec.design_lux, weather.ghi_w_m2, spec.daylight_factor
        )
        plug_share = max(spec.plug_standby_share, spec.schedule.occupancy(local))
        zone.plug_w = spec.plug_w_m2 * area * plug_share

    def _zone_control(self, zone: Zone, local: datetime, dt_s: float) -> None:
        occupied = zone.sequence.occupied(local, zone.thermal.t_air)
        own_cooling, own_heating = zone.sequence.setpoints(local, zone.thermal.t_air)
        zone.cooling_sp = own_cooling if zone.overrides.cooling_sp is None else zone.overrides.cooling_sp
        zone.heating_sp = own_heating if zone.overrides.heating_sp is None else zone.overrides.heating_sp
        zone.command = zone.sequence.update(
            occupied=occupied,
            t_zone=zone.thermal.t_air,
            cooling_sp=zone.cooling_sp,
            heating_sp=zone.heating_sp,
            sat_c=self.ahu.sat_c,
            dt_s=dt_s,
        )

    def _air_handler(self, local: datetime, dt_s: float, weather: WeatherSample) -> None:
        ahu = self.ahu
        commands = [z.command for z in self.zones]
        ahu.running = any(c.wants_air for c in commands)
        flows = [c.flow_m3_s if ahu.running else 0.0 for c in commands]
        total = sum(flows)
        if ahu.fan_speed_cap_pct is not None and total > 0:
            cap = ahu.fan.design_flow_m3_s * max(0.0, ahu.fan_speed_cap_pct) / 100
            if total > cap:
                flows = [f * cap / total for f in flows]
                total = cap
        ahu.flow_m3_s = total
        ahu.fan_speed_pct = 100 * total / ahu.fan.design_flow_m3_s
        occupied = any(z.sequence.occupied(local, z.thermal.t_air) for z in self.zones)
        if total <= 0:
            self._plant(0.0, 0.0, weather, dt_s)
            for zone in self.zones:
                zone.flow_m3_s, zone.discharge_temp_c = 0.0, zone.thermal.t_air
            ahu.oa_fraction = 0.0
            return
        t_return = sum(f * z.thermal.t_air for f, z in zip(flows, self.zones, strict=True)) / total
        ventilation = sum(z.spec.ventilation_m3_s for z in self.zones) if occupied else 0.0
        if ahu.ventilation_limit_pct is not None:
            ventilation *= max(0.0, min(100.0, ahu.ventilation_limit_pct)) / 100
        own_sat = ahu.sequence.supply_air_setpoint(weather.temperature_c)
        ahu.sat_setpoint_c = own_sat if ahu.sat_override_c is None else ahu.sat_override_c
        cooling_needed = any(c.cooling_loop > 0 for c in commands)
        mixed = mix(weather.temperature_c, t_return, ventilation / total, ahu.sat_setpoint_c, cooling_needed)
        ahu.oa_fraction, ahu.mixed_temp_c = mixed.oa_fraction, mixed.temp_c
        coil_cooling, coil_heating = coil_loads(
            total, mixed, ahu.sat_setpoint_c, weather.temperature_c, weather.relative_humidity
        )
        reheat = sum(
            RHO_CP_AIR * f * max(0.0, c.discharge_temp_c - ahu.sat_setpoint_c)
            for f, c in zip(flows, commands, strict=True)
        )
        delivered_cooling, delivered_heating = self._plant(coil_cooling, coil_heating + reheat, weather, dt_s)
        # A plant that falls short leaves the supply air off its setpoint (and the zones warmer or colder).
        cooling_share = 1.0 if coil_cooling <= 0 else delivered_cooling / coil_cooling
        heating_demand = coil_heating + reheat
        heating_share = 1.0 if heating_demand <= 0 else delivered_heating / heating_demand
        ahu.sat_c = mixed.temp_c + (ahu.sat_setpoint_c - mixed.temp_c) * (
            cooling_share if coil_cooling > 0 else heating_share if coil_heating > 0 else 1.0
        )
        for zone, flow, command in zip(self.zones, flows, commands, strict=True):
            zone.flow_m3_s = flow
            zone.discharge_temp_c = ahu.sat_c + heating_share * max(0.0, command.discharge_temp_c - ahu.sat_c)
        cooling_requests = sum(1 for c in commands if c.cooling_loop > 0.95)
        pressure_requests = sum(
            1 for z, f in zip(self.zones, flows, strict=True) if f > 0.95 * z.sequence.max_flow_m3_s
        )
        ahu.sequence.update(dt_s, cooling_requests, pressure_requests)

    def _plant(
        self, cooling_w: float, heating_w: float, weather: WeatherSample, dt_s: float
    ) -> tuple[float, float]:
        limit = 1.0 if self.demand_limit_pct is None else self.demand_limit_pct / 100
        t_out = weather.temperature_c
        delivered_cooling = self.cooling.step(cooling_w, t_out, dt_s, enabled=True, limit_fraction=limit)
        delivered_heating = self.heating.step(heating_w, t_out, dt_s, enabled=True, limit_fraction=limit)
        return delivered_cooling, delivered_heating

    def _zones_physics(self, dt_s: float, weather: WeatherSample) -> None:
        ahu = self.ahu
        total = ahu.flow_m3_s
        return_co2 = (
            sum(z.flow_m3_s * z.thermal.co2_ppm for z in self.zones) / total if total > 0 else weather.co2_ppm
        )
        supply_co2 = ahu.oa_fraction * weather.co2_ppm + (1 - ahu.oa_fraction) * return_co2
        for zone in self.zones:
            spec = zone.spec
            people_w = zone.people * spec.people_w
            internal = people_w + zone.lighting_w + zone.plug_w
            solar = (
                spec.params.window_area_m2
                * spec.shgc
                * weather.ghi_w_m2
                * facade_factor(weather.sun_altitude_deg, weather.sun_azimuth_deg, spec.facade_azimuth_deg)
            )
            loads = ZoneLoads(
                convective=0.5 * internal,
                radiant=0.5 * internal,
                solar=solar,
                supply_m3_s=zone.flow_m3_s,
                supply_temp_c=zone.discharge_temp_c,
            )
            zone.thermal.advance(dt_s, weather.temperature_c, loads)
            zone.thermal.advance_co2(dt_s, zone.people, zone.flow_m3_s, supply_co2, weather.co2_ppm)

    def _meter(self, dt_s: float) -> None:
        power = self.power
        power.cooling = self.cooling.electric_w
        power.heating = self.heating.electric_w
        power.fans = self.ahu.fan.power_w(self.ahu.flow_m3_s, self.ahu.sequence.static_pa)
        power.lighting = sum(z.lighting_w for z in self.zones)
        power.plugs = sum(z.plug_w for z in self.zones)
        hours = dt_s / 3600
        self.energy_kwh["hvac"] += power.hvac * hours / 1000
        self.energy_kwh["lighting"] += power.lighting * hours / 1000
        self.energy_kwh["plugs"] += power.plugs * hours / 1000
