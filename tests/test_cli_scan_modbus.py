"""`edge-agent scan modbus` against the simulator's real Modbus servers on loopback: it finds the meters at
their unit ids, names their models, reports absent units as silent, shows its progress, and stops cleanly."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from edge_agent.cli.app import app
from edge_agent.cli.modbus_scan import compress, parse_units
from edge_agent.clock import ManualClock
from edge_agent.config import ModbusTcpDevice, parse_config
from edge_sim.devices import modbus_servers
from edge_sim.devices.meters.iem3255 import Iem3255
from edge_sim.devices.modbus_servers import ModbusRtuMeterBus
from edge_sim.simulator import Simulator
from edge_sim.site_meters import RS485
from tests.conftest import SIM_START
from tests.support import LOOPBACK, async_wait_until, free_base_port, free_port

runner = CliRunner()


async def invoke(args: list[str]) -> Result:
    """The CLI in a worker thread (it runs its own event loop) while the simulator serves in this one."""
    async with asyncio.timeout(20):
        return await asyncio.to_thread(runner.invoke, app, args)


def port_of(sim: Simulator, name: str) -> str:
    endpoint = next(e for e in sim.endpoints() if e.name == name)
    return endpoint.address.rsplit(":", 1)[1]


def by_unit(data: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {r["unit"]: r for r in data["results"]}


@pytest.fixture
async def site_with_bus() -> AsyncIterator[Simulator]:
    """The site with its RS-485 bus (a socat pty pair): units 1 SDM630, 2 ABB B23, 3 iEM3255."""
    async with Simulator(ManualClock(SIM_START), free_base_port(), control=False) as running:
        yield running


def bus_port(sim: Simulator) -> str:
    bus = sim.hosts[RS485]
    assert isinstance(bus, ModbusRtuMeterBus)
    return bus.client_port


@pytest.mark.integration
async def test_finds_the_gateways_meters_and_names_their_models(sim: Simulator) -> None:
    port = port_of(sim, "library-hvac-meter")  # the sub-meter gateway: 1 ABB B23, 2 and 3 SDM630
    result = await invoke(["scan", "modbus", "--host", LOOPBACK, "--port", port, "--units", "1-5", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["answered"] == [1, 2, 3]
    units = by_unit(data)
    assert units[1]["profile"] == "abb-b23"
    assert units[2]["profile"] == units[3]["profile"] == "eastron-sdm630"
    assert all(units[u]["confidence"] == "high" for u in (1, 2, 3))
    assert "220 V" in units[1]["why"]
    assert "60 Hz" in units[1]["why"]
    for silent in (4, 5):
        assert not units[silent]["answered"]
        assert units[silent]["profile"] is None
        assert "no such unit" in units[silent]["note"]


@pytest.mark.integration
async def test_table_progress_and_snippet(sim: Simulator) -> None:
    port = port_of(sim, "library-main-meter")  # iEM3255 at unit 1
    args = ["scan", "modbus", "--host", LOOPBACK, "--port", port, "--units", "1-3", "--snippet"]
    result = await invoke(args)
    assert result.exit_code == 0, result.output
    assert f"Scanning {LOOPBACK}:{port}, units 1-3" in result.stderr
    assert "3/3" in result.stderr  # the progress bar, on stderr
    # with --snippet the table goes to stderr: stdout is the snippet alone
    assert "schneider-iem3255 (Schneider Electric iEM3255)" in result.stderr
    assert "│ 2-3  │ no" in result.stderr  # the absent units, as one run
    assert "1 answered, 1 identified, 2 silent." in result.stderr
    snippet = result.stdout
    assert snippet.startswith("[[devices]]")
    config = parse_config(snippet, "snippet")  # what a technician pastes passes `config check`
    (device,) = config.devices
    assert isinstance(device, ModbusTcpDevice)
    assert (device.port, device.unit_id) == (int(port), 1)
    assert {"voltage_l1", "total_power", "import_energy"} <= {p.name for p in device.points}
    assert [p.device for p in config.pollers] == [device.name]


@pytest.mark.integration
async def test_a_tcp_scan_defaults_to_unit_1(sim: Simulator) -> None:
    port = port_of(sim, "info-centre-main-meter")
    result = await invoke(["scan", "modbus", "--host", LOOPBACK, "--port", port, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["units"] == "1"
    assert by_unit(data)[1]["profile"] == "eastron-sdm630"


@pytest.mark.integration
async def test_serial_bus_units_and_silent_ones(site_with_bus: Simulator) -> None:
    args = ["scan", "modbus", "--serial", bus_port(site_with_bus), "--units", "1-5", "--timeout", "0.2"]
    result = await invoke([*args, "--json"])
    assert result.exit_code == 0, result.output
    units = by_unit(json.loads(result.stdout))
    assert [units[u]["profile"] for u in (1, 2, 3)] == ["eastron-sdm630", "abb-b23", "schneider-iem3255"]
    assert units[4]["note"] == units[5]["note"] == "no answer within 0.2 s"
    assert not units[4]["answered"]


@pytest.mark.integration
async def test_ctrl_c_stops_a_long_scan_with_what_it_found(
    site_with_bus: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[int] = []  # unit ids the bus's meters were asked for, in order (the scan goes one by one)
    check = modbus_servers._KnownUnits._check

    def noting(self: modbus_servers._KnownUnits, device_id: int) -> None:
        asked.append(device_id)
        check(self, device_id)

    monkeypatch.setattr(modbus_servers._KnownUnits, "_check", noting)
    command = [sys.executable, "-m", "edge_agent", "scan", "modbus", "--serial", bus_port(site_with_bus)]
    process = await asyncio.create_subprocess_exec(
        *command, "--timeout", "0.3", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    assert process.stderr is not None
    async with asyncio.timeout(30):
        header = await process.stderr.readline()
        assert b"units 1-247" in header
        # Units 1-3 answer; interrupted once the scan has gone past them, into the silent ones (0.3 s each).
        await async_wait_until(lambda: max(asked, default=0) >= 5, 20, "the scan past unit 4")
        process.send_signal(signal.SIGINT)
        out, err = await process.communicate()
    assert process.returncode == 130, err.decode()
    assert "interrupted after" in err.decode()
    table = out.decode()
    assert "eastron-sdm630" in table
    assert "abb-b23" in table, (table, err.decode())
    assert "schneider-iem3255" in table


@pytest.mark.integration
async def test_a_closed_port_or_missing_serial_port_exits_1_naming_it() -> None:
    closed = free_port()
    result = await invoke(["scan", "modbus", "--host", LOOPBACK, "--port", str(closed)])
    assert result.exit_code == 1
    assert f"{LOOPBACK}:{closed}: cannot connect" in result.stderr
    missing = await invoke(["scan", "modbus", "--serial", "/dev/ttyNOSUCH0"])
    assert missing.exit_code == 1
    assert "/dev/ttyNOSUCH0 (9600 8N1): no such serial port" in missing.stderr


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--host", LOOPBACK, "--units", "1-x"], "--units"),
        (["--host", LOOPBACK, "--units", "9-3"], "--units"),
        (["--serial", "/dev/ttyUSB0", "--units", "0-3"], "--units"),
        (["--host", LOOPBACK, "--units", "1-300"], "--units"),
        ([], "--host/--serial"),
        (["--host", LOOPBACK, "--serial", "/dev/ttyUSB0"], "--host/--serial"),
        (["--serial", "/dev/ttyUSB0", "--baudrate", "1234"], "--baudrate"),
        (["--serial", "/dev/ttyUSB0", "--parity", "X"], "--parity"),
        (["--host", LOOPBACK, "--profile", "no-such-meter"], "--profile"),
        (["--host", LOOPBACK, "--timeout", "0"], "--timeout"),
    ],
)
def test_bad_arguments_exit_2_naming_the_option(args: list[str], named: str) -> None:
    result = runner.invoke(app, ["scan", "modbus", *args])
    assert result.exit_code == 2, result.output
    assert named in result.output


def test_unit_ranges() -> None:
    assert parse_units("1-3,7, 9-10") == [1, 2, 3, 7, 9, 10]
    assert parse_units("5") == [5]
    assert compress([1, 2, 3, 7, 9, 10]) == "1-3, 7, 9-10"
    with pytest.raises(ValueError, match="outside"):
        parse_units("0", lowest=1)


# --- what a scan found, into a site file ---------------------------------------------------------

SITE = """\
# Library gateway: commissioned 2026-12-07 by the night shift.
[gateway]
id = "library-01"  # as central knows it

