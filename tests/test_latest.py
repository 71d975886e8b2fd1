"""The latest values mark a point stale once it misses its poll interval (twice over)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from edge_agent.acquisition.latest import LatestValues
from edge_agent.readings import Quality, Reading

T0 = datetime(2026, 8, 5, 5, 0, tzinfo=UTC)


def reading(point: str, quality: Quality = Quality.GOOD, at: datetime = T0) -> Reading:
    return Reading("meter", point, 1.0, "W", quality, at)


def test_a_point_turns_stale_after_two_missed_intervals() -> None:
    latest = LatestValues({"meter/power": 1.0})
    latest.update([reading("power")])
    assert latest.get("meter/power", T0 + timedelta(seconds=1.9)).quality is Quality.GOOD  # type: ignore[union-attr]
    stale = latest.get("meter/power", T0 + timedelta(seconds=2.1))
    assert stale is not None
    assert stale.quality is Quality.STALE
    assert stale.value == 1.0  # the last value known, labelled
    latest.update([reading("power", at=T0 + timedelta(seconds=2.5))])
    assert latest.get("meter/power", T0 + timedelta(seconds=2.6)).quality is Quality.GOOD  # type: ignore[union-attr]


def test_bad_stays_bad_and_unpolled_points_never_turn_stale() -> None:
    latest = LatestValues({"meter/power": 1.0})
    latest.update([reading("power", Quality.BAD), reading("energy")])
    snapshot = {r.point: r.quality for r in latest.snapshot(T0 + timedelta(hours=1))}
    assert snapshot == {"power": Quality.BAD, "energy": Quality.GOOD}
