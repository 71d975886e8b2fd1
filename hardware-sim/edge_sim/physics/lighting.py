"""Electric lighting with dimming, and daylight at the work plane.

Work-plane illuminance = outdoor horizontal illuminance x the zone's daylight factor + dimming x the
installation's design illuminance. Outdoor illuminance uses a luminous efficacy of 110 lm/W for global
irradiance (a mid value for mixed sky; 90-120 lm/W is the usual range).
"""

from __future__ import annotations

LUMINOUS_EFFICACY_LM_W = 110.0


def daylight_lux(ghi_w_m2: float, daylight_factor: float) -> float:
    return ghi_w_m2 * LUMINOUS_EFFICACY_LM_W * daylight_factor


def lighting_power_w(dimming_pct: float, lpd_w_m2: float, area_m2: float) -> float:
    """LED drivers dim close to linearly down to about 10%; 0% is off."""
    level = min(100.0, max(0.0, dimming_pct)) / 100
    return lpd_w_m2 * area_m2 * level


def work_plane_lux(dimming_pct: float, design_lux: float, ghi_w_m2: float, daylight_factor: float) -> float:
    level = min(100.0, max(0.0, dimming_pct)) / 100
    return level * design_lux + daylight_lux(ghi_w_m2, daylight_factor)
