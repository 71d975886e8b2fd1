"""Store-and-forward in SQLite: readings wait here until the broker has acknowledged them.

Every reading gets a gateway-wide sequence number (SQLite AUTOINCREMENT, never reused, persistent across
restarts). The uplink takes the oldest rows as a batch, publishes it, and calls `ack` only after the broker's
PUBACK; only then are the rows deleted. All SQLite work runs on one worker thread so the event loop never
waits on a disk flush.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Literal, ParamSpec, Self, TypeVar

import structlog

from edge_agent.errors import StartupError
from edge_agent.readings import Reading
from edge_agent.store.errors import translated
from edge_agent.store.rows import INSERT_ROWS, SET_TEXTS, RowEncoder

log = structlog.get_logger("edge_agent.buffer")

_P = ParamSpec("_P")
_T = TypeVar("_T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS readings (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    device  TEXT    NOT NULL,
    point   TEXT    NOT NULL,
    value   REAL,
    unit    TEXT    NOT NULL,
    quality TEXT    NOT NULL,
    ts_us   INTEGER NOT NULL,
    value_text TEXT  -- the value's repr where the REAL column cannot give it back exactly (rows.py)
);
"""


@dataclass(frozen=True, slots=True)
class EncodedBatch:
    """Consecutive buffered readings already encoded as a JSON array by SQLite (docs/mqtt.md's
    readings[]): the uplink's fast path, with no Python object per reading."""

    first_seq: int
    last_seq: int
    count: int
    readings_json: str


# One JSON object per reading, built inside SQLite. Values with 17 significant digits (SQLite's JSON would
# round to 15), which parse back to the same double where SQLite's printf rounds them correctly, or the repr
# kept where it does not (value_text, rows.py); timestamps truncated to milliseconds as Python's
# isoformat(timespec="milliseconds") does.
_ENCODED_SELECT = """
SELECT MIN(seq), MAX(seq), COUNT(*), json_group_array(json_object(
    'seq', seq, 'device', device, 'point', point,
    'value', CASE WHEN value_text IS NOT NULL THEN json(value_text)
                  WHEN value IS NOT NULL THEN json(printf('%!.17g', value)) END,
    'unit', unit, 'quality', quality,
    'ts', strftime('%Y-%m-%dT%H:%M:%fZ', (ts_us / 1000) / 1000.0, 'unixepoch')))
FROM (SELECT * FROM readings WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?)
"""


@dataclass(frozen=True, slots=True)
class BufferStatistics:
    depth: int
    appended: int
    acknowledged: int
    oldest_ts: datetime | None
    dropped: int  # readings deleted unsent because the buffer was full, since the file was created
    last_dropped_seq: int  # the newest of them: every seq up to here that a receiver lacks was dropped
    size_bytes: int
    cap_bytes: int


def _from_us(us: int) -> datetime:
    return datetime.fromtimestamp(us / 1_000_000, UTC)


_USED_PAGES = "SELECT page_count - freelist_count FROM pragma_page_count, pragma_freelist_count"

Durability = Literal["full", "normal"]
MIN_CAP_BYTES = 1 << 20
NO_LIMIT = (1 << 63) - 1  # above every sequence number
DROP_SHARE = 0.05  # when full, drop this share of the readings at once (not one by one)


