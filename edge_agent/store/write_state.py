"""Whether the buffer is writing, and if not why: what `status` shows first, before any device table.

`writing`: readings are committed as they come. `full`: at its cap (`[buffer] cap_mb`), the oldest readings
make way for the newest. `disk full`: the disk has no room, the oldest (or, with nothing left to drop, the
newest) readings are dropped. `read-only`: the file or its file system refuses writes (an SD card remounted
read-only after errors, a permission changed): readings wait in memory, then the oldest are dropped.
`failing`: another write error (I/O), retried with backoff.
"""

from __future__ import annotations

import os
import sqlite3
from enum import StrEnum
from pathlib import Path

from edge_agent.store.opening import SQLITE_READONLY, primary_code


class WriteState(StrEnum):
    WRITING = "writing"
    FULL = "full"
    DISK_FULL = "disk full"
    READ_ONLY = "read-only"
    FAILING = "failing"


def write_failure(path: Path, error: sqlite3.Error) -> tuple[WriteState, str]:
    """A commit that failed (not for a full disk, which the buffer handles): its state and reason."""
    try:
        mounted_read_only = bool(os.statvfs(path.parent).f_flag & os.ST_RDONLY)
    except OSError:
        mounted_read_only = False
    if mounted_read_only:
        return WriteState.READ_ONLY, f"the file system of {path.parent} is mounted read-only: {error}"
    if primary_code(error) == SQLITE_READONLY:
        return WriteState.READ_ONLY, f"{path} refuses writes: {error}"
    return WriteState.FAILING, f"{path}: {error} (retried)"
