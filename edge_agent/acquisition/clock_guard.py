"""Clock sanity: no reading leaves as good with the time of a clock that was never set, or that just stepped.

A Raspberry Pi has no real-time clock: it boots at the time it last saved, or at 1970, until NTP sets it.
- The floor is the latest trusted time the agent saw (saved beside the buffer, at most SAVE_INTERVAL_S old,
  and at stop, with whether NTP had synchronised the clock), never earlier than TIME_FLOOR (this release's
  date). Before TIME_FLOOR, or before a synchronised saved time, at start, the clock is certainly behind:
  poll results are held in memory (at most MAX_HELD readings, the oldest dropped and counted) with the
  monotonic time they were taken at. When the clock is set, each one's timestamp is corrected by the jump
  (its true time is now minus the monotonic time elapsed since) and they go to the buffer ahead of the new
  ones; one still stamped before the floor goes out as `uncertain-time`. Before an unsynchronised saved
  time (a site without NTP: either clock may be the wrong one) nothing is held: the state is `stepped`
  until the clock passes it or NTP synchronises it.
- After it, the clock may still be unsynchronised (restored from the last shutdown). systemd-timesyncd marks
  a synchronisation with SYNC_FLAG_FILE; without it the status says `unsynchronized` and one log line says
  so, but readings flow: a site without NTP must still report.
- While running, the wall clock is compared with the monotonic clock once per admitted batch: when their
  difference moves by more than STEP_TOLERANCE_S the clock has stepped. The step is logged (size,
  direction), the state is `stepped` and good readings go out as `uncertain-time` (not held: the step may
  last) until the step is undone or systemd-timesyncd confirms the clock (its flag file touched after the
  step). Nothing is saved as the floor meanwhile. Only a step back before TIME_FLOOR holds readings again.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path

import structlog

from edge_agent.readings import Quality, Reading, utc_now

log = structlog.get_logger("edge_agent.clock")

TIME_FLOOR = datetime(2026, 11, 1, tzinfo=UTC)  # no reading can be older than this release
SYNC_FLAG_FILE = Path("/run/systemd/timesync/synchronized")
MAX_HELD = 200_000  # readings kept while the clock is unset (about 40 MB)
FLAG_CHECK_INTERVAL_S = 1.0
# Wall minus monotonic may move this much between two looks without being a step: NTP slews small offsets
# (both clocks alike); systemd-timesyncd steps from 0.4 s on, and a reading a second off is still right.
STEP_TOLERANCE_S = 1.0
SAVE_INTERVAL_S = 60.0  # how often the trusted time is saved as the next start's floor

_GOOD, _UNCERTAIN = Quality.GOOD, Quality.UNCERTAIN_TIME


class ClockState(StrEnum):
    SYNCHRONIZED = "synchronized"  # systemd-timesyncd has synchronised it since boot
    UNSYNCHRONIZED = "unsynchronized"  # plausible, but no synchronisation seen: it may be off
    STEPPED = "stepped"  # it jumped while running, unconfirmed: good readings go out as uncertain-time
    NOT_SET = "not set"  # before the floor: readings are held until it is set


_TRUSTED = (ClockState.SYNCHRONIZED, ClockState.UNSYNCHRONIZED)  # times worth saving as the next floor
_MESSAGES = {
    ClockState.NOT_SET: "clock not set: readings are held until it is",
    ClockState.UNSYNCHRONIZED: "clock not synchronised (no NTP yet): timestamps may be off",
    ClockState.SYNCHRONIZED: "clock synchronised",
    ClockState.STEPPED: "clock stepped: readings are marked uncertain-time until it is confirmed",
}
BEHIND = "clock behind the unsynchronised time the last run saved: readings are marked uncertain-time"


@dataclass(frozen=True, slots=True)
class ClockStatistics:
    state: ClockState
    held: int  # readings waiting for the clock to be set
    corrected: int  # readings whose timestamps were corrected since start
    dropped: int  # readings dropped unsent while holding (MAX_HELD reached)
    steps: int  # clock steps seen since start
    last_step_s: float | None  # the last one's size, seconds: negative back, positive ahead
    uncertain: int  # readings sent as uncertain-time since start
    floor: datetime  # before it at start, the clock is taken as not set (or as stepped, see module doc)


@dataclass(frozen=True, slots=True)
class SavedTime:
    time: datetime
    synchronized: bool  # NTP had synchronised the clock that read it


def last_time_file(buffer: Path) -> Path:
    """Where the trusted time is saved: beside the buffer, named after it."""
    return buffer.with_name(f"{buffer.name}.clock")


def saved_time(path: Path) -> SavedTime | None:
    """The time saved in `path` by a previous run ('<ISO 8601 time> synchronized|unsynchronized'); None (and
    a log line) when there is none to trust."""
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as error:
        log.warning("clock: saved time unreadable, ignored", file=str(path), error=str(error))
        return None
    time_text, _, sync = text.partition(" ")
    try:
        saved = datetime.fromisoformat(time_text)
    except ValueError:
        saved = None
    if saved is None or saved.tzinfo is None or sync not in {"synchronized", "unsynchronized"}:
        log.warning("clock: saved time unreadable, ignored", file=str(path), text=text[:60])
        return None
    return SavedTime(saved, sync == "synchronized")


def _write_atomically(path: Path, text: str) -> None:
    """The whole new text or the old one. No fsync: this runs on the event loop, where a flush could stall
    polling on a busy SD card; ext4 writes a file replaced by rename before the rename itself, and a file
    lost anyway only lowers the floor to this release's date (saved_time says so)."""
    part = path.with_name(f"{path.name}.part")
    part.write_text(text, encoding="utf-8")
    part.replace(path)


