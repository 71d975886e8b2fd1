"""When the buildings are open and how full they are, hour by hour (fractions of design occupancy)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

# Central library, open daily 09-22: busiest in the afternoon; weekends fuller.
LIBRARY_PROFILE = {
    9: 0.3, 10: 0.5, 11: 0.6, 12: 0.6, 13: 0.7, 14: 0.9, 15: 1.0,
    16: 1.0, 17: 0.9, 18: 0.7, 19: 0.7, 20: 0.6, 21: 0.4,
}  # fmt: skip
# Offices, weekdays 09-18, with the lunch dip.
OFFICE_PROFILE = {
    8: 0.2, 9: 0.8, 10: 0.95, 11: 0.95, 12: 0.5, 13: 0.9, 14: 0.95, 15: 0.95, 16: 0.9, 17: 0.8,
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Schedule:
    name: str
    open_hour: int
    close_hour: int  # exclusive; 24 for around the clock
    weekdays_only: bool
    profile: dict[int, float]
    weekend_factor: float = 1.0
    constant: float | None = None  # occupancy fraction around the clock (a 24/7 control room)

    def is_open(self, local: datetime) -> bool:
        if self.weekdays_only and local.weekday() >= 5:
            return False
        return self.open_hour <= local.hour < self.close_hour

    def occupancy(self, local: datetime) -> float:
        if self.constant is not None:
            return self.constant
        if self.weekdays_only and local.weekday() >= 5:
            return 0.0
        fraction = self.profile.get(local.hour, 0.0)
        if local.weekday() >= 5:
            fraction = min(1.0, fraction * self.weekend_factor)
        return fraction


LIBRARY = Schedule("library", 9, 22, weekdays_only=False, profile=LIBRARY_PROFILE, weekend_factor=1.2)
OFFICE = Schedule("office", 9, 18, weekdays_only=True, profile=OFFICE_PROFILE)
AROUND_THE_CLOCK = Schedule("24/7", 0, 24, weekdays_only=False, profile={}, constant=1.0)
