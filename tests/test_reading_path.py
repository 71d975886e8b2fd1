"""The reading path never holds a poller: a queue the buffer does not empty drops its oldest poll results,
counted in the `dropped` receivers see, and the newest go on to the buffer. A wave of polls due together
goes to the buffer (and the broker) in one commit, and a poll that never answers holds nobody's readings."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from edge_agent.acquisition.latest import LatestValues
from edge_agent.acquisition.path import QUEUE_BATCHES, ReadingPath
from edge_agent.store.buffer import Buffer
from tests.support import in_background
from tests.test_buffer import readings


async def test_a_full_queue_drops_its_oldest_and_never_holds_a_poller(tmp_path: Path) -> None:
    async with Buffer(tmp_path / "b.db") as buffer:
        path = ReadingPath(LatestValues(), buffer, {})
        for batch in range(QUEUE_BATCHES + 5):  # no writer yet: the buffer takes nothing
            async with asyncio.timeout(5):  # (a poller held here would never return)
                await path.accept(readings(2, 2 * batch))
        stats = path.statistics()
        assert (stats.batches_waiting, stats.readings_dropped) == (QUEUE_BATCHES, 10)
        writer = asyncio.create_task(path.write())
        try:
            async with asyncio.timeout(10):
                await path.drain()
        finally:
            writer.cancel()
        first = json.loads((await buffer.next_encoded(1)).readings_json)[0]
        assert first["value"] == 10.0  # the five oldest poll results went, the rest arrived in order
        assert buffer.statistics().depth == 2 * QUEUE_BATCHES == path.statistics().readings_accepted
        assert buffer.statistics().dropped == 10  # receivers are told of the readings the queue dropped


async def test_a_wave_of_polls_is_committed_once_all_are_in_and_a_silent_one_holds_nobody(
    tmp_path: Path,
) -> None:
    async with Buffer(tmp_path / "b.db") as buffer:
        buffer.publish_early(1000)
        path = ReadingPath(LatestValues(), buffer, {})
        async with in_background(path.write()):
            for _ in range(4):  # four polls due together; the last never answers
                path.underway.begin()
            for poll in range(3):
                await path.accept(readings(5, start=5 * poll))
                await asyncio.sleep(0.002)  # (answers come apart)
                path.underway.end()
            async with asyncio.timeout(10):
                batch = await buffer.next_encoded(1000)
            assert batch.count == 15  # one commit, one message, for the three that answered
            await path.accept(readings(5, start=15))  # the fourth still underway: committed anyway
            async with asyncio.timeout(10):
                batch = await buffer.next_encoded(1000, after_seq=batch.last_seq)
            assert batch.count == 5
