"""The small value types every module passes around: Quality and Reading."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum


class Quality(StrEnum):
    """How far a reading's value can be trusted."""

    GOOD = "good"
    BAD = (
        "bad"  # not to be trusted: a device error (value None) or an implausible value (kept, for diagnosis)
    )
    STALE = "stale"  # the last good value, older than its poll interval allows
    UNAVAILABLE = "unavailable"  # the device answered, and said it has no value for this quantity


@dataclass(frozen=True, slots=True)
class Reading:
    """One value of one point at one instant (UTC)."""

    device: str
    point: str
    value: float | None
    unit: str
    quality: Quality
    ts: datetime

    def __post_init__(self) -> None:
        if self.ts.tzinfo is None:
            raise ValueError(f"reading {self.device}/{self.point}: timestamp must be timezone-aware")

    @property
    def key(self) -> str:
        """The point's gateway-wide name, 'device/point'."""
        return f"{self.device}/{self.point}"


def utc_now() -> datetime:
    return datetime.now(UTC)
