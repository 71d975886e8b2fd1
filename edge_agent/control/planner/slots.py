"""The building's recent history in clock-aligned 15-minute slots: what the planner learns from.

Each slot keeps the mean demand and outdoor temperature over it, the mean zone temperature at its start
and at its end, and whether the building was open. MAX_DAYS of slots are kept (a Pi keeps them easily:
about 700 slots a week).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from statistics import fmean

from edge_agent.control.observation import Observation

SLOT = timedelta(minutes=15)
MAX_DAYS = 21  # three weeks: the commissioning ones are still there when control begins


@dataclass(frozen=True, slots=True)
class Slot:
    start: datetime  # building time (KST), aligned to :00, :15, :30, :45
    demand_kw: float  # mean over the slot
    outdoor_c: float
    zone_start_c: float  # mean zone temperature at the slot's start
    zone_end_c: float  # ... and at its end (the next slot's start)
    open: bool


def slot_start(at: datetime) -> datetime:
    return at.replace(minute=at.minute - at.minute % 15, second=0, microsecond=0)


def zone_mean(observation: Observation) -> float | None:
    temperatures = [z.temperature_c for z in observation.zones if z.temperature_c is not None]
    return fmean(temperatures) if temperatures else None


@dataclass(slots=True)
class _Open:
    start: datetime
    zone_start_c: float
    open: bool
    demand: list[float]
    outdoor: list[float]


class SlotHistory:
    def __init__(self) -> None:
        self.slots: deque[Slot] = deque()
        self._current: _Open | None = None

    def add(self, local: datetime, observation: Observation, is_open: bool) -> None:
        """One observation at `local` (building time); a slot closes when the next one begins."""
        zone = zone_mean(observation)
        if observation.demand_kw is None or observation.outdoor_c is None or zone is None:
            return
        start = slot_start(local)
        current = self._current
        if current is not None and start != current.start:
            if start - current.start == SLOT and current.demand:
                self.slots.append(
                    Slot(
                        current.start,
                        fmean(current.demand),
                        fmean(current.outdoor),
                        current.zone_start_c,
                        zone,
                        current.open,
                    )
                )
            current = None
            while self.slots and start - self.slots[0].start > timedelta(days=MAX_DAYS):
                self.slots.popleft()
        if current is None:
            current = self._current = _Open(start, zone, is_open, [], [])
        current.demand.append(observation.demand_kw)
        current.outdoor.append(observation.outdoor_c)
