"""The control loop: every step of building time, observe, decide, guard and act.

    LatestValues ─▶ Observation ─▶ Features ─▶ policy (ONNX, or the rule-based limiter) ─▶ guards ─▶ Actuator

Each step is `core.decide`, the same function the simulator study and training call. Who decides, the
model or the rules, is policy.py's ModelOrRules (one log line and one event each time the reason changes).
Missing or stale inputs release every write: control does not act on what it cannot see. Mode off releases
and computes nothing; shadow decides and logs, and writes nothing. Control reaches the devices only
through `Points`. Before the first step, what a previous run left held (its journal, holds.py) is given
back (recovery.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import structlog

from edge_agent.clock import Clock
from edge_agent.control.actuator import Actuator
from edge_agent.control.core import ControlState, decide
from edge_agent.control.decision import Decision
from edge_agent.control.demand import IntervalDemand
from edge_agent.control.events import ControlEvent, EventKind
from edge_agent.control.features import Features
from edge_agent.control.guards import Targets
from edge_agent.control.holds import Hold, HoldJournal
from edge_agent.control.model_rollout import (
    ModelRollout,
    ModelStage,
    RolloutFile,
    ShadowRun,
    ShadowStatus,
    StoredModel,
)
from edge_agent.control.model_trust import Verdict
from edge_agent.control.observation import Observation, ZoneObservation
from edge_agent.control.peak_file import PeakFile
from edge_agent.control.planner.history_file import HistoryFile
from edge_agent.control.planner.policy import Planner
from edge_agent.control.points import Points
from edge_agent.control.policy import ModelOrRules
from edge_agent.control.recovery import Recovery, Stored
from edge_agent.control.rules import RuleBasedPolicy
from edge_agent.control.savings.baseline import load_towt
from edge_agent.control.savings.ledger import SavingsLedger
from edge_agent.control.savings.tracker import DailySavings, SavingsTracker
from edge_agent.control.schedule import FixedRate
from edge_agent.control.settings import ControlMode, ControlSettings
from edge_agent.control.setup import ControlSetup
from edge_agent.errors import ModelError
from edge_agent.readings import Quality

if TYPE_CHECKING:
    from edge_agent.control.onnx_policy import OnnxPolicy

log = structlog.get_logger("edge_agent.control")

LEASE_CHECK_S = 5.0
RECOVER_WITHIN_S = 30.0  # how long the first step waits for devices to answer about a previous run's holds


@dataclass(frozen=True, slots=True)
class HeldWrite:
    point: str  # 'device/point'
    value: float
    priority: int | None  # BACnet: the priority written at; None for Modbus (restored on release)
    since: datetime | None = None  # wall clock (UTC) of the first write
    lease_until: datetime | None = None  # wall clock; None: no lease (central's)
    holder: Literal["control", "recovered", "central"] = "control"  # recovered: a previous run's, not
    # given back yet; central: a write_point command's, never released by the agent

    @classmethod
    def of(cls, hold: Hold, holder: Literal["control", "recovered", "central"]) -> HeldWrite:
        return cls(hold.point, hold.value, hold.priority, hold.since, hold.lease_until, holder)


@dataclass(frozen=True, slots=True)
class ControlStatus:
    mode: str
    demand_target_kw: float | None
    policy: str  # who decided the last step: 'onnx' or 'rules'
    fallback: str | None  # why the rules decide instead of the model; None when the model decides
    model: str | None
    model_sha256: str | None  # of the file in use: version and fingerprint are only what the file claims
    model_trust: str | None  # who signed the model in use, or that it runs unsigned
    steps: int  # decisions made since start
    last_decision: dict[str, float] | None
    writes: list[HeldWrite]  # what we hold on the building's controllers now: control's, a previous
    # run's not given back yet, central's
    backed_off: list[str]  # points an operator (a higher priority) holds: control keeps off them
    missing_inputs: list[str]  # stale or missing inputs: control holds nothing while any is listed
    savings_today: DailySavings | None  # against the baseline, so far today; None without a baseline
    skipped_steps: int = 0  # slots of the fixed schedule passed without a decision (a step overran them)
    month_peak_kw: float = 0.0  # the month's highest 15-minute demand, as far as the gateway has seen
    month_target_kw: float | None = None  # the target while none is set: the month's open-hours peak
    # (last month's while too little of this one is known); None: none yet, nothing is shed
    shadow: ShadowStatus | None = None  # a pushed model in shadow (model_rollout.py); None: none


class ControlLoop:
    def __init__(
        self,
        gateway: str,
        setup: ControlSetup,
        settings: ControlSettings,
        points: Points,
        *,
        clock: Clock,
        send_event: Callable[[bytes], None] | None = None,
        send_savings: Callable[[bytes], None] | None = None,
        ledger: SavingsLedger | None = None,
        journal: HoldJournal | None = None,
        stored: Stored | None = None,
        peak_file: PeakFile | None = None,
        planner_file: HistoryFile | None = None,
        rollout_file: RolloutFile | None = None,
        model_store: Path | None = None,
    ) -> None:
        self._gateway = gateway
        self.setup = setup
        setup.limits.hours.is_holiday(clock.now().date())  # the holiday tables load here, not in a step
        self.settings = settings
        self._points = points
        self._clock = clock
        self._send_event = send_event
        self._send_savings = send_savings
        self._ledger = ledger
        self._peak_file = peak_file
        self._planner_file = planner_file
        self.planner: Planner | None = None
        self.savings: SavingsTracker | None = None
        self._tracked_at: datetime | None = None  # end of the last step counted in the savings
        self.policy = ModelOrRules(None, RuleBasedPolicy(), clock.now, self._policy_changed)
        self.state = ControlState(self.policy, settings.demand_target_kw)
        self.actuator = Actuator(
            points, self.emit, priority=setup.write_priority, lease_s=setup.lease_s, journal=journal
        )
        self.recovery = Recovery(self.actuator.journal, points, self.emit, stored)
        self._missing: list[str] = []
        self._checked = False  # inputs checked by a step yet (before: status looks at them itself)
        self.schedule = FixedRate(clock, setup.step_s)
        self._mode: ControlMode | None = None
        self.steps = 0
        self.last_decision: dict[str, float] | None = None
        self.model_trust: Verdict | None = None  # why the model in use may be used (its signature)
        self.rollout = ModelRollout(rollout_file, setup.model, setup.model_shadow_s, self.emit, model_store)
        self.on_model_change: Callable[[], None] | None = None  # the birth's control_model changed

    @property
    def fallback(self) -> str | None:
        """Why the rules decide instead of the model; None when the model decides."""
        return self.policy.fallback

    def status(self) -> ControlStatus:
        held = [HeldWrite.of(h.hold, "control") for h in self.actuator.held.values()]
        held += [HeldWrite.of(h, "recovered") for h in self.recovery.pending]
        held += [HeldWrite.of(h, "central") for h in self.actuator.journal.holds() if h.owner == "central"]
        trust = self.model_trust if self.policy.model is not None else None
        interval = self.state.demand.state(self._clock.now())
        model = self.policy.model
        return ControlStatus(
            mode=str(self.settings.mode),
            demand_target_kw=self.settings.demand_target_kw,
            policy=self.policy.rules.name if self.fallback is not None or model is None else model.name,
            fallback=self.fallback,
            model=None if self.setup.model is None else str(self.setup.model),
            model_sha256=None if trust is None else trust.sha256,
            model_trust=None if trust is None else trust.describe(),
            steps=self.steps,
            last_decision=self.last_decision,
            writes=sorted(held, key=lambda w: (w.point, w.holder)),
            backed_off=sorted(self.actuator.operator_held),
            missing_inputs=self._missing if self._checked else self.observe(self._clock.now()).missing(),
            savings_today=None if self.savings is None else self.savings.today(),
            skipped_steps=self.schedule.skipped,
            month_peak_kw=interval.peak_kw,
            month_target_kw=interval.target_kw,
            shadow=self.rollout.status(),
        )

    def emit(self, kind: EventKind, message: str, **fields: Any) -> None:
        event = ControlEvent(
            gateway=self._gateway, kind=kind, at=self._clock.now(), message=message, **fields
        )
        if self._send_event is not None:
            self._send_event(event.to_json())

    def load_model(self) -> None:
        if self.setup.planner:
            self.planner = Planner(self.policy.rules)
            if self._planner_file is not None:
                self._planner_file.load(self.planner.history)
            self.policy.model, self.policy.fallback = self.planner, None
            log.info("the planner decides", slots=len(self.planner.history.slots))
            return
        self._load_deciding_model()
        self.rollout.resume(self._clock.now(), self.load_policy)

    def _load_deciding_model(self) -> None:
        path = self.rollout.deciding_path()  # a promoted model, or the configured one
        if path != self.setup.model:
            self.setup = replace(self.setup, model=path)
        if path is None:
            self.policy.use_rules("no model configured")
            return
        try:
            model = self.load_policy(path)
        except ModelError as error:
            active = self.rollout.record.active
            if active is not None and active.path == str(path):  # a promoted model: the one before it
                self.rollout.refused_at_start(error.reason)
                self._load_deciding_model()
                return
            log.error(  # noqa: TRY400 - the reason says it all
                "model refused: the rule-based limiter decides", model=str(error.path), reason=error.reason
            )
            self.policy.fallback = f"model refused: {error.reason}"
            self.emit(
                "fallback", "the rule-based limiter decides", policy="rules", reason=self.policy.fallback
            )
            return
        self._use(model)
        info = model.info
        trust = "" if info.trust is None else info.trust.describe()
        log.info("model loaded", model=info.path, version=info.version, sha256=info.sha256, trust=trust)

    def load_policy(self, path: Path) -> OnnxPolicy:
        """The model at `path`, trusted and checked as `[control] model` is; ModelError otherwise."""
        from edge_agent.control.onnx_policy import load_policy  # onnxruntime: only when a model is set

        return load_policy(path, self.setup.model_trust)

    def _use(self, model: OnnxPolicy) -> None:
        self.policy.model, self.policy.fallback = model, None
        self.model_trust = model.info.trust
        self.rollout.deciding = StoredModel(model.info.path, model.info.sha256)
        if self.setup.model != Path(model.info.path):
            self.setup = replace(self.setup, model=Path(model.info.path))

    def push_model(self, model: OnnxPolicy) -> ShadowRun:
        """A pushed model (loaded by `load_policy`) into shadow; it decides once it has passed."""
        if self.planner is not None:
            raise ModelError(model.info.path, "the planner decides ([control] planner = true): no model runs")
        run = self.rollout.begin(model, self._clock.now())
        self._model_changed()
        return run

    def model_stage(self) -> ModelStage | None:
        """The birth's control_model: the model in shadow, else the model that decides; None: the rules."""
        return self.rollout.stage()

    def _model_changed(self) -> None:
        if self.on_model_change is not None:
            self.on_model_change()

    def _policy_changed(self, reason: str | None, previous: str | None) -> None:
        if reason is not None:
            log.warning("control falls back to the rule-based limiter", reason=reason)
            self.emit("fallback", "the rule-based limiter decides", policy="rules", reason=reason)
        else:
            log.info("the model decides again", previous=previous)
            self.emit("recovered", "the model decides again", policy="onnx", reason=previous)

    def load_baseline(self) -> None:
        """The savings tracker, when a baseline is configured and loads; the ledger's last reports again."""
        if self.setup.baseline is None:
            return
        try:
            baseline = load_towt(self.setup.baseline, self.setup.limits.hours)
        except ModelError as error:
            log.error("baseline refused: no savings report", baseline=error.path, reason=error.reason)  # noqa: TRY400
            self.emit("error", "baseline refused: no savings report", reason=error.reason)
            return
        self.savings = SavingsTracker(self._gateway, baseline)
        log.info("baseline loaded", baseline=str(self.setup.baseline), fitted=baseline.quality.last)
        if self._ledger is not None and self._send_savings is not None:
            for report in self._ledger.recent():  # again, in case they did not leave before a restart
                self._send_savings(report)

    def load_peak(self) -> None:
        """What a previous run knew of this month's demand: its peak and the target it gives."""
        if self._peak_file is None:
            return
        month = self._peak_file.load()
        if month is not None:
            self.state.demand = IntervalDemand(month)
            log.info(
                "demand peak loaded",
                month=month.month,
                peak_kw=round(month.peak_kw, 1),
                open_peak_kw=round(month.open_peak_kw, 1),
                open_intervals=month.open_intervals,
            )

    async def run(self) -> None:
        """Decide at every slot of the fixed schedule until cancelled; the caller releases (stop())."""
        self.load_model()
        self.load_baseline()
        self.load_peak()
        await self.recover()
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._leases())
            while True:
                skipped = self.schedule.skipped
                await self.schedule.next()
                if self.schedule.skipped > skipped:
                    log.warning(
                        "control steps skipped: the last step ran past its slot",
                        skipped=self.schedule.skipped - skipped,
                        since_start=self.schedule.skipped,
                    )
                await self.step()

    async def recover(self) -> None:
        """Give back what a previous run left held before the first step; what its device does not answer
        about within RECOVER_WITHIN_S is retried with the leases, and control keeps off those points."""
        if not self.recovery.pending:
            return
        await self.recovery.settle(RECOVER_WITHIN_S)
        if self.recovery.pending:
            log.error(
                "control starts with a previous run's holds not given back: it keeps off them",
                points=sorted(self.recovery.points()),
            )
        else:
            log.info("the previous run's holds are resolved: control starts")

    async def _leases(self) -> None:
        while True:
            await asyncio.sleep(LEASE_CHECK_S)
            await self.actuator.expire()
            if self.recovery.pending:
                await self.recovery.attempt()

    async def stop(self, reason: str = "agent stopping") -> bool:
        """Release every write; True when every device took its point back."""
        released = await self.actuator.release_all(reason)
        if released:
            log.info("control released every point", reason=reason)
        else:
            log.error("control could not release every point", points=sorted(self.actuator.held))
        return released

    async def step(self) -> None:
        now = self._clock.now()
        observation = self.observe(now)
        self._track_savings(observation)
        self._track_demand(observation)
        mode = self.settings.mode
        if mode is not self._mode:
            self._mode = mode
            log.info("control mode", mode=str(mode))
            self.emit("mode", f"control {mode}", mode=str(mode))
        if mode is ControlMode.OFF:
            if self.planner is not None:  # it learns the building while control is off (commissioning)
                self.planner.observe(observation, self.state.demand.state(now), self.setup.limits)
                self._save_planner()
            await self.actuator.release_all("control switched off")
            return
        missing = observation.missing()
        self._checked = True
        if missing != self._missing:
            self._missing = missing
            if missing:
                log.warning("control inputs missing or stale: writes released", inputs=missing)
                self.emit("fallback", "inputs missing or stale: writes released", reason=", ".join(missing))
            else:
                log.info("control inputs back")
                self.emit("recovered", "control inputs back")
        if missing:
            await self.actuator.release_all("inputs missing or stale")
            return
        self.state.demand_target_kw = self.settings.demand_target_kw  # a command may have changed it
        step = decide(observation, self.state, self.setup.limits)
        self._judge_shadow(step.features, step.decision, now)
        self._save_planner()
        self.steps += 1
        self.last_decision = step.decision.values()
        self.emit(
            "decision",
            f"{step.policy} decided ({mode})",
            policy=step.policy,
            mode=str(mode),
            decision=self.last_decision,
            guards=list(step.targets.notes),
        )
        if mode is ControlMode.ACTIVE:
            wanted = self.wanted(step.targets)
            for ref in self.recovery.points():  # a previous run's hold there is not resolved yet
                wanted.pop(ref, None)
            await self.actuator.apply(wanted)
        else:
            await self.actuator.release_all("shadow mode")

    def _judge_shadow(self, features: Features, decision: Decision, now: datetime) -> None:
        """The model in shadow decides on the same features; it is promoted or rolled back when due."""
        stage = self.rollout.stage()
        promoted = self.rollout.judge(features, decision, now)
        if promoted is not None:
            self._use(promoted)
        if self.rollout.stage() != stage:
            self._model_changed()

    def _save_planner(self) -> None:
        if self.planner is not None and self._planner_file is not None:
            self._planner_file.save(self.planner.history)

    def _track_demand(self, observation: Observation) -> None:
        """The month's demand, in every mode (decide() adds this same sample again, to no effect), kept on
        disk as it changes: switched on or restarted mid-month, control knows the month's peak."""
        if observation.demand_kw is not None:
            self.state.demand.add(observation.at, observation.demand_kw, self.setup.limits.hours)
        month = self.state.demand.month
        if self._peak_file is not None and month is not None:
            self._peak_file.save(month)

    def _track_savings(self, observation: Observation) -> None:
        """Count this step in the savings, in every mode; a gap longer than two steps is not filled in."""
        if self.savings is None or observation.demand_kw is None:
            self._tracked_at = None
            return
        now, last = observation.at, self._tracked_at
        self._tracked_at = now
        if last is None or now <= last:
            return
        dt_s = min((now - last).total_seconds(), 2 * self.setup.step_s)
        for report in self.savings.add(now, dt_s, observation.demand_kw, observation.outdoor_c):
            log.info(
                "savings",
                day=report.day.isoformat(),
                avoided_kwh=round(report.avoided.energy_kwh, 1),
                avoided_peak_kw=round(report.avoided.peak_kw, 1),
                avoided_krw=round(report.avoided.energy_cost_krw),
                avoided_tco2e=round(report.avoided.emissions_t, 4),
            )
            payload = report.to_json()
            if self._ledger is not None:
                self._ledger.append(payload)
            if self._send_savings is not None:
                self._send_savings(payload)

    def _value(self, ref: str | None) -> float | None:
        """A point's latest good value; stale (by the wall clock, as polled) or bad: None."""
        if ref is None:
            return None
        reading = self._points.latest(ref)
        if reading is None or reading.quality is not Quality.GOOD or reading.value is None:
            return None
        return reading.value

    def observe(self, now: datetime) -> Observation:
        config = self.setup.points
        demand = self._value(config.demand)
        if demand is not None and config.demand_in_watts:
            demand /= 1000
        zones = tuple(
            ZoneObservation(
                z.name,
                self._value(z.temperature),
                self._value(z.cooling_setpoint),
                self._value(z.heating_setpoint),
                co2_ppm=self._value(z.co2),
                illuminance_lux=self._value(z.illuminance),
                dimming_pct=self._value(z.dimming),
            )
            for z in config.zones
        )
        outdoor = self._value(config.outdoor_temperature)
        plant = self._value(config.plant_power)
        if plant is not None and config.plant_power_in_watts:
            plant /= 1000
        return Observation(now, outdoor, demand, zones, plant_kw=plant)

    def wanted(self, targets: Targets) -> dict[str, float | None]:
        """What each written point should be ('device/point' -> value, None: released)."""
        config = self.setup.points
        wanted: dict[str, float | None] = {}
        for zone in config.zones:
            target = targets.zones.get(zone.name)
            for ref, value in (
                (zone.cooling_setpoint, target.cooling_setpoint_c if target else None),
                (zone.heating_setpoint, target.heating_setpoint_c if target else None),
                (zone.dimming, target.dimming_pct if target else None),
            ):
                if ref is not None:
                    wanted[ref] = self._within_range(ref, value)
        for ref, value in (
            (config.plant_limit, targets.plant_limit_pct),
            (config.fan_limit, targets.fan_limit_pct),
            (config.ventilation_limit, targets.ventilation_limit_pct),
            (config.supply_air_setpoint, targets.supply_air_c),
        ):
            if ref is not None:
                wanted[ref] = self._within_range(ref, value)
        return wanted

    def _within_range(self, ref: str, value: float | None) -> float | None:
        limits = self.setup.points.write_ranges.get(ref)
        return value if value is None or limits is None else min(limits[1], max(limits[0], value))