class Buffer:
    """A durable FIFO of readings with a size cap. Use as an async context manager.

    durability 'full' (the default): a committed batch survives power loss (SQLite synchronous=FULL).
    'normal': a power cut may lose the last commits, never corrupt the file (faster on SD cards).
    When the file would pass `cap_bytes`, the oldest readings are dropped, counted and remembered
    (statistics().dropped, last_dropped_seq): a hard limit that says what it cost.
    """

    def __init__(self, path: Path, *, cap_bytes: int = 1 << 30, durability: Durability = "full") -> None:
        if cap_bytes < MIN_CAP_BYTES:
            raise ValueError(f"buffer cap {cap_bytes} bytes is below the minimum of {MIN_CAP_BYTES}")
        self.path = path
        self.cap_bytes = cap_bytes
        self.durability = durability
        self._dropped = 0
        self._last_dropped_seq = 0
        self.moved_aside: Path | None = None  # a damaged file found at start, kept under this name
        self._page_size = 4096
        self._pages = 0
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="buffer")
        self._db: sqlite3.Connection | None = None
        self._depth = 0
        self._last_seq = 0
        self._appended = 0
        self._acknowledged = 0
        self._oldest_ts: datetime | None = None
        self._changed = asyncio.Event()
        self._rows = RowEncoder()

    async def __aenter__(self) -> Self:
        try:
            with translated(self.path, "open", starting=True):
                await self._run(self._open)
        except StartupError:
            self._executor.shutdown(wait=False)
            raise
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
        """Open the file; SQLite replays its write-ahead log after a crash. A file that is not a sound
        database (a dying SD card, a half-copied file) is moved aside, kept for diagnosis, and replaced."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._open_file()
        except sqlite3.DatabaseError as exc:
            if self._db is not None:
                self._db.close()
                self._db = None
            aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
            for suffix in ("", "-wal", "-shm"):
                source = Path(f"{self.path}{suffix}")
                if source.exists():
                    source.rename(Path(f"{aside}{suffix}"))
            self.moved_aside = aside
            log.error(  # noqa: TRY400 - the message and the error say it; no traceback needed
                "buffer file damaged: moved aside, starting a new one",
                buffer=str(self.path),
                moved_to=str(aside),
                error=str(exc),
            )
            self._open_file()

    def _open_file(self) -> None:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db = db
        if db.execute("PRAGMA quick_check").fetchone()[0] != "ok":
            raise sqlite3.DatabaseError("quick_check failed")
        db.execute("PRAGMA auto_vacuum=INCREMENTAL")  # effective on a new file: free pages can be released
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={self.durability.upper()}")
        db.executescript(_SCHEMA)
        if "value_text" not in {column[1] for column in db.execute("PRAGMA table_info(readings)")}:
            db.execute("ALTER TABLE readings ADD COLUMN value_text TEXT")  # a file from before it existed
        self._page_size = db.execute("PRAGMA page_size").fetchone()[0]
        self._depth = db.execute("SELECT COUNT(*) FROM readings").fetchone()[0]
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        self._dropped = meta.get("dropped", 0)
        self._last_dropped_seq = meta.get("last_dropped_seq", 0)
        self._last_seq = self._sequence()
        self._refresh_oldest()
        self._measure()

    def _sequence(self) -> int:
        """The last sequence number handed out (AUTOINCREMENT keeps it in sqlite_sequence)."""
        row = self._conn().execute("SELECT seq FROM sqlite_sequence WHERE name = 'readings'").fetchone()
        return int(row[0]) if row else 0

    def _measure(self) -> None:
        self._pages = self._conn().execute(_USED_PAGES).fetchone()[0]

    def _size(self) -> int:
        return self._pages * self._page_size

    def _make_room(self) -> None:
        """Over the cap: drop the oldest share of the readings, count them, and give the pages back."""
        db = self._conn()
        while self._size() > self.cap_bytes and self._depth > 0:
            count = max(1, int(self._depth * DROP_SHARE))
            row = db.execute(
                "SELECT seq FROM readings ORDER BY seq LIMIT 1 OFFSET ?", (count - 1,)
            ).fetchone()
            last = row[0]
            with db:
                db.execute("BEGIN IMMEDIATE")
                dropped = db.execute("DELETE FROM readings WHERE seq <= ?", (last,)).rowcount
                self._dropped += dropped
                self._last_dropped_seq = max(self._last_dropped_seq, last)
                db.executemany(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                    [("dropped", self._dropped), ("last_dropped_seq", self._last_dropped_seq)],
                )
            self._depth -= dropped
            self._measure()
        db.executescript("PRAGMA incremental_vacuum;")  # (execute() would free one page only)
        self._refresh_oldest()

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError(f"buffer {self.path} is not open")
        return self._db

    def _refresh_oldest(self) -> None:
        row = self._conn().execute("SELECT ts_us FROM readings ORDER BY seq LIMIT 1").fetchone()
        self._oldest_ts = None if row is None else _from_us(row[0])

    def _insert(self, rows_json: str, texts_json: str | None, count: int) -> None:
        db = self._conn()
        with db:  # one transaction, one fsync, for the whole batch
            db.execute("BEGIN IMMEDIATE")
            last = db.execute(INSERT_ROWS, (rows_json,)).lastrowid or self._last_seq  # the batch's last row
            if texts_json is not None:  # one writer: the batch's seqs are consecutive
                db.execute(SET_TEXTS, (texts_json, last - count + 1))
        self._last_seq = last
        self._depth += count
        self._appended += count
        self._measure()
        if self._size() > self.cap_bytes:
            self._make_room()
        if self._oldest_ts is None:
            self._refresh_oldest()

    def _select_encoded(self, limit: int, after_seq: int, up_to_seq: int = NO_LIMIT) -> EncodedBatch | None:
        first, last, count, readings_json = (
            self._conn().execute(_ENCODED_SELECT, (after_seq, up_to_seq, limit)).fetchone()
        )
        if not count:
            return None
        return EncodedBatch(first, last, count, readings_json)

    def _delete(self, first_seq: int, last_seq: int) -> int:
        db = self._conn()
        # A delete needs no flush of its own: a crashed process loses nothing the OS already has, and if
        # the power fails first, the next insert's flush has not happened and the batch is merely sent
        # again (a duplicate the receiver drops), never lost. This halves the disk flushes.
        db.execute("PRAGMA synchronous=NORMAL")
        try:
            with db:
                db.execute("BEGIN IMMEDIATE")
                deleted = db.execute(
                    "DELETE FROM readings WHERE seq BETWEEN ? AND ?", (first_seq, last_seq)
                ).rowcount
        finally:
            db.execute(f"PRAGMA synchronous={self.durability.upper()}")
        self._depth -= deleted
        self._acknowledged += deleted
        self._refresh_oldest()
        if self._depth == 0:
            db.executescript("PRAGMA incremental_vacuum;")  # drained: give the free pages back
        self._measure()
        return deleted

    # --- event-loop side ------------------------------------------------------------------------

    async def append(self, readings: Sequence[Reading]) -> None:
        """Store readings durably; returns once they are committed."""
        if not readings:
            return
        rows_json, texts_json = self._rows(readings)
        await self._run(self._insert, rows_json, texts_json, len(readings))
        self._changed.set()

    async def next_encoded(self, limit: int, after_seq: int = 0) -> EncodedBatch:
        """The oldest `limit` readings with a sequence number above `after_seq` (those below are in
        flight), encoded as JSON; waits until there is at least one."""
        while True:
            self._changed.clear()
            batch = await self._run(self._select_encoded, limit, after_seq)
            if batch is not None:
                return batch
            await self._changed.wait()

    async def backlog_batch(self, limit: int, after_seq: int, up_to_seq: int) -> EncodedBatch | None:
        """As next_encoded, among the readings up to `up_to_seq` only; None when there are none (no wait)."""
        return await self._run(self._select_encoded, limit, after_seq, up_to_seq)

    async def next_session(self) -> int:
        """A new uplink session number (bdSeq in the birth and Last Will), one above the last, kept."""
        return await self._run(self._next_session)

    def _next_session(self) -> int:
        db = self._conn()
        with db:
            db.execute("BEGIN IMMEDIATE")
            row = db.execute("SELECT value FROM meta WHERE key = 'bd_seq'").fetchone()
            session = (row[0] if row else 0) + 1
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('bd_seq', ?)", (session,))
        return int(session)

    async def ack(self, batch: EncodedBatch) -> None:
        """The broker acknowledged the batch: delete it."""
        await self._run(self._delete, batch.first_seq, batch.last_seq)

    @property
    def last_seq(self) -> int:
        """The newest committed reading's sequence number (0 before the first)."""
        return self._last_seq

    def statistics(self) -> BufferStatistics:
        return BufferStatistics(
            self._depth,
            self._appended,
            self._acknowledged,
            self._oldest_ts,
            self._dropped,
            self._last_dropped_seq,
            self._size(),
            self.cap_bytes,
        )
