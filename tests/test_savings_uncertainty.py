"""The daily savings carry their uncertainty (ASHRAE Guideline 14-2014, Annex B): the formula against a
worked example, a noisier or more autocorrelated baseline gives a larger one, a saving within the noise is
flagged, and the report's schema says so."""

from __future__ import annotations

import json
import math
import random
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from edge_agent.control.calendar import OpeningHours
from edge_agent.control.savings.baseline import HourSample, TowtBaseline, fit_towt, load_towt
from edge_agent.control.savings.schema import SCHEMA_FILE, savings_schemas
from edge_agent.control.savings.tariff import KST
from edge_agent.control.savings.tracker import DailySavings, SavingsTracker
from edge_agent.control.savings.uncertainty import Residuals, savings_uncertainty, student_t

SCHEMAS_DIR = Path(__file__).resolve().parent.parent / "docs" / "schemas"
HOURS = OpeningHours(9, 18, frozenset(range(5)), holidays=frozenset())
START = datetime(2026, 7, 6, tzinfo=KST)  # a Monday


def test_student_t_matches_the_tables() -> None:
    assert student_t(0.90, 10) == pytest.approx(1.812, abs=1e-3)
    assert student_t(0.95, 5) == pytest.approx(2.571, abs=1e-3)
    assert student_t(0.90, 120) == pytest.approx(1.658, abs=1e-3)
    assert student_t(0.68, 100_000) == pytest.approx(0.9945, abs=1e-3)  # the normal's 84th percentile
    with pytest.raises(ValueError, match="df 0"):
        student_t(0.68, 0)


def test_the_formula_against_a_worked_example() -> None:
    # n = 240 hours fitted with p = 120 parameters, CV(RMSE) 10%, residual autocorrelation rho = 0.5;
    # one day: m = 24 h, baseline 2,400 kWh, 240 kWh avoided (F = 0.10).
    #   n' = 240 (1 - 0.5) / (1 + 0.5) = 80;  n / n' = 3;  1 + 2 / n' = 1.025
    #   sqrt(3 x 1.025 / 24) = sqrt(0.128125) = 0.35795
    #   t at n - p = 120 degrees of freedom: 1.6577 at 90% (tables), 0.9986 at 68%
    #   FSU_90 = 1.26 x 1.6577 x (0.10 / 0.10) x 0.35795 = 0.7476  ->  +-179.4 kWh
    #   FSU_68 = 1.26 x 0.9986 x 0.35795 = 0.4504  ->  +-108.1 kWh
    u = savings_uncertainty(Residuals(240, 120, 0.10, 0.5), 2400.0, 240.0, 24.0)
    assert u is not None
    assert u.effective_fit_hours == pytest.approx(80.0)
    assert u.savings_fraction == pytest.approx(0.10)
    assert u.fsu_90 == pytest.approx(0.7476, abs=2e-4)
    assert u.kwh_90 == pytest.approx(179.4, abs=0.1)
    assert u.fsu_68 == pytest.approx(0.4504, abs=2e-4)
    assert u.kwh_68 == pytest.approx(108.1, abs=0.1)
    assert not u.within_noise  # 240 kWh saved against +-108 kWh
    # without autocorrelation n' = n: sqrt(1 x (1 + 2/240) / 24) = 0.20498, FSU_90 = 0.4282
    white = savings_uncertainty(Residuals(240, 120, 0.10, 0.0), 2400.0, 240.0, 24.0)
    assert white is not None
    assert white.fsu_90 == pytest.approx(1.26 * 1.6577 * math.sqrt((1 + 2 / 240) / 24), abs=2e-4)
    # a negative rho counts as none; nothing to estimate from: None
    negative = savings_uncertainty(Residuals(240, 120, 0.10, -0.3), 2400.0, 240.0, 24.0)
    assert negative is not None
    assert negative.kwh_90 == white.kwh_90
    assert savings_uncertainty(Residuals(240, 240, 0.10, 0.5), 2400.0, 240.0, 24.0) is None  # no df
    assert savings_uncertainty(Residuals(240, 120, 0.10, 0.5), 2400.0, 240.0, 0.0) is None  # no hours


def demand_kw(local: datetime, outdoor_c: float) -> float:
    """A building: 40 kW at night, 100 kW open, 3 kW per K above 24 C when open."""
    if HOURS.is_open(local):
        return 100.0 + 3.0 * max(outdoor_c - 24.0, 0.0)
    return 40.0


def outdoor(local: datetime) -> float:
    return 27.0 + 5.0 * math.sin((local.hour - 9) / 24 * 2 * math.pi) + (local.day % 3)


