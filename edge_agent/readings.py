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


@dataclass(frozen=True, slots=True, init=False)
class Reading:
    """One value of one point at one instant (UTC)."""

    device: str
    point: str
    value: float | None
    unit: str
    quality: Quality
    ts: datetime

    def __init__(  # noqa: PLR0917 - the positional signature dataclass would generate
        self, device: str, point: str, value: float | None, unit: str, quality: Quality, ts: datetime
    ) -> None:
        if ts.tzinfo is None:
            raise ValueError(f"reading {device}/{point}: timestamp must be timezone-aware")
        # As dataclass' own __init__ for a frozen class, at two thirds of the cost (one Reading per point
        # polled): the fields are set through their slots, not object.__setattr__.
        _set_device(self, device)
        _set_point(self, point)
        _set_value(self, value)
        _set_unit(self, unit)
        _set_quality(self, quality)
        _set_ts(self, ts)

    @property
    def key(self) -> str:
        """The point's gateway-wide name, 'device/point'."""
        return f"{self.device}/{self.point}"


# The slots' own setters: a frozen dataclass guards only __setattr__.
_set_device, _set_point, _set_value, _set_unit, _set_quality, _set_ts = (
    Reading.__dict__[name].__set__ for name in ("device", "point", "value", "unit", "quality", "ts")
)


def utc_now() -> datetime:
    return datetime.now(UTC)
