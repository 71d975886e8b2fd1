"""The uplink's fast path done the slow way, for tests and benchmarks only: buffered readings read back as
Python objects (as `edge-agent buffer export` reads them) and a readings payload encoded by json.dumps. The
agent itself has one path, the JSON SQLite builds (Buffer.next_encoded); these are what it is checked
against, written independently of it."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from edge_agent.store.buffer import Buffer, EncodedBatch
from edge_agent.store.reader import BufferReader, StoredReading
from edge_agent.uplink.session import encode_envelope


@dataclass(frozen=True, slots=True)
class Batch:
    """Consecutive buffered readings, oldest first; `first_seq`..`last_seq` covers all of them."""

    readings: tuple[StoredReading, ...]

    @property
    def first_seq(self) -> int:
        return self.readings[0].seq

    @property
    def last_seq(self) -> int:
        return self.readings[-1].seq


def next_batch(buffer: Buffer, limit: int) -> Batch:
    """The oldest `limit` readings in the buffer (at least one), read through a connection of their own."""
    with BufferReader(buffer.path) as reader:
        stored = tuple(itertools.islice(reader.unsent(), limit))
    if not stored:
        raise AssertionError(f"buffer {buffer.path} is empty")
    return Batch(stored)


def _iso(ts: datetime) -> str:
    return ts.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def encode_batch(gateway_id: str, batch: Batch, **envelope: Any) -> bytes:
    """A readings payload whose readings json.dumps wrote from Reading objects, in the uplink's envelope."""
    readings = [
        {
            "seq": item.seq,
            "device": item.reading.device,
            "point": item.reading.point,
            "value": item.reading.value,
            "unit": item.reading.unit,
            "quality": item.reading.quality.value,
            "ts": _iso(item.reading.ts),
        }
        for item in batch.readings
    ]
    encoded = EncodedBatch(
        batch.first_seq, batch.last_seq, len(readings), json.dumps(readings, separators=(",", ":"))
    )
    return encode_envelope(gateway_id, encoded, **envelope)
