"""A thermal zone as a 3R2C network (shared/DOMAIN.md): an air node Ti and a mass node Tm.

    Ci dTi/dt = H_win (To - Ti) + H_ms (Tm - Ti) + Q_conv - Q_cool
    Cm dTm/dt = H_em  (To - Tm) + H_ms (Ti - Tm) + Q_rad + Q_solar

Parameters follow ISO 13790's rules of thumb for medium construction, derived from floor area and height.
"""

from __future__ import annotations

from dataclasses import dataclass

RHO_CP_AIR = 1.2 * 1005.0  # J/(m3 K)
FURNISHING_FACTOR = 5.0  # air node capacity x this, for furniture and books
CM_PER_M2 = 165e3  # J/(m2 K), ISO 13790 medium construction
MASS_AREA_PER_M2 = 2.5  # m2 of internal mass surface per m2 of floor
H_MS_PER_M2_MASS = 9.1  # W/(m2 K)
MAX_SUBSTEP_S = 10.0  # explicit Euler step; the air node's time constant is ~10 min


@dataclass(frozen=True, slots=True)
class ZoneParameters:
    floor_area_m2: float
    height_m: float = 3.0
    window_area_m2: float = 0.0
    u_window: float = 2.0  # W/(m2 K), double glazing
    opaque_area_m2: float = 0.0  # external walls and roof
    u_opaque: float = 0.5  # W/(m2 K)
    infiltration_ach: float = 0.3  # air changes per hour

    @property
    def volume_m3(self) -> float:
        return self.floor_area_m2 * self.height_m

    @property
    def c_air(self) -> float:
        return RHO_CP_AIR * self.volume_m3 * FURNISHING_FACTOR

    @property
    def c_mass(self) -> float:
        return CM_PER_M2 * self.floor_area_m2

    @property
    def h_ms(self) -> float:
        return H_MS_PER_M2_MASS * MASS_AREA_PER_M2 * self.floor_area_m2

    @property
    def h_win(self) -> float:
        """Air node to outdoors: windows plus infiltration (1200 J/(m3 K) x V x ACH / 3600)."""
        return self.u_window * self.window_area_m2 + 1200.0 * self.volume_m3 * self.infiltration_ach / 3600

    @property
    def h_em(self) -> float:
        return self.u_opaque * self.opaque_area_m2


@dataclass(frozen=True, slots=True)
class ZoneLoads:
    """Heat flows into the zone, W; cooling is heat removed from the air node."""

    convective: float = 0.0
    radiant: float = 0.0
    solar: float = 0.0
    cooling: float = 0.0


class ThermalZone:
    def __init__(self, params: ZoneParameters, t_air: float, t_mass: float) -> None:
        self.params = params
        self.t_air = t_air
        self.t_mass = t_mass

    def advance(self, dt_s: float, t_out: float, loads: ZoneLoads) -> None:
        """Integrate the two nodes over dt_s seconds with the outdoor temperature and loads held."""
        p = self.params
        remaining = dt_s
        while remaining > 0:
            h = min(MAX_SUBSTEP_S, remaining)
            q_air = (
                p.h_win * (t_out - self.t_air)
                + p.h_ms * (self.t_mass - self.t_air)
                + loads.convective
                - loads.cooling
            )
            q_mass = p.h_em * (t_out - self.t_mass) + p.h_ms * (self.t_air - self.t_mass)
            q_mass += loads.radiant + loads.solar
            self.t_air += h * q_air / p.c_air
            self.t_mass += h * q_mass / p.c_mass
            remaining -= h
