"""Malformed configuration files: each one ends `config check` with exit 2 and a line naming the file
and the offending field, never "ok" and never a traceback."""

# ruff: noqa: E501 - a table of cases reads best one case a line

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edge_agent.cli.app import app

runner = CliRunner()

BASE = """
[gateway]
id = "library-01"

[mqtt]
url = "mqtt://127.0.0.1:1883"

[bacnet]
local_address = "10.0.0.2/24:47808"

[[devices]]
name = "meter"
protocol = "modbus-tcp"
host = "10.0.0.5"
unit_id = 1
points = [
  { name = "power", table = "input", address = 52, unit = "kW" },
  { name = "limit", table = "holding", address = 100, type = "uint16", write_range = [0, 100] },
]

[[devices]]
name = "sub-meter"
protocol = "modbus-rtu"
serial_port = "/dev/ttyUSB0"
unit_id = 2
points = [{ name = "power", table = "input", address = 0 }]

[[devices]]
name = "room"
protocol = "bacnet-ip"
host = "10.0.0.20"
instance = 1001
points = [
  { name = "temp", object = "analog-input,1", unit = "degC" },
  { name = "cool_sp", object = "analog-value,2", write_range = [24, 28] },
]

[[pollers]]
device = "meter"
interval_s = 1

[[pollers]]
device = "room"
points = ["temp"]

[control]
demand = "meter/power"

[[control.zones]]
name = "z1"
temperature = "room/temp"
cooling_setpoint = "room/cool_sp"
"""


def edit(old: str, new: str, count: int = 1) -> str:
    assert BASE.count(old) >= count, old
    return BASE.replace(old, new, count)


DEMAND = 'demand = "meter/power"'
PROFILE_DEVICE = (
    '[[devices]]\nname = "p"\nprotocol = "modbus-tcp"\nhost = "10.0.0.9"\nprofile = "eastron-sdm630"\n'
)

