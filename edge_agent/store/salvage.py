"""Readings rescued from a damaged buffer file before it is replaced: whatever SQLite can still read.

The rows are read by ranges of sequence numbers; a range that fails is halved until single rows, and a row
that cannot be read is skipped. What cannot be read is counted as lost by the buffer (its ledger knows
the highest sequence number issued).
"""

from __future__ import annotations

import contextlib
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import structlog

log = structlog.get_logger("edge_agent.buffer")

RANGE = 1024  # sequence numbers read at once
SPLIT_BUDGET = 20_000  # failed reads spent on halving ranges: beyond it a failing range is skipped whole
_COLUMNS = "seq, device, point, value, unit, quality, ts_us"
_INSERT = (
    "INSERT OR IGNORE INTO readings (seq, device, point, value, unit, quality, ts_us, value_text)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)


@dataclass(frozen=True, slots=True)
class Salvaged:
    rows: int  # readings copied into the new file
    meta: dict[str, int]  # the damaged file's counters, where readable


def salvage(damaged: Path, into: sqlite3.Connection, highest_hint: int) -> Salvaged:
    """Copy every readable reading of `damaged` into `into` (a fresh buffer, its schema made)."""
    try:
        source = sqlite3.connect(damaged, isolation_level=None)  # a copy set aside: ours
    except sqlite3.Error as exc:
        log.error("damaged buffer: nothing readable", damaged=str(damaged), error=str(exc))  # noqa: TRY400
        return Salvaged(0, {})
    with contextlib.closing(source):
        meta = _meta(source)
        try:
            columns = {c[1] for c in source.execute("PRAGMA table_info(readings)")}
        except sqlite3.Error as exc:
            log.error("damaged buffer: its table is unreadable", damaged=str(damaged), error=str(exc))  # noqa: TRY400
            return Salvaged(0, meta)
        select = f"SELECT {_COLUMNS}, {'value_text' if 'value_text' in columns else 'NULL'} FROM readings"
        low, high = _bounds(source, highest_hint)
        copied, budget = 0, [SPLIT_BUDGET]
        with into:
            into.execute("BEGIN IMMEDIATE")
            for start in range(low, high + 1, RANGE):
                rows = _read(source, select, start, min(high, start + RANGE - 1), budget)
                copied += into.executemany(_INSERT, rows).rowcount
        return Salvaged(copied, meta)


def _meta(source: sqlite3.Connection) -> dict[str, int]:
    try:
        return {str(k): int(v) for k, v in source.execute("SELECT key, value FROM meta")}
    except (sqlite3.Error, ValueError, TypeError):
        return {}


def _bounds(source: sqlite3.Connection, highest_hint: int) -> tuple[int, int]:
    """The range of sequence numbers to try: from the file's lowest (or 1) to its highest or the ledger's."""
    with contextlib.suppress(sqlite3.Error, TypeError):
        low, high = source.execute("SELECT MIN(seq), MAX(seq) FROM readings").fetchone()
        if low is not None:
            return int(low), max(int(high), highest_hint)
    with contextlib.suppress(sqlite3.Error, TypeError):
        row = source.execute("SELECT seq FROM sqlite_sequence WHERE name = 'readings'").fetchone()
        if row is not None:
            return 1, max(int(row[0]), highest_hint)
    return 1, highest_hint


def _read(
    source: sqlite3.Connection, select: str, first: int, last: int, budget: list[int]
) -> list[tuple[object, ...]]:
    """The readable rows with seq from `first` to `last`; `budget`: failed reads left to spend on halving."""
    try:
        return source.execute(f"{select} WHERE seq BETWEEN ? AND ?", (first, last)).fetchall()
    except sqlite3.Error:
        budget[0] -= 1
        if first == last or budget[0] <= 0:
            return []  # unreadable: skipped
        middle = (first + last) // 2
        return _read(source, select, first, middle, budget) + _read(source, select, middle + 1, last, budget)
