"""LatestValues: the newest reading of every point, in memory, for control and status.

A point that has not been read for longer than its staleness limit (twice its poll interval, by default)
is shown with quality 'stale': its value is the last one known, and whoever uses it should know that.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta

from edge_agent.readings import Quality, Reading, utc_now

STALE_AFTER_INTERVALS = 2.0


def _split(key: str) -> tuple[str, str]:
    device, _, point = key.partition("/")
    return device, point


class LatestValues:
    """Kept by (device, point): no 'device/point' string is built for every reading."""

    def __init__(self, intervals_s: Mapping[str, float] | None = None) -> None:
        """intervals_s: 'device/point' -> poll interval; points not listed never turn stale."""
        self._by_key: dict[tuple[str, str], Reading] = {}
        self._limits = {
            _split(key): timedelta(seconds=s * STALE_AFTER_INTERVALS)
            for key, s in (intervals_s or {}).items()
        }

    def update(self, readings: Iterable[Reading]) -> None:
        latest = self._by_key
        for reading in readings:
            latest[reading.device, reading.point] = reading

    def get(self, key: str, now: datetime | None = None) -> Reading | None:
        """The latest reading of 'device/point', stale if it is."""
        reading = self._by_key.get(_split(key))
        return None if reading is None else self._aged(reading, now or utc_now())

    def _aged(self, reading: Reading, now: datetime) -> Reading:
        limit = self._limits.get((reading.device, reading.point))
        if limit is None or reading.quality is not Quality.GOOD or now - reading.ts <= limit:
            return reading
        return reading._replace(quality=Quality.STALE)

    def snapshot(self, now: datetime | None = None) -> list[Reading]:
        """Every point's latest reading, ordered by device and point, stale ones marked."""
        at = now or utc_now()
        return [self._aged(r, at) for r in sorted(self._by_key.values(), key=lambda r: (r.device, r.point))]
