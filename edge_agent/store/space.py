"""Room to recover from a full disk: a small reserve file beside the buffer.

In WAL mode even a DELETE needs disk space (its pages go to the log first), so a buffer on a full disk
could not drop its oldest readings to make room. The reserve is released when the disk fills, which lets
the buffer checkpoint, drop and write its ledger; it is made again once the disk has room.
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
DEFAULT_WAL_PAGES = 1000  # SQLite's own default: what every disk of 64 MB or more keeps


def wal_pages(directory: Path, page_size: int) -> int:
    """The write-ahead log's size, in pages, at which it is folded into the file (wal_autocheckpoint): on a
    small disk, a log of SQLite's default 4 MB could fill the disk alone, and folding it in (which needs
    room for its pages in the file) could then never succeed."""
    total = shutil.disk_usage(directory).total
    return max(16, min(DEFAULT_WAL_PAGES, total // page_size // WAL_SHARE))


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
