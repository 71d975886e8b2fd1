"""The buffer file read from outside the agent: a summary and the unsent readings, read-only.

The agent may be running: the file is opened through SQLite's read-only URI (`mode=ro`), so a missing file
is never created and nothing is ever written. The buffer runs in WAL mode, where a reader never blocks the
writer. Export reads in short pages (keyset on the sequence number), each its own read transaction, so a
slow consumer (a pipe, an SD card) neither holds the memory of millions of rows nor pins the agent's WAL.

The schema is buffer.py's: `readings(seq, device, point, value, unit, quality, ts_us, value_text)` and
`meta(key, value)`. Export reads the REAL `value` (a -0.0 comes out as 0.0), not `value_text`, which files
from before it lack.
"""

from __future__ import annotations

import csv
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Literal, Self, TextIO
from urllib.parse import quote

from edge_agent.errors import BufferUnreadable
from edge_agent.readings import Quality, Reading
from edge_agent.store.errors import translated

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
PAGE_ROWS = 5000  # readings per read transaction while exporting
BUSY_TIMEOUT_S = 2.0  # a reader waits this long at most for SQLite's brief WAL-index locks
ExportFormat = Literal["jsonl", "csv"]
COLUMNS = ("seq", "device", "point", "value", "unit", "quality", "ts")


@dataclass(frozen=True, slots=True)
class StoredReading:
    seq: int
    reading: Reading


@dataclass(frozen=True, slots=True)
class Position:
    """One reading's place in the buffer: its sequence number and timestamp."""

    seq: int
    ts: datetime


@dataclass(frozen=True, slots=True)
class DeviceCount:
    device: str
    readings: int
    oldest: datetime
    newest: datetime


@dataclass(frozen=True, slots=True)
class BufferSummary:
    path: Path
    depth: int  # readings waiting to be acknowledged by the broker
    oldest: Position | None
    newest: Position | None
    last_seq: int  # sequence numbers handed out since the file was created
    dropped: int  # readings deleted unsent because the buffer was full
    last_dropped_seq: int
    sessions: int  # uplink sessions begun (bdSeq)
    used_bytes: int  # pages in use: what the size cap counts
    file_bytes: int  # the database file and its write-ahead log on disk
    devices: tuple[DeviceCount, ...]


@dataclass(frozen=True, slots=True)
class ExportFilter:
    device: str | None = None
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive


def to_us(ts: datetime) -> int:
    """Microseconds since the epoch, exactly (buffer.py stores timestamps so)."""
    return (ts - EPOCH) // timedelta(microseconds=1)


def from_us(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


def iso(ts: datetime) -> str:
    """UTC, to the microsecond, with a 'Z'."""
    return ts.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class BufferReader:
    """A read-only view of a buffer file. Use as a context manager."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None

    def __enter__(self) -> Self:
        if not self.path.is_file():
            raise BufferUnreadable(self.path, "does not exist" if not self.path.exists() else "is not a file")
        uri = f"file:{quote(str(self.path.resolve()))}?mode=ro"
        with translated(self.path, "open"):
            db = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=BUSY_TIMEOUT_S)
        self._db = db
        try:
            with translated(self.path, "read"):
                tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        except BufferUnreadable:
            self.close()
            raise
        if not {"readings", "meta"} <= tables:
            self.close()
            raise BufferUnreadable(self.path, "is not an edge-agent buffer (no readings table)")
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError(f"buffer {self.path} is not open")
        return self._db

    def summary(self) -> BufferSummary:
        """Everything `buffer stats` shows, from one consistent snapshot."""
        db = self._conn()
        with translated(self.path, "read"):
            db.execute("BEGIN")
            try:
                return self._summary(db)
            finally:
                db.execute("COMMIT")

    def _summary(self, db: sqlite3.Connection) -> BufferSummary:
        depth = int(db.execute("SELECT COUNT(*) FROM readings").fetchone()[0])
        meta = {str(k): int(v) for k, v in db.execute("SELECT key, value FROM meta")}
        row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'readings'").fetchone()
        pages = (
            db.execute("PRAGMA page_count").fetchone()[0] - db.execute("PRAGMA freelist_count").fetchone()[0]
        )
        devices = tuple(
            DeviceCount(device, count, from_us(oldest), from_us(newest))
            for device, count, oldest, newest in db.execute(
                "SELECT device, COUNT(*), MIN(ts_us), MAX(ts_us) FROM readings"
                " GROUP BY device ORDER BY device"
            )
        )
        return BufferSummary(
            path=self.path,
            depth=depth,
            oldest=self._end(db, "ASC"),
            newest=self._end(db, "DESC"),
            last_seq=int(row[0]) if row else 0,
            dropped=meta.get("dropped", 0),
            last_dropped_seq=meta.get("last_dropped_seq", 0),
            sessions=meta.get("bd_seq", 0),
            used_bytes=int(pages) * int(db.execute("PRAGMA page_size").fetchone()[0]),
            file_bytes=sum(_size(Path(f"{self.path}{suffix}")) for suffix in ("", "-wal")),
            devices=devices,
        )

    @staticmethod
    def _end(db: sqlite3.Connection, order: Literal["ASC", "DESC"]) -> Position | None:
        row = db.execute(f"SELECT seq, ts_us FROM readings ORDER BY seq {order} LIMIT 1").fetchone()
        return None if row is None else Position(int(row[0]), from_us(row[1]))

    def unsent(self, which: ExportFilter | None = None) -> Iterator[StoredReading]:
        """The readings waiting in the buffer, oldest first, in pages; nothing is deleted or marked."""
        which = which or ExportFilter()
        where: list[str] = ["seq > ?"]
        args: list[str | int] = []
        if which.device is not None:
            where.append("device = ?")
            args.append(which.device)
        if which.since is not None:
            where.append("ts_us >= ?")
            args.append(to_us(which.since))
        if which.until is not None:
            where.append("ts_us < ?")
            args.append(to_us(which.until))
        query = (
            "SELECT seq, device, point, value, unit, quality, ts_us FROM readings"
            f" WHERE {' AND '.join(where)} ORDER BY seq LIMIT {PAGE_ROWS}"  # the values are bound
        )
        after = 0
        while True:
            with translated(self.path, "read"):
                page = self._conn().execute(query, (after, *args)).fetchall()
            for seq, device, point, value, unit, quality, ts_us in page:
                yield StoredReading(
                    seq, Reading(device, point, value, unit, Quality(quality), from_us(ts_us))
                )
            if len(page) < PAGE_ROWS:
                return
            after = page[-1][0]


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def write_readings(rows: Iterator[StoredReading], out: TextIO, fmt: ExportFormat) -> int:
    """Write rows as JSON lines or CSV (with a header); returns how many. Values keep every digit (a
    float's repr reads back as the same double); a missing value is null in JSON, empty in CSV."""
    count = 0
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(COLUMNS)
        for count, stored in enumerate(rows, 1):  # noqa: B007 - the last count is the result
            r = stored.reading
            value = "" if r.value is None else repr(r.value)
            writer.writerow((stored.seq, r.device, r.point, value, r.unit, r.quality.value, iso(r.ts)))
        return count
    for count, stored in enumerate(rows, 1):  # noqa: B007
        r = stored.reading
        line = {
            "seq": stored.seq,
            "device": r.device,
            "point": r.point,
            "value": r.value,
            "unit": r.unit,
            "quality": r.quality.value,
            "ts": iso(r.ts),
        }
        out.write(json.dumps(line, allow_nan=False, separators=(",", ":")) + "\n")
    return count
