"""Publishing before the commit's flush (issue 19, Build 5) keeps at-least-once: a process killed while
readings are handed out but not yet durable leaves a known loss (counted, at or below last_dropped_seq) and
never a number used twice; a PUBACK that comes before the flush deletes only after it."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from pathlib import Path

import pytest

from edge_agent.store.buffer import FRESH_BATCHES, Buffer
from tests.test_buffer import readings
from tests.test_disk_full import fill, small_disk  # noqa: F401 - a fixture

pytestmark = pytest.mark.integration

# A process that writes rounds of 50 readings with early publishing on, and watches each round's batch as
# the uplink would get it. "kill": the process kills itself (SIGKILL) on the buffer's thread the moment a
# commit has handed its readings out, before the commit ends: the worst moment. "ack": the first batch it
# gets before its rows are visible to another connection (the commit not yet flushed) is acknowledged at
# once, as a PUBACK that arrives before the flush.
CHILD = """
import asyncio, os, signal, sqlite3, sys
from pathlib import Path
from edge_agent.store.buffer import FRESH_BATCHES, Buffer
from tests.test_buffer import readings
from tests.test_disk_full import fill, small_disk  # noqa: F401 - a fixture

def killed_after_hand_out(buffer: Buffer) -> None:
    hand_out = buffer._hand_out
    def then_die(after_seq, last, *rest):
        hand_out(after_seq, last, *rest)
        os.write(1, f"{after_seq + 1} {last}\\n".encode())
        os.kill(os.getpid(), signal.SIGKILL)
    buffer._hand_out = then_die

async def main(path: Path, kill: bool) -> None:
    async with Buffer(path) as buffer:
        if kill:
            killed_after_hand_out(buffer)
        await buffer.append(readings(10))
        buffer.publish_early(100)
        after = 10
        for round in range(300):
            writing = asyncio.create_task(buffer.append(readings(50, start=10 + 50 * round)))
            batch = await buffer.next_encoded(100, after_seq=after)
            with sqlite3.connect(path) as db:
                seen = db.execute("SELECT COUNT(*) FROM readings WHERE seq = ?", (batch.last_seq,))
                durable = seen.fetchone()[0]
            if not durable and not kill:  # (killed: the buffer's thread alone prints)
                print(batch.first_seq, batch.last_seq, flush=True)
                await buffer.ack(batch)
                await writing
                stats = buffer.statistics()
                print(stats.depth, stats.acknowledged, flush=True)
                return
            await writing
            after = batch.last_seq
    print("never caught a batch before its flush", flush=True)

asyncio.run(main(Path(sys.argv[1]), sys.argv[2] == "kill"))
"""


async def child(path: Path, mode: str) -> tuple[int, list[str]]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, str(path), mode, stdout=asyncio.subprocess.PIPE
    )
    async with asyncio.timeout(60):
        out, _ = await process.communicate()
    return process.returncode or 0, out.decode().splitlines()


async def test_a_kill_before_the_flush_leaves_a_counted_loss_and_no_number_reused(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    code, lines = await child(path, "kill")
    assert code == -9, lines
    first, last = map(int, lines[0].split())
    assert last - first + 1 == 50
    async with Buffer(path) as buffer:
        with sqlite3.connect(path) as db:
            kept = {row[0] for row in db.execute("SELECT seq FROM readings")}
        assert kept == set(range(1, first))  # everything committed before is there
        stats = buffer.statistics()
        assert (stats.dropped, stats.last_dropped_seq) == (50, last)  # the handed-out ones: a known loss
        await buffer.append(readings(1, start=9999))
        assert buffer.last_seq == last + 1  # numbered above everything handed out


async def test_a_puback_before_the_flush_deletes_after_it(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    code, lines = await child(path, "ack")
    assert code == 0, lines
    first, last = map(int, lines[0].split())
    depth, acknowledged = map(int, lines[1].split())
    assert (depth, acknowledged) == (first - 1, last - first + 1)  # the batch's rows existed when deleted
    with sqlite3.connect(path) as db:
        kept = {row[0] for row in db.execute("SELECT seq FROM readings")}
    assert kept == set(range(1, first))


async def test_a_full_disk_refusing_readings_handed_out_early_counts_them_and_reuses_no_number(
    small_disk: Path,  # noqa: F811 - the fixture imported above
) -> None:
    """As test_disk_full's disk with no room at all, publishing early: the refused readings were numbered and
    handed out before the disk refused their commit, so they are numbered losses: every missing seq is at or
    below last_dropped_seq and counted, and the readings stored once the disk has room get new numbers."""
    async with Buffer(small_disk / "b.db", durability="normal") as buffer:
        await buffer.append(readings(10))
        await buffer.ack(await buffer.next_encoded(10))  # delivered: nothing left to drop
        buffer.publish_early(100)
        fill(small_disk, 0)
        handed_out = 10
        for batch in range(50):
            async with asyncio.timeout(5):
                await buffer.append(readings(200, 10 + 200 * batch))
                while buffer.last_seq > handed_out:
                    handed_out = (await buffer.next_encoded(100, after_seq=handed_out)).last_seq
        full = buffer.statistics()
        assert full.disk_full
        with sqlite3.connect(small_disk / "b.db") as db:
            stored = {row[0] for row in db.execute("SELECT seq FROM readings")}
        missing = set(range(11, handed_out + 1)) - stored
        assert missing  # the disk refused some
        assert max(missing) <= full.last_dropped_seq  # known losses
        assert full.dropped - full.unnumbered == len(missing)  # each counted once, as numbered
        assert full.appended < 10 + 50 * 200  # some refused
        assert full.unnumbered == 0  # ... each after it was numbered: a numbered loss
        (small_disk / "filler").unlink()
        await buffer.append(readings(5, 20_000))
        assert buffer.last_seq == handed_out + 5  # above every number handed out


async def test_a_lane_that_does_not_take_its_batches_holds_a_bounded_number(tmp_path: Path) -> None:
    """A stalled broker: commits stop handing batches out once FRESH_BATCHES wait, and the lane still gets
    every reading, in order, from the buffer."""
    async with Buffer(tmp_path / "b.db") as buffer:
        buffer.publish_early(10)
        for start in range(0, 100 * 10, 10):
            await buffer.append(readings(10, start))
        await asyncio.sleep(0)  # (the last hand-outs reach the loop)
        assert len(buffer._fresh) == FRESH_BATCHES
        seqs: list[int] = []
        after = 0
        while after < 1000:
            batch = await buffer.next_encoded(10, after_seq=after)
            seqs += range(batch.first_seq, batch.last_seq + 1)
            after = batch.last_seq
        assert seqs == list(range(1, 1001))
