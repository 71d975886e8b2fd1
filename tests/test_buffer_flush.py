"""The buffer's flush runs beside the next commit (issue 19, Build 5): a slow disk holds no reading back
from the uplink while publishing early, and a reading counts as stored (the writer's drain, a stop) only
once its flush is done."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

import pytest

from edge_agent.acquisition.latest import LatestValues
from edge_agent.acquisition.path import ReadingPath
from edge_agent.store.buffer import Buffer
from tests.support import in_background
from tests.test_buffer import readings

pytestmark = pytest.mark.integration  # (a real SQLite file; the disk is made slow, not replaced)


def slow_disk(buffer: Buffer) -> threading.Event:
    """Every flush of `buffer`'s log waits until the returned event is set: a disk that takes its time."""
    flush, done = buffer._flush_log, threading.Event()

    def slow() -> None:
        done.wait(30)
        flush()

    buffer._flush_log = slow  # type: ignore[method-assign]
    return done


async def test_readings_reach_the_uplink_while_the_flush_before_them_waits(tmp_path: Path) -> None:
    async with Buffer(tmp_path / "b.db") as buffer:
        disk = slow_disk(buffer)
        buffer.publish_early(100)
        path = ReadingPath(LatestValues(), buffer, {})
        async with in_background(path.write()):
            sent: list[float] = []
            for poll in range(3):  # three polls, each committed apart, none flushed
                await path.accept(readings(5, start=5 * poll))
                async with asyncio.timeout(10):
                    while len(sent) < 5 * (poll + 1):
                        batch = await buffer.next_encoded(100, after_seq=len(sent))
                        sent += [r["value"] for r in json.loads(batch.readings_json)]
            assert sent == [float(v) for v in range(15)]
            draining = asyncio.create_task(path.drain())
            done, _ = await asyncio.wait({draining}, timeout=0.5)
            assert not done  # not stored until flushed: a stop would still wait
            assert path.statistics().readings_accepted == 15
            disk.set()
            async with asyncio.timeout(10):
                await draining
        assert buffer.statistics().depth == 15


async def test_append_returns_once_its_readings_are_flushed(tmp_path: Path) -> None:
    async with Buffer(tmp_path / "b.db") as buffer:
        disk = slow_disk(buffer)
        appending = asyncio.create_task(buffer.append(readings(3)))
        done, _ = await asyncio.wait({appending}, timeout=0.5)
        assert not done
        assert buffer.statistics().appended == 3  # committed, not yet flushed
        disk.set()
        async with asyncio.timeout(10):
            await appending
