"""An OpenADR event (openleadr's parsed dict) read as demand-target windows, or the reason it cannot be.

Signals understood: SIMPLE levels (level 0 asks nothing; 1, 2, 3 map to the configured targets),
LOAD_DISPATCH `setpoint` (a demand in kW) and `delta` (kW below the reference), LOAD_CONTROL
`x-loadControlCapacity` (a fraction of the reference). The reference is this month's peak so far.
The first signal of a kind listed here decides; others are ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

SIGNALS = {
    ("simple", "level"),
    ("LOAD_DISPATCH", "setpoint"),
    ("LOAD_DISPATCH", "delta"),
    ("LOAD_CONTROL", "x-loadControlCapacity"),
}
_KILO = {"none": 1e-3, "k": 1.0, "M": 1e3}  # the signal's W scale -> kW


@dataclass(frozen=True, slots=True)
class Levels:
    kind: str  # 'fraction' (of the reference) or 'kW'
    targets: tuple[float, ...]  # levels 1, 2, 3...


@dataclass(frozen=True, slots=True)
class Window:
    start: datetime
    end: datetime
    target_kw: float | None  # None: this interval asks for no shedding (SIMPLE level 0)


@dataclass(frozen=True, slots=True)
class EventPlan:
    event_id: str
    modification: int
    cancelled: bool
    windows: tuple[Window, ...]
    refusal: str | None  # why the event cannot be followed; None: it can

    @property
    def start(self) -> datetime | None:
        return min((w.start for w in self.windows), default=None)

    @property
    def end(self) -> datetime | None:
        return max((w.end for w in self.windows), default=None)


def plan_event(event: Mapping[str, Any], levels: Levels, reference_kw: float | None) -> EventPlan:
    descriptor = event["event_descriptor"]
    event_id, modification = str(descriptor["event_id"]), int(descriptor.get("modification_number") or 0)
    cancelled = descriptor.get("event_status") == "cancelled"
    signals = event.get("event_signals") or []
    signal = next((s for s in signals if (s.get("signal_name"), s.get("signal_type")) in SIGNALS), None)
    if signal is None:
        names = ", ".join(f"{s.get('signal_name')}/{s.get('signal_type')}" for s in signals) or "none"
        unfollowed = f"no signal this gateway follows ({names})"
        return EventPlan(event_id, modification, cancelled, _active_period(event), unfollowed)
    windows, refusals = [], []
    for interval in signal.get("intervals") or []:
        start: datetime = interval["dtstart"]
        end = start + (interval.get("duration") or timedelta(0))
        target, refusal = _target(signal, float(interval["signal_payload"]), levels, reference_kw)
        windows.append(Window(start, end, target))  # a refused window keeps its times: status shows them
        refusals += [] if refusal is None else [refusal]
    return EventPlan(event_id, modification, cancelled, tuple(windows), refusals[0] if refusals else None)


def _active_period(event: Mapping[str, Any]) -> tuple[Window, ...]:
    """The event's whole window, without a target (for an event whose signals are not followed)."""
    period = event.get("active_period") or {}
    start: datetime | None = period.get("dtstart")
    if start is None:
        return ()
    return (Window(start, start + (period.get("duration") or timedelta(0)), None),)


def _target(
    signal: Mapping[str, Any], payload: float, levels: Levels, reference_kw: float | None
) -> tuple[float | None, str | None]:
    kind = (signal["signal_name"], signal["signal_type"])
    if kind == ("simple", "level"):
        level = round(payload)
        if level <= 0:
            return None, None
        value = levels.targets[min(level, len(levels.targets)) - 1]
        if levels.kind == "kW":
            return value, None
        return _of_reference(value, reference_kw, f"SIMPLE level {level}")
    if kind == ("LOAD_CONTROL", "x-loadControlCapacity"):
        return _of_reference(payload, reference_kw, "x-loadControlCapacity")
    return _dispatch(kind[1], payload * _scale(signal), reference_kw)


def _dispatch(
    signal_type: str, kilowatts: float, reference_kw: float | None
) -> tuple[float | None, str | None]:
    if signal_type == "setpoint":
        return kilowatts, None
    if reference_kw is None:
        return None, "LOAD_DISPATCH delta: this month's peak is not known yet"
    return reference_kw - kilowatts, None


def _of_reference(fraction: float, reference_kw: float | None, what: str) -> tuple[float | None, str | None]:
    if reference_kw is None:
        return None, f"{what}: this month's peak is not known yet"
    return fraction * reference_kw, None


def _scale(signal: Mapping[str, Any]) -> float:
    """kW per unit of the signal's payload: its measurement says W with an SI scale; kW when it says none."""
    measurement = signal.get("measurement") or {}
    if measurement.get("unit") not in (None, "W"):
        return 1.0
    return _KILO.get(str(measurement.get("scale") or "k"), 1.0)
