"""Store-and-forward in SQLite: readings wait here until the broker has acknowledged them.

Every reading gets a gateway-wide sequence number (SQLite AUTOINCREMENT, never reused, persistent across
restarts). The uplink takes the oldest rows as a batch, publishes it, and calls `ack` only after the broker's
PUBACK; only then are the rows deleted. All SQLite work runs on one worker thread so the event loop never
waits on a disk flush.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import ParamSpec, Self, TypeVar

from edge_agent.errors import StartupError
from edge_agent.readings import Quality, Reading

_P = ParamSpec("_P")
_T = TypeVar("_T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS readings (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    device  TEXT    NOT NULL,
    point   TEXT    NOT NULL,
    value   REAL,
    unit    TEXT    NOT NULL,
    quality TEXT    NOT NULL,
    ts_us   INTEGER NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class StoredReading:
    seq: int
    reading: Reading


@dataclass(frozen=True, slots=True)
class Batch:
    """Consecutive buffered readings, oldest first; `first_seq`..`last_seq` covers all of them."""

    readings: tuple[StoredReading, ...]

    @property
    def first_seq(self) -> int:
        return self.readings[0].seq

    @property
    def last_seq(self) -> int:
        return self.readings[-1].seq


@dataclass(frozen=True, slots=True)
class BufferStatistics:
    depth: int
    appended: int
    acknowledged: int
    oldest_ts: datetime | None


def _to_us(ts: datetime) -> int:
    return int(ts.timestamp() * 1_000_000)


def _from_us(us: int) -> datetime:
    return datetime.fromtimestamp(us / 1_000_000, UTC)


class Buffer:
    """A durable FIFO of readings. Use as an async context manager."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="buffer")
        self._db: sqlite3.Connection | None = None
        self._depth = 0
        self._appended = 0
        self._acknowledged = 0
        self._oldest_ts: datetime | None = None
        self._changed = asyncio.Event()

    async def __aenter__(self) -> Self:
        try:
            await self._run(self._open)
        except (OSError, sqlite3.Error) as exc:
            self._executor.shutdown(wait=False)
            raise StartupError(f"buffer {self.path}: cannot open: {exc}") from exc
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._db is not None:
            await self._run(self._db.close)
            self._db = None
        self._executor.shutdown(wait=True)

    async def _run(self, func: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: func(*args, **kwargs))

    # --- worker-thread side ---------------------------------------------------------------------

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")  # a committed batch survives power loss
        db.executescript(_SCHEMA)
        self._db = db
        self._depth = db.execute("SELECT COUNT(*) FROM readings").fetchone()[0]
        self._refresh_oldest()

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError(f"buffer {self.path} is not open")
        return self._db

    def _refresh_oldest(self) -> None:
        row = self._conn().execute("SELECT ts_us FROM readings ORDER BY seq LIMIT 1").fetchone()
        self._oldest_ts = None if row is None else _from_us(row[0])

    def _insert(self, readings: Sequence[Reading]) -> None:
        db = self._conn()
        with db:  # one transaction, one fsync, for the whole batch
            db.execute("BEGIN IMMEDIATE")
            db.executemany(
                "INSERT INTO readings (device, point, value, unit, quality, ts_us) VALUES (?,?,?,?,?,?)",
                [(r.device, r.point, r.value, r.unit, r.quality.value, _to_us(r.ts)) for r in readings],
            )
        self._depth += len(readings)
        self._appended += len(readings)
        if self._oldest_ts is None:
            self._refresh_oldest()

    def _select(self, limit: int) -> Batch | None:
        rows = (
            self._conn()
            .execute(
                "SELECT seq, device, point, value, unit, quality, ts_us FROM readings ORDER BY seq LIMIT ?",
                (limit,),
            )
            .fetchall()
        )
        if not rows:
            return None
        return Batch(
            tuple(
                StoredReading(seq, Reading(device, point, value, unit, Quality(quality), _from_us(ts_us)))
                for seq, device, point, value, unit, quality, ts_us in rows
            )
        )

    def _delete(self, first_seq: int, last_seq: int) -> int:
        db = self._conn()
        with db:
            db.execute("BEGIN IMMEDIATE")
            deleted = db.execute(
                "DELETE FROM readings WHERE seq BETWEEN ? AND ?", (first_seq, last_seq)
            ).rowcount
        self._depth -= deleted
        self._acknowledged += deleted
        self._refresh_oldest()
        return deleted

    # --- event-loop side ------------------------------------------------------------------------

    async def append(self, readings: Sequence[Reading]) -> None:
        """Store readings durably; returns once they are committed."""
        if not readings:
            return
        await self._run(self._insert, readings)
        self._changed.set()

    async def next_batch(self, limit: int) -> Batch:
        """The oldest `limit` readings; waits until there is at least one."""
        while True:
            self._changed.clear()
            batch = await self._run(self._select, limit)
            if batch is not None:
                return batch
            await self._changed.wait()

    async def ack(self, batch: Batch) -> None:
        """The broker acknowledged the batch: delete it."""
        await self._run(self._delete, batch.first_seq, batch.last_seq)

    def statistics(self) -> BufferStatistics:
        return BufferStatistics(self._depth, self._appended, self._acknowledged, self._oldest_ts)
