"""Store-and-forward in SQLite: readings wait here until the broker has acknowledged them.

Every reading gets a gateway-wide sequence number (SQLite AUTOINCREMENT, never reused, persistent across
restarts: the highest ever issued is also kept beside the file, ledger.py, so a lost or damaged file
cannot make them start again). The uplink takes the oldest rows as a batch, publishes it, and calls `ack`
only after the broker's PUBACK; only then are the rows deleted. All SQLite work runs on one worker thread
so the event loop never waits on a disk flush. An `ack` costs no trip to that thread: the acknowledged
rows are deleted in the next commit's job (or ACK_DELAY_S later when none comes), and are counted as
gone at once.

Opening tells causes apart (opening.py): a lock is waited out, then is a StartupError; a file or directory
that is not ours to write is a StartupError naming the fix; only a file SQLite proves damaged is moved
aside, after its readable rows are copied into the new one (salvage.py). A full disk is a state, not a
hang: the file stops growing while the disk still has the room its log needs (space.py), and the oldest
readings are dropped (and counted) to keep the newest. When the disk refuses even so (another program took
the last bytes) and there is nothing left to drop, the readings it refuses are dropped instead, counted in
`dropped` too: nothing older is left to give up for them, and holding them would only hold the pollers.

Publishing early (publish_early, while the uplink is connected): a commit returns its readings, numbered and
encoded, for the uplink, before the disk flush, so they reach the broker without waiting for it. Only
committed readings leave (a crashed process loses none of them: the OS has the log), and their deletion
after the PUBACK runs on the same worker thread, after their commit.

The flush (durability 'full') runs on a thread of its own, beside the next commit: SQLite always commits
at synchronous=NORMAL (its log written, not flushed), then the flusher fsyncs the log (`commit` returns at
once, `flushed` waits for that; `append` waits for both). A commit never waits for the flush before it,
so a slow disk delays no reading on its way to the broker; a flush queued and not yet started covers the
commits after it too. Power lost before the flush loses those commits whole, never a part of one (the
log's checksums): as a power cut before SQLite's own flush would.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Literal, ParamSpec, Self, TypeVar

import structlog

from edge_agent.errors import StartupError
from edge_agent.readings import Reading
from edge_agent.store.errors import translated
from edge_agent.store.ledger import Ledger
from edge_agent.store.opening import check_access, is_locked, open_error, proves_damage
from edge_agent.store.rows import INSERT_ROWS, SET_TEXTS, RowEncoder
from edge_agent.store.salvage import salvage
from edge_agent.store.space import COMMIT_PAGES, TIGHT_BATCH, SpaceReserve, data_limit, wal_pages
from edge_agent.store.write_state import WriteState, write_failure

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
    readings_json: str  # compact: the entries' array ("r", docs/mqtt.md)
    t0_ms: int = 0  # compact: the first reading's time, ms since the epoch
    seqs_json: str | None = None  # compact: every reading's seq, when they are not consecutive


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


# The compact batch's entries (docs/mqtt.md): [alias, ms after the first one's time, value(, quality)], the
# alias from the uplink's table (temp.aliases; a point missing from it is named instead: [device, point,
# unit]); values of float32 points with 9 significant digits (enough to give the float32 back), others as
# above.
_COMPACT_SELECT = """
SELECT MIN(seq), MAX(seq), COUNT(*), MIN(t0),
       CASE WHEN MAX(seq) - MIN(seq) + 1 = COUNT(*) THEN NULL ELSE json_group_array(seq) END,
       '[' || group_concat(entry, ',') || ']'
