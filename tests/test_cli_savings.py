"""`edge-agent baseline fit` on exported readings of uncontrolled weeks, and `edge-agent savings` on the
ledger: what a technician runs when commissioning the savings report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edge_agent.cli.app import app
from edge_agent.config import load_config
from edge_agent.control.savings.baseline import load_towt
from edge_agent.service.control_setup import opening_hours
from edge_sim.baseline_study import record

runner = CliRunner()

SITE = """
[buffer]
path = "{state}/buffer.db"

[control]
demand = "meter/total_power"
outdoor_temperature = "ahu/outdoor_air_temperature"
open_days = [0, 1, 2, 3, 4, 5, 6]
close_hour = 22
zones = [{{ name = "room", temperature = "ahu/supply_air_temperature" }}]

[[devices]]
name = "meter"
protocol = "modbus-tcp"
host = "127.0.0.1"
profile = "schneider-iem3255"

[[devices]]
name = "ahu"
protocol = "bacnet-ip"
host = "127.0.0.1:47808"
instance = 1
profile = "edge-sim-ahu"
"""


@pytest.fixture
def site(tmp_path: Path) -> Path:
    path = tmp_path / "site.toml"
    path.write_text(SITE.format(state=tmp_path))
    return path


def export(path: Path) -> None:
    """An uncontrolled summer week as `buffer export` writes it: one line per reading."""
    with path.open("w") as out:
        for step in record("summer", "library", seed=1):
            ts = step.end.isoformat()
            for device, point, value in (
                ("meter", "total_power", step.demand_kw),
                ("ahu", "outdoor_air_temperature", step.outdoor_c),
            ):
                line = {"ts": ts, "device": device, "point": point, "value": value, "quality": "good"}
                out.write(json.dumps(line) + "\n")


@pytest.mark.integration
def test_fit_writes_a_baseline_the_agent_loads(site: Path, tmp_path: Path) -> None:
    readings = tmp_path / "readings.jsonl"
    export(readings)
    output = tmp_path / "baseline.json"
    result = runner.invoke(app, ["baseline", "fit", str(readings), "-o", str(output), "-c", str(site)])
    assert result.exit_code == 0, result.output
    assert "hours from 2026-08-03 to 2026-08-09" in result.output
    assert "CV(RMSE)" in result.output
    baseline = load_towt(output, opening_hours(load_config(site).control))
    assert baseline.quality.samples == 7 * 24
    assert baseline.quality.cv_rmse < 0.3


@pytest.mark.integration
def test_fit_with_json_prints_the_fits_quality(site: Path, tmp_path: Path) -> None:
    readings = tmp_path / "readings.jsonl"
    export(readings)
    output = tmp_path / "baseline.json"
    args = ["baseline", "fit", str(readings), "-o", str(output), "-c", str(site), "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    fit = json.loads(result.stdout)
    assert fit["baseline"] == str(output)
    assert fit["quality"]["samples"] == 7 * 24
    assert fit["quality"]["first"] == "2026-08-03"
    assert fit["quality"] == json.loads(output.read_text())["quality"]
    assert fit["residuals"]["effective_samples"] > 0


def test_a_broken_export_is_refused_naming_the_line(site: Path, tmp_path: Path) -> None:
    readings = tmp_path / "readings.jsonl"
    readings.write_text(
        '{"ts": "2026-08-03T00:00+09:00", "device": "meter", "point": "total_power", "value": 1}\n{oops\n'
    )
    output = tmp_path / "b.json"
    result = runner.invoke(app, ["baseline", "fit", str(readings), "-o", str(output), "-c", str(site)])
    assert result.exit_code == 2
    assert f"{readings}:2: not JSON" in result.output
    assert not output.exists()


def test_savings_prints_the_ledger(site: Path, tmp_path: Path) -> None:
    report = {
        "day": "2026-08-05",
        "hours_covered": 24.0,
        "avoided": {"energy_kwh": 123.4, "peak_kw": 20.5, "energy_cost_krw": 15000.0, "emissions_t": 0.0515},
    }
    (tmp_path / "savings.jsonl").write_text(json.dumps(report) + "\n")
    result = runner.invoke(app, ["savings", "-c", str(site)])
    assert result.exit_code == 0, result.output
    assert "2026-08-05" in result.output
    assert "123.4" in result.output
    as_json = runner.invoke(app, ["savings", "-c", str(site), "--json"])
    assert json.loads(as_json.output) == [report]


def test_savings_shows_the_uncertainty_and_flags_noise(site: Path, tmp_path: Path) -> None:
    def report(day: str, kwh: float, kwh_68: float) -> dict[str, object]:
        uncertainty = {"kwh_68": kwh_68, "kwh_90": kwh_68 * 1.65, "fsu_68": kwh_68 / kwh}
        uncertainty |= {"fsu_90": kwh_68 * 1.65 / kwh, "within_noise": kwh < kwh_68}
        avoided = {"energy_kwh": kwh, "peak_kw": 20.5, "energy_cost_krw": 15000.0, "emissions_t": 0.05}
        return {"day": day, "hours_covered": 24.0, "avoided": avoided, "uncertainty": uncertainty}

    lines = [report("2026-08-05", 123.4, 41.2), report("2026-08-06", 12.0, 41.2)]
    lines.append({**report("2026-08-07", 50.0, 1.0), "uncertainty": None})  # a baseline without residuals
    (tmp_path / "savings.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    result = runner.invoke(app, ["savings", "-c", str(site)])
    assert result.exit_code == 0, result.output
    claim, noise, unknown = (line for line in result.output.splitlines() if line.startswith("2026-08-0"))
    assert "41.2" in claim
    assert "68.0" in claim  # at 90%
    assert "33%/55%" in claim
    assert "within noise" not in claim
    assert noise.endswith("within noise")
    assert "can" in result.output.splitlines()[-1]
    assert "-" in unknown.split()
    assert "within noise" not in unknown
