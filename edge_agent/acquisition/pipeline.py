"""The reading pipeline between the pollers and the sinks: a list of small steps, as in structlog's processor
chain.

A step is any callable taking one Reading and returning a Reading (the same one, or a changed copy) or None
(drop it: it is not stored nor sent upstream). Steps are pure functions of the readings they have seen, never
of the wall clock, so a pipeline is deterministic and tests need no clock. A step must not raise.

    pipeline = pipeline_for_points({"meter-main/voltage_l1": PointFilters(plausible_low=0.0,
                                                                          plausible_high=300.0,
                                                                          deadband_abs=0.5,
                                                                          max_silence_s=300.0)})
    forwarded = pipeline(readings)  # for every batch a poller delivers
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from edge_agent.readings import Quality, Reading

Step = Callable[[Reading], Reading | None]
"""One stage of the pipeline: the reading to pass on (possibly a changed copy), or None to drop it."""

BatchRun = Callable[[Sequence[Reading]], tuple[list[Reading], int, int]]
"""A step run over a batch: (the readings passed on, how many it dropped, how many it changed)."""

_GOOD = Quality.GOOD  # (an enum member's lookup costs more than a global's, on every reading)

DEFAULT_MAX_SILENCE_S: Final = 300.0
"""The heartbeat of a point that has a deadband but no max_silence_s of its own (config.py's default too)."""


class Plausibility:
    """A GOOD reading whose value lies outside [low, high] becomes BAD.

    The value is kept: it must no longer be presented as trustworthy (the quality says so, and every consumer
    reads the quality), but the raw number is what an engineer needs to tell a wiring or scaling fault
    (9999 V, a register read with the wrong type or word order) from a real excursion. Quality.BAD is the
    nearest existing quality; a distinct IMPLAUSIBLE would say more, but readings.py has no such member.
    Note that this makes BAD-with-a-number possible, where readings.py and docs/mqtt.md describe BAD readings
    as carrying no value.

    A non-finite value (NaN, infinity) is never plausible: it becomes BAD with value None, because it
    says nothing a number could and the uplink's JSON cannot carry it.

    Readings that are not GOOD, or carry no value, pass untouched.
    """

    name = "plausibility"

    __slots__ = ("_high", "_low", "high", "low")

    def __init__(self, low: float = -math.inf, high: float = math.inf) -> None:
        if math.isnan(low) or math.isnan(high) or low > high:
            raise ValueError(f"plausible range [{low}, {high}] is empty")
        self.low = low
        self.high = high
        # Compared against the largest finite floats instead of infinity, one chained comparison rejects NaN
        # and both infinities too.
        self._low = max(low, -sys.float_info.max)
        self._high = min(high, sys.float_info.max)

    def __call__(self, reading: Reading) -> Reading | None:
        value = reading.value
        if value is None or reading.quality is not _GOOD or self._low <= value <= self._high:
            return reading
        kept = value if math.isfinite(value) else None
        return reading._replace(value=kept, quality=Quality.BAD)

    def __repr__(self) -> str:
        return f"Plausibility(low={self.low}, high={self.high})"


class Deadband:
    """Report by exception: drop a GOOD reading that says nothing new about its point.

    Per point (Reading.key), a GOOD reading is forwarded only when
    - its value moved more than the band away from the last forwarded value (not the last seen one, so a
      slow drift is still reported once it adds up), or
    - max_silence_s or more has passed since the last forwarded reading of the point: a heartbeat, so a
      receiver can tell "unchanged" from "dead", or
    - its quality differs from the last forwarded reading's (a change is forwarded both ways), or
    - its timestamp is earlier than the last forwarded one (the clock was set back): the point starts afresh
      rather than staying silent until the clock catches up.
    Readings that are not GOOD are always forwarded: a fault is rare, and each one matters to a receiver.

    The band is max(absolute, percent % of |last forwarded value|): the absolute band is a floor for the
    relative one near zero. With percent alone and a last value of 0 the band is 0, so any change at all is
    forwarded; with neither, likewise (only exact repeats are dropped). A NaN value always counts as moved.

    Time is the readings' own timestamps, never the wall clock. Memory: one entry per point key seen.
    """

    name = "deadband"

    __slots__ = ("_absolute", "_fraction", "_last", "_silence", "absolute", "max_silence_s", "percent")

    def __init__(
        self, *, absolute: float | None = None, percent: float | None = None, max_silence_s: float
    ) -> None:
        for label, band in (("absolute", absolute), ("percent", percent)):
            if band is not None and not (math.isfinite(band) and band >= 0):
                raise ValueError(f"deadband {label} must be a finite number >= 0, not {band}")
        if not (math.isfinite(max_silence_s) and max_silence_s > 0):
            raise ValueError(f"max_silence_s must be a finite number > 0, not {max_silence_s}")
        self.absolute = absolute
        self.percent = percent
        self.max_silence_s = max_silence_s
        self._absolute = absolute or 0.0
        self._fraction = (percent or 0.0) / 100.0
        self._silence = timedelta(seconds=max_silence_s)
        # key -> (value, quality, timestamp, heartbeat due) of the last forwarded reading
        self._last: dict[str, tuple[float | None, Quality, datetime, datetime]] = {}

    def __call__(self, reading: Reading) -> Reading | None:
        key = reading.key
        last = self._last.get(key)
        if last is not None and reading.quality is _GOOD:
            value, quality, ts, due = last
            if quality is _GOOD and ts <= reading.ts < due and not self._moved(value, reading.value):
                return None
        self._last[key] = (reading.value, reading.quality, reading.ts, reading.ts + self._silence)
        return reading

    def _moved(self, last: float | None, value: float | None) -> bool:
        if last is None or value is None:
            return last is not value
        band = max(self._absolute, self._fraction * abs(last))
        return not abs(value - last) <= band  # true for NaN on either side

    def __len__(self) -> int:
        """How many points it remembers."""
        return len(self._last)

    def __repr__(self) -> str:
        bands = f"absolute={self.absolute}, percent={self.percent}"
        return f"Deadband({bands}, max_silence_s={self.max_silence_s})"


class ByPoint:
    """Runs each reading through the step configured for its point (Reading.key, 'device/point'), if any;
    readings of other points pass untouched. One dict lookup a reading."""

    __slots__ = ("_by_device", "_count", "name")

    def __init__(self, name: str, steps: Mapping[str, Step]) -> None:
        self.name = name
        self._count = len(steps)
        # device -> point -> step: two lookups on the reading's own strings, no key built per reading
        self._by_device: dict[str, dict[str, Step]] = {}
        for key, step in steps.items():
            device, _, point = key.partition("/")
            self._by_device.setdefault(device, {})[point] = step

    def __call__(self, reading: Reading) -> Reading | None:
        points = self._by_device.get(reading.device)
        step = None if points is None else points.get(reading.point)
        return reading if step is None else step(reading)

    def run(self, readings: Sequence[Reading]) -> tuple[list[Reading], int, int]:
        """As calling it on each reading (see BatchRun), but only the readings of points with a step are
        visited one by one (usually few): the others are found by a comprehension and pass as they are."""
        by_device = self._by_device
        stepped = [
            (index, step)
            for index, reading in enumerate(readings)
            if (points := by_device.get(reading.device)) is not None
            and (step := points.get(reading.point)) is not None
        ]
        out = list(readings)
        dropped: list[int] = []
        changed = 0
        for index, step in stepped:
            reading = out[index]
            passed = step(reading)
            if passed is None:
                dropped.append(index)
            elif passed is not reading:
                out[index] = passed
                changed += 1
        for index in reversed(dropped):
            del out[index]
        return out, len(dropped), changed

    def __len__(self) -> int:
        return self._count

    def __repr__(self) -> str:
        return f"ByPoint({self.name!r}, {self._count} points)"


@dataclass(frozen=True, slots=True)
class StepStatistics:
    name: str
    dropped: int  # readings this step dropped
    changed: int  # readings this step passed on as a changed copy (e.g. marked BAD)


@dataclass(frozen=True, slots=True)
class PipelineStatistics:
    received: int  # readings into the pipeline
    forwarded: int  # readings out of it
    steps: tuple[StepStatistics, ...]  # in pipeline order

    def dropped(self, name: str) -> int:
        """Readings dropped by the steps of this name."""
        return sum(step.dropped for step in self.steps if step.name == name)


def step_name(step: Step) -> str:
    """A step's `name` attribute, else a function's __name__, else its class name."""
    name = getattr(step, "name", None)
    if isinstance(name, str):
        return name
    name = getattr(step, "__name__", None)
    return name if isinstance(name, str) else type(step).__name__


def _run_each(step: Step) -> BatchRun:
    """Any step as a BatchRun."""

    def run(readings: Sequence[Reading]) -> tuple[list[Reading], int, int]:
        out: list[Reading] = []
        dropped = changed = 0
        for reading in readings:
            passed = step(reading)
            if passed is None:
                dropped += 1
                continue
            if passed is not reading:
                changed += 1
            out.append(passed)
        return out, dropped, changed

    return run


class Pipeline:
    """Runs every reading through the steps in order; a step returning None ends that reading's way.

    The batch goes through each step in turn (the same readings reach each step, in the same order, as
    when each reading goes through all steps in turn: steps are independent)."""

    __slots__ = (
        "_changed", "_dropped", "_forwarded", "_names", "_passthrough", "_received", "_runs", "_steps",
    )  # fmt: skip

    def __init__(self, steps: Sequence[Step] = ()) -> None:
        self._steps = tuple(steps)
        self._runs = tuple(step.run if isinstance(step, ByPoint) else _run_each(step) for step in self._steps)
        self._names = tuple(step_name(step) for step in self._steps)
        self._passthrough = all(isinstance(step, ByPoint) and not len(step) for step in self._steps)
        self._dropped = [0] * len(self._steps)
        self._changed = [0] * len(self._steps)
        self._received = 0
        self._forwarded = 0

    @property
    def steps(self) -> tuple[Step, ...]:
        return self._steps

    def __call__(self, readings: Sequence[Reading]) -> list[Reading]:
        self._received += len(readings)
        out = list(readings)
        if not self._passthrough:  # else no point has a filter configured
            for index, run in enumerate(self._runs):
                out, dropped, changed = run(out)
                self._dropped[index] += dropped
                self._changed[index] += changed
        self._forwarded += len(out)
        return out

    def statistics(self) -> PipelineStatistics:
        return PipelineStatistics(
            self._received,
            self._forwarded,
            tuple(
                StepStatistics(name, dropped, changed)
                for name, dropped, changed in zip(self._names, self._dropped, self._changed, strict=True)
            ),
        )

    def __repr__(self) -> str:
        return f"Pipeline({list(self._steps)!r})"


@dataclass(frozen=True, slots=True)
class PointFilters:
    """The filters of one point, as the configuration gives them; every field is optional.

    A plausible bound alone is a one-sided range. deadband_abs or deadband_pct (or both) gives the point a
    Deadband, with max_silence_s as its heartbeat (DEFAULT_MAX_SILENCE_S when None). max_silence_s alone
    changes nothing: the configuration gives every point one, and a point without a deadband is sent whole.
    """

    plausible_low: float | None = None
    plausible_high: float | None = None
    deadband_abs: float | None = None
    deadband_pct: float | None = None
    max_silence_s: float | None = None

    def plausibility(self) -> Plausibility | None:
        if self.plausible_low is None and self.plausible_high is None:
            return None
        low = -math.inf if self.plausible_low is None else self.plausible_low
        high = math.inf if self.plausible_high is None else self.plausible_high
        return Plausibility(low, high)

    def deadband(self) -> Deadband | None:
        if self.deadband_abs is None and self.deadband_pct is None:
            return None
        silence = DEFAULT_MAX_SILENCE_S if self.max_silence_s is None else self.max_silence_s
        return Deadband(absolute=self.deadband_abs, percent=self.deadband_pct, max_silence_s=silence)


def pipeline_for_points(specs: Mapping[str, PointFilters]) -> Pipeline:
    """Per-point plausibility, then per-point deadband, each found by one dict lookup on Reading.key.

    Plausibility runs first, so an implausible value reaches the deadband as BAD: a quality change, always
    forwarded, never hidden as a small move. Points without filters pass untouched. Raises ValueError, naming
    the point, for a key that is not 'device/point' or filters that cannot work.
    """
    plausibility: dict[str, Step] = {}
    deadband: dict[str, Step] = {}
    for key, filters in specs.items():
        device, slash, point = key.partition("/")
        if not (device and slash and point) or "/" in point:
            raise ValueError(f"point filters for {key!r}: the key must be 'device/point'")
        try:
            if (checked := filters.plausibility()) is not None:
                plausibility[key] = checked
            if (banded := filters.deadband()) is not None:
                deadband[key] = banded
        except ValueError as exc:
            raise ValueError(f"point filters for {key!r}: {exc}") from exc
    return Pipeline([ByPoint("plausibility", plausibility), ByPoint("deadband", deadband)])


def point_pipelines(specs: Mapping[str, PointFilters]) -> tuple[Pipeline, Pipeline]:
    """The same steps as two pipelines, checks then deadband, for a caller that keeps every checked
    reading (the latest values) but sends only what passes the deadband upstream."""
    combined = pipeline_for_points(specs)
    checks, deadband = combined.steps
    return Pipeline([checks]), Pipeline([deadband])
