"""The SQLite buffer: FIFO order, deletion only on ack, sequence numbers that survive restarts."""

from __future__ import annotations

import asyncio
import json
import math
import random
import sqlite3
import struct
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from edge_agent.readings import Quality, Reading
from edge_agent.store.buffer import Buffer, EncodedBatch
from tests.reference_batches import next_batch
from tests.support import async_wait_until

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


def values(batch: EncodedBatch) -> list[float | None]:
    return [r["value"] for r in json.loads(batch.readings_json)]


async def test_batches_come_out_in_order_and_leave_only_on_ack(tmp_path: Path) -> None:
    async with Buffer(tmp_path / "b.db") as buffer:
        await buffer.append(readings(10))
        first = await buffer.next_encoded(4)
        again = await buffer.next_encoded(4)
        assert values(first) == [0.0, 1.0, 2.0, 3.0]
        assert again == first  # not acknowledged: still there
        await buffer.ack(first)
        second = await buffer.next_encoded(100)
        assert values(second) == [float(i) for i in range(4, 10)]
        assert second.first_seq == first.last_seq + 1
        assert buffer.statistics().depth == 6


async def test_readings_and_sequence_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    async with Buffer(path) as buffer:
        await buffer.append(readings(5))
        await buffer.ack(await buffer.next_encoded(5))
        await buffer.append(readings(3, start=5))
    async with Buffer(path) as reopened:
        assert reopened.statistics().depth == 3
        batch = next_batch(reopened, 10)
        assert [s.seq for s in batch.readings] == [6, 7, 8]  # never reused, even after the deletes
        assert batch.readings[0].reading == readings(1, start=5)[0]
        await reopened.ack(await reopened.next_encoded(10))
        await reopened.append(readings(1, start=8))
        assert (await reopened.next_encoded(1)).first_seq == 9


async def test_next_encoded_waits_for_data(tmp_path: Path) -> None:
    async with Buffer(tmp_path / "b.db") as buffer:
        waiter = asyncio.create_task(buffer.next_encoded(10))
        await asyncio.sleep(0.05)
        assert not waiter.done()
        await buffer.append(readings(2))
        batch = await asyncio.wait_for(waiter, 2)
        assert batch.count == 2


async def test_bad_quality_and_missing_value_round_trip(tmp_path: Path) -> None:
    bad = Reading("room-101", "zone_temperature", None, "degC", Quality.BAD, T0)
    async with Buffer(tmp_path / "b.db") as buffer:
        await buffer.append([bad])
        assert next_batch(buffer, 1).readings[0].reading == bad


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


CAP = 1 << 20  # 1 MiB, the smallest cap


