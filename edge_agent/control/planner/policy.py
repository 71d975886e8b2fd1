"""The planner as a policy: it learns from every observation (slots.py, model.py), plans the next HORIZON_H
hours once a slot (lp.py) and turns the plan's next slot into the zones' cooling setpoints: below the
occupied setpoint to pre-cool, started early before opening; up to the comfort edge while the stored cold
carries the building through its peak. The rules' plant and fan limits act on top, and their setpoint
levels once the demand runs past the plan's peak; ventilation, lighting and heating stay the rules'. It
plans cooling; in the heating season, before it has learnt the building, or without a feasible plan it
raises ModelError and the rule-based limiter decides (ModelOrRules), saying why.
"""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import datetime

from edge_agent.control.decision import Decision
from edge_agent.control.demand import IntervalState
from edge_agent.control.features import Features
from edge_agent.control.limits import ENERGY_OFFSET_K, MAX_OFFSET_K, MAX_PRECOOL_K, Limits
from edge_agent.control.observation import Observation
from edge_agent.control.planner.forecast import history, slot_of_day
from edge_agent.control.planner.lp import Horizon, Plan, solve
from edge_agent.control.planner.model import ThermalModel, fit_thermal
from edge_agent.control.planner.slots import SLOT, SlotHistory, slot_start
from edge_agent.control.policy import Policy
from edge_agent.control.rules import COOLING_ABOVE_C
from edge_agent.control.savings.tariff import tariff_for, to_kst
from edge_agent.errors import ModelError

HORIZON_H = 24
PRECOOLING_KW = 0.01  # planned demand this far above the floor before opening: the plant pre-cools
SPREAD_FADE_H = 1.0  # the zones' spread around their mean closes about this fast once they are conditioned
SLOT_H = SLOT.total_seconds() / 3600
UNLOAD_H = 0.5  # a plant unloads within this: a pre-cool that would carry its draw into the opening stops


