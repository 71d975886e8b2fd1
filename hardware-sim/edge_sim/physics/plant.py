"""An air-source heat-pump plant section (cooling or heating): capacity, part-load efficiency, cycling.

Cooling COP at full load: 6.81 - 0.121 dT + 0.00063 dT^2 with dT = outdoor - chilled-water supply
(shared/DOMAIN.md). Heating COP: 0.4 x Carnot between outdoor air and the 45 C hot-water supply, with a
10% defrost penalty between -5 and 5 C. Part load: COP(PLR) = COP_full x PLR / EIR(PLR) with DOE-2's
reciprocating-chiller curve EIR = 0.0637 + 0.5849 PLR + 0.3528 PLR^2 (better than full load around half
load, worse near the minimum). Below the minimum part-load ratio the machine cycles against the thermal
mass of its water loop (6 L per kW of capacity, allowed to drift 3 K): it runs at its minimum until the
loop is charged, stops, and starts again when the loop is spent, held by a minimum on time (15 min,
Guideline 36's stage hold) and a minimum off time (5 min).
"""

from __future__ import annotations

from dataclasses import dataclass

MIN_COP = 1.2
LOOP_LITRES_PER_KW = 6.0
LOOP_DRIFT_K = 3.0
WATER_J_PER_L_K = 4186.0


def cooling_cop_full_load(t_out: float, t_supply: float) -> float:
    dt = t_out - t_supply
    return max(MIN_COP, 6.81 - 0.121 * dt + 0.00063 * dt * dt)


def heating_cop_full_load(t_out: float, t_supply: float = 45.0) -> float:
    lift = max(10.0, t_supply - t_out)
    cop = 0.4 * (t_supply + 273.15) / lift
    if -5.0 < t_out < 5.0:
        cop *= 0.9  # frost and defrost cycles
    return max(MIN_COP, cop)


def part_load_eir(plr: float) -> float:
    return 0.0637 + 0.5849 * plr + 0.3528 * plr * plr


@dataclass
class PlantSection:
    """One service of the plant: 'cooling' or 'heating', rated in thermal watts."""

    service: str
    capacity_w: float
    supply_temp_c: float
    min_plr: float = 0.25
    min_on_s: float = 900.0
    min_off_s: float = 300.0
    running: bool = False
    timer_s: float = 1e9  # time in the current on/off state
    delivered_w: float = 0.0
    electric_w: float = 0.0
    starts: int = 0
    stored_j: float = 0.0  # energy banked in the water loop

    def cop_full_load(self, t_out: float) -> float:
        if self.service == "cooling":
            return cooling_cop_full_load(t_out, self.supply_temp_c)
        return heating_cop_full_load(t_out, self.supply_temp_c)

    @property
    def loop_capacity_j(self) -> float:
        return self.capacity_w / 1000 * LOOP_LITRES_PER_KW * WATER_J_PER_L_K * LOOP_DRIFT_K

    def step(self, demand_w: float, t_out: float, dt_s: float, enabled: bool, limit_fraction: float) -> float:
        """Serve what it can of `demand_w` for dt_s; returns the thermal watts delivered to the coils."""
        self.timer_s += dt_s
        capacity = self.loop_capacity_j
        needs_machine = enabled and demand_w > 0 and self.stored_j < demand_w * dt_s
        if self.running and self.timer_s >= self.min_on_s and (not enabled or self.stored_j >= capacity):
            self.running, self.timer_s = False, 0.0
        elif not self.running and needs_machine and self.timer_s >= self.min_off_s:
            self.running, self.timer_s = True, 0.0
            self.starts += 1
        output_w = 0.0
        if self.running:
            # The demand limit caps electric input; at a given COP that caps thermal output the same way.
            ceiling = self.capacity_w * max(self.min_plr, min(1.0, limit_fraction))
            output_w = min(max(demand_w, self.min_plr * self.capacity_w), ceiling)
        available_j = self.stored_j + output_w * dt_s
        served_j = min(max(0.0, demand_w) * dt_s, available_j)
        self.stored_j = min(capacity, available_j - served_j)
        self.delivered_w = served_j / dt_s if dt_s > 0 else 0.0
        self.electric_w = 0.0
        if output_w > 0:
            plr = output_w / self.capacity_w
            cop = self.cop_full_load(t_out) * plr / part_load_eir(plr)
            self.electric_w = output_w / max(MIN_COP, cop)
        return self.delivered_w
