"""The latest values mark a point stale once it misses its poll interval (twice over), or a COV point its
subscription's renewals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from edge_agent.acquisition.latest import LatestValues
from edge_agent.config import parse_config
from edge_agent.readings import Quality, Reading
from edge_agent.service.agent import Agent

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


def test_a_cov_point_that_does_not_change_stays_fresh_while_a_polled_one_turns_stale(tmp_path: Path) -> None:
    """COV sends only changes: a steady zone temperature on COV is confirmed at each renewal of its
    subscription (every 225 s with a 300 s lifetime), so control does not call it stale between polls."""
    config = parse_config(
        f"""
        [buffer]
        path = "{tmp_path / "buffer.db"}"
        [[devices]]
        name = "room"
        protocol = "bacnet-ip"
        host = "10.0.0.20"
        instance = 1001
        cov_lifetime_s = 300
        points = [
          {{ name = "temp", object = "analog-input,1", cov = true }},
          {{ name = "co2", object = "analog-input,2" }},
        ]
        [[pollers]]
        device = "room"
        interval_s = 5
        """,
        "test",
    )
    latest = Agent(config).latest
    latest.update([Reading("room", p, 21.5, "", Quality.GOOD, T0) for p in ("temp", "co2")])
    a_minute_later = {r.point: r.quality for r in latest.snapshot(T0 + timedelta(seconds=60))}
    assert a_minute_later == {"temp": Quality.GOOD, "co2": Quality.STALE}
    # Two renewals missed (no confirmation, no notification): the subscription is not known alive.
    much_later = {r.point: r.quality for r in latest.snapshot(T0 + timedelta(seconds=451))}
    assert much_later == {"temp": Quality.STALE, "co2": Quality.STALE}
