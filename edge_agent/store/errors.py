"""sqlite3's errors in edge-agent's terms, in one place: `translated(path, doing)` around the buffer's SQLite.

The read-only tools (reader.py) see BufferUnreadable; the agent opening its own buffer sees StartupError.
Once the agent runs, a failed write or read reaches the buffer's callers (the writer, the uplink) as
sqlite3.Error: they keep the readings and retry with backoff, and nothing above them needs to know more.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from edge_agent.errors import BufferUnreadable, StartupError


@contextlib.contextmanager
def translated(path: Path, doing: str, *, starting: bool = False) -> Iterator[None]:
    """sqlite3's errors in the block as BufferUnreadable "buffer PATH: cannot DOING (error)"; `starting` (the
    agent opening its buffer) as StartupError "buffer PATH: cannot DOING: error", the file system's too."""
    try:
        yield
    except (sqlite3.Error, OSError) as exc:
        if starting:
            raise StartupError(f"buffer {path}: cannot {doing}: {exc}") from exc
        if isinstance(exc, OSError):
            raise
        raise BufferUnreadable(path, f"cannot {doing} ({exc})") from exc
