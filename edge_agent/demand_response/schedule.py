"""Demand-response events in time: which are pending or active, the demand target they set, the opt-in
answer, and the reduction achieved against the pre-event baseline.

The target: while any opted-in event's window is active, the lowest of their targets replaces the demand
target in ControlSettings; when the last window ends, the previous target comes back. A target central
sets meanwhile (set_demand_target) wins: it is left alone during the event and kept after it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog

from edge_agent.control.demand import INTERVAL_S, IntervalDemand
from edge_agent.control.events import ControlEvent
from edge_agent.control.settings import ControlMode, ControlSettings
from edge_agent.demand_response.signals import EventPlan, Levels, plan_event

log = structlog.get_logger("edge_agent.demand_response")

OPT_IN, OPT_OUT = "optIn", "optOut"
_HISTORY = 16  # closed 15-minute intervals kept for the baseline (4 hours)


@dataclass(frozen=True, slots=True)
class EventStatus:
    event_id: str
    state: str  # 'pending', 'active', 'done' or 'cancelled'
    opt: str  # 'optIn' or 'optOut'
    start: datetime | None
    end: datetime | None
    target_kw: float | None  # of the window active now, else of the next one
    reason: str | None  # why we opted out


@dataclass(frozen=True, slots=True)
class DemandResponseStatus:
    vtn: str
    registered: bool
    events: list[EventStatus]
    demand_15min_kw: float | None  # the open interval's average so far
    baseline_kw: float | None  # the active event's pre-event baseline
    reduction_kw: float | None  # baseline - 15-minute demand, while an event is active


class DemandResponse:
    def __init__(
        self,
        gateway: str,
        vtn: str,
        settings: ControlSettings,
        levels: Levels,
        *,
        meter: Callable[[], float | None],
        month_peak: Callable[[], float | None],
        control_configured: bool,
        baseline_minutes: int = 60,
        send_event: Callable[[bytes], None] | None = None,
    ) -> None:
        self._gateway, self.vtn, self.settings, self._levels = gateway, vtn, settings, levels
        self._meter, self._month_peak = meter, month_peak
        self._control_configured = control_configured
        self._baseline = timedelta(minutes=baseline_minutes)
        self._send_event = send_event
        self.registered = False
        self.plans: dict[str, EventPlan] = {}
        self.opts: dict[str, tuple[str, str | None]] = {}  # event id -> (opt, reason)
        self._demand = IntervalDemand()
        self._open: tuple[datetime, float] | None = None  # the open interval's start and average so far
        self._closed: deque[tuple[datetime, float]] = deque(maxlen=_HISTORY)
        self._applied: float | None = None  # the target we set; None: none of ours in force
        self._before: float | None = None  # the target in force before the event
        self._overridden = False  # central set a target during the event: it wins
        self.baseline_kw: float | None = None
        self._now: datetime | None = None

    # --- events from the VTN -------------------------------------------------------------------

    def on_event(self, event: Mapping[str, Any]) -> str:
        """An event new or modified: plan it and answer optIn or optOut (with the reason logged/sent)."""
        plan = plan_event(event, self._levels, self._reference())
        self.plans[plan.event_id] = plan
        if plan.cancelled:
            self._emit(f"event {plan.event_id} cancelled by the VTN", reason=None)
            return self.opts.get(plan.event_id, (OPT_IN, None))[0]
        reason = self._cannot_shed() or plan.refusal or self._outside_limits(plan)
        opt = OPT_OUT if reason else OPT_IN
        self.opts[plan.event_id] = (opt, reason)
        window = f"{_iso(plan.start)} to {_iso(plan.end)}"
        targets = sorted({w.target_kw for w in plan.windows if w.target_kw is not None})
        what = ", ".join(f"{t:.1f}" for t in targets) + " kW" if targets else "none"
        self._emit(
            f"event {plan.event_id} (modification {plan.modification}) {window}: target {what}, {opt}",
            reason=reason,
            value=targets[0] if targets else None,
        )
        return opt

    def _reference(self) -> float | None:
        peak = self._month_peak()
        if peak:
            return peak
        return self.settings.demand_target_kw  # the target in force stands in until a peak is known

    def _cannot_shed(self) -> str | None:
        if not self._control_configured:
            return "no [control] points configured: nothing to shed with"
        if self.settings.mode is ControlMode.OFF:
            return "control is off"
        if self.settings.mode is ControlMode.SHADOW:
            return "control is in shadow mode: it decides but does not write"
        return None

    def _outside_limits(self, plan: EventPlan) -> str | None:
        low, high = self.settings.demand_target_limits_kw
        for window in plan.windows:
            if window.target_kw is not None and not low <= window.target_kw <= high:
                return f"target {window.target_kw:.1f} kW is outside demand_target_limits_kw [{low}, {high}]"
        return None

    # --- time ----------------------------------------------------------------------------------

    def tick(self, now: datetime) -> None:
        """Sample the meter, then set or restore the demand target for the windows active at `now`."""
        self._now = now
        self._sample(now)
        active = [
            w.target_kw
            for event_id, plan in self.plans.items()
            if not plan.cancelled and self.opts.get(event_id, (OPT_OUT, None))[0] == OPT_IN
            for w in plan.windows
            if w.start <= now < w.end and w.target_kw is not None
        ]
        if active:
            self._hold(min(active), now)
        elif self._applied is not None:
            self.restore()

    def _hold(self, target: float, now: datetime) -> None:
        if self._applied is None:
            self._before, self._overridden = self.settings.demand_target_kw, False
            self.baseline_kw = self._baseline_at(now)
            self._set(target, f"demand response: target {target:.1f} kW", None)
        elif self.settings.demand_target_kw != self._applied and not self._overridden:
            self._overridden = True
            self._emit(
                "demand response: central set the target during the event; it stays",
                reason="central's target wins",
                value=self.settings.demand_target_kw,
            )
        elif not self._overridden and target != self._applied:
            self._set(target, f"demand response: target {target:.1f} kW (next window)", None)

    def restore(self) -> None:
        """The events are over (or the agent stops): the previous target back, unless central changed it."""
        if self._applied is None:
            return
        if self._overridden or self.settings.demand_target_kw != self._applied:
            self._emit(
                "demand response over: central's target kept",
                reason="central's target wins",
                value=self.settings.demand_target_kw,
            )
        else:
            self.settings.demand_target_kw = self._before
            before = "none" if self._before is None else f"{self._before:.1f} kW"
            self._emit(f"demand response over: target back to {before}", reason=None, value=self._before)
        self._applied, self._overridden, self.baseline_kw = None, False, None

    def _set(self, target: float, message: str, reason: str | None) -> None:
        self.settings.demand_target_kw = self._applied = target
        self._emit(message, reason=reason, value=target)

    # --- demand and reduction --------------------------------------------------------------------

    def _sample(self, now: datetime) -> None:
        power = self._meter()
        if power is None:
            return
        self._demand.add(now, power)
        state = self._demand.state(now)
        if self._open is not None and self._open[0] != state.start:
            self._closed.append(self._open)
        self._open = (state.start, state.average_kw)

    def demand_kw(self) -> float | None:
        """The open 15-minute interval's average demand so far; None before the meter's first reading."""
        return None if self._open is None else self._open[1]

    def _baseline_at(self, start: datetime) -> float | None:
        """Mean of the closed 15-minute intervals in the `baseline_minutes` before `start`; without them
        (a fresh start), the 15-minute demand at `start`."""
        since = start - self._baseline
        ended = start - timedelta(seconds=INTERVAL_S)  # the last interval that closed before `start` began
        closed = [kw for at, kw in self._closed if since <= at <= ended]
        if closed:
            return sum(closed) / len(closed)
        return self.demand_kw()

    def reduction_kw(self) -> float | None:
        """Baseline - 15-minute demand while an event holds the target; None otherwise."""
        demand = self.demand_kw()
        if self._applied is None or self.baseline_kw is None or demand is None:
            return None
        return self.baseline_kw - demand

    # --- status and events ---------------------------------------------------------------------

    def status(self) -> DemandResponseStatus:
        return DemandResponseStatus(
            self.vtn,
            self.registered,
            [self._event_status(plan) for plan in self.plans.values()],
            self.demand_kw(),
            self.baseline_kw,
            self.reduction_kw(),
        )

    def _event_status(self, plan: EventPlan) -> EventStatus:
        now = self._now
        opt, reason = self.opts.get(plan.event_id, (OPT_OUT, plan.refusal))
        current = next((w for w in plan.windows if now is not None and w.start <= now < w.end), None)
        upcoming = [w for w in plan.windows if now is None or w.start > now]
        window = current or (upcoming[0] if upcoming else None)
        if plan.cancelled:
            state = "cancelled"
        elif current is not None:
            state = "active"
        elif upcoming:
            state = "pending"
        else:
            state = "done"
        target = None if window is None else window.target_kw
        return EventStatus(plan.event_id, state, opt, plan.start, plan.end, target, reason)

    def forget_done(self, now: datetime, keep: timedelta = timedelta(days=1)) -> None:
        """Drop events that ended more than `keep` ago (memory stays bounded)."""
        for event_id in [e for e, p in self.plans.items() if p.end is not None and p.end < now - keep]:
            self.plans.pop(event_id)
            self.opts.pop(event_id, None)

    def _emit(self, message: str, *, reason: str | None, value: float | None = None) -> None:
        at = self._now or datetime.now().astimezone()
        event = ControlEvent(
            gateway=self._gateway, kind="demand_response", at=at, message=message, value=value, reason=reason
        )
        log.info(message, reason=reason, value=value)
        if self._send_event is not None:
            self._send_event(event.to_json())


def _iso(at: datetime | None) -> str:
    return "?" if at is None else at.isoformat(timespec="seconds")
