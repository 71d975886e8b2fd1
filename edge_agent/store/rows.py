"""Readings as the JSON rows the buffer inserts with one statement (buffer.py), written on the event loop.

A row is [device, point, unit, quality, value, ts_us]. For a good reading the first four are the same poll
after poll: their JSON is written once per point and kept, so a reading costs a float's repr and a string
join, about half of json.dumps on the whole row. Other readings (bad, unavailable, a value that is not a
float, or one SQLite cannot give back exactly) go through json.dumps; a value that is not finite is stored
as no value (JSON has no NaN).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import datetime

from edge_agent.readings import Quality, Reading

# One statement, one bind, one step for a whole batch: the sqlite3 module releases the GIL while SQLite
# parses and inserts (executemany would bind every row with the GIL held, and cost the loop more).
# ?2 is the batch's first seq: the buffer numbers readings itself (it may hand them out before the commit).
INSERT_ROWS = """
INSERT INTO readings (seq, device, point, unit, quality, value, ts_us)
SELECT ?2 + key, value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5
FROM json_each(?1)
"""

# The uplink's JSON is written by SQLite (buffer.py), from the REAL column with printf('%!.17g'). SQLite 3.40
# (Debian 12's, Raspberry Pi OS bookworm's) scales a value below 1e100 by powers of ten built from exact
# constants in a long double, close enough for 17 digits (tests/test_buffer.py checks every magnitude); from
# 1e100 on it multiplies by the double nearest 1e100, which is off in the 17th digit. And a REAL column keeps
# -0.0 as the integer 0. Such values also keep their repr (the shortest text that reads back as the same
# double) in `value_text`, which the uplink sends instead.
EXACT_BELOW = 1e100

# Those texts are set after the insert, in its transaction, from [index in the batch, repr] pairs: they are
# rare, so the insert above costs no more for them. ?2 is the batch's first seq.
SET_TEXTS = """
UPDATE readings SET value_text = kept.value ->> 1 FROM json_each(?1) AS kept
WHERE readings.seq = ?2 + (kept.value ->> 0)
"""

_GOOD = Quality.GOOD


def to_us(ts: datetime) -> int:
    return int(ts.timestamp() * 1_000_000)


def exact_in_sqlite(value: float) -> bool:
    """True when SQLite gives the value back exactly from its REAL column alone."""
    return -EXACT_BELOW < value < EXACT_BELOW and (value != 0 or math.copysign(1.0, value) > 0)


class RowEncoder:
    """Call it with a batch of readings: the JSON array INSERT_ROWS takes, and the one SET_TEXTS takes (None
    when every value is exact in SQLite, as nearly always)."""

    def __init__(self) -> None:
        # device -> point -> (unit, '["device","point","unit","good",'): a good reading's row up to its value
        self._heads: dict[str, dict[str, tuple[str, str]]] = {}

    def __call__(self, readings: Sequence[Reading]) -> tuple[str, str | None]:
        rows: list[str] = []
        texts: list[str] = []
        append, copysign, heads = rows.append, math.copysign, self._heads
        low, high = -EXACT_BELOW, EXACT_BELOW
        last_ts: datetime | None = None
        end = ""
        for reading in readings:
            if reading.ts is not last_ts:  # a poll's readings share one timestamp object
                last_ts = reading.ts
                end = f",{to_us(last_ts)}]"
            value = reading.value
            # exact_in_sqlite inlined, two plain comparisons (a call, or a chained comparison, would cost the
            # loop more); false for NaN and infinities
            if (
                reading.quality is _GOOD
                and type(value) is float
                and value < high
                and value > low
                and (value or copysign(1.0, value) > 0)
            ):
                points = heads.get(reading.device)
                head = None if points is None else points.get(reading.point)
                if head is None or head[0] != reading.unit:
                    head = self._head(reading)
                append(f"{head[1]}{value!r}{end}")
            else:
                if value is not None and math.isfinite(value) and not exact_in_sqlite(value):
                    texts.append(f'[{len(rows)},"{float(value)!r}"]')
                append(_row(reading, end))
        return f"[{','.join(rows)}]", f"[{','.join(texts)}]" if texts else None

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
