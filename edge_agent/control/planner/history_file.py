"""The planner's slots on the gateway's disk, beside the buffer: a restart keeps what it has learnt of the
building (the buffer deletes readings once central has them, so it cannot be relearnt from there).

One JSON file replaced atomically when a slot closes (every 15 minutes). A file that cannot be read is
logged and the planner learns afresh (the rules decide meanwhile); a write that fails is logged and the
planner goes on with what it has.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from pathlib import Path

import structlog

from edge_agent.atomic_file import write_atomically
from edge_agent.control.planner.slots import Slot, SlotHistory

log = structlog.get_logger("edge_agent.control")

PLANNER_HISTORY = "planner_history.json"  # the file's name, next to the buffer file


class HistoryFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._saved: datetime | None = None  # start of the newest slot written

    def load(self, history: SlotHistory) -> None:
        try:
            record = json.loads(self.path.read_bytes())
            slots = [_slot(row) for row in record["slots"]]
        except FileNotFoundError:
            return
        except (OSError, ValueError, TypeError, KeyError) as error:
            log.error("planner history not read: it learns afresh", file=str(self.path), error=str(error))  # noqa: TRY400
            return
        history.slots.extend(sorted(slots, key=lambda s: s.start))
        self._saved = history.slots[-1].start if history.slots else None

    def save(self, history: SlotHistory) -> None:
        """Write the history if a slot closed since the last write."""
        newest = history.slots[-1].start if history.slots else None
        if newest is None or newest == self._saved:
            return
        rows = [
            [s.start.isoformat(), s.demand_kw, s.outdoor_c, s.zone_start_c, s.zone_end_c, s.open]
            for s in history.slots
        ]
        try:
            write_atomically(self.path, json.dumps({"version": 1, "slots": rows}).encode() + b"\n")
        except OSError as error:
            log.error("planner history not written", file=str(self.path), error=str(error))  # noqa: TRY400
            return
        self._saved = newest


def _slot(row: object) -> Slot:
    if not isinstance(row, list) or len(row) != 6:
        raise TypeError(f"not a slot: {row!r}")
    start = datetime.fromisoformat(row[0])
    if start.tzinfo is None:
        raise ValueError(f"slot time without a UTC offset: {row[0]!r}")
    values = row[1:5]
    if not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in values):
        raise ValueError(f"slot values are not numbers: {row!r}")
    if not isinstance(row[5], bool):
        raise TypeError(f"slot's open flag is not a boolean: {row!r}")
    return Slot(start, float(values[0]), float(values[1]), float(values[2]), float(values[3]), row[5])
