"""Solar geometry and clear-sky irradiance for the site (Seoul, 37.57 N 126.98 E, KST = UTC+9).

Sun position from Spencer's (1971) declination and equation-of-time series; clear-sky global horizontal
irradiance from the Haurwitz (1945) model, GHI = 1098 cos(z) exp(-0.057 / cos(z)) W/m2.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone

LATITUDE_DEG = 37.57
LONGITUDE_DEG = 126.98
KST = timezone(timedelta(hours=9))


def solar_position(when: datetime) -> tuple[float, float]:
    """(altitude, azimuth) in degrees; azimuth from north, clockwise (south = 180)."""
    utc = when.astimezone(UTC)
    day = utc.timetuple().tm_yday
    gamma = 2 * math.pi / 365 * (day - 1 + (utc.hour - 12) / 24)
    declination = (
        0.006918
        - 0.399912 * math.cos(gamma)
        + 0.070257 * math.sin(gamma)
        - 0.006758 * math.cos(2 * gamma)
        + 0.000907 * math.sin(2 * gamma)
        - 0.002697 * math.cos(3 * gamma)
        + 0.00148 * math.sin(3 * gamma)
    )
    eot_min = 229.18 * (
        0.000075
        + 0.001868 * math.cos(gamma)
        - 0.032077 * math.sin(gamma)
        - 0.014615 * math.cos(2 * gamma)
        - 0.040849 * math.sin(2 * gamma)
    )
    minutes_utc = utc.hour * 60 + utc.minute + utc.second / 60
    solar_minutes = minutes_utc + eot_min + 4 * LONGITUDE_DEG
    hour_angle = math.radians(solar_minutes / 4 - 180)
    lat = math.radians(LATITUDE_DEG)
    cos_zenith = math.sin(lat) * math.sin(declination) + math.cos(lat) * math.cos(declination) * math.cos(
        hour_angle
    )
    cos_zenith = max(-1.0, min(1.0, cos_zenith))
    zenith = math.acos(cos_zenith)
    altitude = 90 - math.degrees(zenith)
    sin_zenith = math.sin(zenith)
    if sin_zenith < 1e-9:
        return altitude, 180.0
    cos_azimuth = (math.sin(declination) - math.sin(lat) * cos_zenith) / (math.cos(lat) * sin_zenith)
    azimuth = math.degrees(math.acos(max(-1.0, min(1.0, cos_azimuth))))
    if hour_angle > 0:
        azimuth = 360 - azimuth
    return altitude, azimuth


def clear_sky_ghi(altitude_deg: float) -> float:
    """Haurwitz clear-sky global horizontal irradiance, W/m2."""
    if altitude_deg <= 0:
        return 0.0
    cos_z = math.sin(math.radians(altitude_deg))
    return 1098.0 * cos_z * math.exp(-0.057 / cos_z)


def facade_factor(altitude_deg: float, azimuth_deg: float, facade_azimuth_deg: float) -> float:
    """Share of global horizontal irradiance that falls on a vertical facade facing `facade_azimuth_deg`:
    direct beam by incidence angle plus a diffuse share, a coarse isotropic-sky estimate."""
    if altitude_deg <= 0:
        return 0.0
    alt = math.radians(altitude_deg)
    incidence = math.cos(alt) * math.cos(math.radians(azimuth_deg - facade_azimuth_deg))
    direct = max(0.0, incidence) / max(math.sin(alt), 0.1)
    return min(2.0, 0.6 * direct + 0.3)  # 60% beam share, 30% of sky diffuse on a vertical surface
