"""Why a buffer cannot be opened, told apart: what an operator must fix, what waiting fixes, and what only
a damaged file explains. Only the last ever leads to the file being moved aside (buffer.py).
"""

from __future__ import annotations

import grp
import os
import pwd
import sqlite3
from pathlib import Path

from edge_agent.errors import StartupError
from edge_agent.store.ledger import ledger_paths

# SQLite's primary result codes (sqlite3 exposes the extended code as exc.sqlite_errorcode)
SQLITE_CORRUPT = 11
SQLITE_NOTADB = 26
SQLITE_BUSY = 5
SQLITE_LOCKED = 6
SQLITE_READONLY = 8
SQLITE_CANTOPEN = 14
SQLITE_FULL = 13
SQLITE_IOERR = 10


def primary_code(exc: sqlite3.Error) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else code & 0xFF


def proves_damage(exc: sqlite3.Error) -> bool:
    """SQLite itself says the file is not a sound database."""
    return primary_code(exc) in {SQLITE_CORRUPT, SQLITE_NOTADB}


def is_locked(exc: sqlite3.Error) -> bool:
    return primary_code(exc) in {SQLITE_BUSY, SQLITE_LOCKED}


def _owner_fix(paths: list[Path]) -> str:
    user = pwd.getpwuid(os.geteuid()).pw_name
    group = grp.getgrgid(os.getegid()).gr_name
    return f"chown {user}:{group} " + " ".join(str(p) for p in paths)


def check_access(path: Path) -> None:
    """StartupError naming the fix when the buffer cannot be used whatever SQLite does: its directory is
    missing or closed to us, the path is a directory, or one of its files (or the ledger's) is not ours to
    write. The agent then exits 2 (no restart: restarting does not fix it)."""
    directory = path.parent
    if not directory.is_dir():
        raise StartupError(
            f"buffer {path}: directory {directory} does not exist (or is not a directory): create it for "
            "the agent's user "
            f"(install -d -o {pwd.getpwuid(os.geteuid()).pw_name} {directory}) or correct [buffer] path",
            restart_helps=False,
        )
    if path.is_dir():
        raise StartupError(
            f"buffer {path} is a directory: move it away (mv {path} {path}.old) or correct [buffer] path",
            restart_helps=False,
        )
    if not os.access(directory, os.W_OK | os.X_OK):
        raise StartupError(
            f"buffer {path}: cannot write in directory {directory}: {_owner_fix([directory])}",
            restart_helps=False,
        )
    files = [path, Path(f"{path}-wal"), Path(f"{path}-shm"), *ledger_paths(path)]
    closed = [f for f in files if f.exists() and not os.access(f, os.R_OK | os.W_OK)]
    if closed:
        raise StartupError(
            f"buffer {path}: cannot read and write {', '.join(map(str, closed))}: {_owner_fix(closed)}",
            restart_helps=False,
        )


def open_error(path: Path, exc: sqlite3.Error, lock_wait_s: float) -> StartupError:
    """A failure to open that is not damage, as the StartupError to stop with."""
    code = primary_code(exc)
    if code in {SQLITE_BUSY, SQLITE_LOCKED}:
        return StartupError(
            f"buffer {path}: still locked by another process after {lock_wait_s:g} s ({exc}): "
            f"is another edge-agent using it? (fuser {path})"
        )
    if code in {SQLITE_READONLY, SQLITE_CANTOPEN}:
        files = [path, Path(f"{path}-wal"), Path(f"{path}-shm")]
        return StartupError(
            f"buffer {path}: cannot open for writing ({exc}): {_owner_fix(files)}, and make sure the file "
            "system is mounted read-write",
            restart_helps=False,
        )
    return StartupError(f"buffer {path}: cannot open: {exc}")
