"""`edge-agent scan modbus` against the simulator's real Modbus servers on loopback: it finds the meters at
their unit ids, names their models, reports absent units as silent, shows its progress, and stops cleanly."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from edge_agent.cli.app import app
from edge_agent.cli.modbus_scan import compress, parse_units
from edge_agent.clock import ManualClock
from edge_agent.config import ModbusTcpDevice, parse_config
from edge_sim.devices import modbus_servers
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
    assert "schneider-iem3255 (Schneider Electric iEM3255)" in result.stdout
    assert "│ 2-3  │ no" in result.stdout  # the absent units, as one run
    assert "1 answered, 1 identified, 2 silent." in result.stdout
    snippet = result.stdout[result.stdout.index("[[devices]]") :]
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
