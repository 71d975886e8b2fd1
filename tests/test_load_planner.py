"""The receding-horizon planner (control/planner/): what it learns, what it plans, and what it writes."""

from __future__ import annotations

import math
import random
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from edge_agent.config.control import ControlConfig
from edge_agent.control.decision import Decision
from edge_agent.control.demand import IntervalDemand
from edge_agent.control.features import build_features
from edge_agent.control.guards import Guards
from edge_agent.control.limits import Limits
from edge_agent.control.loop import ControlLoop
from edge_agent.control.observation import Observation, ZoneObservation
from edge_agent.control.planner.history_file import PLANNER_HISTORY, HistoryFile
from edge_agent.control.planner.lp import Horizon, solve
from edge_agent.control.planner.model import ThermalModel, fit_thermal
from edge_agent.control.planner.policy import Planner
from edge_agent.control.planner.slots import SLOT, Slot, SlotHistory
from edge_agent.control.rules import RuleBasedPolicy
from edge_agent.control.savings.tariff import KST
from edge_agent.control.settings import ControlMode
from edge_agent.service.control_setup import control_settings, control_setup
from tests.one_zone import one_zone_control
from tests.test_control_demand_target import NIGHT, POINTS, STEP_S, Building, run_until

# Per slot: the envelope, and gains that include the base load's heat (the meter's demand all "cools" in
# the fused model, so its gains carry kappa x base): left alone, the building warms.
TRUE = ThermalModel(0.80, 0.15, 0.05, 0.01, gains=(0.3, 0.45, 0, 0, 0, 0), rmse_k=0, slots=0)
START = datetime(2026, 8, 3, 0, 0, tzinfo=KST)  # a Monday


def simulated_slots(days: int, model: ThermalModel = TRUE) -> list[Slot]:
    """A building that follows `model` exactly, run by a simple thermostat (26 C while open 9-18, off
    otherwise), with a day's outdoor swing: what the planner would see of it."""
    slots: list[Slot] = []
    plugs = random.Random(1)  # the base load wanders, as plugs and lifts do
    t_prev = t = 27.0
    for k in range(days * 96):
        at = START + k * SLOT
        is_open = 9 <= at.hour < 18
        outdoor = 28 + 5 * math.sin(2 * math.pi * (at.hour - 9) / 24)
        base = 20.0 + (30.0 if is_open else 0.0) + plugs.uniform(-5, 5)
        free = model.a1 * t + model.a2 * t_prev + model.outdoor * outdoor + model.gain_k(at, is_open)
        wanted = (free - 26.0) / model.kappa_k_per_kw - base  # what holds 26 C at the slot's end
        hvac = min(200.0, max(0.0, wanted)) if is_open else 0.0
        demand = base + hvac
        t_next = free - model.kappa_k_per_kw * demand
        slots.append(Slot(at, demand, outdoor, t, t_next, is_open))
        t_prev, t = t, t_next
    return slots


def test_the_building_is_learnt_from_its_own_slots() -> None:
    model = fit_thermal(simulated_slots(4))
    assert isinstance(model, ThermalModel), model
    assert model.kappa_k_per_kw == pytest.approx(TRUE.kappa_k_per_kw, rel=0.05)
    assert model.rmse_k < 0.01


def test_a_fit_on_too_little_data_is_refused_with_the_reason() -> None:
    reason = fit_thermal(simulated_slots(1))
    assert isinstance(reason, str)
    assert "two days" in reason


def test_a_building_that_never_cooled_is_refused() -> None:
    warm = [
        Slot(s.start, 20.0, s.outdoor_c, s.zone_start_c, s.zone_end_c, s.open) for s in simulated_slots(3)
    ]
    reason = fit_thermal(warm)
    assert isinstance(reason, str)


