"""An air-handling unit: outdoor-air mixing, coils, and a supply fan whose power follows the fan law.

Fan power = flow x total pressure / efficiency, with total pressure = the duct's design loss scaled by the
square of the flow (affinity laws) + the static-pressure setpoint the duct is held at. So the cube law
holds for the duct part and static-pressure reset saves what it should.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge_sim.physics.psychro import H_FG, humidity_ratio
from edge_sim.physics.zone import RHO_AIR, RHO_CP_AIR

FAN_EFFICIENCY = 0.6  # fan, motor and drive
DUCT_LOSS_DESIGN_PA = 600.0  # coils, filters and ductwork at design flow
ECONOMIZER_HIGH_LIMIT_C = 21.0  # fixed dry-bulb high limit (ASHRAE 90.1, climate zone 4A)


@dataclass(frozen=True, slots=True)
class MixedAir:
    oa_fraction: float
    temp_c: float


def mix(
    t_out: float, t_return: float, min_oa_fraction: float, sat_setpoint: float, cooling: bool
) -> MixedAir:
    """Outdoor-air damper: the ventilation minimum, opened further as an economizer when that cools."""
    fraction = min(1.0, max(0.0, min_oa_fraction))
    if cooling and t_out < min(t_return, ECONOMIZER_HIGH_LIMIT_C) and t_return - t_out > 0.1:
        wanted = (t_return - sat_setpoint) / (t_return - t_out)
        fraction = min(1.0, max(fraction, wanted))
    return MixedAir(fraction, fraction * t_out + (1 - fraction) * t_return)


def coil_loads(
    flow_m3_s: float, mixed: MixedAir, sat_setpoint: float, t_out: float, rh_out: float
) -> tuple[float, float]:
    """(cooling W including condensation, heating W) to bring the mixed air to the setpoint."""
    sensible = RHO_CP_AIR * flow_m3_s * (mixed.temp_c - sat_setpoint)
    if sensible <= 0:
        return 0.0, -sensible
    # Condensation: the outdoor share of the air brings its moisture; the coil leaves air saturated at
    # the supply temperature. Indoor moisture from people is left out (it is small next to Korean summers').
    w_out = humidity_ratio(t_out, rh_out)
    w_coil = humidity_ratio(sat_setpoint, 100.0)
    latent = RHO_AIR * flow_m3_s * mixed.oa_fraction * max(0.0, w_out - w_coil) * H_FG
    return sensible + latent, 0.0


@dataclass(frozen=True, slots=True)
class Fan:
    design_flow_m3_s: float

    def power_w(self, flow_m3_s: float, static_setpoint_pa: float) -> float:
        if flow_m3_s <= 0:
            return 0.0
        ratio = flow_m3_s / self.design_flow_m3_s
        pressure = DUCT_LOSS_DESIGN_PA * ratio * ratio + static_setpoint_pa
        return flow_m3_s * pressure / FAN_EFFICIENCY
