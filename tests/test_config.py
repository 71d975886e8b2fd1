"""`edge-agent config check` and the configuration model: every mistake names its field."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edge_agent.cli.app import app
from edge_agent.clock import ManualClock
from edge_agent.config import (
    BUILTIN_CONFIG,
    BacnetDevice,
    ModbusRtuDevice,
    ModbusTcpDevice,
    builtin_config_text,
    load_config,
    parse_config,
)
from edge_agent.errors import ConfigError
from edge_sim.layout import DEFAULT_BASE_PORT, rs485_link
from edge_sim.simulator import Simulator
from tests.conftest import SIM_START

runner = CliRunner()

GOOD = """
[gateway]
id = "library-01"

[[devices]]
name = "meter-main"
protocol = "modbus-tcp"
host = "10.0.0.5"
points = [{ name = "total_power", table = "input", address = 0x34, unit = "W" }]

[[devices]]
name = "room-101"
protocol = "bacnet-ip"
host = "10.0.0.20"
instance = 1001
points = [{ name = "zone_temperature", object = "analog-input,1", unit = "degC" }]

[[pollers]]
device = "meter-main"
interval_s = 1

[[pollers]]
device = "room-101"
points = ["zone_temperature"]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return path


def check(path: Path) -> tuple[int, str]:
    result = runner.invoke(app, ["config", "check", str(path)])
    return result.exit_code, result.output


def test_good_file_passes(tmp_path: Path) -> None:
    code, output = check(write(tmp_path, GOOD))
    assert code == 0, output
    assert "2 devices, 2 points, 2 pollers" in output


async def test_builtin_default_is_valid_and_points_at_the_simulator() -> None:
    config = load_config(None)
    assert parse_config(builtin_config_text(), BUILTIN_CONFIG) == config
    served = {e.name: e for e in Simulator(ManualClock(SIM_START)).endpoints()}
    for device in config.devices:
        endpoint = served[device.name]
        assert endpoint.protocol == device.protocol
        if isinstance(device, ModbusRtuDevice):
            assert device.serial_port == rs485_link(DEFAULT_BASE_PORT)
            assert endpoint.detail.split()[:2] == ["unit", str(device.unit_id)]
        elif isinstance(device, ModbusTcpDevice):
            assert (endpoint.address, endpoint.detail.split()[:2]) == (
                f"{device.host}:{device.port}",
                ["unit", str(device.unit_id)],
            )
        else:
            assert isinstance(device, BacnetDevice)
            assert (endpoint.address, endpoint.detail) == (device.host, f"device {device.instance}")
    assert len(config.devices) >= 18


def test_unknown_key_names_its_path(tmp_path: Path) -> None:
    text = GOOD.replace('host = "10.0.0.5"', 'host = "10.0.0.5"\nbaudrate = 9600')
    code, output = check(write(tmp_path, text))
    assert code == 2
    assert "device 'meter-main', baudrate: unknown key (line 9)" in output


def test_wrong_type_names_its_path(tmp_path: Path) -> None:
    text = GOOD.replace("interval_s = 1", 'interval_s = "fast"')
    code, output = check(write(tmp_path, text))
    assert code == 2
    assert "poller for 'meter-main', interval_s:" in output
    assert "number" in output


def test_nested_point_field_names_its_path(tmp_path: Path) -> None:
    text = GOOD.replace("address = 0x34", "address = 70000")
    code, output = check(write(tmp_path, text))
    assert code == 2
    assert "device 'meter-main', point 'total_power', address:" in output


def test_poller_pointing_at_undefined_device(tmp_path: Path) -> None:
    text = GOOD.replace('device = "room-101"', 'device = "room-102"')
    code, output = check(write(tmp_path, text))
    assert code == 2
    expected = "poller for 'room-102', device: no device named 'room-102'; did you mean 'room-101'? (line 23)"
    assert expected in output


def test_poller_naming_unknown_point(tmp_path: Path) -> None:
    text = GOOD.replace('points = ["zone_temperature"]', 'points = ["zone_humidity"]')
    code, output = check(write(tmp_path, text))
    assert code == 2
    assert "poller for 'room-101', points[0]: device 'room-101' has no point 'zone_humidity'" in output


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = GOOD.replace('host = "10.0.0.5"', 'host = "10.0.0.5"\nbaud = 1').replace(
        "interval_s = 1", "interval_s = -1"
    )
    code, output = check(write(tmp_path, text))
    assert code == 2
    assert "device 'meter-main', baud: unknown key" in output
    assert "poller for 'meter-main', interval_s:" in output


def test_toml_syntax_error_gives_line(tmp_path: Path) -> None:
    code, output = check(write(tmp_path, GOOD + "\n[[devices]\n"))
    assert code == 2
    assert "not valid TOML" in output
    assert "line" in output


def test_missing_file(tmp_path: Path) -> None:
    code, output = check(tmp_path / "nope.toml")
    assert code == 2
    assert "cannot read" in output


@pytest.mark.parametrize("url", ["http://broker:1883", "mqtt://", "mqtt://host:99999"])
def test_bad_broker_url(tmp_path: Path, url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(f'[mqtt]\nurl = "{url}"\n', "test")
    assert caught.value.problems[0].startswith("mqtt.url:")


def test_device_names_must_be_topic_safe(tmp_path: Path) -> None:
    code, output = check(write(tmp_path, GOOD.replace('"meter-main"', '"meter/main"', 1)))
    assert code == 2
    assert "device 'meter/main', name:" in output


def test_plan_shows_each_request(tmp_path: Path) -> None:
    result = runner.invoke(app, ["config", "plan", str(write(tmp_path, GOOD))])
    assert result.exit_code == 0, result.output
    assert "meter-main (10.0.0.5:502 unit 1): 1 points in 1 requests" in result.output
    assert "input       52..53      2 registers: total_power" in result.output
    assert "per poll cycle: 2 points in 2 requests" in result.output


def test_plan_of_the_builtin_configuration() -> None:
    result = runner.invoke(app, ["config", "plan"])
    assert result.exit_code == 0, result.output
    assert "library-main-meter (127.0.0.1:15020 unit 1): 5 points in 2 requests" in result.output
    # RS-485 units are planned as Modbus blocks too, not as BACnet batches
    assert re.search(r"info-centre-lighting-meter \(\S+rs485 unit 2\): 2 points in 1 requests", result.output)


def test_plan_and_check_as_json(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    plan = json.loads(runner.invoke(app, ["config", "plan", str(path), "--json"]).output)
    meter = next(d for d in plan["devices"] if d["device"] == "meter-main")
    assert meter["requests"] == [{"table": "input", "start": 52, "count": 2, "points": ["total_power"]}]
    assert (plan["points"], plan["requests"]) == (2, 2)
    check = json.loads(runner.invoke(app, ["config", "check", str(path), "--json"]).output)
    assert check == {
        "file": str(path),
        "ok": True,
        "devices": 2,
        "points": 2,
        "pollers": check["pollers"],
        "control": {"mode": "off", "knobs": {}, "missing_knobs": check["control"]["missing_knobs"]},
        "warnings": [],
    }


def test_config_default_prints_a_file_that_checks(tmp_path: Path) -> None:
    printed = runner.invoke(app, ["config", "default"])
    assert printed.exit_code == 0
    site = tmp_path / "site.toml"
    site.write_text(printed.output)
    checked = runner.invoke(app, ["config", "check", str(site)])
    assert checked.exit_code == 0, checked.output
    assert "ok (" in checked.output
