"""The buffer file at start: held locked by another process for 5 s, emptied to 0 bytes, its WAL damaged.
A receiver applying docs/mqtt.md's rules must lose nothing SQLite could read, and no new reading may reuse
a sequence number already delivered."""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from bench.faults.observer import Expected
from bench.faults.parts import wait_for
from bench.faults.rig import Rig
from bench.faults.table import Row

LOCK_S = 5.0
HOLD_LOCK = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], timeout=10, isolation_level=None)
conn.execute("PRAGMA locking_mode=EXCLUSIVE")
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.read()  # until the bench closes it
conn.execute("ROLLBACK")
"""


def unsent_backlog(r: Rig, seconds: float) -> None:
    """Readings committed while the broker is down, then a clean stop: a buffer holding unsent rows."""
    r.broker.stop()
    if not r.agent.alive():
        r.agent.start()
    time.sleep(seconds)
    r.agent.stop()
    r.broker.start()


def locked_at_start(r: Rig, row: Row) -> Expected:
    """The unsent readings in the buffer (as sqlite3 reads them) before the lock."""
    r.agent.start()
    r.new_readings()
    unsent_backlog(r, 4)
    beyond = r.assigned()
    unsent = readable_copy(r.buffer, r.workdir / "copy")
    with subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(r.buffer)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as holder:
        try:
            hold_the_lock(r, row, holder)
        finally:
            if holder.poll() is None:
                holder.kill()
    if r.agent.process is not None and r.agent.process.poll() is not None:  # refused to start: by design
        row.note(f"locked: start refused, exit {r.agent.process.returncode}")
        r.agent.process = None
    removed = time.monotonic()
    if not r.agent.alive():
        r.agent.start()
    row.recovery_s.append(r.recovery(removed, beyond))
    row.cases += 1
    return unsent


def hold_the_lock(r: Rig, row: Row, holder: subprocess.Popen[str]) -> None:
    """The agent started while `holder` has the buffer locked; the lock held until LOCK_S after the agent's
    first log line (it has met the lock by then: the lock outlasts its start-up, however slow)."""
    assert holder.stdout is not None
    assert holder.stdin is not None
    if holder.stdout.readline().strip() != "locked":
        row.miss("the bench could not lock the buffer")
    r.agent.start()
    wait_for(lambda: r.agent.log.stat().st_size > r.agent.log_offset or not r.agent.alive(), 30)
    time.sleep(LOCK_S)
    holder.stdin.close()
    holder.wait(10)


def zero_bytes(r: Rig, row: Row) -> None:
    r.agent.start()
    r.new_readings()
    time.sleep(2)
    r.agent.stop()
    for path in wal_and_shm(r.buffer):
        path.unlink(missing_ok=True)
    r.buffer.write_bytes(b"")
    removed = time.monotonic()
    r.agent.start()
    row.recovery_s.append(r.recovery(removed))
    row.cases += 1


def damaged_wal(r: Rig, row: Row) -> tuple[Expected, set[int]]:
    """(seqs SQLite can read from the damaged files, seqs it cannot) before the agent sees them."""
    r.agent.start()
    r.new_readings()
    r.broker.stop()
    time.sleep(4)
    r.agent.kill9()  # the WAL is left as it was, uncheckpointed
    wal = wal_and_shm(r.buffer)[0]
    size = wal.stat().st_size if wal.exists() else 0
    if size > 4096:
        with wal.open("r+b") as f:  # garbage over a frame in the middle
            f.seek(size // 2)
            f.write(b"\xa5" * 512)
    readable = readable_copy(r.buffer, r.workdir / "copy")
    received = set(r.observer.ledger.first)
    unreadable = set(range(1, max(set(readable) | received, default=0) + 1)) - set(readable) - received
    r.broker.start()
    removed = time.monotonic()
    r.agent.start()
    row.recovery_s.append(r.recovery(removed))
    row.cases += 1
    row.note(f"damaged WAL ({size // 1024} KiB): {len(readable)} seqs readable, {len(unreadable)} not")
    return readable, unreadable


def wal_and_shm(buffer: Path) -> list[Path]:
    return [buffer.with_name(buffer.name + "-wal"), buffer.with_name(buffer.name + "-shm")]


def readable_copy(buffer: Path, where: Path) -> Expected:
    """The readings sqlite3 reads from a copy of the buffer and its WAL (the original left untouched)."""
    where.mkdir(exist_ok=True)
    for path in (buffer, *wal_and_shm(buffer)):
        if path.exists():
            shutil.copy2(path, where / path.name)
    with (
        contextlib.suppress(sqlite3.DatabaseError),
        contextlib.closing(sqlite3.connect(where / buffer.name, timeout=5)) as conn,
    ):
        rows = conn.execute("SELECT seq, device, point, value FROM readings")
        return {int(seq): (device, point, value) for seq, device, point, value in rows}
    return {}
