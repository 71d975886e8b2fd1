"""Readings cut into the model's 15-minute slots: per point, the mean of its good readings in each slot,
keyed by the slot's start in building time (KST)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from edge_agent.control.savings.tariff import to_kst

SLOT = timedelta(minutes=15)
SLOTS_PER_DAY = 96


def slot_of(ts: datetime) -> datetime:
    """The start of the 15-minute slot (KST) that an aware timestamp falls in."""
    local = to_kst(ts)
    return local.replace(minute=local.minute - local.minute % 15, second=0, microsecond=0)


@dataclass(slots=True)
class SlotSeries:
    """Per 'device/point': slot start -> mean value. Only the points asked for are kept."""

    points: frozenset[str]
    _sums: dict[str, dict[datetime, list[float]]] = field(default_factory=dict)

    def add(self, point: str, ts: datetime, value: float) -> None:
        if point not in self.points:
            return
        total = self._sums.setdefault(point, {}).setdefault(slot_of(ts), [0.0, 0.0])
        total[0] += value
        total[1] += 1.0

    def extend(self, rows: Iterable[tuple[str, datetime, float]]) -> SlotSeries:
        for point, ts, value in rows:
            self.add(point, ts, value)
        return self

    def means(self, point: str) -> dict[datetime, float]:
        return {slot: s / n for slot, (s, n) in self._sums.get(point, {}).items()}

    def span(self) -> tuple[datetime, datetime] | None:
        """First and last slot with any reading of any point."""
        slots = [slot for by_slot in self._sums.values() for slot in by_slot]
        return (min(slots), max(slots)) if slots else None


def rows_of_export(rows: Iterable[dict[str, str]]) -> Iterable[tuple[str, datetime, float]]:
    """(point, ts, value) of an export's rows (`edge-agent buffer export`'s JSON lines or CSV): readings
    whose quality is not 'good' and empty values are skipped; a row that cannot be read is a ValueError
    naming it."""
    for number, row in enumerate(rows, 1):
        try:
            if row.get("quality", "good") != "good" or not row.get("value"):
                continue
            yield f"{row['device']}/{row['point']}", datetime.fromisoformat(row["ts"]), float(row["value"])
        except (KeyError, ValueError) as error:
            raise ValueError(f"row {number}: needs ts, device, point and value ({error})") from None
