"""Moist air, the little the simulator needs: saturation pressure and humidity ratio at sea level."""

from __future__ import annotations

import math

P_ATM = 101_325.0  # Pa
H_FG = 2.45e6  # J/kg, latent heat of condensation near coil temperatures


def saturation_pressure(t_c: float) -> float:
    """Magnus formula over water, Pa."""
    return 610.94 * math.exp(17.625 * t_c / (t_c + 243.04))


def humidity_ratio(t_c: float, relative_humidity: float) -> float:
    """kg of water per kg of dry air."""
    pv = min(1.0, max(0.0, relative_humidity / 100)) * saturation_pressure(t_c)
    return 0.622 * pv / (P_ATM - pv)
