"""The building's week: opening hours and public holidays, as configured (Korean public holidays built in).

Times are the building's local time (KST for the first customer).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

# Korean public holidays (including substitute holidays) as best known; extend with control.holidays.
KOREAN_HOLIDAYS_2026 = frozenset(
    date.fromisoformat(d)
    for d in (
        "2026-01-01", "2026-02-16", "2026-02-17", "2026-02-18", "2026-03-01", "2026-03-02",
        "2026-05-05", "2026-05-24", "2026-05-25", "2026-06-03", "2026-06-06", "2026-08-15",
        "2026-08-17", "2026-09-24", "2026-09-25", "2026-09-26", "2026-10-03", "2026-10-05",
        "2026-10-09", "2026-12-25",
    )
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class OpeningHours:
    open_hour: int = 9
    close_hour: int = 18  # exclusive
    days: frozenset[int] = frozenset(range(5))  # Monday = 0
    holidays: frozenset[date] = KOREAN_HOLIDAYS_2026
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
