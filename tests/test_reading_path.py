"""The reading path never holds a poller: a queue the buffer does not empty drops its oldest poll results,
counted in the `dropped` receivers see, and the newest go on to the buffer."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from edge_agent.acquisition.latest import LatestValues
from edge_agent.acquisition.path import QUEUE_BATCHES, ReadingPath
from edge_agent.store.buffer import Buffer
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