# (case, file text, the field the error must name)
CASES: list[tuple[str, str, str]] = [
    # not TOML, or TOML no configuration can be
    ("not TOML", "this is not toml\n", "not valid TOML"),
    ("JSON", '{"gateway": {"id": "x"}}', "not valid TOML"),
    ("nested arrays bomb", "x = " + "[" * 5000 + "]" * 5000, "nested more than"),
    ("nested tables bomb", "x = " + "{a = " * 3000 + "1" + "}" * 3000, "nested more than"),
    ("nested below the parser's limit", "[gateway]\nsite = " + "[" * 200 + "]" * 200, "gateway.site"),
    ("NUL in a path", '[buffer]\npath = "state\\u0000.db"\n', "buffer.path: contains a NUL"),
    ("NUL in a serial port", edit('"/dev/ttyUSB0"', '"/dev/tty\\u0000"'), "devices[1].serial_port"),
    ("unknown section", BASE + "\n[extra]\nx = 1\n", "extra: unknown key"),
    # wrong types
    ("devices is a string", 'devices = "meter"\n', "devices:"),
    ("a device is a number", "devices = [1]\n", "devices[0]:"),
    ("interval as text", edit("interval_s = 1", 'interval_s = "fast"'), "poller for 'meter', interval_s"),
    ("unit id as float", edit("unit_id = 1", "unit_id = 1.5"), "device 'meter', unit_id"),
    ("points as table", edit('points = ["temp"]', 'points = { a = 1 }'), "poller for 'room', points"),
    ("profile as list", PROFILE_DEVICE.replace('"eastron-sdm630"', "[1]"), "device 'p', profile"),
    ("only_points as number", PROFILE_DEVICE + "only_points = 5\n", "device 'p', only_points"),
    ("only_points of lists", PROFILE_DEVICE + "only_points = [[1]]\n", "device 'p', only_points"),
    ("override named by list", PROFILE_DEVICE + "points = [{ name = [1] }]\n", "device 'p', points[0].name"),
    ("overrides as string", PROFILE_DEVICE + 'points = "x"\n', "device 'p', points"),
    # out of range: ports, unit ids, addresses, intervals
    ("BACnet port 99999", edit('host = "10.0.0.20"', 'host = "10.0.0.20:99999"'), "device 'room', host"),
    ("BACnet octet 300", edit('host = "10.0.0.20"', 'host = "10.0.300.20"'), "device 'room', host"),
    ("BACnet port 0", edit('host = "10.0.0.20"', 'host = "10.0.0.20:0"'), "device 'room', host"),
    ("/40 netmask", edit('"10.0.0.2/24:47808"', '"10.0.0.2/40:47808"'), "bacnet.local_address"),
    ("local port 70000", edit('"10.0.0.2/24:47808"', '"10.0.0.2:70000"'), "bacnet.local_address"),
    ("BBMD octet", edit('"10.0.0.2/24:47808"', '"10.0.0.2/24:47808"\nbbmd = "256.1.1.1"'), "bacnet.bbmd"),
    ("Modbus port 0", edit('host = "10.0.0.5"', 'host = "10.0.0.5"\nport = 0'), "device 'meter', port"),
    ("Modbus port 65536", edit('host = "10.0.0.5"', 'host = "10.0.0.5"\nport = 65536'), "device 'meter', port"),
    ("no connections", edit('host = "10.0.0.5"', 'host = "10.0.0.5"\nmax_connections = 0'), "device 'meter', max_connections"),
    ("in flight 33", edit('host = "10.0.0.5"', 'host = "10.0.0.5"\nin_flight = 33'), "device 'meter', in_flight"),
    ("TCP endpoint settings differ", BASE + '[[devices]]\nname = "m4"\nprotocol = "modbus-tcp"\nhost = "10.0.0.5"\n'
        + 'unit_id = 3\nmax_connections = 4\npoints = [{ name = "p", table = "input", address = 0 }]\n',
        "device 'm4', max_connections"),
    ("MQTT port 0", edit('"mqtt://127.0.0.1:1883"', '"mqtt://127.0.0.1:0"'), "mqtt.url"),
    ("MQTT port 99999", edit('"mqtt://127.0.0.1:1883"', '"mqtt://127.0.0.1:99999"'), "mqtt.url"),
    ("unit id 248", edit("unit_id = 1", "unit_id = 248"), "device 'meter', unit_id"),
    ("unit id negative", edit("unit_id = 2", "unit_id = -1"), "device 'sub-meter', unit_id"),
    ("address 65536", edit("address = 52", "address = 65536"), "device 'meter', point 'power', address"),
    ("float past the last register", edit("address = 52", "address = 65535"), "device 'meter', point 'power'"),
    ("interval 0", edit("interval_s = 1", "interval_s = 0"), "poller for 'meter', interval_s"),
    ("interval nan", edit("interval_s = 1", "interval_s = nan"), "poller for 'meter', interval_s"),
    ("interval inf", edit("interval_s = 1", "interval_s = inf"), "poller for 'meter', interval_s"),
    ("timeout -inf", edit('host = "10.0.0.5"', 'host = "10.0.0.5"\ntimeout_s = -inf'), "device 'meter', timeout_s"),
    ("silence inf", edit('unit = "kW"', 'unit = "kW", max_silence_s = inf'), "device 'meter', point 'power', max_silence_s"),
    ("setpoint nan", edit(DEMAND, DEMAND + "\ncooling_setpoint_c = nan"), "control.cooling_setpoint_c"),
    ("comfort band nan", edit(DEMAND, DEMAND + "\ncomfort_band_c = [nan, nan]"), "control.comfort_band_c"),
    ("huge integer", edit("address = 52", "address = 9223372036854775807"), "device 'meter', point 'power', address"),
    # bad hosts and empty values
    ("empty host", edit('host = "10.0.0.5"', 'host = ""'), "device 'meter', host"),
    ("host with a space", edit('host = "10.0.0.5"', 'host = "10.0.0.5 extra"'), "device 'meter', host"),
    ("host octet 999", edit('host = "10.0.0.5"', 'host = "10.0.0.999"'), "device 'meter', host"),
    ("empty serial port", edit('"/dev/ttyUSB0"', '""'), "device 'sub-meter', serial_port"),
    ("empty device name", edit('name = "meter"', 'name = ""'), "devices[0], name"),
    ("no points", edit('points = [{ name = "power", table = "input", address = 0 }]', "points = []"), "device 'sub-meter', points"),
    ("poller with no points", edit('points = ["temp"]', "points = []"), "poller for 'room', points"),
    ("empty buffer path", '[buffer]\npath = ""\n', "buffer.path"),
    ("socket path is a directory name", '[gateway]\nsocket = "/run/.."\n', "gateway.socket"),
    ("MQTT url with a password", edit('"mqtt://127.0.0.1:1883"', '"mqtt://user:secret@127.0.0.1:1883"'), "mqtt.url"),
    ("MQTT url with a path", edit('"mqtt://127.0.0.1:1883"', '"mqtt://127.0.0.1:1883/edge"'), "mqtt.url"),
    ("huge site text", '[gateway]\nsite = "' + "x" * 100_000 + '"\n', "gateway.site"),
    ("huge unit", edit('unit = "kW"', 'unit = "' + "W" * 1000 + '"'), "device 'meter', point 'power', unit"),
    # duplicates and references to what does not exist
    ("device defined twice", edit('name = "sub-meter"', 'name = "meter"'), "device 'meter', name"),
    ("point defined twice", edit('name = "limit"', 'name = "power"'), "device 'meter', point 'power', name"),
    ("Modbus unit twice", BASE.replace('name = "sub-meter"', 'name = "m2"\n', 1)
        + '[[devices]]\nname = "m3"\nprotocol = "modbus-rtu"\nserial_port = "/dev/ttyUSB0"\nunit_id = 2\n'
        + 'points = [{ name = "p", table = "input", address = 0 }]\n', "device 'm3', unit_id"),
    ("BACnet instance twice", BASE + '[[devices]]\nname = "room2"\nprotocol = "bacnet-ip"\nhost = "10.0.0.21"\n'
        + 'instance = 1001\npoints = [{ name = "t", object = "analog-input,1" }]\n', "device 'room2', instance"),
    ("zone defined twice", BASE + '[[control.zones]]\nname = "z1"\ntemperature = "room/temp"\n', "control.zones[1].name"),
    ("poller of an unknown device", edit('device = "room"', 'device = "attic"'), "poller for 'attic', device"),
    ("poller of an unknown point", edit('points = ["temp"]', 'points = ["humidity"]'), "poller for 'room', points[0]"),
    ("control of an unknown device", edit('demand = "meter/power"', 'demand = "grid/power"'), "control.demand"),
    ("control writes a read-only point", edit('cooling_setpoint = "room/cool_sp"', 'cooling_setpoint = "room/temp"'),
        "control.zones[0].cooling_setpoint"),
    ("unknown profile", PROFILE_DEVICE.replace("eastron-sdm630", "no-such-meter"), "device 'p', profile"),
    ("RS-485 line settings differ", BASE + '[[devices]]\nname = "m4"\nprotocol = "modbus-rtu"\n'
        + 'serial_port = "/dev/ttyUSB0"\nunit_id = 3\nbaudrate = 19200\n'
        + 'points = [{ name = "p", table = "input", address = 0 }]\n', "device 'm4', baudrate"),
]  # fmt: skip


