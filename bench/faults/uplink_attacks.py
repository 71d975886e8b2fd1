"""Attacks on the path from buffer to broker: kill -9 across outages and drains, a frozen broker, a disk
that fills up while the broker is down."""

from __future__ import annotations

import contextlib
import os
import random
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from bench.faults.parts import LOAD_POINTS
from bench.faults.rig import Rig, buffered_seqs
from bench.faults.table import Row

DATA_WITHIN_S = 10  # the broker receives data this soon after it comes back (disk full)


def kill9_across_outages(r: Rig, cycles: int, seed: int = 17) -> Row:
    """SIGKILL while the broker is stopped, while the backlog drains after it came back, and while it is
    frozen; the agent restarted each time (the fault removed)."""
    row, rng = Row("kill -9 during outages and drains"), random.Random(seed)
    r.agent.start()
    for cycle in range(cycles):
        if r.new_readings() is None:
            row.miss(f"cycle {cycle}: no readings before the kill")
        kind = ("outage", "drain", "frozen")[cycle % 3]
        if kind == "outage":
            r.broker.stop()
            time.sleep(rng.uniform(1.0, 3.0))
            r.agent.kill9()
            r.broker.start()
        elif kind == "drain":
            r.broker.stop()
            time.sleep(rng.uniform(2.0, 4.0))  # a backlog builds up
            r.broker.start()
            time.sleep(rng.uniform(0.3, 1.5))  # and is draining
            r.agent.kill9()
        else:
            r.broker.pause()
            time.sleep(rng.uniform(1.0, 3.0))
            r.agent.kill9()
            r.broker.resume()
        r.agent.check()
        beyond = max(r.assigned(), r.observer.ledger.highest)
        removed = time.monotonic()
        r.agent.start()
        row.recovery_s.append(r.recovery(removed, beyond))
        row.cases += 1
    r.finish(row)
    return row


def frozen_broker(r: Rig, cases: int, frozen_s: float) -> Row:
    """SIGSTOP to mosquitto for `frozen_s` (longer than the agent's keepalive), then SIGCONT."""
    row = Row("broker frozen (SIGSTOP)")
    r.agent.start()
    for _ in range(cases):
        r.new_readings()
        r.broker.pause()
        time.sleep(frozen_s)
        r.agent.check()
        r.broker.resume()
        removed = time.monotonic()
        row.recovery_s.append(r.recovery(removed))
        row.cases += 1
    row.note(f"{frozen_s:.0f} s frozen")
    r.finish(row)
    return row


@contextlib.contextmanager
def small_tmpfs(where: Path, size: str = "2m") -> Iterator[Path]:
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(where: Path, leave_kib: int) -> None:
    """Fill the file system at `where` but for `leave_kib`."""
    stat = os.statvfs(where)
    room = stat.f_bavail * stat.f_frsize - leave_kib * 1024
    if room > 0:
        (where / "filler").write_bytes(b"\0" * room)


def disk_full(r: Rig, full_s: float) -> Row:
    """The buffer on a 2 MiB tmpfs with 256 KiB free, the broker down: the disk fills within seconds. Polling
    must go on (the device's own log counts its requests), the broker must get data within 10 s of coming
    back, every missing seq must be reported dropped, and a stop must keep what it accepted."""
    row = Row("disk full (2 MiB tmpfs), broker down then up")
    if os.geteuid() != 0:
        row.miss("skipped: needs root to mount a tmpfs")
        return row
    with small_tmpfs(r.workdir / "tmpfs") as disk:
        fill(disk, 256)
        r.buffer = disk / "buffer.db"
        r.configure(interval_s=0.1)
        r.broker.stop()
        start = time.time()
        r.agent.start()
        time.sleep(full_s)
        r.agent.check()
        late = r.load.reads_between(time.time() - 5, time.time())
        row.note(f"device polled {late / 5:.0f}/s when full")
        if late == 0:
            row.miss("polling stopped")
        r.broker.start()
        removed = time.monotonic()
        recovered = r.recovery(removed, timeout_s=30)
        row.recovery_s.append(recovered)
        if recovered is not None and recovered > DATA_WITHIN_S:
            row.miss(f"the broker got data {recovered:.0f} s after coming back")
        row.cases += 1
        time.sleep(5)
        r.finish(row)
        unaccounted(r, row, start)
    return row


IN_FLIGHT_POLLS = 2  # polls a stop may cut short on their way to the buffer


def unaccounted(r: Rig, row: Row, start: float) -> None:
    """Readings the load device served (its own log) that neither reached the observer, nor stayed in the
    buffer, nor were reported dropped: accepted, then lost (e.g. at a stop)."""
    time.sleep(1.5)  # the device logs its counts each second
    served = r.load.reads_between(start, time.time(), "points")
    ledger = r.observer.ledger
    received = sum(1 for content in ledger.first.values() if content[0] == r.load.name)
    kept = len(buffered_seqs(r.buffer, r.load.name))
    missing = served - received - kept - ledger.dropped_reported - IN_FLIGHT_POLLS * (LOAD_POINTS + 1)
    row.note(f"device served {served:,} values: {received:,} received, {kept:,} still buffered")
    if missing > 0:
        row.lost += missing
