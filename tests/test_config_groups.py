"""Configuration that scales: device groups expand into devices, every device is polled (a device that no
poller names gets a default one, and `config check` warns about it), and points no poller reads are warned
about."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edge_agent.cli.app import app
from edge_agent.config import (
    BacnetDevice,
    ModbusTcpDevice,
    PollerConfig,
    check_text,
    load_config,
    parse_config,
)
from edge_agent.config.groups import parse_units
from edge_agent.errors import ConfigError

runner = CliRunner()

DOCS = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"
HEADER = '[gateway]\nid = "city-hall-01"\n\n[mqtt]\nurl = "mqtt://192.0.2.1:1883"\n\n'


def five_hundred_meters() -> str:
    """The docs' example of 500 SDM630s behind ten gateways, as a whole file."""
    [group] = [
        b for b in re.findall(r"```toml\n(.*?)```", DOCS.read_text(), re.DOTALL) if "device_groups" in b
    ]
    return HEADER + str(group)


def test_five_hundred_meters_fit_in_under_40_lines_and_check_clean(tmp_path: Path) -> None:
    text = five_hundred_meters()
    assert len(text.splitlines()) < 40
    path = tmp_path / "city-hall.toml"
    path.write_text(text)
    result = runner.invoke(app, ["config", "check", str(path)])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == f"{path}: ok (500 devices, 6500 points, 500 pollers)"
    assert "warning" not in result.output
    config = load_config(path)
    names = [d.name for d in config.devices]
    assert len(set(names)) == 500
    by_name = {d.name: d for d in config.devices}
    first, last = by_name["gw01-meter-01"], by_name["gw10-meter-50"]
    assert isinstance(first, ModbusTcpDevice)
    assert isinstance(last, ModbusTcpDevice)
    assert (first.host, first.port, first.unit_id) == ("192.0.2.10", 502, 1)
    assert (last.host, last.unit_id, len(last.points)) == ("192.0.2.19", 50, 13)
    assert {(p.interval_s, p.points) for p in config.pollers} == {(1.0, None)}
    assert sorted(p.device for p in config.pollers) == sorted(names)


def test_a_device_no_poller_names_is_polled_every_5_s_and_warned_about(tmp_path: Path) -> None:
    text = HEADER + (
        '[[devices]]\nname = "main-meter"\nprotocol = "modbus-tcp"\nhost = "192.0.2.10"\n'
        'profile = "eastron-sdm630"\nonly_points = ["total_power"]\n\n'
        '[[devices]]\nname = "plugs-meter"\nprotocol = "modbus-tcp"\nhost = "192.0.2.10"\nunit_id = 2\n'
        'profile = "eastron-sdm630"\nonly_points = ["total_power"]\n\n'
        '[[pollers]]\ndevice = "main-meter"\ninterval_s = 1\n'
    )
    path = tmp_path / "site.toml"
    path.write_text(text)
    result = runner.invoke(app, ["config", "check", str(path)])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[1] == (
        "  warning: device 'plugs-meter': no [[pollers]] entry names it and it has no poll_interval_s: all "
        "its points are polled every 5 s (line 14)"
    )
    report = json.loads(runner.invoke(app, ["config", "check", str(path), "--json"]).stdout)
    assert [(w["device"], w["line"]) for w in report["warnings"]] == [("plugs-meter", 14)]
    assert load_config(path).pollers == [
        PollerConfig(device="main-meter", interval_s=1),
        PollerConfig(device="plugs-meter", interval_s=5),
    ]


def test_points_no_poller_reads_are_warned_about() -> None:
    text = HEADER + (
        '[[devices]]\nname = "main-meter"\nprotocol = "modbus-tcp"\nhost = "192.0.2.10"\n'
        'profile = "eastron-sdm630"\nonly_points = ["total_power", "import_energy", "frequency"]\n\n'
        '[[pollers]]\ndevice = "main-meter"\npoints = ["total_power"]\n'
    )
    [warning] = check_text(text, "site.toml").warnings
    assert warning.text() == (
        "device 'main-meter': 2 of its points are in no poller and never read: import_energy, frequency "
        "(poll_interval_s reads them all; only_points leaves a profile's out) (line 7)"
    )


def test_poll_interval_s_polls_every_point_beside_a_faster_poller() -> None:
    text = HEADER + (
        '[[devices]]\nname = "main-meter"\nprotocol = "modbus-tcp"\nhost = "192.0.2.10"\n'
        'profile = "eastron-sdm630"\nonly_points = ["total_power", "import_energy"]\npoll_interval_s = 60\n\n'
        '[[pollers]]\ndevice = "main-meter"\ninterval_s = 1\npoints = ["total_power"]\n'
    )
    checked = check_text(text, "site.toml")
    assert checked.warnings == []
    assert checked.config.pollers == [
        PollerConfig(device="main-meter", interval_s=1, points=["total_power"]),
        PollerConfig(device="main-meter", interval_s=60),
    ]


def test_a_configuration_read_back_gets_no_second_default_poller() -> None:
    text = HEADER + '[[devices]]\nname = "m"\nprotocol = "modbus-tcp"\nhost = "h"\nprofile = "abb-b23"\n'
    text += "poll_interval_s = 2\n"
    config = parse_config(text, "site.toml")
    again = type(config).model_validate(config.model_dump())
    assert again.pollers == config.pollers == [PollerConfig(device="m", interval_s=2)]


