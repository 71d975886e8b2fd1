"""`config check` and the agent's start refuse a control that could never act (no main meter, no zones, no
outdoor temperature, nothing to write), naming the field; a site that can act is told which of control's
knobs it has and which it lacks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edge_agent.cli.app import app

runner = CliRunner()

DEVICES = """
[[devices]]
name = "meter"
protocol = "modbus-tcp"
host = "10.0.0.5"
points = [{ name = "total_power", table = "input", address = 52, unit = "W" }]

[[devices]]
name = "plant"
protocol = "bacnet-ip"
host = "10.0.0.10"
instance = 100
points = [
  { name = "outdoor_air_temperature", object = "analog-input,1", unit = "degC" },
  { name = "demand_limit", object = "analog-value,2", unit = "%", write_range = [50, 100] },
]

[[devices]]
name = "room1"
protocol = "bacnet-ip"
host = "10.0.0.21"
instance = 1001
points = [
  { name = "zone_temperature", object = "analog-input,1", unit = "degC" },
  { name = "cool_sp", object = "analog-value,2", unit = "degC", write_range = [24, 29] },
]
"""

# The unseen library of issue 18: zone temperatures and cooling setpoints, a plant demand limit, a main
# meter (and the plant's outdoor temperature); no CO2, fan, ventilation or lighting points.
CONTROL = """
[control]
mode = "active"
demand = "meter/total_power"
outdoor_temperature = "plant/outdoor_air_temperature"
plant_limit = "plant/demand_limit"
zones = [{ name = "room1", temperature = "room1/zone_temperature", cooling_setpoint = "room1/cool_sp" }]
"""


def site(tmp_path: Path, control: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(DEVICES + control)
    return path


def without(line_start: str, text: str = CONTROL) -> str:
    return "\n".join(line for line in text.splitlines() if not line.startswith(line_start)) + "\n"


@pytest.mark.parametrize("mode", ["active", "shadow"])
@pytest.mark.parametrize(
    ("removed", "field", "says"),
    [
        ("demand =", "control.demand", "main meter"),
        ("outdoor_temperature =", "control.outdoor_temperature", "outdoor temperature"),
        ("zones =", "control.zones", "at least one zone"),
    ],
)
def test_a_control_that_cannot_decide_is_refused_naming_the_missing_field(
    tmp_path: Path, mode: str, removed: str, field: str, says: str
) -> None:
    path = site(tmp_path, without(removed).replace('mode = "active"', f'mode = "{mode}"'))
    result = runner.invoke(app, ["config", "check", str(path)])
    assert result.exit_code == 2, result.output
    assert any(
        line.strip().startswith(f"{field}: mode '{mode}'") and says in line
        for line in result.output.splitlines()
    ), result.output


def test_a_control_with_nothing_to_write_is_refused(tmp_path: Path) -> None:
    control = without("plant_limit =").replace(', cooling_setpoint = "room1/cool_sp"', "")
    result = runner.invoke(app, ["config", "check", str(site(tmp_path, control))])
    assert result.exit_code == 2, result.output
    assert "control.zones: mode 'active' has no knob to act through" in result.output


def test_the_agent_does_not_start_with_a_control_that_cannot_act(tmp_path: Path) -> None:
    result = runner.invoke(app, ["run", "--config", str(site(tmp_path, without("demand =")))])
    assert result.exit_code == 2
    assert "control.demand: mode 'active' needs the building's main meter power point" in result.output


def test_control_off_may_lack_points(tmp_path: Path) -> None:
    path = site(tmp_path, without("demand =").replace('mode = "active"', 'mode = "off"'))
    result = runner.invoke(app, ["config", "check", str(path)])
    assert result.exit_code == 0, result.output


def test_a_site_with_setpoints_a_plant_limit_and_a_meter_is_told_its_knobs(tmp_path: Path) -> None:
    path = site(tmp_path, CONTROL)
    result = runner.invoke(app, ["config", "check", str(path)])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if not line.startswith("  warning:")]
    assert lines[1] == (
        "control: active; its knobs: cooling_offset (room1/cool_sp), plant_limit (plant/demand_limit),"
        " precondition (room1/cool_sp)"
    )
    assert lines[2:] == [
        "  lacks heating_offset: needs zones[].heating_setpoint",
        "  lacks fan_limit: needs fan_limit",
        "  lacks ventilation_limit: needs ventilation_limit and a zones[].co2",
        "  lacks lighting_floor: needs zones[].dimming with zones[].illuminance",
    ]
    report = json.loads(runner.invoke(app, ["config", "check", str(path), "--json"]).output)
    assert report["control"] == {
        "mode": "active",
        "knobs": {
            "cooling_offset": ["room1/cool_sp"],
            "plant_limit": ["plant/demand_limit"],
            "precondition": ["room1/cool_sp"],
        },
        "missing_knobs": {
            "heating_offset": "zones[].heating_setpoint",
            "fan_limit": "fan_limit",
            "ventilation_limit": "ventilation_limit and a zones[].co2",
            "lighting_floor": "zones[].dimming with zones[].illuminance",
        },
    }
