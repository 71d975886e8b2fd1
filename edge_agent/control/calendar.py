"""The building's week: opening hours, Korean public holidays of any year, and the site's own closed days.

Times are the building's local time (KST for the first customer). The public holidays, lunar ones (Seollal,
Chuseok, Buddha's Birthday) and substitute holidays included, come from the maintained `holidays` package:
a new year needs no new release of the agent, only the package's.
"""

from __future__ import annotations

from collections.abc import Container, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta


class KoreanHolidays:
    """Korean public holidays of every year, plus the site's own closed days (`[control] holidays`).

    The package is imported at the first lookup (about a third of a second: every command loads the
    configuration, few ask about holidays); control makes that lookup before its loop runs."""

    def __init__(self, closed_days: Iterable[date] = ()) -> None:
        self.closed_days = frozenset(closed_days)
        self._years: dict[int, frozenset[date]] = {}  # computed once per year asked about

    def __contains__(self, day: object) -> bool:
        if not isinstance(day, date):
            return False
        if isinstance(day, datetime):
            day = day.date()
        return day in self.closed_days or day in self._year(day.year)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, KoreanHolidays) and other.closed_days == self.closed_days

    def __hash__(self) -> int:
        return hash(self.closed_days)

    def _year(self, year: int) -> frozenset[date]:
        days = self._years.get(year)
        if days is None:
            import holidays as holiday_tables  # (see the class docstring)

            days = self._years[year] = frozenset(holiday_tables.country_holidays("KR", years=year))
        return days


@dataclass(frozen=True, slots=True)
class OpeningHours:
    open_hour: int = 9
    close_hour: int = 18  # exclusive
    days: frozenset[int] = frozenset(range(5))  # Monday = 0
    holidays: Container[date] = field(default_factory=KoreanHolidays)
    open_on_holidays: bool = False

    def is_open(self, local: datetime) -> bool:
        if not self._open_day(local.date()):
            return False
        return self.open_hour <= local.hour < self.close_hour

    def _open_day(self, day: date) -> bool:
        if day in self.holidays and not self.open_on_holidays:
            return False
        return day.weekday() in self.days

    def is_holiday(self, day: date) -> bool:
        return day in self.holidays

    def hours_to_open(self, local: datetime, horizon_h: float = 24.0) -> float:
        """0 while open; else hours until the next opening, at most `horizon_h`."""
        if self.is_open(local):
            return 0.0
        day = local.date()
        for offset in range(3):
            candidate = datetime.combine(day + timedelta(days=offset), datetime.min.time(), local.tzinfo)
            opening = candidate.replace(hour=self.open_hour)
            if opening > local and self._open_day(opening.date()):
                return min(horizon_h, (opening - local).total_seconds() / 3600)
        return horizon_h