# The main meter, in the basement switch room.
[[devices]]
name = "basement-main"
protocol = "modbus-tcp"
host = "10.0.0.5"
points = [{ name = "total_power", table = "input", address = 0x34, unit = "W" }]

# Every five seconds.
[[pollers]]
device = "basement-main"
interval_s = 5

# end of the site file
"""


def comments(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if "#" in line]


def backups(directory: Path) -> list[Path]:
    return sorted(directory.glob("site.toml.*.bak"))


@pytest.mark.integration
async def test_add_to_merges_into_a_commented_site_file_once_and_refuses_clashes(
    sim: Simulator, tmp_path: Path
) -> None:
    port = port_of(sim, "library-main-meter")  # iEM3255 at unit 1
    site = tmp_path / "site.toml"
    site.write_text(SITE)
    scan = ["scan", "modbus", "--host", LOOPBACK, "--port", port, "--units", "1-2", "--add-to", str(site)]

    added = await invoke(scan)
    assert added.exit_code == 0, added.output
    assert "added to" in added.stderr
    assert "unit-1-schneider-iem3255" in added.stderr
    merged = site.read_text()
    assert comments(merged) == comments(SITE)  # every comment kept, in order
    data = tomllib.loads(merged)
    assert [d["name"] for d in data["devices"]] == ["basement-main", "unit-1-schneider-iem3255"]
    assert [p["device"] for p in data["pollers"]] == ["basement-main", "unit-1-schneider-iem3255"]
    assert merged.startswith(SITE.split("# Every five seconds.", maxsplit=1)[0])  # its own part, as it was
    (backup,) = backups(tmp_path)
    assert backup.read_text() == SITE
    check = await invoke(["config", "check", str(site)])
    assert check.exit_code == 0, check.output
    assert "ok (2 devices" in check.stdout

    again = await invoke(scan)  # the same meter, scanned twice: not added twice
    assert again.exit_code == 0, again.output
    assert f"{LOOPBACK}:{port} unit 1 (not added again)" in again.stderr
    assert "nothing new to add; not changed" in again.stderr
    assert site.read_text() == merged
    assert len(backups(tmp_path)) == 1

    clash = SITE.replace('name = "basement-main"', 'name = "unit-1-schneider-iem3255"').replace(
        'device = "basement-main"', 'device = "unit-1-schneider-iem3255"'
    )
    site.write_text(clash)
    refused = await invoke(scan)
    assert refused.exit_code == 2, refused.output
    assert "not changed" in refused.stderr
    assert "device 'unit-1-schneider-iem3255': the file has a device of that name at 10.0.0.5:502" in (
        refused.stderr.replace("\n", " ")
    )
    assert site.read_text() == clash
    assert len(backups(tmp_path)) == 1  # nothing written, not even a backup


@pytest.mark.integration
async def test_snippet_appended_with_shell_redirection_stays_valid_toml(
    sim: Simulator, tmp_path: Path
) -> None:
    port = port_of(sim, "info-centre-main-meter")
    result = await invoke(["scan", "modbus", "--host", LOOPBACK, "--port", port, "--snippet"])
    assert result.exit_code == 0, result.output
    assert "eastron-sdm630" in result.stderr  # the table, kept off stdout
    site = tmp_path / "site.toml"
    site.write_text(SITE + result.stdout)  # what `>> site.toml` does
    data = tomllib.loads(site.read_text())
    assert [d["name"] for d in data["devices"]] == ["basement-main", "unit-1-eastron-sdm630"]
    check = await invoke(["config", "check", str(site)])
    assert check.exit_code == 0, check.output


@pytest.mark.integration
async def test_sweep_finds_an_iem3255_at_19200_8e1(tmp_path: Path) -> None:
    """The simulated bus answers only a client whose end of the pty is set to 19200 baud and one stop bit
    (modbus_servers.py reads the client's termios). A pty cannot carry parity: the pty driver drops
    PARENB, and the C library then refuses a pymodbus client's 8E1 or 8O1 (EINVAL), so on the simulator
    the sweep reports those settings as refused by the port, skips them, and finds the meter at 19200 8N1;
    on an RS-485 adapter 19200 8E1, tried before 8N1, is where an iEM3255 answers."""
    async with ModbusRtuMeterBus([Iem3255(unit_id=3)], baudrate=19200, parity="E") as bus:
        port = bus.client_port
        plain = await invoke(["scan", "modbus", "--serial", port, "--units", "1-3", "--json"])
        assert plain.exit_code == 0, plain.output
        assert json.loads(plain.stdout)["answered"] == []  # at the default 9600 8N1: nothing
        args = ["scan", "modbus", "--serial", port, "--units", "1-3", "--timeout", "0.2", "--sweep"]
        swept = await invoke([*args, "--json"])
        assert swept.exit_code == 0, swept.output
        data = json.loads(swept.stdout)
        assert data["answered"] == [3]
        assert by_unit(data)[3]["profile"] == "schneider-iem3255"
        assert data["line_found"] == "19200 8N1"
        tried = [line.split()[1:] for line in swept.stderr.splitlines() if line.startswith("trying ")]
        assert tried == [
            ["38400", "8E1"],
            ["38400", "8N1"],
            ["38400", "8O1"],
            ["19200", "8E1"],
            ["19200", "8N1"],
        ]
        assert "the port cannot be set to 19200 8E1 (Invalid argument)" in swept.stderr
        assert "units answer at 19200 8N1" in swept.stderr

        site = tmp_path / "site.toml"
        added = await invoke([*args, "--add-to", str(site)])
        assert added.exit_code == 0, added.output
        (device,) = tomllib.loads(site.read_text())["devices"]
        assert (device["serial_port"], device["baudrate"], device["stopbits"]) == (port, 19200, 1)
        read = await invoke(["read", "-c", str(site), device["name"], "voltage_l1", "--json"])
        assert read.exit_code == 0, read.output
        assert json.loads(read.stdout)["readings"][0]["quality"] == "good"


def test_sweep_with_tcp_or_json_and_snippet_is_a_usage_mistake() -> None:
    sweep = runner.invoke(app, ["scan", "modbus", "--host", LOOPBACK, "--sweep"])
    assert sweep.exit_code == 2
    assert "--sweep" in sweep.output
    fixed = runner.invoke(app, ["scan", "modbus", "--serial", "/dev/ttyUSB0", "--sweep", "--parity", "E"])
    assert fixed.exit_code == 2
    assert "leave out --baudrate and --parity" in fixed.output
    both = runner.invoke(app, ["scan", "modbus", "--host", LOOPBACK, "--json", "--snippet"])
    assert both.exit_code == 2
    assert "both want stdout" in both.output
