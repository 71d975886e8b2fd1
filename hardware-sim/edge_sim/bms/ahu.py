"""The air handler's sequence: supply-air temperature and duct static pressure by trim and respond.

Every 2 minutes (Guideline 36 5.16.2 and 5.16.1, simplified):
- Supply air temperature: T moves between 12.8 and 18 C: +0.1 K each period, -0.2 K per zone cooling
  request beyond the first (a request: a zone's cooling loop above 95%), at most -0.6 K a period. The
  setpoint is 18 C at outdoor temperatures up to 16 C, T above 21 C, and linear in between.
- Duct static pressure between 25 and 400 Pa: -12 Pa each period, +15 Pa per zone at more than 95% of its
  maximum airflow beyond the first, at most +32 Pa a period.
"""

from __future__ import annotations

from dataclasses import dataclass

SAT_MIN_C = 12.8
SAT_MAX_C = 18.0
OAT_MIN_C = 16.0
OAT_MAX_C = 21.0
SP_MIN_PA = 25.0
SP_MAX_PA = 400.0
PERIOD_S = 120.0


@dataclass
class AhuSequence:
    reset_t_c: float = SAT_MAX_C
    static_pa: float = 250.0
    _since_s: float = 0.0

    def supply_air_setpoint(self, t_out: float) -> float:
        if t_out <= OAT_MIN_C:
            return SAT_MAX_C
        if t_out >= OAT_MAX_C:
            return self.reset_t_c
        share = (t_out - OAT_MIN_C) / (OAT_MAX_C - OAT_MIN_C)
        return SAT_MAX_C + share * (self.reset_t_c - SAT_MAX_C)

    def update(self, dt_s: float, cooling_requests: int, pressure_requests: int) -> None:
        self._since_s += dt_s
        while self._since_s >= PERIOD_S:
            self._since_s -= PERIOD_S
            respond = max(-0.6, -0.2 * max(0, cooling_requests - 1))
            self.reset_t_c = min(SAT_MAX_C, max(SAT_MIN_C, self.reset_t_c + 0.1 + respond))
            push = min(32.0, 15.0 * max(0, pressure_requests - 1))
            self.static_pa = min(SP_MAX_PA, max(SP_MIN_PA, self.static_pa - 12.0 + push))
