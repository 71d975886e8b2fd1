"""Room to recover from a full disk: a limit the buffer keeps within, and a small reserve file beside it.

In WAL mode even a DELETE needs disk space (its pages go to the log first), and folding the log into the
file (a checkpoint) needs room for every page the file grew by. A disk that is full to the last byte would
wedge the buffer: it could neither drop nor write. So the buffer keeps the disk's last bytes for that
(`data_limit`): its data stops growing while the disk still holds what its log and a checkpoint need, and
the oldest readings make way for the newest inside the file. The reserve, when the disk had room for it at
start, is released when another program takes even that room; it is made again once the disk has room.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
from pathlib import Path

from edge_agent.store.opening import SQLITE_FULL, SQLITE_IOERR, primary_code

RESERVE_BYTES = 256 * 1024
WAL_SHARE = 16  # the write-ahead log is folded into the file before it takes 1/16 of the disk
ROOM_SHARE = 8  # ... or 1/8 of the room the buffer found at start (a disk other software nearly filled)
MIN_WAL_PAGES = 8
DEFAULT_WAL_PAGES = 1000  # SQLite's own default: what every disk of 64 MB or more keeps
TIGHT_BATCH = 100  # readings per transaction at most while the disk is full (2 pages or so)
COMMIT_PAGES = 8  # what one transaction of TIGHT_BATCH readings may add to the file and its log, at most
PLENTY = 64 << 20  # free space above which the buffer does not look closer


def wal_pages(directory: Path, page_size: int, ours: int = 0) -> int:
    """The write-ahead log's size, in pages, at which it is folded into the file (wal_autocheckpoint): on a
    small disk, a log of SQLite's default 4 MB could fill the disk alone, and folding it in (which needs
    room for its pages in the file) could then never succeed. `ours`: bytes the buffer's files hold now."""
    usage = shutil.disk_usage(directory)
    room = usage.free + ours
    return max(
        MIN_WAL_PAGES,
        min(DEFAULT_WAL_PAGES, usage.total // page_size // WAL_SHARE, room // page_size // ROOM_SHARE),
    )


def data_limit(buffer: Path, page_count: int, page_size: int, log_pages: int) -> int | None:
    """The most the buffer's readings may take (bytes of pages in use) so that the disk keeps what the
    write-ahead log may still grow by (to `log_pages` and one transaction) and what a checkpoint adds to
    the file: the file and the room beyond that, less one transaction (free pages for the next readings).
    Dropping readings frees pages in the file, not on the disk: with no room left, the limit is the file as
    it is. None when the disk has plenty of room."""
    free = shutil.disk_usage(buffer.parent).free
    if free > PLENTY:
        return None
    file_bytes = page_count * page_size
    try:
        file_now = os.stat(buffer).st_size
    except OSError:
        file_now = file_bytes
    try:
        log_now = os.stat(f"{buffer}-wal").st_size
    except OSError:
        log_now = 0
    margin = COMMIT_PAGES * page_size
    needed = max(0, (log_pages + COMMIT_PAGES) * page_size - log_now) + max(0, file_bytes - file_now)
    return file_bytes + max(0, free - needed) - margin


class SpaceReserve:
    def __init__(self, buffer: Path, size: int = RESERVE_BYTES) -> None:
        self.path = Path(f"{buffer}.reserve")
        self.size = size

    def held(self) -> bool:
        return self.path.exists()

    def make(self) -> bool:
        """Create the reserve when the disk has room for it and a margin as large; True when it is there."""
        if self.held():
            return True
        try:
            if shutil.disk_usage(self.path.parent).free < 2 * self.size:
                return False
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.posix_fallocate(fd, 0, self.size)
            finally:
                os.close(fd)
        except OSError:
            self.release()
            return False
        return True

    def release(self) -> bool:
        """Give the reserve back to the file system; True when there was one."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        except OSError:
            return False
        return True

    def disk_is_full(self, exc: sqlite3.Error) -> bool:
        """Whether SQLite failed for lack of space (SQLITE_FULL, or an I/O error on a disk with no room)."""
        code = primary_code(exc)
        if code == SQLITE_FULL:
            return True
        if code == SQLITE_IOERR:
            with contextlib.suppress(OSError):
                return shutil.disk_usage(self.path.parent).free < self.size
        return False
