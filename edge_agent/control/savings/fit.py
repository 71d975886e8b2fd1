"""Hourly samples for fitting a baseline, from exported readings (`edge-agent buffer export`, or the
platform's own export in the same shape): JSON lines or CSV with `ts`, `device`, `point`, `value` and,
optionally, `quality` (anything but 'good' is skipped).

An hour counts when it has at least one good reading of both the demand and the outdoor temperature; its
sample is the mean of each, stamped with the hour's start in building time (KST).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path

from edge_agent.control.savings.baseline import HourSample
from edge_agent.control.savings.tariff import to_kst


def read_rows(path: Path) -> Iterator[dict[str, str]]:
    """Rows of a .csv (with a header) or JSON-lines file; ValueError naming the line that is not."""
    with path.open(newline="") as source:
        if path.suffix.lower() == ".csv":
            yield from csv.DictReader(source)
            return
        for number, line in enumerate(source, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as error:
                raise ValueError(f"{path}:{number}: not JSON: {error}") from None
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{number}: not a JSON object")  # noqa: TRY004 - bad input, reported as such
            yield {key: "" if value is None else str(value) for key, value in row.items()}


def hourly_samples(
    rows: Iterable[dict[str, str]], demand: str, outdoor: str, *, demand_in_watts: bool
) -> list[HourSample]:
    """Hourly means of the `demand` and `outdoor` points ('device/point'), where both have readings."""
    sums: dict[str, dict[datetime, list[float]]] = {demand: {}, outdoor: {}}
    for number, row in enumerate(rows, 1):
        try:
            key = f"{row['device']}/{row['point']}"
            if key not in sums or row.get("quality", "good") != "good" or not row.get("value"):
                continue
            hour = to_kst(datetime.fromisoformat(row["ts"])).replace(minute=0, second=0, microsecond=0)
            value = float(row["value"])
        except (KeyError, ValueError) as error:
            raise ValueError(f"row {number}: needs ts, device, point and value ({error})") from None
        total = sums[key].setdefault(hour, [0.0, 0.0])
        total[0] += value
        total[1] += 1
    scale = 1000.0 if demand_in_watts else 1.0
    return [
        HourSample(hour, t[0] / t[1], sums[demand][hour][0] / sums[demand][hour][1] / scale)
        for hour, t in sorted(sums[outdoor].items())
        if hour in sums[demand]
    ]
