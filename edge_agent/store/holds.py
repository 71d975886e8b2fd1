"""The write journal's file (control/holds.py's HoldJournal): a small SQLite file beside the buffer.

Every statement commits on its own with synchronous=FULL, so a hold is on the disk before `record` returns
and the write it describes is sent. The commit (an fsync, tens of milliseconds on an SD card) runs in a
worker thread, one at a time, so polling does not wait for it. A file that cannot be opened or written (disk
full, permissions) raises JournalError, and nothing is sent that could not be written down; the next call
tries the file again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import cast

import structlog

from edge_agent.control.holds import Hold
from edge_agent.errors import JournalError, StartupError

log = structlog.get_logger("edge_agent.store")

HOLDS_JOURNAL = "holds.db"  # the journal's name, next to the buffer file

_SCHEMA = """CREATE TABLE IF NOT EXISTS holds (
    point TEXT NOT NULL,
    slot INTEGER NOT NULL,  -- the BACnet priority; 0: none (Modbus)
    owner TEXT NOT NULL,  -- 'control' or 'central'
    value REAL NOT NULL,
    previous REAL,
    restore REAL,
    since TEXT NOT NULL,  -- ISO 8601, UTC
    lease_until TEXT,
    PRIMARY KEY (point, slot, owner)
)"""
_COLUMNS = "point, slot, owner, value, previous, restore, since, lease_until"


class HoldFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._connection: sqlite3.Connection | None = None
        self._holds: dict[tuple[str, int, str], Hold] = {}
        self._lock = threading.Lock()  # one statement at a time, from whichever worker thread

    def load(self) -> list[Hold]:
        """Open the file (made if missing) and read what it holds; JournalError when it cannot."""
        with self._lock, self._translated("open"):
            self._connect()
        return self.holds()

    async def record(self, hold: Hold) -> None:
        await asyncio.to_thread(self._record, hold)

    async def remove(self, hold: Hold) -> None:
        await asyncio.to_thread(self._remove, hold)

    def _record(self, hold: Hold) -> None:
        with self._lock, self._translated("record a hold"):
            self._connect().execute(
                f"INSERT OR REPLACE INTO holds ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    hold.point,
                    hold.priority or 0,
                    hold.owner,
                    hold.value,
                    hold.previous,
                    hold.restore,
                    hold.since.isoformat(),
                    None if hold.lease_until is None else hold.lease_until.isoformat(),
                ),
            )
            self._holds = {**self._holds, hold.key: hold}  # a new dict: the event loop reads the old one

    def _remove(self, hold: Hold) -> None:
        with self._lock, self._translated("forget a hold"):
            self._connect().execute("DELETE FROM holds WHERE point = ? AND slot = ? AND owner = ?", hold.key)
            self._holds = {k: h for k, h in self._holds.items() if k != hold.key}

    def holds(self) -> list[Hold]:
        return sorted(self._holds.values(), key=lambda h: h.since)

    def close(self) -> None:
        with self._lock:
            self._close()

    def _close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _connect(self) -> sqlite3.Connection:
        if self._connection is not None:
            return self._connection
        made = not self.path.exists()
        connection = sqlite3.connect(self.path, isolation_level=None, timeout=5.0, check_same_thread=False)
        try:
            connection.execute("PRAGMA synchronous=FULL")
            connection.execute(_SCHEMA)
            rows = connection.execute(f"SELECT {_COLUMNS} FROM holds").fetchall()
            if made:  # the new file's name durable too
                _sync_directory(self.path.parent)
        except BaseException:
            connection.close()
            raise
        holds = [_hold(row) for row in rows]
        self._holds = {h.key: h for h in holds}
        self._connection = connection
        return connection

    @contextlib.contextmanager
    def _translated(self, doing: str) -> Iterator[None]:
        try:
            yield
        except (sqlite3.Error, OSError) as exc:
            self._close()  # opened afresh next time: the disk may have room again
            raise JournalError(self.path, f"cannot {doing}: {exc}") from exc


def _hold(row: tuple[object, ...]) -> Hold:
    point, slot, owner, value, previous, restore, since, lease_until = row
    return Hold(
        point=str(point),
        priority=int(cast(int, slot)) or None,
        value=float(cast(float, value)),
        previous=None if previous is None else float(cast(float, previous)),
        restore=None if restore is None else float(cast(float, restore)),
        since=datetime.fromisoformat(str(since)),
        lease_until=None if lease_until is None else datetime.fromisoformat(str(lease_until)),
        owner="central" if owner == "central" else "control",
    )


def _sync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def open_journal(path: Path) -> HoldFile:
    """The journal at `path`, read. One that is there and cannot be read stops the start (StartupError):
    what a previous run left held would be forgotten. One that cannot be made (a full disk) is logged, and
    control sends no write until it can be."""
    journal = HoldFile(path)
    try:
        journal.load()
    except JournalError as error:
        if path.exists():
            raise StartupError(
                f"{error}; fix its permissions or the disk (it lists writes a previous run may have left "
                "on the devices)"
            ) from error
        log.error(  # noqa: TRY400 - the reason says it all
            "write journal cannot be made: control sends no write", journal=str(path), error=error.reason
        )
    return journal


def read_holds(path: Path) -> list[Hold]:
    """What the journal at `path` lists, read-only (for `status` while the agent is not running, even after
    it was killed): [] when there is no journal; JournalError when it cannot be read."""
    if not path.exists():
        return []
    try:
        with contextlib.closing(
            sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True, timeout=5.0)
        ) as db:
            rows = db.execute(f"SELECT {_COLUMNS} FROM holds").fetchall()
    except sqlite3.Error as exc:
        raise JournalError(path, f"cannot read: {exc}") from exc
    return sorted((_hold(row) for row in rows), key=lambda h: h.since)
