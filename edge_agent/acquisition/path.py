"""The reading path, in one place: every reading's way from a poller to the durable buffer.

    poller ─▶ checks (plausibility) ─▶ LatestValues (control and status see every checked reading)
                               └─▶ deadband ─▶ clock guard ─▶ bounded queue ─▶ group-commit writer ─▶ Buffer

Pollers never wait: when the queue is full (the buffer refuses writes), the oldest queued poll results are
dropped, logged and counted in the buffer's `dropped`, which receivers see. The writer commits everything
waiting in one transaction as soon as the polls underway are all in (underway.py: one commit for a wave of
polls due together), at most one per COMMIT_INTERVAL_S, and never later than that after the first reading
queued (EARLY_COMMIT_INTERVAL_S while the uplink is connected: each commit then hands its readings to the
uplink once committed, before its flush, and the next commit does not wait for that flush, so this interval
is all a reading waits for on its way to the broker). Readings count as stored (`drain`) once flushed; a
failed commit (I/O error, a lock held too long) keeps the readings and retries with backoff; a full disk is
the buffer's to handle (it drops its oldest readings, or the new ones when nothing is left to drop, counted:
the writer never waits on it). `drain` waits until every accepted reading is committed and flushed (an
orderly stop); `abandon` counts what a stop could not commit as dropped; `waiting` says how many readings
are queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import structlog

from edge_agent.acquisition.clock_guard import ClockGuard
from edge_agent.acquisition.latest import LatestValues
from edge_agent.acquisition.pipeline import PointFilters, point_pipelines
from edge_agent.acquisition.underway import PollsUnderway
from edge_agent.backoff import Backoff
from edge_agent.readings import Reading
from edge_agent.store.buffer import Buffer

log = structlog.get_logger("edge_agent.service")

QUEUE_BATCHES = 1000  # poll results waiting for the buffer writer; the oldest are dropped past this
WRITE_BATCH_READINGS = 20_000  # readings committed in one transaction at most
# Group commit: at most one transaction (one disk flush) per interval, whatever the load. An SD card
# wears by flushes, and each commit costs the event loop thread hand-offs, not only disk time.
COMMIT_INTERVAL_S = 0.05
EARLY_COMMIT_INTERVAL_S = 0.01  # while publishing early: read-to-broker within ~20 ms, at most 100 flushes/s


@dataclass(frozen=True, slots=True)
class QueueStatistics:
    batches_waiting: int
    capacity: int
    readings_accepted: int
    readings_dropped: int = 0  # dropped from a full queue, oldest first (never numbered; in `dropped` too)


class ReadingPath:
    def __init__(
        self,
        latest: LatestValues,
        buffer: Buffer,
        filters: dict[str, PointFilters],
        working: Callable[[], AbstractContextManager[None]] = contextlib.nullcontext,
        clock_file: Path | None = None,  # the clock guard's saved time (its floor at the next start)
        *,
        underway: PollsUnderway | None = None,  # the pollers'
    ) -> None:
        self.latest = latest
        self.buffer = buffer
        self.clock_guard = ClockGuard(last_time=clock_file)
        self._checks, self._deadband = point_pipelines(filters)
        self._working = working  # around each commit: systemd's watchdog sees a commit that hangs
        self.underway = underway or PollsUnderway()
        self._queue: asyncio.Queue[list[Reading]] = asyncio.Queue(maxsize=QUEUE_BATCHES)
        self.waiting = 0  # readings in the queue
        self._accepted = 0  # readings taken from the pollers since start
        self._dropped = 0  # readings dropped from a full queue since start

    async def accept(self, readings: list[Reading]) -> None:
        """A poll's readings (the pollers' callback)."""
        checked = self._checks(readings)
        self.latest.update(checked)
        forwarded = self.clock_guard.admit(self._deadband(checked))  # what moved (or a heartbeat), in time
        if not forwarded:
            return
        if self._queue.full():  # the buffer is not keeping up: keep polling, lose the oldest, say so
            oldest = self._queue.get_nowait()
            self._queue.task_done()
            self.waiting -= len(oldest)
            self._accepted -= len(oldest)
            if not self._dropped:
                log.error("buffer queue full: dropping the oldest readings (counted as dropped)",
                          buffer=str(self.buffer.path))  # fmt: skip
            self._dropped += len(oldest)
            self.buffer.count_unnumbered(len(oldest))
        self._queue.put_nowait(forwarded)
        self.waiting += len(forwarded)
        self._accepted += len(forwarded)

    def statistics(self) -> QueueStatistics:
        return QueueStatistics(self._queue.qsize(), QUEUE_BATCHES, self._accepted, self._dropped)

    async def drain(self) -> None:
        """Until every accepted reading is committed and flushed (bound it with asyncio.timeout)."""
        await self._queue.join()
        await self.buffer.flushed()

    async def abandon(self) -> tuple[int, bool]:
        """After the writer was cancelled at a stop: the accepted readings it did not commit are counted in
        the buffer's `dropped` (and its ledger). How many, and whether that count is kept on disk."""
        return await self.buffer.count_uncommitted(self._accepted)

    async def write(self) -> None:
        """The group-commit writer: runs until cancelled."""
        backoff = Backoff(base_s=0.5, cap_s=5.0)  # within a stop's time to commit (agent.SHUTDOWN_STEP_S)
        loop = asyncio.get_running_loop()
        next_commit = loop.time()
        while True:
            batches = [await self._queue.get()]
            interval = EARLY_COMMIT_INTERVAL_S if self.buffer.publishing_early else COMMIT_INTERVAL_S
            latest = loop.time() + interval  # the first reading waits no longer than this
            await asyncio.sleep(next_commit - loop.time())  # (a negative delay does not wait)
            await self.underway.all_in(latest - loop.time())
            next_commit = loop.time() + interval
            readings = list(batches[0])
            while len(readings) < WRITE_BATCH_READINGS and not self._queue.empty():
                batches.append(self._queue.get_nowait())
                readings += batches[-1]
            while True:
                try:
                    with self._working():
                        await self.buffer.commit(readings)
                except sqlite3.Error as error:
                    if backoff.attempt == 0:
                        log.error(  # noqa: TRY400 - the message says it all; no traceback
                            "buffer write failed", buffer=str(self.buffer.path), error=str(error)
                        )
                    await asyncio.sleep(backoff.next_delay())
                    continue
                if backoff.attempt:
                    log.info("buffer write recovered", buffer=str(self.buffer.path))
                    backoff.reset()
                break
            self.waiting -= len(readings)
            for _ in batches:  # committed (drain then waits for their flush)
                self._queue.task_done()
