"""LatestValues: the newest reading of every point, in memory, for control and status."""

from __future__ import annotations

from collections.abc import Iterable

from edge_agent.readings import Reading


class LatestValues:
    def __init__(self) -> None:
        self._by_key: dict[str, Reading] = {}

    def update(self, readings: Iterable[Reading]) -> None:
        for reading in readings:
            self._by_key[reading.key] = reading

    def snapshot(self) -> list[Reading]:
        """Every point's latest reading, ordered by device and point."""
        return sorted(self._by_key.values(), key=lambda r: (r.device, r.point))