class ClockGuard:
    def __init__(
        self,
        *,
        now: Callable[[], datetime] = utc_now,
        monotonic: Callable[[], float] = time.monotonic,
        floor: datetime = TIME_FLOOR,
        sync_flag: Path = SYNC_FLAG_FILE,
        last_time: Path | None = None,
        max_held: int = MAX_HELD,
    ) -> None:
        self._now = now
        self._monotonic = monotonic
        self._minimum = floor
        saved = saved_time(last_time) if last_time is not None else None
        # (less the tolerance: NTP may have stepped a right clock back a little since it was saved)
        self.floor = floor if saved is None else max(floor, saved.time - timedelta(seconds=STEP_TOLERANCE_S))
        self._floor_certain = saved is None or saved.synchronized  # before it: not set, else unconfirmed
        self._sync_flag = sync_flag
        self._last_time = last_time
        self._max_held = max_held
        self._held: deque[tuple[float, datetime, list[Reading]]] = deque()  # monotonic, wall, readings
        self._held_count = 0
        self._corrected = 0
        self._dropped = 0
        self._state: ClockState | None = None
        self._seen_set = False  # the clock was past the floor once since start
        self._offset: float | None = None  # wall minus monotonic at the last look, seconds
        self._reference: float | None = None  # the offset before the step, while stepped
        self._synchronized = False
        self._flag_mtime: int | None = None  # the sync flag's, at the last look
        self._flag_mtime_at_step: int | None = None
        self._next_flag_check = -math.inf
        self._next_save = -math.inf
        self._save_failed = False
        self._steps = 0
        self._last_step_s: float | None = None
        self._uncertain = 0

    def admit(self, readings: list[Reading]) -> list[Reading]:
        """What may go to the buffer now: nothing while the clock is unset, then the held ones, corrected;
        good readings marked uncertain-time while the clock is stepped. One look at the clocks per batch."""
        state = self._observe()
        if state is ClockState.NOT_SET:
            self._hold(readings)
            return []
        if state is ClockState.STEPPED:
            readings = self._mark(readings)
        if not self._held:
            return readings
        return [*self._release(state), *readings]

    def state(self) -> ClockState:
        return self._observe()

    def statistics(self) -> ClockStatistics:
        return ClockStatistics(
            self._observe(),
            self._held_count,
            self._corrected,
            self._dropped,
            self._steps,
            self._last_step_s,
            self._uncertain,
            self.floor,
        )

    def save(self) -> None:
        """Save the time now as the next start's floor, if the clock is trusted (at stop)."""
        self._next_save = -math.inf
        self._observe()

    def _observe(self) -> ClockState:
        now, monotonic = self._now(), self._monotonic()
        offset = now.timestamp() - monotonic
        before_floor = not self._seen_set and now < self.floor
        not_set = now < self._minimum or (before_floor and self._floor_certain)
        if self._offset is not None and abs(offset - self._offset) > STEP_TOLERANCE_S:
            self._stepped(offset - self._offset, now, setting=not_set or self._state is ClockState.NOT_SET)
        self._offset = offset
        if self._reference is not None and abs(offset - self._reference) <= STEP_TOLERANCE_S:
            log.info("clock step undone: readings are no longer marked", now=now.isoformat())
            self._reference = None
        if monotonic >= self._next_flag_check:
            self._check_flag(monotonic)
        # before an unsynchronised floor: unconfirmed, unless NTP vouches for the clock
        behind = before_floor and not self._floor_certain and not self._synchronized
        if not_set:
            state = ClockState.NOT_SET
        elif self._reference is not None or behind:
            state = ClockState.STEPPED
        else:
            self._seen_set = True
            state = ClockState.SYNCHRONIZED if self._synchronized else ClockState.UNSYNCHRONIZED
        if state is not self._state:
            self._state = state
            (log.info if state is ClockState.SYNCHRONIZED else log.warning)(
                BEHIND if behind and self._reference is None else _MESSAGES[state],
                now=now.isoformat(),
                floor=self.floor.isoformat(),
            )
        if monotonic >= self._next_save and state in _TRUSTED:
            self._save(now, monotonic)
        return state

    def _stepped(self, step_s: float, now: datetime, *, setting: bool) -> None:
        """A step seen: logged; unless it sets an unset clock (held readings are corrected by it instead),
        the clock is uncertain from here, measured from the offset before the first unconfirmed step."""
        self._steps += 1
        self._last_step_s = step_s
        log.warning(
            "clock stepped",
            step_s=round(step_s, 3),
            direction="ahead" if step_s > 0 else "back",
            was=(now - timedelta(seconds=step_s)).isoformat(),
            now=now.isoformat(),
        )
        if not setting and self._reference is None:
            self._reference = self._offset
            self._flag_mtime_at_step = self._flag_mtime

    def _check_flag(self, monotonic: float) -> None:
        """The sync flag, looked at once a second at most: there means synchronised (till reboot); touched
        since a step means systemd-timesyncd has confirmed the clock after it."""
        self._next_flag_check = monotonic + FLAG_CHECK_INTERVAL_S
        try:
            mtime: int | None = self._sync_flag.stat().st_mtime_ns
        except OSError:
            mtime = None
        if mtime is not None:
            self._synchronized = True
            if self._reference is not None and mtime != self._flag_mtime_at_step:
                log.info("clock synchronised after the step: readings are no longer marked")
                self._reference = None
        self._flag_mtime = mtime

    def _save(self, now: datetime, monotonic: float) -> None:
        self._next_save = monotonic + SAVE_INTERVAL_S
        if self._last_time is None:
            return
        try:
            sync = "synchronized" if self._synchronized else "unsynchronized"
            _write_atomically(self._last_time, f"{now.isoformat()} {sync}\n")
        except OSError as error:
            if not self._save_failed:
                log.warning("clock: cannot save the time", file=str(self._last_time), error=str(error))
            self._save_failed = True
        else:
            self._save_failed = False

    def _mark(self, readings: list[Reading], before: datetime | None = None) -> list[Reading]:
        """Good readings as uncertain-time: all of them, or those stamped before `before`."""
        marked = [
            r._replace(quality=_UNCERTAIN) if r.quality is _GOOD and (before is None or r.ts < before) else r
            for r in readings
        ]
        self._uncertain += sum(r.quality is _UNCERTAIN for r in marked)
        return marked

    def _hold(self, readings: list[Reading]) -> None:
        self._held.append((self._monotonic(), self._now(), readings))
        self._held_count += len(readings)
        while self._held_count > self._max_held:
            _, _, oldest = self._held.popleft()
            self._held_count -= len(oldest)
            self._dropped += len(oldest)

    def _release(self, state: ClockState) -> list[Reading]:
        now, monotonic = self._now(), self._monotonic()
        released: list[Reading] = []
        for taken, wall, readings in self._held:
            shift = now - timedelta(seconds=monotonic - taken) - wall  # the jump the clock made since
            released += [r._replace(ts=r.ts + shift) for r in readings]
        log.info("clock set: held readings released with corrected times", readings=len(released))
        self._corrected += len(released)
        self._held.clear()
        self._held_count = 0
        # stepped since, or still before the floor (it passed the floor without being set): not good
        return self._mark(released, None if state is ClockState.STEPPED else self.floor)
