"""The month's demand peak on the gateway's disk, beside the buffer: a restart keeps what the month has
billed so far, and the target it gives (demand.py), instead of starting over from the night's load.

One small JSON file, replaced atomically when the record changes (at most once per 15-minute interval).
A file that cannot be read or is not such a record is logged and control starts the month afresh; a write
that fails (disk full) is logged and control goes on with what it knows.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import structlog

from edge_agent.atomic_file import write_atomically
from edge_agent.control.demand import MonthPeak

log = structlog.get_logger("edge_agent.control")

DEMAND_PEAK = "demand_peak.json"  # the file's name, next to the buffer file


class PeakFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._saved: MonthPeak | None = None

    def load(self) -> MonthPeak | None:
        try:
            record = json.loads(self.path.read_bytes())
            peak = _parse(record)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError, KeyError) as error:
            log.error("demand peak not read: the month starts afresh", file=str(self.path), error=str(error))  # noqa: TRY400
            return None
        self._saved = peak
        return peak

    def save(self, peak: MonthPeak) -> None:
        """Write `peak` if it differs from what the file holds."""
        if peak == self._saved:
            return
        record = {
            "month": peak.month,
            "peak_kw": peak.peak_kw,
            "open_peak_kw": peak.open_peak_kw,
            "open_intervals": peak.open_intervals,
            "previous_open_peak_kw": peak.previous_open_peak_kw,
        }
        try:
            write_atomically(self.path, json.dumps(record).encode() + b"\n")
        except OSError as error:
            log.error("demand peak not written", file=str(self.path), error=str(error))  # noqa: TRY400
            return
        self._saved = peak


def _kw(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} is not a demand in kW: {value!r}")
    return float(value)


def _parse(record: object) -> MonthPeak:
    if not isinstance(record, dict):
        raise TypeError("not a demand peak record")
    month = record["month"]
    if not isinstance(month, str) or not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", month):
        raise ValueError(f"month is not YYYY-MM: {month!r}")
    intervals = record["open_intervals"]
    if isinstance(intervals, bool) or not isinstance(intervals, int) or intervals < 0:
        raise ValueError(f"open_intervals is not a count: {intervals!r}")
    previous = record.get("previous_open_peak_kw")
    return MonthPeak(
        month,
        _kw(record["peak_kw"], "peak_kw"),
        _kw(record["open_peak_kw"], "open_peak_kw"),
        intervals,
        None if previous is None else _kw(previous, "previous_open_peak_kw"),
    )
