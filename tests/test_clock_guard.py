"""A Pi that boots in 1970, or behind the last time the agent saved: readings taken before its clock is set
are held, then sent with corrected times; never with the unset clock's. A plausible but unsynchronised clock
is reported, and readings flow. A step while running is logged and good readings go out as uncertain-time
until it is undone or NTP confirms the clock. (The real process under libfaketime: test_clock_steps.py.)"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import structlog

from edge_agent.acquisition.clock_guard import TIME_FLOOR, ClockGuard, ClockState
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
        "clock stepped",  # the setting, by its size
        "clock synchronised",
        "clock set: held readings released with corrected times",
    ]
    assert all(r.quality is Quality.GOOD for r in sent)  # set, not stepped: their corrected times are right


def test_holding_is_bounded_and_counts_what_it_drops(tmp_path: Path) -> None:
    clocks = Clocks()
    guard = ClockGuard(now=clocks.now, monotonic=clocks.monotonic, sync_flag=tmp_path / "none", max_held=3)
    for value in range(5):
        guard.admit(poll(clocks, float(value)))
        clocks.run(1)
    clocks.wall = TRUE_BOOT
    sent = guard.admit([])
    assert [r.value for r in sent] == [2.0, 3.0, 4.0]  # the newest kept
    stats = guard.statistics()
    assert (stats.dropped, stats.corrected) == (2, 3)


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


# --- steps while running: logged, readings marked, until the step is undone or NTP confirms the clock ---


def running_guard(clocks: Clocks, sync_flag: Path, last_time: Path | None = None) -> ClockGuard:
    """A guard on a clock that was right at start, its first look taken."""
    clocks.wall = TRUE_BOOT
    guard = ClockGuard(now=clocks.now, monotonic=clocks.monotonic, sync_flag=sync_flag, last_time=last_time)
    assert guard.admit(poll(clocks, 0.0))[0].quality is Quality.GOOD
    return guard


def qualities(guard: ClockGuard, clocks: Clocks, *values: float) -> list[Quality]:
    """What the guard lets through for one good reading per value, a second apart."""
    sent: list[Reading] = []
    for value in values:
        clocks.run(1.0)
        sent += guard.admit(poll(clocks, value))
    assert [r.value for r in sent] == list(values)  # nothing held, nothing lost
    return [r.quality for r in sent]


def test_a_step_back_is_logged_and_readings_go_out_uncertain_until_it_is_undone(tmp_path: Path) -> None:
    clocks = Clocks()
    guard = running_guard(clocks, sync_flag=tmp_path / "none")
    with structlog.testing.capture_logs() as logs:
        clocks.wall -= timedelta(days=3)
        assert qualities(guard, clocks, 1.0, 2.0) == [Quality.UNCERTAIN_TIME] * 2
        stats = guard.statistics()
        assert (stats.state, stats.steps, stats.last_step_s, stats.uncertain) == (
            ClockState.STEPPED, 1, -3 * 86400.0, 2
        )  # fmt: skip
        clocks.wall += timedelta(days=3, seconds=0.5)  # undone (within the tolerance)
        assert qualities(guard, clocks, 3.0) == [Quality.GOOD]
    step = next(e for e in logs if e["event"] == "clock stepped")
    assert (step["step_s"], step["direction"], step["log_level"]) == (-259200.0, "back", "warning")
    assert step["was"] == (TRUE_BOOT + timedelta(seconds=1)).isoformat()
    assert "clock step undone: readings are no longer marked" in [e["event"] for e in logs]
    assert guard.statistics().state is ClockState.UNSYNCHRONIZED


def test_a_step_ahead_stays_uncertain_until_ntp_confirms_the_clock_after_it(tmp_path: Path) -> None:
    clocks = Clocks()
    flag = tmp_path / "synchronized"
    flag.touch()
    os.utime(flag, ns=(1, 1))  # synchronised once, before the step
    guard = running_guard(clocks, sync_flag=flag)
    assert guard.statistics().state is ClockState.SYNCHRONIZED
    with structlog.testing.capture_logs() as logs:
        clocks.wall += timedelta(days=5 * 365)
        assert qualities(guard, clocks, 1.0, 2.0, 3.0) == [Quality.UNCERTAIN_TIME] * 3
        assert guard.statistics().state is ClockState.STEPPED  # the old flag confirms nothing
        os.utime(flag, ns=(2, 2))  # systemd-timesyncd synchronised after the step
        assert qualities(guard, clocks, 4.0, 5.0) == [Quality.GOOD] * 2
    assert [e["event"] for e in logs] == [
        "clock stepped",
        "clock stepped: readings are marked uncertain-time until it is confirmed",
        "clock synchronised after the step: readings are no longer marked",
        "clock synchronised",
    ]
    assert logs[0]["direction"] == "ahead"


def test_only_good_readings_are_marked_and_small_corrections_are_not_steps(tmp_path: Path) -> None:
    clocks = Clocks()
    guard = running_guard(clocks, sync_flag=tmp_path / "none")
    clocks.wall += timedelta(seconds=0.9)  # NTP's small step: within the tolerance
    assert qualities(guard, clocks, 1.0) == [Quality.GOOD]
    clocks.wall += timedelta(hours=1)
    clocks.run(1.0)
    bad = Reading("meter", "current", None, "A", Quality.BAD, clocks.now())
    sent = guard.admit([*poll(clocks, 2.0), bad])
    assert [r.quality for r in sent] == [Quality.UNCERTAIN_TIME, Quality.BAD]
    assert guard.statistics().steps == 1


def test_a_second_step_while_uncertain_is_logged_and_undoing_both_ends_it(tmp_path: Path) -> None:
    clocks = Clocks()
    guard = running_guard(clocks, sync_flag=tmp_path / "none")
    with structlog.testing.capture_logs() as logs:
        clocks.wall += timedelta(days=2)
        assert qualities(guard, clocks, 1.0) == [Quality.UNCERTAIN_TIME]
        clocks.wall -= timedelta(days=1)  # half undone: still a day off
        assert qualities(guard, clocks, 2.0) == [Quality.UNCERTAIN_TIME]
        clocks.wall -= timedelta(days=1)
        assert qualities(guard, clocks, 3.0) == [Quality.GOOD]
    assert [e["step_s"] for e in logs if e["event"] == "clock stepped"] == [172800.0, -86400.0, -86400.0]


# --- the floor: the last trusted time saved, not a fixed date ---


def test_the_saved_time_is_the_floor_at_the_next_start(tmp_path: Path) -> None:
    saved, flag = tmp_path / "buffer.db.clock", tmp_path / "synchronized"
    flag.touch()
    clocks = Clocks()
    guard = running_guard(clocks, last_time=saved, sync_flag=flag)
    clocks.run(600)
    guard.admit(poll(clocks, 1.0))  # saved once a minute at most, while the clock is trusted
    guard.save()  # and at stop
    assert saved.read_text() == f"{(TRUE_BOOT + timedelta(seconds=600)).isoformat()} synchronized\n"
    assert not list(tmp_path.glob("*.part"))  # replaced whole
    flag.unlink()  # (it lives in /run)

    # Power cut; the Pi boots with fake-hwclock's hourly saved time, 40 minutes behind the saved floor.
    clocks = Clocks()
    clocks.wall = TRUE_BOOT - timedelta(minutes=30)
    guard = ClockGuard(
        now=clocks.now, monotonic=clocks.monotonic, last_time=saved, sync_flag=tmp_path / "none"
    )
    assert guard.statistics().floor == TRUE_BOOT + timedelta(seconds=599)  # (less the 1 s tolerance)
    assert guard.admit(poll(clocks, 2.0)) == []  # before the floor: held, as for a clock in 1970
    assert guard.statistics().state is ClockState.NOT_SET
    clocks.run(20)
    clocks.wall = TRUE_BOOT + timedelta(hours=2)  # NTP
    sent = guard.admit(poll(clocks, 3.0))
    assert [(r.value, r.quality, r.ts) for r in sent] == [
        (2.0, Quality.GOOD, TRUE_BOOT + timedelta(hours=2, seconds=-20)),
        (3.0, Quality.GOOD, TRUE_BOOT + timedelta(hours=2)),
    ]


def test_a_clock_that_passes_the_floor_unset_sends_the_early_readings_uncertain(tmp_path: Path) -> None:
    saved = tmp_path / "buffer.db.clock"
    saved.write_text(f"{(TRUE_BOOT + timedelta(seconds=5)).isoformat()} synchronized")
    clocks = Clocks()
    clocks.wall = TRUE_BOOT  # no NTP at this site: the clock only runs
    guard = ClockGuard(
        now=clocks.now, monotonic=clocks.monotonic, last_time=saved, sync_flag=tmp_path / "none"
    )
    assert guard.admit(poll(clocks, 1.0)) == []
    clocks.run(10)
    sent = guard.admit(poll(clocks, 2.0))
    assert [(r.value, r.quality) for r in sent] == [(1.0, Quality.UNCERTAIN_TIME), (2.0, Quality.GOOD)]


def test_nothing_is_saved_while_the_clock_is_stepped(tmp_path: Path) -> None:
    saved = tmp_path / "buffer.db.clock"
    clocks = Clocks()
    guard = running_guard(clocks, last_time=saved, sync_flag=tmp_path / "none")
    clocks.wall += timedelta(days=5 * 365)
    clocks.run(3600)
    guard.admit(poll(clocks, 1.0))
    guard.save()
    assert saved.read_text() == f"{TRUE_BOOT.isoformat()} unsynchronized\n"  # the last trusted time


@pytest.mark.parametrize(
    "content",
    [
        "",
        "yesterday synchronized",
        "2026-12-01T00:00:00 synchronized",  # no UTC offset
        "2026-12-01T00:00:00+00:00 maybe",
        "\xff",
    ],
)
def test_an_unreadable_saved_time_falls_back_to_the_release_date(tmp_path: Path, content: str) -> None:
    saved = tmp_path / "buffer.db.clock"
    saved.write_bytes(content.encode("latin-1"))
    with structlog.testing.capture_logs() as logs:
        guard = ClockGuard(last_time=saved, sync_flag=tmp_path / "none")
    assert guard.floor == TIME_FLOOR
    assert logs[0]["log_level"] == "warning"
    assert logs[0]["file"] == str(saved)


def test_a_saved_time_before_the_release_date_does_not_lower_the_floor(tmp_path: Path) -> None:
    saved = tmp_path / "buffer.db.clock"
    saved.write_text("1970-01-01T00:00:42+00:00 synchronized")
    assert ClockGuard(last_time=saved, sync_flag=tmp_path / "none").floor == TIME_FLOOR


def test_a_file_that_cannot_be_written_is_logged_once_and_readings_flow(tmp_path: Path) -> None:
    clocks = Clocks()
    with structlog.testing.capture_logs() as logs:
        guard = running_guard(clocks, sync_flag=tmp_path / "none", last_time=tmp_path / "no" / "f")
        clocks.run(120)
        assert qualities(guard, clocks, 1.0) == [Quality.GOOD]
    assert [e["event"] for e in logs].count("clock: cannot save the time") == 1


def test_behind_an_unsynchronised_saved_time_nothing_is_held_and_readings_are_marked_until_it_passes(
    tmp_path: Path,
) -> None:
    """A site without NTP: the last run's clock may have been the wrong one, so readings flow, marked."""
    saved = tmp_path / "buffer.db.clock"
    saved.write_text(f"{(TRUE_BOOT + timedelta(seconds=4)).isoformat()} unsynchronized\n")  # floor: +3 s
    clocks = Clocks()
    clocks.wall = TRUE_BOOT  # behind it
    with structlog.testing.capture_logs() as logs:
        guard = ClockGuard(
            now=clocks.now, monotonic=clocks.monotonic, sync_flag=tmp_path / "none", last_time=saved
        )
        assert guard.statistics().state is ClockState.STEPPED
    assert logs[0]["event"].startswith("clock behind the unsynchronised time the last run saved")
    assert qualities(guard, clocks, 1.0, 2.0, 3.0) == [Quality.UNCERTAIN_TIME] * 2 + [Quality.GOOD]
    clocks.wall -= timedelta(seconds=10)  # once past it, the floor no longer applies: a step is a step
    assert qualities(guard, clocks, 4.0) == [Quality.UNCERTAIN_TIME]
    assert guard.statistics().steps == 1


def test_behind_an_unsynchronised_saved_time_ntp_vouches_for_the_clock(tmp_path: Path) -> None:
    saved, flag = tmp_path / "buffer.db.clock", tmp_path / "synchronized"
    saved.write_text(f"{(TRUE_BOOT + timedelta(days=5 * 365)).isoformat()} unsynchronized\n")
    clocks = Clocks()
    clocks.wall = TRUE_BOOT
    guard = ClockGuard(now=clocks.now, monotonic=clocks.monotonic, sync_flag=flag, last_time=saved)
    assert qualities(guard, clocks, 1.0) == [Quality.UNCERTAIN_TIME]
    flag.touch()
    assert qualities(guard, clocks, 2.0) == [Quality.GOOD]
    assert guard.statistics().state is ClockState.SYNCHRONIZED
