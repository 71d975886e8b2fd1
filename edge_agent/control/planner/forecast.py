"""What the next hours will bring, from the building's own history: outdoor temperature (the same time of
the last days, shifted by how today differs from them, fading over hours), the demand floor (the least the
building draws at that time with its plant doing the least: at night the base load, while open the lowest
open demand seen at that hour) and the demand ceiling (the most it has drawn)."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from edge_agent.control.planner.slots import Slot

DAYS = 3
BIAS_FADE_H = 6.0
# While open the meter never shows the building without its HVAC (lights, plugs and cooling come on
# together), so the lowest open demand seen is an upper bound of the base load: the floor assumes at least
# this share of it is not HVAC, and the thermal model says how far shedding can really go.
OPEN_BASE_SHARE = 0.5


def slot_of_day(local: datetime) -> int:
    return local.hour * 4 + local.minute // 15


@dataclass(frozen=True, slots=True)
class History:
    outdoor: dict[int, float]  # slot of day -> mean over the last DAYS days
    floor_open: dict[int, float]  # slot of day -> the lowest open demand
    floor_closed: dict[int, float]
    ceiling_kw: float

    def outdoor_c(self, local: datetime, now_c: float, hours_ahead: float, now_slot: int) -> float:
        usual = self.outdoor.get(slot_of_day(local), now_c)
        bias = now_c - self.outdoor.get(now_slot, now_c)
        return usual + bias * math.exp(-hours_ahead / BIAS_FADE_H)

    def floor_kw(self, local: datetime, is_open: bool) -> float:
        closed = _nearest(self.floor_closed, local)
        if not is_open:
            return closed
        return max(closed, OPEN_BASE_SHARE * _nearest(self.floor_open, local))


def _nearest(table: dict[int, float], local: datetime) -> float:
    """The table's entry at this slot of the day, or the nearest within half an hour, or its least."""
    key = slot_of_day(local)
    for k in (key, key - 1, key + 1, key - 2, key + 2):
        if k % 96 in table:
            return table[k % 96]
    return min(table.values(), default=0.0)


def history(slots: list[Slot]) -> History:
    last = slots[-1].start if slots else None
    outdoor: dict[int, list[float]] = defaultdict(list)
    floors: dict[bool, dict[int, float]] = {True: {}, False: {}}
    for s in slots:
        key = slot_of_day(s.start)
        if last is not None and (last - s.start).days < DAYS:
            outdoor[key].append(s.outdoor_c)
        table = floors[s.open]
        table[key] = min(table.get(key, s.demand_kw), s.demand_kw)
    return History(
        {k: sum(v) / len(v) for k, v in outdoor.items()},
        floors[True],
        floors[False],
        max((s.demand_kw for s in slots), default=0.0),
    )
