"""Readings as the JSON rows the buffer inserts with one statement (buffer.py), written on the event loop.

A row is [device, point, unit, quality, value, ts_us]. For a good reading the first four are the same poll
after poll: their JSON is written once per point and kept, so a reading costs a float's repr and a string
join, about half of json.dumps on the whole row. Other readings (bad, unavailable, a value that is not a
float) go through json.dumps; a value that is not finite is stored as no value (JSON has no NaN).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import datetime

from edge_agent.readings import Quality, Reading

# One statement, one bind, one step for a whole batch: the sqlite3 module releases the GIL while SQLite
# parses and inserts (executemany would bind every row with the GIL held, and cost the loop more).
INSERT_ROWS = """
INSERT INTO readings (device, point, unit, quality, value, ts_us)
SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5 FROM json_each(?)
"""

_GOOD = Quality.GOOD


def to_us(ts: datetime) -> int:
    return int(ts.timestamp() * 1_000_000)


class RowEncoder:
    """Call it with a batch of readings: the JSON array INSERT_ROWS takes."""

    def __init__(self) -> None:
        # device -> point -> (unit, '["device","point","unit","good",'): a good reading's row up to its value
        self._heads: dict[str, dict[str, tuple[str, str]]] = {}

    def __call__(self, readings: Sequence[Reading]) -> str:
        rows: list[str] = []
        append, isfinite, heads = rows.append, math.isfinite, self._heads
        last_ts: datetime | None = None
        end = ""
        for reading in readings:
            if reading.ts is not last_ts:  # a poll's readings share one timestamp object
                last_ts = reading.ts
                end = f",{to_us(last_ts)}]"
            value = reading.value
            if reading.quality is _GOOD and type(value) is float and isfinite(value):
                points = heads.get(reading.device)
                head = None if points is None else points.get(reading.point)
                if head is None or head[0] != reading.unit:
                    head = self._head(reading)
                append(f"{head[1]}{value!r}{end}")
            else:
                append(_row(reading, end))
        return f"[{','.join(rows)}]"

    def _head(self, reading: Reading) -> tuple[str, str]:
        columns = json.dumps([reading.device, reading.point, reading.unit, reading.quality])
        head = self._heads.setdefault(reading.device, {})[reading.point] = (reading.unit, f"{columns[:-1]},")
        return head


def _row(reading: Reading, end: str) -> str:
    value = reading.value
    if value is not None and not math.isfinite(value):
        value = None
    columns = json.dumps([reading.device, reading.point, reading.unit, reading.quality, value])
    return f"{columns[:-1]}{end}"