async def test_cap_drops_the_oldest_and_counts_them(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    async with Buffer(path, cap_bytes=CAP) as buffer:
        for start in range(0, 40_000, 1000):
            await buffer.append(readings(1000, start=start))
        stats = buffer.statistics()
        assert stats.dropped > 0
        assert stats.depth + stats.dropped == 40_000  # every reading is either kept or counted as dropped
        assert stats.size_bytes <= CAP
        first = next_batch(buffer, 1).first_seq
        assert first == stats.last_dropped_seq + 1  # the receiver's gap is exactly the dropped range
        newest = next_batch(buffer, stats.depth).readings[-1].reading
        assert newest.value == 39_999.0  # the newest are kept
    assert path.stat().st_size <= CAP * 1.1
    async with Buffer(path, cap_bytes=CAP) as reopened:  # the count survives a restart
        assert reopened.statistics().dropped == stats.dropped
        assert reopened.statistics().last_dropped_seq == stats.last_dropped_seq


async def test_a_drained_buffer_gives_its_disk_back(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    async with Buffer(path) as buffer:
        for start in range(0, 20_000, 1000):
            await buffer.append(readings(1000, start=start))
        full = buffer.statistics().size_bytes
        while buffer.statistics().depth:
            await buffer.ack(await buffer.next_encoded(5000))
        # (the last acknowledged rows are deleted within ACK_DELAY_S, with no commit to take them)
        await async_wait_until(lambda: buffer.statistics().size_bytes < full / 10, 5, "the pages given back")
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert path.stat().st_size < full / 5


def test_a_cap_below_a_mebibyte_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="below the minimum"):
        Buffer(tmp_path / "b.db", cap_bytes=1000)


async def test_a_damaged_file_is_moved_aside_and_replaced(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    path.write_bytes(b"this is not a database, an SD card died here" * 100)
    async with Buffer(path) as buffer:
        assert buffer.moved_aside is not None
        assert buffer.moved_aside.read_bytes().startswith(b"this is not a database")  # kept for diagnosis
        await buffer.append(readings(3))
        assert next_batch(buffer, 3).first_seq == 1


async def test_a_new_file_releases_free_pages(tmp_path: Path) -> None:
    async with Buffer(tmp_path / "b.db") as buffer:
        await buffer.append(readings(1))
    with sqlite3.connect(tmp_path / "b.db") as db:
        assert db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental


# Any printable text (SQLite's JSON functions cut a string at a NUL); any float a device could send.
_NAMES = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=12)
_VALUES = st.one_of(st.none(), st.floats())


@settings(max_examples=25, deadline=None)
@given(
    rows=st.lists(
        st.tuples(_NAMES, _NAMES, _VALUES, _NAMES, st.sampled_from(Quality), st.integers(0, 3)),
        min_size=1,
        max_size=30,
    )
)
@example(rows=[("m", "p", 1.0510428785811142e245, "W", Quality.GOOD, 0)])  # SQLite's %.17g is 1 ulp off
async def test_what_goes_in_comes_out_whatever_the_names_values_and_qualities(
    tmp_path_factory: pytest.TempPathFactory, rows: list[tuple[str, str, float | None, str, Quality, int]]
) -> None:
    """Quotes, backslashes and any Unicode in names and units, every quality, values of any size; a value
    that is not finite comes back as no value. The same point may come back with another unit or quality."""
    stamps = [T0 + timedelta(milliseconds=i) for i in range(4)]
    batch = [Reading(d, p, v, u, q, stamps[t]) for d, p, v, u, q, t in rows]
    expected = [
        r._replace(value=None) if r.value is not None and not math.isfinite(r.value) else r for r in batch
    ]
    async with Buffer(tmp_path_factory.mktemp("rows") / "b.db") as buffer:
        await buffer.append(batch)
        await buffer.append(batch)  # the second time through the kept row heads
        stored = next_batch(buffer, 100)
        encoded = await buffer.next_encoded(100)
    assert [s.reading for s in stored.readings] == expected * 2
    assert [r["value"] for r in json.loads(encoded.readings_json)] == [r.value for r in expected] * 2


# Where SQLite's own rendering of a double fails (rows.py): -0.0, 1e100 and above (1.07...e102 is one it
# got wrong), the largest double; the smallest normal and subnormal doubles; and ordinary values.
EDGE_VALUES = [
    1e308,
    -1e308,
    1e100,
    -1e100,
    math.nextafter(1e100, 0),
    math.nextafter(1e100, math.inf),
    1.0778627469645175e102,
    -0.0,
    0.0,
    5e-324,
    -5e-324,
    2.2250738585072014e-308,
    2.225073858507201e-308,
    -2.2250738585072014e-308,
    1.7976931348623157e308,
    -1.7976931348623157e308,
    230.5,
    -1.25e-7,
    0.1,
    1e15 / 3,
    61822.35,
]


def bits(values: Sequence[float | None]) -> list[str | None]:
    """Each double exactly, as hex (-0.0 and 0.0 differ); None stays None."""
    return [None if v is None else v.hex() for v in values]


async def encoded_values(path: Path, *batches: list[Reading]) -> list[float | None]:
    """The values the uplink's JSON says, after `batches` went into a new buffer at `path`."""
    async with Buffer(path) as buffer:
        for batch in batches:
            await buffer.append(batch)
        return values(await buffer.next_encoded(sum(map(len, batches))))


async def test_the_uplink_json_gives_back_every_double_exactly(tmp_path: Path) -> None:
    """Good readings take the row encoder's fast path, the others json.dumps: both come out bit for bit, in
    a batch that starts at seq 1 and in one that does not."""
    good = [Reading("m", f"p{i}", v, "W", Quality.GOOD, T0) for i, v in enumerate(EDGE_VALUES)]
    stale = [r._replace(quality=Quality.STALE) for r in good]
    got = await encoded_values(tmp_path / "b.db", good + stale, stale + good)
    assert bits(got) == bits(EDGE_VALUES * 4)


async def test_values_that_are_not_finite_still_come_out_as_no_value(tmp_path: Path) -> None:
    """JSON has no NaN or infinity: docs/mqtt.md's value is a number or null."""
    odd = [math.nan, math.inf, -math.inf]
    batch = [
        Reading("m", f"p{i}", v, "W", q, T0) for i, v in enumerate(odd) for q in (Quality.GOOD, Quality.BAD)
    ]
    assert await encoded_values(tmp_path / "b.db", batch) == [None] * 6


async def test_doubles_of_every_magnitude_come_out_of_the_uplink_json_exactly(tmp_path: Path) -> None:
    """20,000 doubles from random bit patterns: exponents spread evenly from subnormal to the largest."""
    draw = random.Random(0)
    doubles = [struct.unpack("<d", draw.getrandbits(64).to_bytes(8, "little"))[0] for _ in range(20_000)]
    finite = [v for v in doubles if math.isfinite(v)]
    batch = [Reading("m", f"p{i % 40}", v, "W", Quality.GOOD, T0) for i, v in enumerate(finite)]
    assert bits(await encoded_values(tmp_path / "b.db", batch)) == bits(finite)


@settings(max_examples=50)
@given(
    rows=st.lists(
        st.tuples(st.floats(allow_nan=False, allow_infinity=False), st.sampled_from(Quality)),
        min_size=10,
        max_size=100,
    )
)
async def test_any_finite_double_comes_out_of_the_uplink_json_exactly(
    tmp_path_factory: pytest.TempPathFactory, rows: list[tuple[float, Quality]]
) -> None:
    batch = [Reading("m", f"p{i % 7}", v, "W", q, T0) for i, (v, q) in enumerate(rows)]
    got = await encoded_values(tmp_path_factory.mktemp("doubles") / "b.db", batch)
    assert bits(got) == bits([v for v, _ in rows])


async def test_a_file_from_before_value_text_gets_it_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    db = sqlite3.connect(path)
    db.executescript(  # the schema as it was: no value_text column
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
        CREATE TABLE readings (seq INTEGER PRIMARY KEY AUTOINCREMENT, device TEXT NOT NULL,
            point TEXT NOT NULL, value REAL, unit TEXT NOT NULL, quality TEXT NOT NULL,
            ts_us INTEGER NOT NULL);
        INSERT INTO readings (device, point, value, unit, quality, ts_us)
            VALUES ('m', 'p', 230.5, 'V', 'good', 1786000000000000);
        """
    )
    db.close()
    async with Buffer(path) as buffer:
        await buffer.append([Reading("m", "p", -0.0, "V", Quality.GOOD, T0)])
        assert bits(values(await buffer.next_encoded(10))) == bits([230.5, -0.0])
