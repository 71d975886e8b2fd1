"""The configuration's `[control]` section turned into what control runs with, in one place: its Limits,
opening hours, points, pace, model and start settings. Control itself never reads the file format."""

from __future__ import annotations

from collections.abc import Mapping

from edge_agent.config import AgentConfig, ControlConfig
from edge_agent.control.calendar import KoreanHolidays, OpeningHours
from edge_agent.control.limits import Limits
from edge_agent.control.model_trust import ModelTrust
from edge_agent.control.settings import ControlMode, ControlSettings
from edge_agent.control.setup import ControlPoints, ControlSetup, ZonePoints


def opening_hours(config: ControlConfig) -> OpeningHours:
    return OpeningHours(
        config.open_hour,
        config.close_hour,
        frozenset(config.open_days),
        KoreanHolidays(config.holidays),
        config.open_on_holidays,
    )


def control_limits(config: ControlConfig) -> Limits:
    return Limits(
        hours=opening_hours(config),
        cooling_base_c=config.cooling_setpoint_c,
        heating_base_c=config.heating_setpoint_c,
        comfort_low_c=config.comfort_band_c[0],
        comfort_high_c=config.comfort_band_c[1],
        max_offset_k=config.max_offset_k,
        co2_limit_ppm=config.co2_limit_ppm,
        illuminance_floor_lux=config.illuminance_floor_lux,
        energy_offset_k=config.energy_offset_k,
        comfort_margin_k=config.comfort_margin_k,
        comfort_hysteresis_k=config.comfort_hysteresis_k,
        release_k_per_min=config.release_k_per_min,
        plant_floor_pct=config.plant_limit_floor_pct,
        plant_rated_kw=config.plant_rated_kw,
        precool_floor_c=config.precool_floor_c,
        precool_lead_h=config.precool_lead_h,
    )


def model_trust(config: ControlConfig) -> ModelTrust:
    return ModelTrust(tuple(config.model_keys), config.allow_unsigned_model)


def control_settings(config: ControlConfig) -> ControlSettings:
    return ControlSettings(ControlMode(config.mode), config.demand_target_kw, config.demand_target_limits_kw)


def control_setup(
    config: ControlConfig,
    units: Mapping[str, str] | None = None,
    write_ranges: Mapping[str, tuple[float, float]] | None = None,
) -> ControlSetup:
    """`units` and `write_ranges` by 'device/point', from the devices' points (see `agent_control_setup`)."""
    units = units or {}
    points = ControlPoints(
        demand=config.demand,
        demand_in_watts=config.demand is not None and units.get(config.demand) == "W",
        outdoor_temperature=config.outdoor_temperature,
        zones=tuple(
            ZonePoints(
                z.name, z.temperature, z.cooling_setpoint, z.heating_setpoint, z.co2, z.illuminance, z.dimming
            )
            for z in config.zones
        ),
        plant_limit=config.plant_limit,
        fan_limit=config.fan_limit,
        ventilation_limit=config.ventilation_limit,
        supply_air_setpoint=config.supply_air_setpoint,
        write_ranges=dict(write_ranges or {}),
        plant_power=config.plant_power,
        plant_power_in_watts=config.plant_power is not None and units.get(config.plant_power) == "W",
    )
    return ControlSetup(
        points,
        control_limits(config),
        step_s=config.step_s,
        write_priority=config.write_priority,
        lease_s=config.lease_s,
        model=config.model,
        baseline=config.baseline,
        model_trust=model_trust(config),
        building_model=config.building_model,
        planner=config.planner,
        model_shadow_s=config.model_shadow_s,
    )


def agent_control_setup(config: AgentConfig) -> ControlSetup:
    points = {f"{d.name}/{p.name}": p for d in config.devices for p in d.points}
    return control_setup(
        config.control,
        units={ref: p.unit for ref, p in points.items()},
        write_ranges={ref: p.write_range for ref, p in points.items() if p.write_range},
    )
