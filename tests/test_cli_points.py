"""`edge-agent read` and `edge-agent write` against the simulator's real Modbus and BACnet servers on
loopback. The command runs in a worker thread (its own event loop, as from a shell) while the simulator
serves from the test's loop; the simulator's clock stands still, so the values stay put."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from edge_agent.cli.app import app
from edge_sim.devices.bacnet.controllers import RoomController
from edge_sim.devices.modbus_servers import ModbusTcpMeterServer
from edge_sim.simulator import Simulator
from tests.support import LOOPBACK, async_wait_until, free_port

pytestmark = pytest.mark.integration

ROOM = "library-reading-1-vav"
SITE = """
[bacnet]
local_address = "127.0.0.1:0"

[[devices]]
name = "library-main-meter"
protocol = "modbus-tcp"
host = "127.0.0.1"
port = {meter_port}
profile = "schneider-iem3255"
only_points = ["total_power", "voltage_l1", "frequency"]

[[devices]]
name = "{room}"
protocol = "bacnet-ip"
host = "{room_address}"
instance = {room_instance}
profile = "edge-sim-vav"

[[devices]]
name = "silent-vav"
protocol = "bacnet-ip"
host = "127.0.0.1:{silent_port}"
instance = 1399
profile = "edge-sim-vav"
"""

runner = CliRunner()


async def cli(*args: str) -> Result:
    """`edge-agent ARGS` in a worker thread, so the simulator keeps serving meanwhile."""
    return await asyncio.to_thread(runner.invoke, app, list(args))


@pytest.fixture
def room(sim: Simulator) -> RoomController:
    controller = sim.controller(ROOM)
    assert isinstance(controller, RoomController)
    return controller


@pytest.fixture
def silent_port() -> int:
    """A UDP port nobody answers on."""
    return free_port()


@pytest.fixture
def site(sim: Simulator, room: RoomController, silent_port: int, tmp_path: Path) -> str:
    """A configuration file for the simulator's ports, and a device that never answers."""
    path = tmp_path / "site.toml"
    path.write_text(
        SITE.format(
            meter_port=meter_port(sim),
            room=ROOM,
            room_address=room.info.address,
            room_instance=room.info.instance,
            silent_port=silent_port,
        )
    )
    return str(path)


def meter_port(sim: Simulator) -> int:
    server = sim.hosts["main-library"]
    assert isinstance(server, ModbusTcpMeterServer)
    return server.port


def slots(room: RoomController) -> list[object]:
    """The cooling setpoint's priority array as the simulated device holds it."""
    return [getattr(slot, "real", None) for slot in room.cooling_sp.obj.priorityArray]


async def test_read_shows_every_point_of_a_device_as_polled(site: str, room: RoomController) -> None:
    result = await cli("read", ROOM, "--config", site)
    assert result.exit_code == 0, result.output
    for point in ("zone_temperature", "zone_co2", "cooling_setpoint", "heating_setpoint", "occupied"):
        assert point in result.stdout
    assert "good" in result.stdout
    assert "bad" not in result.stdout

    result = await cli("read", ROOM, "zone_temperature", "cooling_setpoint", "--config", site, "--json")
    assert result.exit_code == 0, result.output
    readings = {r["point"]: r for r in json.loads(result.stdout)["readings"]}
    assert list(readings) == ["zone_temperature", "cooling_setpoint"]
    assert readings["zone_temperature"]["value"] == pytest.approx(room.zone.thermal.t_air, abs=0.01)
    assert readings["zone_temperature"]["unit"] == "degC"
    assert readings["cooling_setpoint"]["value"] == pytest.approx(26.0)


async def test_raw_reads_need_no_configuration(sim: Simulator, site: str, room: RoomController) -> None:
    configured = await cli("read", "library-main-meter", "total_power", "--config", site, "--json")
    assert configured.exit_code == 0, configured.output
    (power,) = json.loads(configured.stdout)["readings"]
    assert power["value"] > 0

    meter = f"{LOOPBACK}:{meter_port(sim)}"
    raw = await cli("read", "--modbus", meter, "--register", "3:3059", "--type", "float32", "--json")
    assert raw.exit_code == 0, raw.output
    assert json.loads(raw.stdout)["readings"][0]["value"] == pytest.approx(power["value"])
    swapped = await cli(
        "read",
        "--modbus",
        meter,
        "--register",
        "holding:3059",
        "--type",
        "float32",
        "--order",
        "CDAB",
        "--json",
    )
    assert json.loads(swapped.stdout)["readings"][0]["value"] != pytest.approx(
        power["value"]
    )  # order matters

    bacnet = ("read", "--bacnet", room.info.address, "--object", "analog-input,1")
    name = await cli(*bacnet, "--property", "object-name")
    assert name.exit_code == 0, name.output
    assert "Zone Temperature" in name.stdout
    array = await cli(*bacnet[:-1], "analog-value,1", "--property", "priority-array")
    assert "all 16 slots relinquished" in array.stdout

    missing = await cli(*bacnet[:-1], "analog-input,99")
    assert missing.exit_code == 1
    assert "analog-input,99" in missing.stderr
    assert "unknownObject" in missing.stderr