class Planner:
    name = "planner"

    def __init__(self, rules: Policy) -> None:
        self.rules = rules  # ventilation, lighting and heating stay the rules' (the plan is cooling's)
        self.history = SlotHistory()
        self.model: ThermalModel | str = "no history yet"
        self._fitted_at: datetime | None = None
        self._last: tuple[Observation, IntervalState, Limits] | None = None
        self._planned: tuple[datetime, Plan, Horizon] | None = None  # the slot it was made in
        self._opening_floor_kw: float | None = None  # the demand floor forecast once the building opens

    def now(self) -> datetime:
        """The building time of the last observation (ModelOrRules' clock for its retries)."""
        if self._last is None:
            return datetime.min
        return self._last[0].at

    def observe(self, observation: Observation, interval: IntervalState, limits: Limits) -> None:
        local = to_kst(observation.at)
        self.history.add(local, observation, limits.hours.is_open(local))
        self._last = (observation, interval, limits)

    def decide(self, features: Features) -> Decision:
        """The plan's next slot as knobs. The plan is made once a slot (its resolution): the fitted model
        and the forecasts change no faster, and a Pi's control step stays short."""
        if self._last is None:
            raise ModelError(self.name, "nothing observed yet")
        observation, interval, limits = self._last
        local = to_kst(observation.at)
        if self._planned is None or self._planned[0] != slot_start(local):
            self._planned = None  # a failure below is raised again at the next step, not hidden
            peak_floor = max(interval.peak_kw, features.demand_target)
            plan, horizon = self._plan(local, observation, peak_floor, limits)
            self._planned = (slot_start(local), plan, horizon)
        _, plan, horizon = self._planned
        return self._decision(features, plan, horizon, limits)

    def _plan(
        self, local: datetime, observation: Observation, peak_floor_kw: float, limits: Limits
    ) -> tuple[Plan, Horizon]:
        model = self._model(local)
        if isinstance(model, str):
            raise ModelError(self.name, f"no model of the building yet: {model}")
        temperatures = [z.temperature_c for z in observation.zones if z.temperature_c is not None]
        if not temperatures or observation.outdoor_c is None:
            raise ModelError(self.name, "no zone or outdoor temperature")
        horizon = self._horizon(model, local, observation.outdoor_c, temperatures, limits)
        if max(horizon.outdoor_c) < COOLING_ABOVE_C:
            raise ModelError(self.name, "no cooling ahead (the planner plans cooling)")
        mean = sum(temperatures) / len(temperatures)
        before = self.history.slots[-1].zone_start_c if self.history.slots else mean
        demand_charge = tariff_for(local.date()).demand_krw_per_kw_month
        plan = solve(model, (mean, before), horizon, peak_floor_kw, demand_charge)
        if isinstance(plan, str):
            raise ModelError(self.name, plan)
        return plan, horizon

    def _model(self, local: datetime) -> ThermalModel | str:
        """Refitted once a slot (the history changes no faster)."""
        slot = slot_start(local)
        if self._fitted_at != slot:
            self.model = fit_thermal(list(self.history.slots))
            self._fitted_at = slot
        return self.model

    def _horizon(
        self,
        model: ThermalModel,
        local: datetime,
        outdoor_c: float,
        temperatures: list[float],
        limits: Limits,
    ) -> Horizon:
        mean_c = sum(temperatures) / len(temperatures)
        seen = history(list(self.history.slots))
        start = slot_start(local)
        # The mean stays inside the comfort edge by the zones' spread, so the warmest (coolest) zone does
        # not pass it. The spread now (after a night, a zone far from the rest) closes as the zones are
        # conditioned to one setpoint: counted in full now, fading over SPREAD_FADE_H.
        high = limits.comfort_high_c - limits.comfort_margin_k
        low = max(limits.precool_floor_c, limits.comfort_low_c + limits.comfort_margin_k)
        hot, cold = max(temperatures) - mean_c, mean_c - min(temperatures)
        names = ("out", "gain", "floor", "ceiling", "low", "high", "price")
        rows: dict[str, list[float]] = {name: [] for name in names}
        self._opening_floor_kw = None
        for k in range(HORIZON_H * 4):
            at = start + k * SLOT
            is_open = limits.hours.is_open(at)
            ends_open = limits.hours.is_open(at + SLOT)
            lead_h = limits.hours.hours_to_open(at, HORIZON_H)
            may_cool = is_open or 0 < lead_h <= limits.precool_lead_h
            floor = seen.floor_kw(at, is_open)
            if k > 0 and is_open and self._opening_floor_kw is None and not limits.hours.is_open(start):
                self._opening_floor_kw = floor
            rows["out"].append(seen.outdoor_c(at, outdoor_c, k / 4, slot_of_day(start)))
            rows["gain"].append(model.gain_k(at, is_open))
            rows["floor"].append(floor)
            rows["ceiling"].append(max(floor, seen.ceiling_kw) if may_cool else floor)
            fade = math.exp(-k * SLOT_H / SPREAD_FADE_H)
            rows["low"].append(min(low + cold * fade, mean_c))  # a building already below it may stay there
            rows["high"].append(high - hot * fade if ends_open else 99.0)
            rows["price"].append(tariff_for(at.date()).energy_price(at))
        return Horizon(*(rows[name] for name in names))

    def _overrun(self, features: Features, plan: Plan, horizon: Horizon) -> bool:
        """A pre-cool drawing more than its plan (the rooms lag the model: a heat-soaked Monday) stops: when
        the demand is past the plan's peak already, or when, close to opening, the plant's draw now on top of
        the open building's floor would pass it (the plant needs the time left to unload)."""
        if features.interval_projection > plan.peak_kw:
            return True
        if self._opening_floor_kw is None or features.hours_to_open > UNLOAD_H:
            return False
        plant_kw = max(0.0, features.demand - horizon.floor_kw[0])
        return plant_kw + self._opening_floor_kw > plan.peak_kw

    def _decision(self, features: Features, plan: Plan, horizon: Horizon, limits: Limits) -> Decision:
        decision = self.rules.decide(features)
        setpoint = plan.temperature_c[0]
        offset = min(MAX_OFFSET_K, max(-MAX_PRECOOL_K, setpoint - limits.cooling_base_c))
        if features.open >= 0.5:
            # The plan's setpoints, the rules' plant and fan limits on top (they act as the 15-minute demand
            # nears the target), and the rules' setpoint levels too once the demand runs past the plan's peak:
            # the plan is only as good as its forecast, the limiter watches the billed quantity itself.
            behind = features.interval_projection > plan.peak_kw and decision.cooling_offset > ENERGY_OFFSET_K
            cooling = max(offset, decision.cooling_offset) if behind else offset
            return replace(decision, cooling_offset=cooling, precondition=0.0)
        precooling = plan.demand_kw[0] > horizon.floor_kw[0] + PRECOOLING_KW
        if precooling and self._overrun(features, plan, horizon):
            precooling = False
        return replace(
            decision,
            cooling_offset=min(0.0, offset) if precooling else 0.0,
            plant_limit=100.0,
            fan_limit=100.0,
            precondition=1.0 if precooling else 0.0,
        )
