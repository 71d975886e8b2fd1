"""Savings against the baseline: the field's TOWT model predicts the simulator's uncontrolled weeks within
ASHRAE Guideline 14's hourly limits, and the daily reports of a controlled week add up to the KPI table."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from edge_agent.control.calendar import OpeningHours
from edge_agent.control.rules import RuleBasedPolicy
from edge_agent.control.savings.baseline import HourSample, fit_towt, load_towt
from edge_agent.control.savings.tariff import GRID_EMISSION_FACTOR, KST
from edge_agent.control.savings.tracker import SavingsTracker
from edge_agent.errors import ModelError
from edge_sim.baseline_study import RecordedBaseline, StepRecord, hourly_samples, record
from edge_sim.control_study import BuildingLoop, closed_loop, opening_hours
from edge_sim.physics.climate import SCENARIOS
from edge_sim.site.site import CONTROL_STEP_S, Site
from edge_sim.study import run_scenario

LIBRARY = "library"


def library_hours() -> OpeningHours:
    return opening_hours(Site(SCENARIOS["summer"].start).building(LIBRARY))


@pytest.mark.integration
def test_towt_predicts_unseen_weather_within_guideline_14(tmp_path: Path) -> None:
    hours = library_hours()
    training = [
        s for scenario in ("summer", "winter") for s in hourly_samples(record(scenario, LIBRARY, seed=1))
    ]
    model = fit_towt(training, hours)
    path = tmp_path / "baseline.json"
    path.write_text(model.to_json())
    model = load_towt(path, hours)  # what the agent runs on
    for scenario in ("summer", "winter"):
        unseen = hourly_samples(record(scenario, LIBRARY, seed=0))
        metered = np.array([s.demand_kw for s in unseen])
        predicted = np.array([model.demand_kw(s.local.astimezone(KST), s.outdoor_c)[0] for s in unseen])
        cv_rmse = float(np.sqrt(np.mean((metered - predicted) ** 2)) / metered.mean())
        nmbe = float((metered - predicted).sum() / (len(metered) * metered.mean()))
        assert cv_rmse <= 0.30, (scenario, cv_rmse)  # ASHRAE Guideline 14, hourly
        assert abs(nmbe) <= 0.10, (scenario, nmbe)


@pytest.mark.integration
def test_daily_reports_of_a_controlled_week_add_up_to_the_kpis() -> None:
    baseline_run = record("summer", LIBRARY, seed=0)
    tracker = SavingsTracker("gw", RecordedBaseline(baseline_run))
    loop = BuildingLoop(LIBRARY, RuleBasedPolicy(), target_kw=80.0)
    reports = []
    control = closed_loop([loop])
    start = SCENARIOS["summer"].start

    def step(site: Site) -> None:
        if site.now > start:
            building = site.building(LIBRARY)
            reports.extend(
                tracker.add(site.now, CONTROL_STEP_S, building.power.total / 1000, site.outdoor.temperature_c)
            )
        control(site)

    controlled = run_scenario("summer", seed=0, before_step=step).kpis[LIBRARY]
    uncontrolled = run_scenario("summer", seed=0).kpis[LIBRARY]
    today = tracker.today()
    assert today is not None
    assert not today.final
    days = [*reports, today]
    assert [r.day for r in reports] == [(start + timedelta(days=i)).date() for i in range(len(reports))]
    assert all(r.final for r in reports)
    assert all(r.hours_covered == pytest.approx(24) for r in reports)
    avoided_kwh = sum(r.avoided.energy_kwh for r in days)
    expected_kwh = uncontrolled.total_energy_kwh - controlled.total_energy_kwh
    assert avoided_kwh > 0
    assert avoided_kwh == pytest.approx(expected_kwh, rel=0.02, abs=2.0)
    assert max(r.baseline.peak_kw for r in days) == pytest.approx(uncontrolled.peak_15min_kw, rel=0.01)
    assert max(r.actual.peak_kw for r in days) == pytest.approx(controlled.peak_15min_kw, rel=0.01)
    assert sum(r.avoided.emissions_t for r in days) == pytest.approx(
        avoided_kwh / 1000 * GRID_EMISSION_FACTOR.value_t_per_mwh
    )
    assert today.demand_charge_avoided_krw > 0  # the month's peak was shaved
    data = json.loads(today.to_json())
    assert data["day"] == today.day.isoformat()
    assert data["avoided"]["energy_kwh"] == today.avoided.energy_kwh


def test_steps_without_a_baseline_value_count_in_neither_total() -> None:
    at = datetime(2026, 8, 5, 23, 59, tzinfo=KST)
    tracker = SavingsTracker("gw", RecordedBaseline([StepRecord(at, 100.0, 30.0)]))
    assert tracker.add(at, 60, 80.0, 30.0) == []  # 23:58-23:59, with a baseline
    assert tracker.add(at + timedelta(minutes=1), 60, 80.0, 30.0) == []  # 23:59-24:00, without
    (day,) = tracker.add(at + timedelta(minutes=2), 60, 80.0, 30.0)  # the 6th begins: the 5th closes
    assert day.day.isoformat() == "2026-08-05"
    assert day.final
    assert day.hours_covered == pytest.approx(1 / 60)
    assert day.hours_without_baseline == pytest.approx(1 / 60)
    assert day.actual.energy_kwh == pytest.approx(80 / 60)
    assert day.avoided.energy_kwh == pytest.approx(20 / 60)
    assert day.actual.peak_kw == pytest.approx(80 / 60 / 0.25)  # one minute in the 23:45 interval


def test_a_broken_baseline_file_is_refused_naming_the_problem(tmp_path: Path) -> None:
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps({"model": "towt", "knots_c": [1, 2]}))
    with pytest.raises(ModelError, match="not a towt baseline"):
        load_towt(path, library_hours())
    with pytest.raises(ModelError, match="cannot read"):
        load_towt(tmp_path / "missing.json", library_hours())
    with pytest.raises(ValueError, match="at least a week"):
        fit_towt([HourSample(datetime(2026, 8, 5, tzinfo=KST), 30.0, 100.0)], library_hours())