async def test_write_at_priority_10_is_read_back_and_followed_then_relinquished(
    site: str, room: RoomController
) -> None:
    result = await cli("write", ROOM, "cooling_setpoint", "27", "--priority", "10", "--config", site)
    assert result.exit_code == 0, result.output
    assert "write 27 at priority 10; reads back 27 degC" in result.stdout
    assert "priority array: 10=27 (priority 10 in control)" in result.stdout
    assert slots(room)[9] == 27.0
    await async_wait_until(lambda: room.zone.overrides.cooling_sp == 27.0, 2, "the zone to follow the write")

    shown = await cli("read", ROOM, "cooling_setpoint", "--priority-array", "--config", site, "--json")
    (reading,) = json.loads(shown.stdout)["readings"]
    assert reading["value"] == 27.0
    assert reading["priority_array"] == [None] * 9 + [27.0] + [None] * 6

    result = await cli("write", ROOM, "cooling_setpoint", "--relinquish", "--config", site)
    assert result.exit_code == 0, result.output
    assert "relinquish at priority 10" in result.stdout
    assert "all 16 slots relinquished" in result.stdout
    assert slots(room) == [None] * 16
    await async_wait_until(lambda: room.zone.overrides.cooling_sp is None, 2, "the zone's own sequence back")


async def test_operator_priority_needs_its_flag(site: str, room: RoomController) -> None:
    refused = await cli("write", ROOM, "cooling_setpoint", "27", "--priority", "8", "--config", site)
    assert refused.exit_code == 2
    assert "--operator" in refused.stderr
    written = await cli("write", ROOM, "cooling_setpoint", "27.5", "--operator", "--config", site)
    assert written.exit_code == 0, written.output
    assert slots(room)[7] == 27.5
    released = await cli("write", ROOM, "cooling_setpoint", "--relinquish", "--operator", "--config", site)
    assert released.exit_code == 0, released.output
    assert slots(room) == [None] * 16


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["cooling_setpoint", "30"], f"{ROOM}/cooling_setpoint: 30 is outside its write range [26, 28]"),
        (["cooling_setpoint", "25.9"], "outside its write range [26, 28]"),
        (["zone_temperature", "20"], f"{ROOM}/zone_temperature is read-only: it has no write_range"),
        (["cooling_setpoint", "27", "--priority", "5"], "priority 5 is for life safety"),
        (
            ["cooling_setpoint", "27", "--priority", "16"],
            "priority 16 is left to the building's own programs",
        ),
        (["cooling_setpoint", "27", "--priority", "17"], "BACnet priorities are 1-16"),
        (["cooling_setpoint", "27", "--relinquish"], "give a VALUE, or --relinquish"),
        (["cooling_setpoint", "nan"], "not a finite number"),
        (["no_such_point", "27"], f"device '{ROOM}' has no point 'no_such_point'"),
    ],
)
async def test_refused_writes_exit_2_and_leave_the_device_alone(
    site: str, room: RoomController, args: list[str], message: str
) -> None:
    result = await cli("write", ROOM, *args, "--config", site)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert slots(room) == [None] * 16
    shown = await cli("read", ROOM, "cooling_setpoint", "--priority-array", "--config", site)
    assert "all 16 slots relinquished" in shown.stdout


async def test_modbus_points_take_no_priority_nor_relinquish(site: str) -> None:
    result = await cli("write", "library-main-meter", "total_power", "5", "--config", site)
    assert result.exit_code == 2
    assert "library-main-meter/total_power is read-only" in result.stderr
    result = await cli("read", "--modbus", "127.0.0.1:1", "--register", "7:1")
    assert result.exit_code == 2
    assert "--register '7:1'" in result.stderr


async def test_a_silent_device_exits_1_naming_it_within_seconds(site: str, silent_port: int) -> None:
    started = time.monotonic()
    result = await cli("read", "silent-vav", "--config", site)
    elapsed = time.monotonic() - started
    assert result.exit_code == 1
    assert f"silent-vav 127.0.0.1:{silent_port} device 1399" in result.stderr
    assert "no answer" in result.stderr
    assert elapsed < 6

    started = time.monotonic()
    result = await cli("write", "silent-vav", "cooling_setpoint", "27", "--config", site)
    assert result.exit_code == 1
    assert f"silent-vav 127.0.0.1:{silent_port}" in result.stderr
    assert time.monotonic() - started < 6