def check(path: Path) -> tuple[int, str]:
    result = runner.invoke(app, ["config", "check", str(path)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def test_the_base_file_is_valid(tmp_path: Path) -> None:
    path = tmp_path / "site.toml"
    path.write_text(BASE)
    code, output = check(path)
    assert code == 0, output
    assert "ok (3 devices" in output


@pytest.mark.parametrize(("text", "field"), [(t, f) for _, t, f in CASES], ids=[c for c, _, _ in CASES])
def test_malformed_file_names_file_and_field(tmp_path: Path, text: str, field: str) -> None:
    path = tmp_path / "site.toml"
    path.write_text(text, encoding="utf-8")
    code, output = check(path)
    assert code == 2, output
    assert f"{path}: configuration is not valid" in output
    assert field in output
    assert "ok (" not in output
    assert "Traceback" not in output


def file_cases(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    invalid_utf8 = tmp_path / "latin1.toml"
    invalid_utf8.write_bytes(b'[gateway]\nsite = "Caf\xe9"\n')
    empty_dir = tmp_path / "a-directory.toml"
    empty_dir.mkdir()
    regular = tmp_path / "regular"
    regular.write_text("")
    huge = tmp_path / "huge.toml"
    huge.write_bytes(b"# " + b"x" * (5 * 1024 * 1024) + b"\n")
    return {
        "invalid UTF-8": (invalid_utf8, "not UTF-8"),
        "a directory": (empty_dir, "cannot read: Is a directory"),
        "under a file": (regular / "site.toml", "cannot read: Not a directory"),
        "missing": (tmp_path / "missing.toml", "cannot read: No such file"),
        "larger than any configuration": (huge, "larger than 4 MiB"),
        "a device that never ends": (Path("/dev/zero"), "larger than 4 MiB"),
    }


@pytest.mark.parametrize(
    "case",
    ["invalid UTF-8", "a directory", "under a file", "missing", "larger than any configuration", "a device that never ends"],
)  # fmt: skip
def test_unusable_file_names_the_file(tmp_path: Path, case: str) -> None:
    path, reason = file_cases(tmp_path)[case]
    code, output = check(path)
    assert code == 2, output
    assert f"{path}: configuration is not valid" in output
    assert reason in output


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "site.toml"
    path.write_text(BASE)
    path.chmod(0)
    code, output = check(path)
    assert code == 2, output
    assert "cannot read: Permission denied" in output
