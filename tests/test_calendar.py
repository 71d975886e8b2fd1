"""Opening days: Korean public holidays of any year (lunar and substitute ones too) and the site's own
closed days from `[control] holidays`."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest

from edge_agent.config import ControlConfig
from edge_agent.control.calendar import OpeningHours
from edge_agent.control.savings.tariff import KST
from edge_agent.service.control_setup import opening_hours


def _noon(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 12, tzinfo=KST)


@pytest.mark.parametrize(
    ("days", "why"),
    [
        # Seollal 2027: Sat 6 to Mon 8 February; Sunday the 7th falls in it, so Tuesday the 9th is substituted
        ([date(2027, 2, 8), date(2027, 2, 9)], "Seollal 2027 and its substitute holiday"),
        # Chuseok 2028: Mon 2 to Wed 4 October, overlapping National Foundation Day (3rd): Thu 5th substituted
        ([date(2028, 10, 2), date(2028, 10, 4), date(2028, 10, 5)], "Chuseok 2028 and its substitute"),
    ],
)
def test_lunar_holidays_and_their_substitutes_are_closed_in_any_year(days: list[date], why: str) -> None:
    hours = opening_hours(ControlConfig())
    for day in days:
        assert day.weekday() < 5, day  # weekdays: closed only because they are holidays
        assert hours.is_holiday(day), why
        assert not hours.is_open(_noon(day)), why
    after = days[-1] + timedelta(days=1)
    assert hours.is_open(_noon(after)), "the first working day after the holiday opens again"


def test_a_site_closure_day_from_the_configuration_is_closed() -> None:
    closure = date(2027, 4, 27)  # a Tuesday, no public holiday
    assert opening_hours(ControlConfig()).is_open(_noon(closure))
    hours = opening_hours(ControlConfig.model_validate({"holidays": [closure.isoformat()]}))
    assert not hours.is_open(_noon(closure))
    assert hours.is_open(_noon(closure + timedelta(days=1)))
    assert not hours.is_open(_noon(date(2027, 2, 9))), "the public holidays still count"


def test_the_default_hours_know_next_years_holidays_and_open_on_them_when_told() -> None:
    assert not OpeningHours().is_open(_noon(date(2029, 2, 13)))  # Seollal 2029
    assert OpeningHours(open_on_holidays=True).is_open(_noon(date(2029, 2, 13)))
