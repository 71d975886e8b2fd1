"""Clock sanity: no reading leaves with the time of a clock that was never set.

A Raspberry Pi has no real-time clock: it boots at the time it last saved, or at 1970, until NTP sets it.
- Before TIME_FLOOR (this release's date) the clock is certainly unset: poll results are held in memory
  (at most MAX_HELD readings, the oldest dropped and counted) with the monotonic time they were taken at.
  When the clock is set, each one's timestamp is corrected by the jump (its true time is now minus the
  monotonic time elapsed since) and they go to the buffer ahead of the new ones.
- After it, the clock may still be unsynchronised (restored from the last shutdown). systemd-timesyncd marks
  a synchronisation with SYNC_FLAG_FILE; without it the status says `unsynchronized` and one log line says
  so, but readings flow: a site without NTP must still report.
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

from edge_agent.readings import Reading, utc_now

log = structlog.get_logger("edge_agent.clock")

TIME_FLOOR = datetime(2026, 11, 1, tzinfo=UTC)  # no reading can be older than this release
SYNC_FLAG_FILE = Path("/run/systemd/timesync/synchronized")
MAX_HELD = 200_000  # readings kept while the clock is unset (about 40 MB)
FLAG_CHECK_INTERVAL_S = 1.0


class ClockState(StrEnum):
    SYNCHRONIZED = "synchronized"  # systemd-timesyncd has synchronised it since boot
    UNSYNCHRONIZED = "unsynchronized"  # plausible, but no synchronisation seen: it may be off
    NOT_SET = "not set"  # before TIME_FLOOR: readings are held until it is set


@dataclass(frozen=True, slots=True)
class ClockStatistics:
    state: ClockState
    held: int  # readings waiting for the clock to be set
    corrected: int  # readings whose timestamps were corrected since start
    dropped: int  # readings dropped unsent while holding (MAX_HELD reached)


class ClockGuard:
    def __init__(
        self,
        *,
        now: Callable[[], datetime] = utc_now,
        monotonic: Callable[[], float] = time.monotonic,
        floor: datetime = TIME_FLOOR,
        sync_flag: Path = SYNC_FLAG_FILE,
        max_held: int = MAX_HELD,
    ) -> None:
        self._now = now
        self._monotonic = monotonic
        self._floor = floor
        self._sync_flag = sync_flag
        self._max_held = max_held
        self._held: deque[tuple[float, datetime, list[Reading]]] = deque()  # monotonic, wall, readings
        self._held_count = 0
        self._corrected = 0
        self._dropped = 0
        self._state: ClockState | None = None
        self._next_flag_check = -math.inf

    def admit(self, readings: list[Reading]) -> list[Reading]:
        """What may go to the buffer now: nothing while the clock is unset, then the held ones, corrected."""
        state = self.state()
        if state is ClockState.NOT_SET:
            self._hold(readings)
            return []
        if not self._held:
            return readings
        return [*self._release(), *readings]

    def state(self) -> ClockState:
        if self._now() < self._floor:
            state = ClockState.NOT_SET
        elif self._state is ClockState.SYNCHRONIZED or self._synchronised():  # stays till reboot
            state = ClockState.SYNCHRONIZED
        else:
            state = ClockState.UNSYNCHRONIZED
        if state is not self._state:
            self._state = state
            message = {
                ClockState.NOT_SET: "clock not set: readings are held until it is",
                ClockState.UNSYNCHRONIZED: "clock not synchronised (no NTP yet): timestamps may be off",
                ClockState.SYNCHRONIZED: "clock synchronised",
            }[state]
            (log.info if state is ClockState.SYNCHRONIZED else log.warning)(
                message, now=self._now().isoformat()
            )
        return state

    def _synchronised(self) -> bool:
        """Whether the sync flag is there; looked for at most once a second (state runs for every poll)."""
        now = self._monotonic()
        if now < self._next_flag_check:
            return False
        self._next_flag_check = now + FLAG_CHECK_INTERVAL_S
        return self._sync_flag.exists()

    def statistics(self) -> ClockStatistics:
        return ClockStatistics(self.state(), self._held_count, self._corrected, self._dropped)

    def _hold(self, readings: list[Reading]) -> None:
        self._held.append((self._monotonic(), self._now(), readings))
        self._held_count += len(readings)
        while self._held_count > self._max_held:
            _, _, oldest = self._held.popleft()
            self._held_count -= len(oldest)
            self._dropped += len(oldest)

    def _release(self) -> list[Reading]:
        now, monotonic = self._now(), self._monotonic()
        released: list[Reading] = []
        for taken, wall, readings in self._held:
            shift = now - timedelta(seconds=monotonic - taken) - wall  # the jump the clock made since
            released += [
                Reading(r.device, r.point, r.value, r.unit, r.quality, r.ts + shift) for r in readings
            ]
        log.info("clock set: held readings released with corrected times", readings=len(released))
        self._corrected += len(released)
        self._held.clear()
        self._held_count = 0
        return released
