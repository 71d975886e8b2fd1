"""The buffer's write state, which `status` shows first: `full` at its cap (until the backlog is sent),
`read-only` while SQLite refuses writes, with the reason, and `writing` again once it writes."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from edge_agent.store.buffer import MIN_CAP_BYTES, Buffer
from edge_agent.store.write_state import WriteState
from tests.test_buffer import readings


async def test_at_its_cap_the_buffer_reads_full_until_the_backlog_is_sent(tmp_path: Path) -> None:
    async with Buffer(tmp_path / "b.db", cap_bytes=MIN_CAP_BYTES) as buffer:
        assert buffer.statistics().write_state is WriteState.WRITING
        start = 0
        while buffer.statistics().dropped == 0:
            await buffer.append(readings(2000, start))
            start += 2000
        stats = buffer.statistics()
        assert stats.write_state is WriteState.FULL
        assert stats.write_reason is not None
        assert "cap of 1.0 MiB" in stats.write_reason
        while buffer.statistics().depth:  # the broker takes the backlog
            await buffer.ack(await buffer.next_encoded(5000))
        assert buffer.statistics().write_state is WriteState.WRITING


async def test_a_buffer_that_refuses_writes_reads_read_only_with_the_reason(tmp_path: Path) -> None:
    async with Buffer(tmp_path / "b.db") as buffer:
        await buffer.append(readings(10))
        await buffer._run(buffer._conn().execute, "PRAGMA query_only=1")  # SQLite refuses every write now
        with pytest.raises(sqlite3.Error):
            await buffer.append(readings(10, 10))
        stats = buffer.statistics()
        assert stats.write_state is WriteState.READ_ONLY
        assert stats.write_reason is not None
        assert str(tmp_path / "b.db") in stats.write_reason
        await buffer._run(buffer._conn().execute, "PRAGMA query_only=0")
        await buffer.append(readings(10, 10))  # what the writer retries
        assert buffer.statistics().write_state is WriteState.WRITING
        assert buffer.statistics().depth == 20
