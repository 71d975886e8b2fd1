"""A Pi that boots in 1970: readings taken before its clock is set are held, then sent with corrected times;
never with the unset clock's. A plausible but unsynchronised clock is reported, and readings flow."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import structlog

from edge_agent.acquisition.clock_guard import ClockGuard, ClockState
from edge_agent.readings import Quality, Reading

BOOT = datetime(1970, 1, 1, 0, 0, 42, tzinfo=UTC)
TRUE_BOOT = datetime(2026, 11, 29, 8, 0, tzinfo=UTC)


class Clocks:
    """A wall clock that can be set, over a monotonic clock that only runs."""

    def __init__(self) -> None:
        self.wall, self.mono = BOOT, 100.0

    def run(self, seconds: float) -> None:
        self.wall += timedelta(seconds=seconds)
        self.mono += seconds

    def now(self) -> datetime:
        return self.wall

    def monotonic(self) -> float:
        return self.mono


def poll(clocks: Clocks, value: float) -> list[Reading]:
    return [Reading("meter", "power", value, "kW", Quality.GOOD, clocks.now())]


def test_readings_before_the_clock_is_set_go_out_with_their_true_time(tmp_path: Path) -> None:
    clocks = Clocks()
    flag = tmp_path / "synchronized"
    guard = ClockGuard(now=clocks.now, monotonic=clocks.monotonic, sync_flag=flag)
    with structlog.testing.capture_logs() as logs:
        assert guard.admit(poll(clocks, 1.0)) == []
        clocks.run(10)
        assert guard.admit(poll(clocks, 2.0)) == []
        assert guard.statistics().held == 2
        assert guard.statistics().state is ClockState.NOT_SET
        clocks.run(5)
        clocks.wall = TRUE_BOOT + timedelta(seconds=15)  # NTP sets the clock
        flag.touch()
        sent = guard.admit(poll(clocks, 3.0))
    assert [r.value for r in sent] == [1.0, 2.0, 3.0]
    assert [r.ts for r in sent] == [TRUE_BOOT + timedelta(seconds=s) for s in (0, 10, 15)]
    assert all(r.ts.year == 2026 for r in sent)
    stats = guard.statistics()
    assert (stats.state, stats.held, stats.corrected, stats.dropped) == (ClockState.SYNCHRONIZED, 0, 2, 0)
    assert [e["event"] for e in logs] == [
        "clock not set: readings are held until it is",
        "clock synchronised",
        "clock set: held readings released with corrected times",
    ]


def test_holding_is_bounded_and_counts_what_it_drops(tmp_path: Path) -> None:
    clocks = Clocks()
    guard = ClockGuard(now=clocks.now, monotonic=clocks.monotonic, sync_flag=tmp_path / "none", max_held=3)
    for value in range(5):
        guard.admit(poll(clocks, float(value)))
        clocks.run(1)
    clocks.wall = TRUE_BOOT
    sent = guard.admit([])
    assert [r.value for r in sent] == [2.0, 3.0, 4.0]  # the newest kept
    assert guard.statistics().dropped == 2


def test_an_unsynchronised_but_plausible_clock_lets_readings_through(tmp_path: Path) -> None:
    clocks = Clocks()
    clocks.wall = TRUE_BOOT - timedelta(days=3)  # restored from the last shutdown, not yet corrected
    guard = ClockGuard(now=clocks.now, monotonic=clocks.monotonic, sync_flag=tmp_path / "synchronized")
    readings = poll(clocks, 1.0)
    assert guard.admit(readings) == readings
    assert guard.statistics().state is ClockState.UNSYNCHRONIZED


def test_synchronisation_is_noticed_within_a_second(tmp_path: Path) -> None:
    clocks = Clocks()
    clocks.wall = TRUE_BOOT
    flag = tmp_path / "synchronized"
    guard = ClockGuard(now=clocks.now, monotonic=clocks.monotonic, sync_flag=flag)
    assert guard.statistics().state is ClockState.UNSYNCHRONIZED
    flag.touch()  # systemd-timesyncd has synchronised the clock
    clocks.run(1.0)
    assert guard.statistics().state is ClockState.SYNCHRONIZED