def horizon(precool_slots: int) -> Horizon:
    """Tomorrow from 05:00: opens at 09:00 (slot 16) for nine hours, hot afternoon; the plant may pre-cool
    in the `precool_slots` before opening."""
    out, gain, floor, ceiling, low, high, price = [], [], [], [], [], [], []
    for k in range(96):
        at = START + timedelta(hours=5) + k * SLOT
        is_open = 9 <= at.hour < 18
        base = 20.0 + (30.0 if is_open else 0.0)
        may_cool = is_open or 16 - precool_slots <= k < 16
        out.append(28 + 5 * math.sin(2 * math.pi * (at.hour - 9) / 24))
        gain.append(TRUE.gain_k(at, is_open))
        floor.append(base)
        ceiling.append(250.0 if may_cool else base)
        low.append(22.0)
        high.append(26.7 if 9 <= (at + SLOT).hour < 18 else 99.0)
        price.append(150.0)
    return Horizon(out, gain, floor, ceiling, low, high, price)


def test_pre_cooling_before_opening_lowers_the_planned_peak() -> None:
    without = solve(TRUE, (27.0, 27.0), horizon(0), 0.0, 8320.0)
    with_precool = solve(TRUE, (27.0, 27.0), horizon(16), 0.0, 8320.0)
    assert not isinstance(without, str)
    assert not isinstance(with_precool, str)
    assert with_precool.peak_kw < 0.95 * without.peak_kw
    assert max(with_precool.demand_kw[:16]) > 20.0  # it used the plant before opening
    opening = horizon(16)
    for t, high in zip(with_precool.temperature_c, opening.t_high_c, strict=True):
        assert t <= high + 1e-6  # comfort kept: never past the edge while open
    assert min(with_precool.temperature_c) >= 22.0 - 1e-6


def test_below_the_months_billed_peak_the_plan_saves_energy() -> None:
    """A peak under what the month has billed saves nothing: the plan then spends less energy."""
    shaving = solve(TRUE, (27.0, 27.0), horizon(16), 0.0, 8320.0)
    billed = solve(TRUE, (27.0, 27.0), horizon(16), 500.0, 8320.0)
    assert not isinstance(shaving, str)
    assert not isinstance(billed, str)
    assert sum(billed.demand_kw) < sum(shaving.demand_kw)


def test_the_history_survives_a_restart_and_a_damaged_file_is_relearnt(tmp_path: Path) -> None:
    history = SlotHistory()
    history.slots.extend(simulated_slots(1))
    path = tmp_path / "planner_history.json"
    HistoryFile(path).save(history)
    again = SlotHistory()
    HistoryFile(path).load(again)
    assert list(again.slots) == list(history.slots)
    path.write_text('{"version": 1, "slots": [["2026-08-03T00:00:00+09:00", "x", 1, 2, 3, true]]}')
    fresh = SlotHistory()
    HistoryFile(path).load(fresh)
    assert not fresh.slots


def test_slots_are_built_from_observations() -> None:
    history = SlotHistory()
    for minute in range(0, 46):
        at = START + timedelta(minutes=minute)
        zone = ZoneObservation("z", 26.0 + minute / 100, 26.0, None)
        history.add(at, Observation(at, 30.0, 100.0 + minute, (zone,)), is_open=False)
    assert [s.start for s in history.slots] == [START, START + SLOT, START + 2 * SLOT]
    assert history.slots[0].demand_kw == pytest.approx(107.0)
    assert history.slots[0].zone_end_c == pytest.approx(26.15)


def test_a_planned_pre_cool_is_written_below_the_setpoint_never_under_the_floor() -> None:
    limits = Limits(precool_floor_c=23.0)
    at = datetime(2026, 8, 3, 7, 0, tzinfo=KST)  # closed, two hours before opening
    zones = (ZoneObservation("a", 27.5, 30.0, None), ZoneObservation("b", 27.0, 30.0, None))
    observation = Observation(at, 28.0, 50.0, zones)
    features = build_features(observation, IntervalDemand().state(at), 100.0, limits.hours)
    precool = Decision(-4.0, 0.0, 100.0, 100.0, 100.0, 100.0, 1.0)
    targets = Guards().apply(precool, observation, features, limits)
    assert {z.cooling_setpoint_c for z in targets.zones.values()} == {23.0}
    warm_up = Decision(0.0, 0.0, 100.0, 100.0, 100.0, 100.0, 1.0)
    targets = Guards().apply(warm_up, observation, features, Limits(plant_rated_kw=None))
    assert {z.cooling_setpoint_c for z in targets.zones.values()} == {26.0}


