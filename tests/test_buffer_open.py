"""Opening the buffer: what an operator must fix stops the start with the fix named; only a file SQLite proves
damaged is replaced, after its readable rows are salvaged; sequence numbers, bdSeq and `dropped` never
start again, whatever happened to the file."""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

import pytest

from edge_agent.errors import StartupError
from edge_agent.store.buffer import Buffer
from tests.reference_batches import next_batch
from tests.test_buffer import readings


async def filled(path: Path, count: int, delivered: int = 0) -> None:
    """A buffer that issued `count` readings, the first `delivered` of them acknowledged."""
    async with Buffer(path) as buffer:
        for start in range(0, count, 100):
            await buffer.append(readings(min(100, count - start), start))
        if delivered:
            await buffer.ack(await buffer.next_encoded(delivered))


def seqs_in(path: Path) -> list[int]:
    with sqlite3.connect(path) as db:
        return [int(row[0]) for row in db.execute("SELECT seq FROM readings ORDER BY seq")]


async def test_a_path_that_is_a_directory_names_the_fix_and_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    path.mkdir()
    with pytest.raises(StartupError, match="is a directory: move it away") as raised:
        async with Buffer(path):
            pass
    assert not raised.value.restart_helps
    assert path.is_dir()
    assert os.listdir(tmp_path) == ["b.db"]  # nothing renamed aside, nothing made


async def test_a_missing_directory_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(StartupError, match=r"does not exist \(or is not a directory\): create it") as raised:
        async with Buffer(tmp_path / "not-mounted" / "b.db"):
            pass
    assert not raised.value.restart_helps
    assert not (tmp_path / "not-mounted").exists()


async def test_a_zero_byte_file_keeps_the_numbers_and_counts_the_loss(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    await filled(path, 300, delivered=100)
    path.write_bytes(b"")
    async with Buffer(path) as buffer:
        stats = buffer.statistics()
        assert (stats.depth, stats.dropped, stats.last_dropped_seq) == (0, 200, 300)
        await buffer.append(readings(5))
        assert next_batch(buffer, 5).first_seq == 301


async def test_an_emptied_file_after_everything_was_delivered_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    await filled(path, 300, delivered=300)
    path.unlink()
    async with Buffer(path) as buffer:
        assert (buffer.statistics().dropped, buffer.statistics().last_dropped_seq) == (0, 0)
        await buffer.append(readings(1))
        assert next_batch(buffer, 1).first_seq == 301


async def test_sessions_and_dropped_survive_a_replaced_file(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    async with Buffer(path, cap_bytes=1 << 20) as buffer:
        while buffer.statistics().dropped == 0:
            await buffer.append(readings(2000))
        dropped = buffer.statistics().dropped
        sessions = [await buffer.next_session() for _ in range(3)]
    shutil.move(path, tmp_path / "elsewhere.db")
    async with Buffer(path) as buffer:
        assert await buffer.next_session() == sessions[-1] + 1
        assert buffer.statistics().dropped >= dropped


async def test_a_damaged_page_is_salvaged_around_and_the_rest_kept(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    await filled(path, 5000)
    size = path.stat().st_size
    with path.open("r+b") as file:  # a page in the middle of the readings turns to noise
        file.seek((size // 4096 // 2) * 4096)
        file.write(b"\xa5" * 4096)
    async with Buffer(path) as buffer:
        assert buffer.moved_aside is not None
        stats = buffer.statistics()
        assert 4800 < stats.depth < 5000  # a page's rows are lost, every other row kept
        assert stats.dropped == 5000 - stats.depth  # and the loss is counted
        assert stats.last_dropped_seq == 5000
        await buffer.append(readings(1))
        assert buffer.last_seq == 5001
    kept = seqs_in(path)
    assert kept[-1] == 5001
    assert len(kept) == stats.depth + 1