def test_a_group_on_rs485_and_a_group_on_one_host() -> None:
    text = HEADER + (
        '[[device_groups]]\nname = "floor-{unit}"\nprotocol = "modbus-rtu"\nserial_port = "/dev/ttyUSB0"\n'
        'units = "1-3,7"\nprofile = "eastron-sdm630"\nonly_points = ["total_power"]\npoll_interval_s = 5\n\n'
        '[[device_groups]]\nname = "hvac-{unit}"\nprotocol = "modbus-tcp"\nhost = "192.0.2.40"\n'
        'units = [1, 2]\nprofile = "abb-b23"\nonly_points = ["total_power"]\npoll_interval_s = 5\n'
    )
    config = parse_config(text, "site.toml")
    devices = [d for d in config.devices if not isinstance(d, BacnetDevice)]
    assert [(d.name, d.unit_id, d.link) for d in devices] == [
        ("floor-1", 1, "rtu:/dev/ttyUSB0"),
        ("floor-2", 2, "rtu:/dev/ttyUSB0"),
        ("floor-3", 3, "rtu:/dev/ttyUSB0"),
        ("floor-7", 7, "rtu:/dev/ttyUSB0"),
        ("hvac-1", 1, "tcp:192.0.2.40:502"),
        ("hvac-2", 2, "tcp:192.0.2.40:502"),
    ]


GROUP = (
    '[[device_groups]]\nname = "gw{host_number}-meter-{unit}"\nprotocol = "modbus-tcp"\n'
    'hosts = ["192.0.2.10", "192.0.2.11"]\nunits = "1-50"\nprofile = "eastron-sdm630"\npoll_interval_s = 1\n'
)


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        ("gw{host_number}-meter-{unit}", "gw{host_number}-meter", "name: it gives every unit the same name"),
        ("gw{host_number}-meter-{unit}", "meter-{unit}", "name: it gives every host the same name"),
        ("gw{host_number}-meter-{unit}", "m-{units}", "name: 'm-{units}': a pattern may use {unit}, {host}"),
        (
            "gw{host_number}-meter-{unit}",
            "gw{host_number} meter {unit}",
            "name: 'gw{host_number} meter {unit}': 'gw1 meter 1' holds U+0020",
        ),
        ('"1-50"', '"1-300"', "units: '1-300': unit ids are 0-247"),
        (
            "gw{host_number}-meter-{unit}",
            "gw{host_number}-{unit:>999999999}",
            "name: 'gw{host_number}-{unit:>9",
        ),
        (
            'hosts = ["192.0.2.10", "192.0.2.11"]',
            "hosts = " + str([f"10.0.0.{i}" for i in range(100)]),
            "units: 100 hosts x 50 units: more than 4096 devices",
        ),
        ('"1-50"', '"one"', "units: expected units such as"),
        ('"modbus-tcp"', '"modbus-tpc"', "protocol: 'modbus-tpc' is not one of"),
        ('"eastron-sdm630"', '"eastron-sdm63"', "profile: no profile named 'eastron-sdm63'"),
        ("poll_interval_s = 1", "poll_interval_s = 0", "poll_interval_s: Input should be greater than"),
        (
            "poll_interval_s = 1",
            "poll_interval = 1",
            "poll_interval: unknown key; did you mean 'poll_interval_s'?",
        ),
    ],
)
def test_a_mistake_in_a_group_is_reported_once_naming_the_group_and_line(
    old: str, new: str, problem: str
) -> None:
    text = HEADER + GROUP.replace(old, new)
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "site.toml")
    [found] = caught.value.problems
    assert found.startswith(f"device group '{'gw{host_number}-meter-{unit}'.replace(old, new)}', {problem}")
    assert re.search(r"\(line (8|9|10|11|12|13|14)\)$", found), found


def test_a_group_s_device_clashing_with_a_listed_one_is_named() -> None:
    text = (
        HEADER
        + GROUP
        + (
            '\n[[devices]]\nname = "gw1-meter-3"\nprotocol = "modbus-tcp"\nhost = "192.0.2.99"\n'
            'profile = "abb-b23"\npoll_interval_s = 1\n'
        )
    )
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "site.toml")
    assert caught.value.problems == [
        "device 'gw1-meter-3' (device group 'gw{host_number}-meter-{unit}'), name: device 'gw1-meter-3' is "
        "defined twice (line 8)"
    ]


@pytest.mark.parametrize(
    ("units", "expected"),
    [("1-3", [1, 2, 3]), ("1-3, 7, 2", [1, 2, 3, 7]), (5, [5]), ([4, 1], [4, 1]), ("0", [0]), ("247", [247])],
)
def test_unit_ranges(units: object, expected: list[int]) -> None:
    assert parse_units(units) == expected


@pytest.mark.parametrize("units", ["", "3-1", "1-248", "a", "1--3", True, 1.5, [], ["x"]])
def test_bad_unit_ranges(units: object) -> None:
    with pytest.raises(ValueError, match="unit"):
        parse_units(units)


def test_groups_together_stand_for_at_most_4096_devices() -> None:
    hosts = "hosts = " + str([f"10.0.0.{i}" for i in range(41)])  # 41 x 50 = 2050 a group
    one = GROUP.replace('hosts = ["192.0.2.10", "192.0.2.11"]', hosts)
    other = one.replace("gw{host_number}", "b{host_number}").replace("10.0.0.", "10.0.1.")
    with pytest.raises(ConfigError) as caught:
        parse_config(HEADER + one + "\n" + other, "site.toml")
    [problem] = caught.value.problems
    assert problem.startswith(
        "device group 'b{host_number}-meter-{unit}', units: the groups stand for more than 4096"
    )