def fitted(noise_kw: float, rho: float, *, seed: int = 1) -> TowtBaseline:
    """A baseline fitted on four weeks of the building with AR(1) noise of `noise_kw` standard deviation."""
    rng = random.Random(seed)
    error, samples = 0.0, []
    for hour in range(28 * 24):
        local = START + timedelta(hours=hour)
        error = rho * error + math.sqrt(1 - rho**2) * rng.gauss(0.0, noise_kw)
        samples.append(HourSample(local, outdoor(local), demand_kw(local, outdoor(local)) + error))
    return fit_towt(samples, HOURS)


def one_day(baseline: TowtBaseline, saving: float) -> DailySavings:
    """A day after fitting on which the building draws (1 - saving) of its noiseless demand."""
    tracker = SavingsTracker("gw", baseline)
    day = START + timedelta(days=29)  # a Tuesday
    closed: list[DailySavings] = []
    for minute in range(1, 24 * 60 + 2):
        end = day + timedelta(minutes=minute)
        local = end - timedelta(minutes=1)
        closed += tracker.add(end, 60, (1 - saving) * demand_kw(local, outdoor(local)), outdoor(local))
    (report,) = closed
    return report


def test_a_noisier_baseline_gives_a_larger_uncertainty() -> None:
    quiet = one_day(fitted(noise_kw=1.0, rho=0.0), saving=0.10).uncertainty
    noisy = one_day(fitted(noise_kw=8.0, rho=0.0), saving=0.10).uncertainty
    sticky = one_day(fitted(noise_kw=8.0, rho=0.8), saving=0.10).uncertainty
    assert quiet is not None
    assert noisy is not None
    assert sticky is not None
    assert noisy.cv_rmse > 4 * quiet.cv_rmse
    assert noisy.fsu_68 is not None
    assert quiet.fsu_68 is not None
    assert noisy.fsu_68 > 4 * quiet.fsu_68
    assert noisy.kwh_90 > noisy.kwh_68 > quiet.kwh_68
    # the same noise, correlated from hour to hour: fewer independent hours, a larger uncertainty
    assert sticky.autocorrelation > 0.5 > noisy.autocorrelation
    assert sticky.effective_fit_hours < noisy.effective_fit_hours / 3
    assert sticky.kwh_68 > 1.5 * noisy.kwh_68
    assert quiet.reporting_hours == pytest.approx(24.0)
    assert quiet.fit_hours == 28 * 24


def test_a_saving_within_the_noise_is_flagged() -> None:
    baseline = fitted(noise_kw=8.0, rho=0.8)
    claim = one_day(baseline, saving=0.15)
    noise = one_day(baseline, saving=0.005)
    assert claim.uncertainty is not None
    assert noise.uncertainty is not None
    assert claim.avoided.energy_kwh > claim.uncertainty.kwh_68
    assert not claim.uncertainty.within_noise
    assert 0 < noise.avoided.energy_kwh < noise.uncertainty.kwh_68
    assert noise.uncertainty.within_noise
    assert noise.uncertainty.fsu_68 is not None
    assert noise.uncertainty.fsu_68 > 1
    data = json.loads(noise.to_json())  # what the carbon platform receives
    assert data["uncertainty"]["within_noise"] is True
    assert data["uncertainty"]["kwh_68"] == noise.uncertainty.kwh_68


def test_the_baseline_file_keeps_what_the_uncertainty_needs(tmp_path: Path) -> None:
    baseline = fitted(noise_kw=8.0, rho=0.8)
    path = tmp_path / "baseline.json"
    path.write_text(baseline.to_json())
    loaded = load_towt(path, HOURS)
    assert loaded.quality == baseline.quality
    assert one_day(loaded, 0.1).uncertainty == one_day(baseline, 0.1).uncertainty
    data = json.loads(path.read_text())  # a file fitted before the uncertainty: savings without one
    del data["quality"]["parameters"], data["quality"]["autocorrelation"]
    path.write_text(json.dumps(data))
    old = one_day(load_towt(path, HOURS), 0.1)
    assert old.uncertainty is None
    assert json.loads(old.to_json())["uncertainty"] is None


def test_the_published_schema_describes_the_uncertainty() -> None:
    """Regenerate with `.venv/bin/python scripts/write_schemas.py` after changing the report."""
    (schema,) = savings_schemas().values()
    on_disk = json.loads((SCHEMAS_DIR / SCHEMA_FILE).read_text(encoding="utf-8"))
    assert on_disk == schema, f"docs/schemas/{SCHEMA_FILE} is out of date: run scripts/write_schemas.py"
    report = json.loads(one_day(fitted(noise_kw=2.0, rho=0.5), 0.1).to_json())
    assert set(report) == set(schema["properties"]) == set(schema["required"])
    uncertainty = schema["$defs"]["SavingsUncertainty"]
    assert set(report["uncertainty"]) == set(uncertainty["properties"])
    assert {"kwh_68", "kwh_90", "fsu_68", "fsu_90", "within_noise"} <= set(uncertainty["required"])
