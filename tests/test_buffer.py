"""The SQLite buffer: FIFO order, deletion only on ack, sequence numbers that survive restarts."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edge_agent.buffer import Buffer
from edge_agent.readings import Quality, Reading

T0 = datetime(2026, 8, 5, 5, 0, tzinfo=UTC)


def readings(n: int, start: int = 0) -> list[Reading]:
    return [
        Reading(
            "meter-main",
            "total_power",
            float(start + i),
            "W",
            Quality.GOOD,
            T0 + timedelta(seconds=start + i),
        )
        for i in range(n)
    ]


async def test_batches_come_out_in_order_and_leave_only_on_ack(tmp_path: Path) -> None:
    async with Buffer(tmp_path / "b.db") as buffer:
        await buffer.append(readings(10))
        first = await buffer.next_batch(4)
        again = await buffer.next_batch(4)
        assert [s.reading.value for s in first.readings] == [0.0, 1.0, 2.0, 3.0]
        assert again == first  # not acknowledged: still there
        await buffer.ack(first)
        second = await buffer.next_batch(100)
        assert [s.reading.value for s in second.readings] == [float(i) for i in range(4, 10)]
        assert second.first_seq == first.last_seq + 1
        assert buffer.statistics().depth == 6


async def test_readings_and_sequence_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    async with Buffer(path) as buffer:
        await buffer.append(readings(5))
        batch = await buffer.next_batch(5)
        await buffer.ack(batch)
        await buffer.append(readings(3, start=5))
    async with Buffer(path) as reopened:
        assert reopened.statistics().depth == 3
        batch = await reopened.next_batch(10)
        assert [s.seq for s in batch.readings] == [6, 7, 8]  # never reused, even after the deletes
        assert batch.readings[0].reading == readings(1, start=5)[0]
        await reopened.ack(batch)
        await reopened.append(readings(1, start=8))
        assert (await reopened.next_batch(1)).first_seq == 9


async def test_next_batch_waits_for_data(tmp_path: Path) -> None:
    async with Buffer(tmp_path / "b.db") as buffer:
        waiter = asyncio.create_task(buffer.next_batch(10))
        await asyncio.sleep(0.05)
        assert not waiter.done()
        await buffer.append(readings(2))
        batch = await asyncio.wait_for(waiter, 2)
        assert len(batch.readings) == 2


async def test_bad_quality_and_missing_value_round_trip(tmp_path: Path) -> None:
    bad = Reading("room-101", "zone_temperature", None, "degC", Quality.BAD, T0)
    async with Buffer(tmp_path / "b.db") as buffer:
        await buffer.append([bad])
        assert (await buffer.next_batch(1)).readings[0].reading == bad


async def test_committed_readings_are_visible_to_another_connection(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    async with Buffer(path) as buffer:
        await buffer.append(readings(7))
        with sqlite3.connect(path) as other:
            assert other.execute("SELECT COUNT(*) FROM readings").fetchone()[0] == 7
            assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_naive_timestamps_are_refused() -> None:
    with pytest.raises(ValueError, match="meter-main/total_power"):
        Reading("meter-main", "total_power", 1.0, "W", Quality.GOOD, datetime(2026, 1, 1))