def test_planner_and_a_model_cannot_both_decide() -> None:
    with pytest.raises(ValueError, match="one policy decides"):
        ControlConfig.model_validate({"planner": True, "model": "m.onnx"})


async def test_the_agents_planner_learns_while_off_and_keeps_its_history_across_a_restart(
    tmp_path: Path,
) -> None:
    """[control] planner = true: until it has learnt two days, the rules decide and status says why; what it
    learnt while control was off is on disk and back after a restart."""
    building = Building()
    config = one_zone_control(mode="off", step_s=STEP_S, planner=True, demand_target_kw=100.0)
    path = tmp_path / PLANNER_HISTORY

    def loop() -> ControlLoop:
        made = ControlLoop(
            "gw",
            control_setup(config, units=POINTS),
            control_settings(config),
            building,
            clock=building.clock,
            planner_file=HistoryFile(path),
        )
        made.load_model()
        return made

    first = loop()
    await run_until(first, building, NIGHT + timedelta(hours=3))
    learnt = first.planner.history.slots if first.planner else []
    assert len(learnt) == 11  # 05:00 to 07:45 closed, the slot in progress not yet
    first.settings.mode = ControlMode.SHADOW
    await run_until(first, building, NIGHT + timedelta(hours=4))
    status = first.status()
    assert status.policy == "rules"
    assert status.fallback is not None
    assert "no model of the building yet" in status.fallback
    assert "two days" in status.fallback
    again = loop()
    assert again.planner is not None
    assert list(again.planner.history.slots) == list(first.planner.history.slots if first.planner else [])


def test_a_pre_cool_drawing_more_than_planned_stops_in_time_for_the_plant_to_unload() -> None:
    """Half an hour before opening, a plant still drawing so much that the open building would pass the
    plan's peak (its rooms lag the model: a heat-soaked Monday) stops pre-cooling; one on plan goes on."""

    def decide_at_0830(demand_kw: float) -> Decision:
        planner = Planner(RuleBasedPolicy())
        planner.history.slots.extend(simulated_slots(7))
        at = START + timedelta(days=7, hours=8, minutes=30)  # Monday, opening at 9
        zones = (ZoneObservation("a", 27.5, 30.0, None),)
        observation = Observation(at, 31.0, demand_kw, zones)
        interval = IntervalDemand().state(at)
        planner.observe(observation, interval, Limits())
        return planner.decide(build_features(observation, interval, 100.0, Limits().hours))

    on_plan = decide_at_0830(40.0)
    assert on_plan.precondition == 1.0  # cooling before opening, as planned
    overrun = decide_at_0830(400.0)
    assert overrun.precondition == 0.0  # the plant left to unload: the building's own setback until 9


def test_a_zone_far_from_the_rest_before_opening_holds_the_mean_down_only_until_the_zones_close_up() -> None:
    """After a night one zone is 3 K warmer than the others: the plan keeps the mean inside the comfort edge
    by that spread now, not all day (conditioned to one setpoint, the zones close up; the guards hold each
    zone at the edge)."""
    planner = Planner(RuleBasedPolicy())
    planner.history.slots.extend(simulated_slots(7))
    at = START + timedelta(days=7, hours=6)  # Monday 06:00, opening at 9
    zones = (ZoneObservation("a", 27.0, 30.0, None), ZoneObservation("b", 27.0, 30.0, None))
    observation = Observation(at, 29.0, 40.0, (*zones, ZoneObservation("hot", 30.0, 30.0, None)))
    interval = IntervalDemand().state(at)
    planner.observe(observation, interval, Limits())
    planner.decide(build_features(observation, interval, 100.0, Limits().hours))
    assert planner._planned is not None
    _, _, horizon = planner._planned
    edge = Limits().comfort_high_c - Limits().comfort_margin_k
    opening = horizon.t_high_c[11]  # the slot that ends at 9:00
    noon = horizon.t_high_c[24]
    assert opening < edge - 0.1  # three hours on, some of the 2 K spread is still counted
    assert noon == pytest.approx(edge, abs=0.01)  # by noon, the edge itself
