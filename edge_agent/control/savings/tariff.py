"""KEPCO general-service time-of-use tariff and the Korean grid emission factor, as dated data.

Each tariff version is a record; code only looks versions up. Adding a version means adding a record.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Literal

KST = timezone(timedelta(hours=9))  # Korea Standard Time, no daylight saving

Season = Literal["summer", "spring_autumn", "winter"]
Band = Literal["light", "mid", "peak"]
HourRange = tuple[int, int]  # local hours [start, end)


def to_kst(moment: datetime) -> datetime:
    """Convert an aware datetime to Korean local time; a naive one is refused (its zone is unknown)."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"need an aware datetime, got naive {moment.isoformat()}")
    return moment.astimezone(KST)


def season_of(day: date) -> Season:
    """Summer Jun-Aug, spring/autumn Mar-May and Sep-Oct, winter Nov-Feb."""
    if day.month in (6, 7, 8):
        return "summer"
    if day.month in (3, 4, 5, 9, 10):
        return "spring_autumn"
    return "winter"


@dataclass(frozen=True)
class Tariff:
    name: str
    valid_from: date
    valid_to: date | None  # inclusive; None means still in force
    source: str
    demand_krw_per_kw_month: float  # on the billed 15-minute maximum demand
    prices_krw_per_kwh: Mapping[Season, Mapping[Band, float]]
    light_hours: tuple[HourRange, ...]
    peak_hours: Mapping[Season, tuple[HourRange, ...]]  # every hour neither light nor peak is mid

    def covers(self, day: date) -> bool:
        return self.valid_from <= day and (self.valid_to is None or day <= self.valid_to)

    def band(self, local: datetime) -> Band:
        kst = to_kst(local)
        if _in_ranges(kst.hour, self.light_hours):
            return "light"
        if _in_ranges(kst.hour, self.peak_hours[season_of(kst.date())]):
            return "peak"
        return "mid"

    def energy_price(self, local: datetime) -> float:
        """KRW per kWh at this moment."""
        kst = to_kst(local)
        return self.prices_krw_per_kwh[season_of(kst.date())][self.band(kst)]


def _in_ranges(hour: int, ranges: tuple[HourRange, ...]) -> bool:
    return any(start <= hour < end for start, end in ranges)


# 일반용(을) 고압A 선택II. Approximate: figures as best known, not checked against the current KEPCO tariff
# table (전기요금표); VAT and the climate/environment and fuel-cost adjustment charges are not included.
_PRICES_GENERAL_B_HV_A_II: Mapping[Season, Mapping[Band, float]] = {
    "summer": {"light": 94.1, "mid": 146.9, "peak": 229.0},
    "spring_autumn": {"light": 94.1, "mid": 116.6, "peak": 147.1},
    "winter": {"light": 101.1, "mid": 146.4, "peak": 202.4},
}
_DEMAND_KRW_PER_KW_MONTH = 8320.0
_LIGHT_23_TO_09: tuple[HourRange, ...] = ((23, 24), (0, 9))

GENERAL_2023 = Tariff(
    name="KEPCO general service (B) HV-A option II, bands until 2026-05-31",
    valid_from=date(2023, 5, 16),  # last general-service price change as best known; approximate
    valid_to=date(2026, 5, 31),
    source="APPROXIMATE prices (KEPCO 일반용(을) 고압A 선택II, as best known; excl. VAT, climate and fuel "
    "adjustments); bands from DOMAIN.md",
    demand_krw_per_kw_month=_DEMAND_KRW_PER_KW_MONTH,
    prices_krw_per_kwh=_PRICES_GENERAL_B_HV_A_II,
    light_hours=_LIGHT_23_TO_09,
    peak_hours={
        "summer": ((10, 12), (13, 17)),
        "spring_autumn": ((10, 12), (13, 17)),
        "winter": ((10, 12), (17, 20), (22, 23)),
    },
)

# From 2026-06-01 DOMAIN.md says "18-21 becomes peak, 11-12 and 13-15 become mid". Read literally, as a change
# applied to the old bands in every season: hours 18, 19, 20 are peak; hours 11 and 13, 14 are mid; every
# other hour keeps its old band. So summer and spring/autumn peak is 10-11, 15-17, 18-21 (17-18 stays mid);
# winter peak is 10-11, 17-21, 22-23 (17-18 stays peak; 13-15 was already mid). Light load stays 23-09.
# Prices for the new version are not known to us: the old (approximate) prices are carried over.
GENERAL_2026 = Tariff(
    name="KEPCO general service (B) HV-A option II, bands from 2026-06-01",
    valid_from=date(2026, 6, 1),
    valid_to=None,
    source="APPROXIMATE: prices carried over from the previous version (new prices unknown); bands from "
    "DOMAIN.md read literally (see comment in edge_agent.control.savings.tariff)",
    demand_krw_per_kw_month=_DEMAND_KRW_PER_KW_MONTH,
    prices_krw_per_kwh=_PRICES_GENERAL_B_HV_A_II,
    light_hours=_LIGHT_23_TO_09,
    peak_hours={
        "summer": ((10, 11), (15, 17), (18, 21)),
        "spring_autumn": ((10, 11), (15, 17), (18, 21)),
        "winter": ((10, 11), (17, 21), (22, 23)),
    },
)

TARIFFS: tuple[Tariff, ...] = (GENERAL_2023, GENERAL_2026)


def tariff_for(day: date) -> Tariff:
    """The tariff version in force on this day (a datetime is first converted to its KST date)."""
    if isinstance(day, datetime):
        day = to_kst(day).date()
    for tariff in TARIFFS:
        if tariff.covers(day):
            return tariff
    raise LookupError(f"no tariff version covers {day.isoformat()}")


@dataclass(frozen=True)
class EmissionFactor:
    value_t_per_mwh: float  # tCO2eq per MWh of grid electricity
    year: int | None  # the year the factor describes
    published: str | None  # YYYY-MM
    note: str


EMISSION_FACTORS: tuple[EmissionFactor, ...] = (
    EmissionFactor(
        value_t_per_mwh=0.4173,
        year=2023,
        published="2025-12",
        note="national grid emission factor for 2023, published December 2025 (DOMAIN.md)",
    ),
    EmissionFactor(
        value_t_per_mwh=0.4594,
        year=None,
        published=None,
        note="older K-ETS indirect-emission factor, kept for comparison; base years not verified here",
    ),
)
GRID_EMISSION_FACTOR = EMISSION_FACTORS[0]
