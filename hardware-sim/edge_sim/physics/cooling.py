"""An air-source cooling unit: thermal output set by a PI loop, electric power = load / COP.

COP(dT) = 6.81 - 0.121 dT + 0.00063 dT^2 with dT = outdoor - supply air temperature (shared/DOMAIN.md).
"""

from __future__ import annotations

from dataclasses import dataclass

MIN_COP = 1.5


def cooling_cop(t_out: float, t_supply: float) -> float:
    dt = t_out - t_supply
    return max(MIN_COP, 6.81 - 0.121 * dt + 0.00063 * dt * dt)


@dataclass
class PiLoop:
    """A PI controller with output clamping and anti-windup (integration stops at the limits)."""

    kp: float  # output per unit of error
    ti_s: float  # integral time
    out_min: float = 0.0
    out_max: float = 1.0
    integral: float = 0.0

    def update(self, error: float, dt_s: float) -> float:
        if dt_s <= 0:
            return min(self.out_max, max(self.out_min, self.kp * error + self.integral))
        proposed = self.integral + self.kp * error * dt_s / self.ti_s
        unclamped = self.kp * error + proposed
        if self.out_min <= unclamped <= self.out_max:
            self.integral = proposed
        return min(self.out_max, max(self.out_min, self.kp * error + self.integral))


class CoolingUnit:
    def __init__(
        self,
        capacity_w: float,
        t_supply: float = 13.0,
        fan_w: float = 0.0,
        initial_load_fraction: float = 0.0,
    ) -> None:
        self.capacity_w = capacity_w
        self.t_supply = t_supply
        self.fan_w = fan_w
        self.loop = PiLoop(kp=0.5, ti_s=900.0)  # 50% capacity per K, 15 min integral time
        self.loop.integral = initial_load_fraction  # a warm start: the plant was already running
        self.load_fraction = initial_load_fraction

    def control(self, t_zone: float, setpoint: float, dt_s: float) -> None:
        self.load_fraction = self.loop.update(t_zone - setpoint, dt_s)

    @property
    def cooling_w(self) -> float:
        return self.load_fraction * self.capacity_w

    def electric_w(self, t_out: float) -> float:
        fan = self.fan_w if self.load_fraction > 0 else 0.0
        return self.cooling_w / cooling_cop(t_out, self.t_supply) + fan