FROM (
    SELECT seq, t0,
           '[' || COALESCE(alias, json_array(device, point, unit)) || ',' || (ts_us / 1000 - t0) || ','
           || CASE WHEN value_text IS NOT NULL THEN value_text WHEN value IS NULL THEN 'null'
                   WHEN f32 THEN printf('%.9g', value) ELSE printf('%!.17g', value) END
           || CASE quality WHEN 'good' THEN ']' ELSE ',"' || quality || '"]' END AS entry
    FROM (SELECT *, (SELECT ts_us / 1000 FROM readings WHERE seq > ?1 ORDER BY seq LIMIT 1) AS t0
          FROM readings WHERE seq > ?1 AND seq <= ?2 ORDER BY seq LIMIT ?3)
    LEFT JOIN temp.aliases USING (device, point)
    ORDER BY seq
)
"""
_ALIASES = """
CREATE TEMP TABLE IF NOT EXISTS aliases (
    device TEXT, point TEXT, alias INTEGER NOT NULL, f32 INTEGER NOT NULL, PRIMARY KEY (device, point)
) WITHOUT ROWID
"""
Alias = tuple[str, str, int, bool]  # device, point, alias, float32
Acked = tuple[int, int, int]  # an acknowledged batch: first seq, last seq, readings


@dataclass(frozen=True, slots=True)
class BufferStatistics:
    depth: int
    appended: int
    acknowledged: int
    oldest_ts: datetime | None
    dropped: int  # readings deleted unsent (buffer cap, disk full, lost with a damaged file), ever
    last_dropped_seq: int  # the newest of them: every seq up to here that a receiver lacks was dropped
    size_bytes: int
    cap_bytes: int
    disk_full: bool = False  # the disk refused a write: the oldest readings are dropped to keep the newest
    unnumbered: int = 0  # of `dropped`, since start: readings never given a seq (refused by a full disk,
    # dropped from the writer's full queue, left uncommitted by a stop)
    write_state: WriteState = WriteState.WRITING  # write_state.py
    write_reason: str | None = None  # why it is not `writing`


def _from_us(us: int) -> datetime:
    return datetime.fromtimestamp(us / 1_000_000, UTC)


_PAGES = "SELECT page_count, freelist_count FROM pragma_page_count, pragma_freelist_count"

Durability = Literal["full", "normal"]
MIN_CAP_BYTES = 1 << 20
NO_LIMIT = (1 << 63) - 1  # above every sequence number
DROP_SHARE = 0.05  # when full, drop this share of the readings at once (not one by one)
FULL_UNTIL = 0.9  # at the cap, the buffer reads `full` until the backlog is sent below this share of it
FULL_DROP_SHARE = 0.1  # when the disk is full: this share of the readings, each time a write is refused
FULL_ROUNDS = 4  # times a refused write drops readings and tries again before its readings are dropped
LOCK_WAIT_S = 20.0  # a buffer locked by another process at start: waited out this long
BUSY_TIMEOUT_MS = 5000  # once running: how long a statement waits for another process's lock
FRESH_BATCHES = 64  # batches handed out early and not yet taken (a stalled broker): no more until taken
ACK_DELAY_S = 0.5  # acknowledged rows wait at most this long for a commit to delete them with


class Buffer:
    """A durable FIFO of readings with a size cap. Use as an async context manager.

    durability 'full' (the default): a batch survives power loss once `append` returned (its log flushed).
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
        self.disk_full = False
        self._limit = cap_bytes  # the cap, or less: what the disk held when it filled
        self._ledger = Ledger(path)
        self._reserve = SpaceReserve(path)
        self._salvaged_meta: dict[str, int] = {}
        self._bd_seq = 0
        self._pending_deletes: list[Acked] = []  # acknowledged, deleting failed (a full disk): later
        self._acks: list[Acked] = []  # acknowledged by the broker, for the next commit's job to delete
        self._acks_waiting = 0  # readings acknowledged and not yet deleted (already out of `depth`)
        self._acks_lock = threading.Lock()  # the event loop's acks and the buffer thread's deletes
        self._ack_timer: asyncio.TimerHandle | None = None
        self._counters_pending = False  # counters not yet in the file's meta table (a full disk)
        self._page_size = 4096
        self._pages = 0  # in use
        self._file_pages = 0  # in the file, free ones included
        self._log_pages = 0  # wal_autocheckpoint
        self._unnumbered = 0  # readings counted in `dropped` that never had a seq, since start
        self._refused = 0  # ... of them, refused by a full disk when the writer committed them
        self._refusing = False  # the last commit was refused (logged once)
        self._at_cap = False  # the cap made the oldest readings give way (until sent below FULL_UNTIL)
        self._write_error: tuple[WriteState, str] | None = None  # the last commit failed: why
        self._counted_at = 0.0  # when unnumbered losses were last saved to the ledger (monotonic)
        self._counts_behind = False  # ... and some were counted since
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="buffer")
        self._flusher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="buffer-flush")
        self._flush: Future[None] | None = None  # the flush last queued
        self._db: sqlite3.Connection | None = None
        self._depth = 0
        self._last_seq = 0
        self._appended = 0
        self._acknowledged = 0
        self._oldest_ts: datetime | None = None
        self._changed = asyncio.Event()
        self._rows = RowEncoder()
        self._early: tuple[int, bool] | None = None  # publishing early: (batch size, compact)
        self._fresh: deque[EncodedBatch] = deque()  # handed out early, for next_encoded

    async def __aenter__(self) -> Self:
        try:
            with translated(self.path, "open", starting=True):
                await self._run(self._open)
        except StartupError:
            self._executor.shutdown(wait=False)
            self._flusher.shutdown(wait=False)
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._ack_timer is not None:
            self._ack_timer.cancel()
            self._ack_timer = None
        if self._db is not None:
            await self._run(self._close_db)
        self._executor.shutdown(wait=True)
        self._flusher.shutdown(wait=True)

    def _close_db(self) -> None:
        if self._db is not None:
            self._apply_acks_or_log()
            self._ledger.write_mark(self._last_seq, self._depth)
            if self._ledger.unsaved or self._counts_behind:
                self._save_ledger()
            self._db.close()
            self._db = None
        self._ledger.close()

    async def _run(self, func: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: func(*args, **kwargs))

    # --- worker-thread side ---------------------------------------------------------------------

    def _open(self) -> None:
        """Open the file; SQLite replays its write-ahead log after a crash. What stops the start is a
        StartupError (opening.py); a file SQLite proves damaged is salvaged and replaced."""
        check_access(self.path)
        self._ledger.load()
        damage = self._open_file()
        if damage is not None:
            self._replace_damaged(damage)
        self._load_state()
        self._continue_sequence()
        self._reserve.make()

    def _open_file(self) -> str | None:
        """Connect and prepare the file, waiting out another process's lock; why it is damaged, or None."""
        deadline = time.monotonic() + LOCK_WAIT_S
        waiting = False
        while True:
            try:
                return self._connect()
            except sqlite3.DatabaseError as exc:
                if self._db is not None:
                    self._db.close()
                    self._db = None
                if is_locked(exc) and time.monotonic() < deadline:
                    if not waiting:
                        log.warning("buffer locked by another process: waiting", buffer=str(self.path))
                        waiting = True
                    time.sleep(0.2)
                    continue
                if proves_damage(exc):
                    return str(exc)
                raise open_error(self.path, exc, LOCK_WAIT_S) from exc

    def _connect(self) -> str | None:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=1.0)
        self._db = db
        check = db.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            return f"quick_check: {check}"
        db.execute("PRAGMA auto_vacuum=INCREMENTAL")  # effective on a new file: free pages can be released
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")  # durability 'full': the flusher flushes the log (above)
        page_size = db.execute("PRAGMA page_size").fetchone()[0]
        ours = sum(p.stat().st_size for p in (self.path, Path(f"{self.path}-wal")) if p.exists())
        self._log_pages = wal_pages(self.path.parent, page_size, ours)
        db.execute(f"PRAGMA wal_autocheckpoint={self._log_pages}")
        # the log shrinks back to this after a checkpoint: a burst does not keep the disk's room
        db.execute(f"PRAGMA journal_size_limit={(self._log_pages + COMMIT_PAGES) * page_size}")
        db.executescript(_SCHEMA)
        if "value_text" not in {column[1] for column in db.execute("PRAGMA table_info(readings)")}:
            db.execute("ALTER TABLE readings ADD COLUMN value_text TEXT")  # a file from before it existed
        db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        db.execute(_ALIASES)
        return None

    def _replace_damaged(self, damage: str) -> None:
        """Move the damaged file aside (kept for diagnosis), start a new one and copy in what it can read."""
        if self._db is not None:
            self._db.close()
            self._db = None
        aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
        for suffix in ("", "-wal", "-shm"):
            source = Path(f"{self.path}{suffix}")
            if source.exists():
                source.rename(Path(f"{aside}{suffix}"))
        self.moved_aside = aside
        log.error("buffer file damaged: moved aside, salvaging its readings into a new one",
                  buffer=str(self.path), moved_to=str(aside), error=damage)  # fmt: skip
        if (again := self._open_file()) is not None:
            raise StartupError(f"buffer {self.path}: a new file is damaged too ({again}): check the disk")
        mark = self._ledger.mark
        hint = max(self._ledger.values.reserved if mark is None else mark.issued, 0)
        salvaged = salvage(aside, self._conn(), hint)
        self._salvaged_meta = salvaged.meta
        log.warning("buffer salvaged", buffer=str(self.path), readings=salvaged.rows, damaged=str(aside))

    def _load_state(self) -> None:
        db = self._conn()
        self._page_size = db.execute("PRAGMA page_size").fetchone()[0]
        self._depth = db.execute("SELECT COUNT(*) FROM readings").fetchone()[0]
        self._refresh_oldest()
        self._measure()

    def _continue_sequence(self) -> None:
        """Sequence numbers, bdSeq and `dropped` continue from the highest ever kept, file or ledger. A range
        issued before and missing now (an emptied or replaced file, a damaged log) is logged and counted
        as dropped, and new readings are numbered above it: receivers then see a known loss, not a
        restart whose readings they would discard as duplicates."""
        db = self._conn()
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        kept, mark = self._ledger.values, self._ledger.mark

        def most(key: str) -> int:
            return max(int(meta.get(key, 0)), int(self._salvaged_meta.get(key, 0)), int(getattr(kept, key)))

        self._dropped, self._last_dropped_seq, self._bd_seq = (
            most("dropped"),
            most("last_dropped_seq"),
            most("bd_seq"),
        )
        found = max(self._sequence(), db.execute("SELECT COALESCE(MAX(seq), 0) FROM readings").fetchone()[0])
        issued, lost, unknown = found, 0, False
        if mark is not None and mark.issued >= found:  # the mark is exact (a stale one trails the file)
            issued = mark.issued
            lost = min(mark.depth, issued - found)
            if self.moved_aside is not None:  # rows below `found` may have been unreadable too
                lost = min(mark.depth, max(lost, mark.depth - self._depth))
        elif mark is None and self._ledger.found and kept.reserved > found:
            issued, unknown = kept.reserved, True  # numbers up to the ceiling may have been issued
        if issued > found:
            with db:
                db.execute("BEGIN IMMEDIATE")
                if not db.execute(
                    "UPDATE sqlite_sequence SET seq = ? WHERE name = 'readings'", (issued,)
                ).rowcount:
                    db.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('readings', ?)", (issued,))
        self._last_seq = issued
        if lost or unknown:
            self._dropped += lost
            self._last_dropped_seq = max(self._last_dropped_seq, issued)
            log.error(
                "buffer readings lost before this start: counted as dropped, new readings numbered above",
                buffer=str(self.path), first_seq=found + 1 if issued > found else None, last_seq=issued,
                readings=lost if not unknown else "unknown (the exact position was not kept)",
            )  # fmt: skip
        self._ledger.reserve(issued)
        self._remember_counters()
        self._ledger.write_mark(self._last_seq, self._depth)

    def _remember_counters(self) -> None:
        """`dropped`, `last_dropped_seq` and bdSeq into the ledger (flushed) and the file's meta table (for
        the read-only tools); a full disk keeps them in memory until the next chance."""
        self._save_ledger()
        db = self._conn()
        try:
            with db:
                db.execute("BEGIN IMMEDIATE")
                db.executemany(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                    [
                        ("dropped", self._dropped),
                        ("last_dropped_seq", self._last_dropped_seq),
                        ("bd_seq", self._bd_seq),
                    ],
                )
            self._counters_pending = False
        except sqlite3.OperationalError as exc:
            if not self._reserve.disk_is_full(exc):
                raise
            self._counters_pending = True

    def _save_ledger(self) -> None:
        self._counted_at, self._counts_behind = time.monotonic(), False
        values = self._ledger.values
        values.dropped, values.last_dropped_seq, values.bd_seq = (
            self._dropped,
            self._last_dropped_seq,
            self._bd_seq,
        )
        self._ledger.save()

    def _sequence(self) -> int:
        """The last sequence number handed out (AUTOINCREMENT keeps it in sqlite_sequence)."""
        row = self._conn().execute("SELECT seq FROM sqlite_sequence WHERE name = 'readings'").fetchone()
        return int(row[0]) if row else 0

    def _measure(self) -> None:
        self._file_pages, free = self._conn().execute(_PAGES).fetchone()
        self._pages = self._file_pages - free

    def _size(self) -> int:
        return self._pages * self._page_size

    def _make_room(self, limit: int) -> None:
        """Over the cap (or what a full disk holds): drop the oldest share of the readings, count them, and
        give the pages back (on a full disk they are kept in the file, for the next readings)."""
        while self._size() > limit and self._depth > 0:
            self._at_cap = self._at_cap or not self.disk_full
            self._drop_oldest(max(1, int(self._depth * DROP_SHARE)))
        if not self.disk_full:
            self._conn().executescript("PRAGMA incremental_vacuum;")  # (execute() would free one page only)

    def _drop_oldest(self, count: int) -> None:
        """Delete the oldest `count` readings unsent, and count them (`dropped`, `last_dropped_seq`)."""
        self._apply_acks(tidy=False)  # (the oldest may be delivered already: not to be counted)
        db = self._conn()
        oldest = db.execute("SELECT seq FROM readings ORDER BY seq LIMIT 1 OFFSET ?", (count - 1,)).fetchone()
        (last,) = oldest or db.execute("SELECT MAX(seq) FROM readings").fetchone()  # (fewer left now)
        if last is None:
            return
        with db:
            db.execute("BEGIN IMMEDIATE")
            dropped = db.execute("DELETE FROM readings WHERE seq <= ?", (last,)).rowcount
            db.executemany(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                [
                    ("dropped", self._dropped + dropped),
                    ("last_dropped_seq", max(self._last_dropped_seq, last)),
                ],
            )
        self._dropped += dropped
        self._last_dropped_seq = max(self._last_dropped_seq, last)
        self._depth -= dropped
        self._measure()
        self._refresh_oldest()
        self._save_ledger()  # (the file's meta table has them already)

    def _keep_within_disk(self) -> None:
        """The readings over what the disk lets them take (room kept for the log): the disk-full state, the
        oldest dropped."""
        room = data_limit(self.path, self._file_pages, self._page_size, self._log_pages)
        if room is None:
            return
        if not self.disk_full:
            if self._size() <= room:
                return
            log.error("disk full: dropping the oldest readings to keep the newest (counted as dropped)",
                      buffer=str(self.path), free_bytes=shutil.disk_usage(self.path.parent).free)  # fmt: skip
            self.disk_full = True
        self._limit = min(self.cap_bytes, room)  # follows the disk while it is full, up or down
        if self._size() > self._limit:
            self._make_room(self._limit)

    def _disk_filled(self, error: sqlite3.Error) -> bool:
        """The disk refused a write: release the reserve, fold the log into the file, drop the oldest, and
        from then on keep within what the disk held (a cap of its own: the file stops growing, its free
        pages take the next readings). False when nothing could be dropped."""
        if not self.disk_full:
            log.error("disk full: dropping the oldest readings to keep the newest (counted as dropped)",
                      buffer=str(self.path), error=str(error))  # fmt: skip
            self.disk_full = True
        self._reserve.release()
        self._checkpoint()
        if self._depth == 0:
            return False  # nothing of ours to drop: the disk is full of something else
        try:
            self._drop_oldest(max(1, int(self._depth * FULL_DROP_SHARE)))
        except sqlite3.OperationalError as again:
            if not self._reserve.disk_is_full(again):
                raise
            return False  # not even a delete fits
        self._limit = min(self.cap_bytes, self._size())
        self._checkpoint()
        return True

    def _refuse(self, count: int, error: sqlite3.Error) -> None:
        """A commit the full disk refused with nothing left to drop: its readings are dropped, counted."""
        if not self._refusing:
            log.error("disk full and nothing left to drop: new readings dropped (counted as dropped)",
                      buffer=str(self.path), error=str(error), depth=self._depth)  # fmt: skip
            self._refusing = True
        self._refused += count
        self._count_unnumbered(count)

    def _count_unnumbered(self, count: int, *, now: bool = False) -> None:
        """Readings lost before they had a seq: counted in `dropped` (not in `last_dropped_seq`) and saved
        in the ledger, at most once a second while they keep coming (and at close)."""
        self._dropped += count
        self._unnumbered += count
        self._counts_behind = True
        if now or time.monotonic() - self._counted_at >= 1.0:
            self._save_ledger()

    def _checkpoint(self, mode: str = "RESTART") -> None:
        """Fold the write-ahead log into the file: RESTART (the log's space is then written over from its
        start, no more disk needed), or TRUNCATE (its space back to the file system)."""
        with contextlib.suppress(sqlite3.Error):
            self._conn().execute(f"PRAGMA wal_checkpoint({mode})").fetchone()

    def _recover(self) -> None:
        """After a write that worked: what a full disk left pending, and the end of the disk-full state."""
        if self._pending_deletes:
            pending, self._pending_deletes = self._pending_deletes, []
            for acked in pending:
                try:
                    self._delete(*acked)
                except sqlite3.Error:
                    self._pending_deletes.append(acked)
        if self._ledger.unsaved or self._counters_pending:
            self._remember_counters()
        if self.disk_full and self._size() < self._limit // 2:  # drained: give the disk back, try the reserve
            self._conn().executescript("PRAGMA incremental_vacuum;")
            self._checkpoint("TRUNCATE")
        if self.disk_full and self._reserve.make() and self._roomy():
            self.disk_full = False
            self._limit = self.cap_bytes
            log.info("disk has room again", buffer=str(self.path))

    def _roomy(self) -> bool:
        """The disk lets the readings take twice what they take now (the end of the disk-full state)."""
        room = data_limit(self.path, self._file_pages, self._page_size, self._log_pages)
        return room is None or room > 2 * self._size()

    def _housekeeping_failed(self, error: sqlite3.Error) -> None:
        if not (self.disk_full and self._reserve.disk_is_full(error)):  # (a full disk is logged once)
            log.warning(
                "buffer housekeeping failed: tried again later", buffer=str(self.path), error=str(error)
            )

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError(f"buffer {self.path} is not open")
        return self._db

    def _refresh_oldest(self) -> None:
        row = self._conn().execute("SELECT ts_us FROM readings ORDER BY seq LIMIT 1").fetchone()
        self._oldest_ts = None if row is None else _from_us(row[0])

    def _insert(self, rows_json: str, texts_json: str | None, count: int) -> list[EncodedBatch]:
        """Commit readings (after deleting what the broker acknowledged meanwhile); while publishing early,
        the committed readings as batches for the uplink (none when the full disk refused them)."""
        self._apply_acks()
        self._ledger.reserve(self._last_seq + count)  # (a flush once per block of sequence numbers)
        batches: list[EncodedBatch] = []
        for attempt in range(FULL_ROUNDS + 1):
            try:
                batches = self._commit(rows_json, texts_json, count)
                self._refusing = False
                break
            except sqlite3.OperationalError as error:
                if not self._reserve.disk_is_full(error):
                    raise
                if attempt == FULL_ROUNDS or not self._disk_filled(error):
                    self._refuse(count, error)
                    break
        self._ledger.write_mark(self._last_seq, self._depth)
        self._tidy()
        return batches

    def _flush_log(self) -> None:
        """On the flusher's thread: the log's frames written so far to the disk."""
        try:
            fd = os.open(f"{self.path}-wal", os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as error:  # the commit stands; SQLite flushes the log again at its checkpoint
            log.error("buffer flush failed", buffer=str(self.path), error=str(error))  # noqa: TRY400

    def _commit(self, rows_json: str, texts_json: str | None, count: int) -> list[EncodedBatch]:
        db = self._conn()
        first, last = self._last_seq + 1, self._last_seq + count  # one writer: consecutive numbers
        with db:  # one transaction, one flush (the flusher's), for the whole batch
            db.execute("BEGIN IMMEDIATE")
            db.execute(INSERT_ROWS, (rows_json, first))
            if texts_json is not None:
                db.execute(SET_TEXTS, (texts_json, first))
            batches = [] if (early := self._early) is None else self._hand_out(first - 1, last, *early)
        self._last_seq = last
        self._depth += count
        self._appended += count
        return batches

    def _tidy(self) -> None:
        """After a commit: the cap, and what a full disk left pending. A failure here must neither undo nor
        repeat the commit: it is logged and tried again after the next one."""
        try:
            self._measure()
            self._keep_within_disk()  # (first: while the disk is full, the limit follows its room)
            if self._size() > self._limit:
                self._make_room(self._limit)
            if self._oldest_ts is None:
                self._refresh_oldest()
            if self.disk_full or self._pending_deletes or self._counters_pending or self._ledger.unsaved:
                self._recover()
        except sqlite3.Error as error:
            self._housekeeping_failed(error)

    def _hand_out(self, after_seq: int, last: int, limit: int, compact: bool) -> list[EncodedBatch]:
        """Inside a commit's transaction: the readings (after_seq, last] for the uplink, in batches (they
        leave once committed). None while FRESH_BATCHES wait (the broker is slow): the live lane reads
        those readings from the file then."""
        batches: list[EncodedBatch] = []
        if len(self._fresh) >= FRESH_BATCHES:  # (read on this thread, an approximate bound is enough)
            return batches
        while after_seq < last:
            batch = self._select_encoded(limit, after_seq, last, compact=compact)
            if batch is None:
                break
            batches.append(batch)
            after_seq = batch.last_seq
        return batches

    def _select_encoded(
        self, limit: int, after_seq: int, up_to_seq: int = NO_LIMIT, *, compact: bool = False
    ) -> EncodedBatch | None:
        if compact:
            first, last, count, t0, seqs, entries = (
                self._conn().execute(_COMPACT_SELECT, (after_seq, up_to_seq, limit)).fetchone()
            )
            return EncodedBatch(first, last, count, entries, t0, seqs) if count else None
        first, last, count, readings_json = (
            self._conn().execute(_ENCODED_SELECT, (after_seq, up_to_seq, limit)).fetchone()
        )
        if not count:
            return None
        return EncodedBatch(first, last, count, readings_json)

    def _select_acked(
        self, limit: int, after_seq: int, up_to_seq: int = NO_LIMIT, *, compact: bool = False
    ) -> EncodedBatch | None:
        """As _select_encoded, once what the broker acknowledged is deleted (it is not sent again)."""
        self._apply_acks()
        return self._select_encoded(limit, after_seq, up_to_seq, compact=compact)

    def _set_aliases(self, aliases: Sequence[Alias]) -> None:
        db = self._conn()
        with db:
            db.execute("BEGIN")
            db.execute("DELETE FROM temp.aliases")
            db.executemany("INSERT INTO temp.aliases VALUES (?, ?, ?, ?)", aliases)

    def _apply_acks(self, *, tidy: bool = True) -> None:
        """Delete the batches acknowledged since the last time (adjacent ones in one statement). What
        fails is deleted after a later commit; a lock held too long is raised, as the next statement
        would meet it too."""
        with self._acks_lock:
            acks, self._acks = self._acks, []
        if not acks:
            return
        merged = _merged(acks)
        for index, acked in enumerate(merged):
            try:
                self._acknowledged_rows(acked)
            except sqlite3.Error as error:
                self._pending_deletes.append(acked)
                if is_locked(error):
                    self._pending_deletes += merged[index + 1 :]
                    raise
                log.warning("buffer delete failed: tried again later", buffer=str(self.path),
                            error=str(error))  # fmt: skip
        self._ledger.write_mark(self._last_seq, self._depth)
        if tidy and (self.disk_full or self._pending_deletes):
            self._tidy()

    def _acknowledged_rows(self, acked: Acked) -> None:
        """Delete an acknowledged batch; on a full disk, try again after the reserve is released, then keep
        it for later (until then it is resent after a reconnect: a duplicate the receiver drops)."""
        for attempt in range(2):
            try:
                self._delete(*acked)
            except sqlite3.OperationalError as error:
                if not self._reserve.disk_is_full(error):
                    raise
                if attempt == 1:
                    self._pending_deletes.append(acked)
                    return
                self.disk_full = True
                self._reserve.release()
                self._checkpoint()
            else:
                return

    def _delete(self, first_seq: int, last_seq: int, acked: int) -> int:
        """Delete the rows of `acked` acknowledged readings. No flush of its own: a crashed process loses
        nothing the OS already has, and if the power fails first, the batch is merely sent again (a
        duplicate the receiver drops), never lost."""
        db = self._conn()
        with db:
            db.execute("BEGIN IMMEDIATE")
            deleted = db.execute(
                "DELETE FROM readings WHERE seq BETWEEN ? AND ?", (first_seq, last_seq)
            ).rowcount
        with self._acks_lock:  # (depth as statistics() shows it stays right while this runs)
            self._depth -= deleted
            self._acknowledged += deleted
            self._acks_waiting -= acked
        try:
            self._refresh_oldest()
            if self._depth == 0:
                db.executescript("PRAGMA incremental_vacuum;")  # drained: give the free pages back
            self._measure()
            self._at_cap = self._at_cap and self._size() >= self.cap_bytes * FULL_UNTIL
        except sqlite3.Error as error:  # the delete stands; the pages come back after a later one
            self._housekeeping_failed(error)
        return deleted

    # --- event-loop side ------------------------------------------------------------------------

    async def append(self, readings: Sequence[Reading]) -> None:
        """Store readings durably; returns once they are committed and flushed."""
        await self.commit(readings)
        await self.flushed()

    async def commit(self, readings: Sequence[Reading]) -> None:
        """Commit readings (handing them to the uplink while publishing early); returns once committed,
        with their flush queued (durability 'full': `flushed` waits for it). The next commit need not
        wait for it."""
        if self.disk_full and len(readings) > TIGHT_BATCH:  # a full disk: small transactions
            parts = [readings[start : start + TIGHT_BATCH] for start in range(0, len(readings), TIGHT_BATCH)]
        else:
            parts = [readings] if readings else []
        for part in parts:
            rows_json, texts_json = self._rows(part)
            try:
                batches = await self._run(self._insert, rows_json, texts_json, len(part))
            except sqlite3.Error as error:
                self._write_error = write_failure(self.path, error)
                raise
            self._write_error = None
            if self._early is not None:  # (not those of a commit that began before publishing stopped)
                self._fresh.extend(batches)
            self._changed.set()
        if self.durability == "full" and parts:
            self._queue_flush()

    def _queue_flush(self) -> None:
        """A flush of the log that starts after the commits made so far: the one queued, if it has not
        started yet. (Queued from the event loop: the buffer's thread never waits on the flusher's.)"""
        flush = self._flush
        if flush is None or flush.running() or flush.done():
            self._flush = self._flusher.submit(self._flush_log)

    async def flushed(self) -> None:
        """Until every commit made so far is flushed to the disk (the flush last queued covers them)."""
        if (flush := self._flush) is not None and not flush.done():
            await asyncio.wrap_future(flush)

    def count_unnumbered(self, count: int) -> None:
        """Readings lost before the buffer numbered them (the writer's queue was full): counted in
        `dropped`, which receivers see, and kept. Does not wait."""
        self._executor.submit(self._count_unnumbered, count)

    async def count_uncommitted(self, accepted: int) -> tuple[int, bool]:
        """A stop that could not commit everything: of `accepted` readings (all the writer was given since
        start), those neither committed nor refused are counted in `dropped` and kept. How many, and
        whether the count is kept on disk (the ledger)."""
        return await self._run(self._uncommitted, accepted)

    def _uncommitted(self, accepted: int) -> tuple[int, bool]:
        lost = accepted - self._appended - self._refused
        if lost > 0:
            self._count_unnumbered(lost, now=True)
        return max(lost, 0), not self._ledger.unsaved

    async def next_encoded(self, limit: int, after_seq: int = 0, *, compact: bool = False) -> EncodedBatch:
        """The oldest `limit` readings with a sequence number above `after_seq` (those below are in
        flight), encoded as JSON (compact: the compact batch's entries); waits until there is at least
        one. While publishing early, the next batch a commit handed out comes without a query, and none
        is made while nothing above `after_seq` was committed (a commit sets `_changed` once `_last_seq`
        counts it)."""
        while True:
            self._changed.clear()
            while self._fresh:
                fresh = self._fresh.popleft()
                if fresh.first_seq == after_seq + 1:
                    return fresh
                if fresh.first_seq > after_seq + 1:  # some in between: the query below gives them
                    self._fresh.appendleft(fresh)
                    break
            if after_seq < self._last_seq:
                batch = await self._run(self._select_acked, limit, after_seq, compact=compact)
                if batch is not None:
                    return batch
            await self._changed.wait()

    async def backlog_batch(
        self, limit: int, after_seq: int, up_to_seq: int, *, compact: bool = False
    ) -> EncodedBatch | None:
        """As next_encoded, among the readings up to `up_to_seq` only; None when there are none (no wait)."""
        return await self._run(self._select_acked, limit, after_seq, up_to_seq, compact=compact)

    def publish_early(self, limit: int | None, *, compact: bool = False) -> None:
        """From now on each commit hands its readings to next_encoded before its flush, in batches of up
        to `limit` (None: no more; the uplink is not connected)."""
        self._fresh.clear()
        self._early = None if limit is None else (limit, compact)

    @property
    def publishing_early(self) -> bool:
        return self._early is not None

    async def set_aliases(self, aliases: Sequence[Alias]) -> None:
        """The compact batch's aliases: (device, point) -> alias, and whether the point is a float32."""
        await self._run(self._set_aliases, aliases)

    async def next_session(self) -> int:
        """A new uplink session number (bdSeq in the birth and Last Will), one above the last, kept."""
        return await self._run(self._next_session)

    def _next_session(self) -> int:
        """Kept in memory first: saved to the ledger (and the file) when the disk lets it, never a reason
        for the uplink not to connect."""
        self._bd_seq += 1
        try:
            self._remember_counters()
        except sqlite3.Error as error:
            log.warning("session number not saved yet", buffer=str(self.path), error=str(error))
            self._counters_pending = True
        return self._bd_seq

    async def ack(self, batch: EncodedBatch) -> None:
        """The broker acknowledged the batch: out of `depth` now, its rows deleted in the next commit's
        job, or ACK_DELAY_S from now when no commit comes first."""
        with self._acks_lock:
            self._acks.append((batch.first_seq, batch.last_seq, batch.count))
            self._acks_waiting += batch.count
        if self._ack_timer is None:
            self._ack_timer = asyncio.get_running_loop().call_later(ACK_DELAY_S, self._delete_acks)

    def _delete_acks(self) -> None:
        self._ack_timer = None
        if self._acks and self._db is not None:
            self._executor.submit(self._apply_acks_or_log)

    def _apply_acks_or_log(self) -> None:
        """Deletes nobody waits for (a timer, a close): a failure is logged, the rows go later."""
        try:
            self._apply_acks()
        except sqlite3.Error as error:
            log.warning("buffer delete failed: tried again later", buffer=str(self.path), error=str(error))

    @property
    def last_seq(self) -> int:
        """The newest committed reading's sequence number (0 before the first)."""
        return self._last_seq

    def statistics(self) -> BufferStatistics:
        with self._acks_lock:
            depth = max(0, self._depth - self._acks_waiting)
            acknowledged = self._acknowledged + self._acks_waiting
        return BufferStatistics(
            depth,
            self._appended,
            acknowledged,
            self._oldest_ts,
            self._dropped,
            self._last_dropped_seq,
            self._size(),
            self.cap_bytes,
            self.disk_full,
            self._unnumbered,
            *self._write_state(),
        )

    def _write_state(self) -> tuple[WriteState, str | None]:
        if self._write_error is not None:
            return self._write_error
        if self.disk_full:
            if self._refusing:
                return (
                    WriteState.DISK_FULL,
                    "the disk has no room and nothing is left to drop: new readings dropped",
                )
            return WriteState.DISK_FULL, "the disk has no room: the oldest readings make way for the newest"
        if self._at_cap:
            cap = f"{self.cap_bytes / (1 << 20):,.1f} MiB"
            return WriteState.FULL, f"at its cap of {cap}: the oldest readings make way for the newest"
        return WriteState.WRITING, None


def _merged(acks: list[Acked]) -> list[Acked]:
    """Acknowledged batches in seq order, adjacent ones joined (one DELETE for a run of them)."""
    merged: list[Acked] = []
    for first, last, count in sorted(acks):
        if merged and merged[-1][1] + 1 == first:
            merged[-1] = (merged[-1][0], last, merged[-1][2] + count)
        else:
            merged.append((first, last, count))
    return merged
