"""The command log: the command ids the gateway has taken, so that no command runs twice.

A small SQLite file beside the buffer (COMMAND_LOG). An id is recorded, and committed, before its command
acts; the reply is stored once it is known, so that a replay is answered with the first reply again. A row is
kept until its command's `expires` (plus the clock skew) has passed: from then on a replay is refused as
expired, so the id need not be remembered. Every sqlite3.Error reaches the caller, which refuses the
command: a command that cannot be recorded could run twice.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

COMMAND_LOG = "commands.db"  # the log's name, next to the buffer file

_SCHEMA = """
CREATE TABLE IF NOT EXISTS taken (
    id TEXT PRIMARY KEY,
    digest BLOB NOT NULL,    -- sha256 of the command's bytes: the same id with other content is no replay
    forget_after REAL NOT NULL,  -- unix time after which a replay is refused as expired anyway
    reply BLOB               -- the first reply; NULL while running, or when the gateway stopped meanwhile
);
CREATE INDEX IF NOT EXISTS taken_forget ON taken (forget_after);
"""


@dataclass(frozen=True, slots=True)
class Taken:
    """What the log knew of an id before: its content's digest and the reply sent, if any."""

    digest: bytes
    reply: bytes | None


class CommandLog:
    """Opened at first use (and again after a failure); one caller at a time, from any thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=5.0)
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=FULL")  # a recorded id survives power loss
                db.executescript(_SCHEMA)
            except sqlite3.Error:
                db.close()
                raise
            self._db = db
        return self._db

    def take(self, command_id: str, digest: bytes, forget_after: float, now: float) -> Taken | None:
        """Record `command_id` (committed before returning None), or give what was recorded before."""
        with self._lock:
            db = self._connection()
            try:
                db.execute("BEGIN IMMEDIATE")
                db.execute("DELETE FROM taken WHERE forget_after < ?", (now,))
                row = db.execute("SELECT digest, reply FROM taken WHERE id = ?", (command_id,)).fetchone()
                if row is None:
                    db.execute(
                        "INSERT INTO taken (id, digest, forget_after) VALUES (?, ?, ?)",
                        (command_id, digest, forget_after),
                    )
                db.execute("COMMIT")
            except sqlite3.Error:
                self._reset()
                raise
            return None if row is None else Taken(bytes(row[0]), None if row[1] is None else bytes(row[1]))

    def settle(self, command_id: str, reply: bytes) -> None:
        """Store the reply sent for `command_id`, for its replays."""
        with self._lock:
            try:
                self._connection().execute("UPDATE taken SET reply = ? WHERE id = ?", (reply, command_id))
            except sqlite3.Error:
                self._reset()
                raise

    def _reset(self) -> None:
        """Drop the connection after a failure: the next command opens the file afresh."""
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()  # an open transaction is rolled back
            self._db = None

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
