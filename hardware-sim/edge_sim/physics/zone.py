"""A thermal zone as a 3R2C network (shared/DOMAIN.md): an air node Ti and a mass node Tm.

    Ci dTi/dt = H_win (To - Ti) + H_ms (Tm - Ti) + G_sup (T_sup - Ti) + Q_conv - Q_cool
    Cm dTm/dt = H_em  (To - Tm) + H_ms (Ti - Tm) + Q_rad + Q_solar

G_sup = m_sup cp is the supply air's conductance. Parameters follow ISO 13790's rules of thumb for medium
construction, derived from floor area, height and envelope areas. Integration is backward Euler (stable
at any step; steps of at most MAX_SUBSTEP_S keep it accurate against the ~10-minute air time constant).

CO2 is a well-mixed balance: V dC/dt = generation + Q_sup (C_sup - C) + Q_inf (C_out - C), solved exactly
over a step with the flows held.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

RHO_AIR = 1.2  # kg/m3
CP_AIR = 1005.0  # J/(kg K)
RHO_CP_AIR = RHO_AIR * CP_AIR
FURNISHING_FACTOR = 5.0  # air node capacity x this, for furniture and books
CM_PER_M2 = 165e3  # J/(m2 K), ISO 13790 medium construction
MASS_AREA_PER_M2 = 2.5  # m2 of internal mass surface per m2 of floor
H_MS_PER_M2_MASS = 9.1  # W/(m2 K)
MAX_SUBSTEP_S = 60.0
CO2_PER_PERSON_L_S = 0.0048  # L/s of CO2 exhaled by a seated adult


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
    def infiltration_m3_s(self) -> float:
        return self.volume_m3 * self.infiltration_ach / 3600

    @property
    def h_win(self) -> float:
        """Air node to outdoors: windows plus infiltration (1200 J/(m3 K) x V x ACH / 3600)."""
        return self.u_window * self.window_area_m2 + 1200.0 * self.infiltration_m3_s

    @property
    def h_em(self) -> float:
        return self.u_opaque * self.opaque_area_m2


@dataclass(frozen=True, slots=True)
class ZoneLoads:
    """Heat flows into the zone, W; cooling is heat removed from the air node directly."""

    convective: float = 0.0
    radiant: float = 0.0
    solar: float = 0.0
    cooling: float = 0.0
    supply_m3_s: float = 0.0  # supply air volume flow
    supply_temp_c: float = 20.0


class ThermalZone:
    def __init__(self, params: ZoneParameters, t_air: float, t_mass: float, co2_ppm: float = 420.0) -> None:
        self.params = params
        self.t_air = t_air
        self.t_mass = t_mass
        self.co2_ppm = co2_ppm

    def advance(self, dt_s: float, t_out: float, loads: ZoneLoads) -> None:
        """Integrate the two nodes over dt_s seconds with the outdoor temperature and loads held."""
        p = self.params
        g_sup = RHO_CP_AIR * loads.supply_m3_s
        remaining = dt_s
        while remaining > 1e-9:
            h = min(MAX_SUBSTEP_S, remaining)
            a11 = p.c_air / h + p.h_win + p.h_ms + g_sup
            a22 = p.c_mass / h + p.h_em + p.h_ms
            b1 = (
                p.c_air / h * self.t_air
                + p.h_win * t_out
                + g_sup * loads.supply_temp_c
                + loads.convective
                - loads.cooling
            )
            b2 = p.c_mass / h * self.t_mass + p.h_em * t_out + loads.radiant + loads.solar
            det = a11 * a22 - p.h_ms * p.h_ms
            self.t_air = (b1 * a22 + p.h_ms * b2) / det
            self.t_mass = (a11 * b2 + p.h_ms * b1) / det
            remaining -= h

    def advance_co2(
        self, dt_s: float, people: float, supply_m3_s: float, supply_co2_ppm: float, outdoor_co2_ppm: float
    ) -> None:
        p = self.params
        flow = supply_m3_s + p.infiltration_m3_s
        generation = people * CO2_PER_PERSON_L_S / 1000 * 1e6  # ppm x m3/s
        if flow <= 0:
            self.co2_ppm += generation * dt_s / p.volume_m3
            return
        inflow = (supply_m3_s * supply_co2_ppm + p.infiltration_m3_s * outdoor_co2_ppm) / flow
        equilibrium = inflow + generation / flow
        self.co2_ppm = equilibrium + (self.co2_ppm - equilibrium) * math.exp(-flow * dt_s / p.volume_m3)
