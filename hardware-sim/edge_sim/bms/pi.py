"""A PI loop with output clamping and anti-windup (integration stops at the limits)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class PiLoop:
    kp: float  # output per unit of error
    ti_s: float  # integral time
    out_min: float = 0.0
    out_max: float = 1.0
    integral: float = 0.0

    def update(self, error: float, dt_s: float) -> float:
        if dt_s > 0:
            proposed = self.integral + self.kp * error * dt_s / self.ti_s
            if self.out_min <= self.kp * error + proposed <= self.out_max:
                self.integral = proposed
        return min(self.out_max, max(self.out_min, self.kp * error + self.integral))

    def reset(self) -> None:
        self.integral = 0.0
