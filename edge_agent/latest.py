"""LatestValues: the newest reading of every point, in memory, for control and status.

A point that has not been read for longer than its staleness limit (twice its poll interval, by default)
is shown with quality 'stale': its value is the last one known, and whoever uses it should know that.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta

from edge_agent.readings import Quality, Reading, utc_now

STALE_AFTER_INTERVALS = 2.0


class LatestValues:
    def __init__(self, intervals_s: Mapping[str, float] | None = None) -> None:
        """intervals_s: 'device/point' -> poll interval; points not listed never turn stale."""
        self._by_key: dict[str, Reading] = {}
        self._limits = {
            key: timedelta(seconds=s * STALE_AFTER_INTERVALS) for key, s in (intervals_s or {}).items()
        }

    def update(self, readings: Iterable[Reading]) -> None:
        for reading in readings:
            self._by_key[reading.key] = reading

    def get(self, key: str, now: datetime | None = None) -> Reading | None:
        reading = self._by_key.get(key)
        return None if reading is None else self._aged(reading, now or utc_now())

    def _aged(self, reading: Reading, now: datetime) -> Reading:
        limit = self._limits.get(reading.key)
        if limit is None or reading.quality is not Quality.GOOD or now - reading.ts <= limit:
            return reading
        return dataclasses.replace(reading, quality=Quality.STALE)

    def snapshot(self, now: datetime | None = None) -> list[Reading]:
        """Every point's latest reading, ordered by device and point, stale ones marked."""
        at = now or utc_now()
        return [self._aged(r, at) for r in sorted(self._by_key.values(), key=lambda r: (r.device, r.point))]
