"""Store-and-forward benchmarks (issue 5), every figure from one run.

1. Durable ingest: readings/s into the Buffer (batches of 500, synchronous=FULL) against raw sqlite3
   executemany inserts of the same rows with the same durability. Goal: >= 0.5.
2. Drain to mosquitto at QoS 1: readings/s through the Uplink (batches of 500, delete after PUBACK) against a
   raw aiomqtt loop publishing the same payloads at QoS 1. Goal: >= 0.7.
3. RSS after 1,000,000 readings through the buffer (in and out). Goal: under 120 MiB and flat.

Run: .venv/bin/python -m bench.buffer
"""

from __future__ import annotations

import asyncio
import resource
import sqlite3
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiomqtt
from tests.reference_batches import Batch, encode_batch
from tests.support import LOOPBACK, run_mosquitto

from edge_agent.config import MqttConfig
from edge_agent.readings import Quality, Reading
from edge_agent.store.buffer import Buffer
from edge_agent.store.reader import StoredReading
from edge_agent.uplink.session import Uplink

BATCH = 500
T0 = datetime(2026, 8, 5, tzinfo=UTC)


def batch(start: int) -> list[Reading]:
    return [
        Reading(
            "meter-1",
            f"p{i % 40}",
            float(start + i),
            "W",
            Quality.GOOD,
            T0 + timedelta(milliseconds=start + i),
        )
        for i in range(BATCH)
    ]


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def ingest(workdir: Path, batches: int) -> tuple[float, float]:
    data = [batch(i * BATCH) for i in range(batches)]
    async with Buffer(workdir / "buffer.db") as buffer:
        start = time.perf_counter()
        for readings in data:
            await buffer.append(readings)
        ours = batches * BATCH / (time.perf_counter() - start)
    raw_db = sqlite3.connect(workdir / "raw.db", isolation_level=None)
    raw_db.execute("PRAGMA journal_mode=WAL")
    raw_db.execute("PRAGMA synchronous=FULL")
    raw_db.execute(
        "CREATE TABLE r (seq INTEGER PRIMARY KEY AUTOINCREMENT, device TEXT, point TEXT, value REAL,"
        " unit TEXT, quality TEXT, ts_us INTEGER)"
    )
    start = time.perf_counter()
    for readings in data:
        raw_db.execute("BEGIN")
        raw_db.executemany(
            "INSERT INTO r (device, point, value, unit, quality, ts_us) VALUES (?,?,?,?,?,?)",
            [
                (r.device, r.point, r.value, r.unit, r.quality.value, int(r.ts.timestamp() * 1e6))
                for r in readings
            ],
        )
        raw_db.execute("COMMIT")
    raw = batches * BATCH / (time.perf_counter() - start)
    raw_db.close()
    return ours, raw


async def drain(workdir: Path, batches: int) -> tuple[float, float]:
    with run_mosquitto(workdir) as broker:
        async with Buffer(workdir / "drain.db", cap_bytes=1 << 32) as buffer:
            for i in range(batches):
                await buffer.append(batch(i * BATCH))
            # Everything is backlog here: no rate limit, to measure what the uplink itself can do.
            unlimited = MqttConfig(
                url=broker.url, batch_size=BATCH, backlog_messages_per_s=10_000, backlog_bytes_per_s=1 << 40
            )
            uplink = Uplink(unlimited, "bench", buffer)
            start = time.perf_counter()
            task = asyncio.create_task(uplink.run())
            while buffer.statistics().depth:  # noqa: ASYNC110 - polling another task's progress, in a bench
                await asyncio.sleep(0.01)
            ours = batches * BATCH / (time.perf_counter() - start)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        # The reference encodes each batch from memory too (a payload has to be made), then publishes it and
        # waits for the PUBACK; it has no buffer to read from or delete in.
        in_memory = [
            Batch(tuple(StoredReading(i * BATCH + j + 1, r) for j, r in enumerate(batch(i * BATCH))))
            for i in range(batches)
        ]
        async with aiomqtt.Client(LOOPBACK, broker.port, identifier="raw") as client:
            start = time.perf_counter()
            for readings in in_memory:
                await client.publish("raw/readings", encode_batch("bench", readings), qos=1)
            raw = batches * BATCH / (time.perf_counter() - start)
    return ours, raw


async def soak(workdir: Path, total: int) -> list[float]:
    """A million readings in and out; RSS sampled every 100,000."""
    samples = []
    async with Buffer(workdir / "soak.db") as buffer:
        done = 0
        while done < total:
            await buffer.append(batch(done))
            await buffer.ack(await buffer.next_encoded(BATCH))
            done += BATCH
            if done % 100_000 == 0:
                samples.append(rss_mib())
    return samples


async def main() -> None:
    with tempfile.TemporaryDirectory() as directory:
        workdir = Path(directory)
        ours, raw = await ingest(workdir, 200)
        print(f"1. durable ingest: {ours:,.0f} readings/s; raw sqlite3, same durability: {raw:,.0f};"
              f" ratio {ours / raw:.2f} (goal >= 0.5)")  # fmt: skip
        ours, raw = await drain(workdir, 200)
        print(f"2. drain to mosquitto at QoS 1: {ours:,.0f} readings/s; raw aiomqtt loop: {raw:,.0f};"
              f" ratio {ours / raw:.2f} (goal >= 0.7)")  # fmt: skip
        samples = await soak(workdir, 1_000_000)
        shown = ", ".join(f"{s:.0f}" for s in samples)
        print(f"3. RSS every 100,000 readings through the buffer: {shown} MiB (goal < 120 and flat)")


if __name__ == "__main__":
    asyncio.run(main())
