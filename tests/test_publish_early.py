"""Publishing before the commit's flush (issue 19, Build 5) keeps at-least-once: readings leave for the
uplink only once committed (a process killed before their flush loses none of them and reuses no number), a
PUBACK that comes before the flush deletes them, and readings a full disk refuses never leave at all."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from pathlib import Path

import pytest

from edge_agent.store.buffer import FRESH_BATCHES, Buffer
from tests.test_buffer import readings
from tests.test_buffer_flush import slow_disk
from tests.test_disk_full import fill, small_disk  # noqa: F401 - a fixture

pytestmark = pytest.mark.integration

# A process that writes rounds of 50 readings with early publishing on, a disk whose flushes never end, and
# kills itself (SIGKILL) the moment a batch reaches it as the uplink would get it: committed, not flushed.
CHILD = """
import asyncio, os, signal, sys
from pathlib import Path
from edge_agent.store.buffer import Buffer
from tests.test_buffer import readings
from tests.test_buffer_flush import slow_disk

async def main(path: Path) -> None:
    async with Buffer(path) as buffer:
        await buffer.append(readings(10))
        slow_disk(buffer)
        buffer.publish_early(100)
        await buffer.commit(readings(50, start=10))
        batch = await buffer.next_encoded(100, after_seq=10)
        os.write(1, f"{batch.first_seq} {batch.last_seq}\\n".encode())
        os.kill(os.getpid(), signal.SIGKILL)

asyncio.run(main(Path(sys.argv[1])))
"""


async def test_a_kill_before_the_flush_loses_nothing_that_left_and_reuses_no_number(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, str(path), stdout=asyncio.subprocess.PIPE
    )
    async with asyncio.timeout(60):
        out, _ = await process.communicate()
    assert process.returncode == -9, out
    first, last = map(int, out.split())
    assert (first, last) == (11, 60)
    async with Buffer(path) as buffer:
        with sqlite3.connect(path) as db:
            kept = {row[0] for row in db.execute("SELECT seq FROM readings")}
        assert kept == set(range(1, last + 1))  # what left for the broker is there to send again
        assert buffer.statistics().dropped == 0
        await buffer.append(readings(1, start=9999))
        assert buffer.last_seq == last + 1


async def test_a_puback_before_the_flush_deletes_the_batch(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    async with Buffer(path) as buffer:
        disk = slow_disk(buffer)
        buffer.publish_early(100)
        await buffer.commit(readings(20))
        batch = await buffer.next_encoded(100)
        await buffer.ack(batch)  # the broker has them; their flush has not happened
        await buffer.commit(readings(5, start=20))  # (its job deletes them first)
        assert buffer.statistics().depth == 5
        with sqlite3.connect(path) as db:
            kept = {row[0] for row in db.execute("SELECT seq FROM readings")}
        assert kept == set(range(21, 26))
        disk.set()


async def test_a_full_disk_refusing_readings_while_publishing_early_hands_none_of_them_out(
    small_disk: Path,  # noqa: F811 - the fixture imported above
) -> None:
    """As test_disk_full's disk with no room at all, publishing early: what the disk refuses never had a
    number nor left for the broker (counted as unnumbered losses); every number that left is stored or
    counted as dropped, and the readings stored once the disk has room are numbered on."""
    async with Buffer(small_disk / "b.db", durability="normal") as buffer:
        await buffer.append(readings(10))
        await buffer.ack(await buffer.next_encoded(10))  # delivered: nothing left to drop
        await buffer._run(buffer._apply_acks)  # (deleted now, not with the first commit on the full disk)
        buffer.publish_early(100)
        fill(small_disk, 0)
        handed_out, sent = 10, 0
        for batch in range(50):
            async with asyncio.timeout(5):
                await buffer.append(readings(200, 10 + 200 * batch))
                while buffer.last_seq > handed_out:
                    got = await buffer.next_encoded(100, after_seq=handed_out)
                    handed_out, sent = got.last_seq, sent + got.count
        full = buffer.statistics()
        assert full.disk_full
        assert full.unnumbered > 0  # the disk refused some: counted, never numbered
        assert full.appended + full.unnumbered == 10 + 50 * 200
        assert sent == full.appended - 10  # every committed reading left, and only those
        with sqlite3.connect(small_disk / "b.db") as db:
            stored = {row[0] for row in db.execute("SELECT seq FROM readings")}
        missing = set(range(11, handed_out + 1)) - stored
        assert not missing or max(missing) <= full.last_dropped_seq  # dropped oldest: known losses
        (small_disk / "filler").unlink()
        await buffer.append(readings(5, 20_000))
        assert buffer.last_seq == handed_out + 5


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
