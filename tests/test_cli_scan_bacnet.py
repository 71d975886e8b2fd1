"""`edge-agent scan bacnet` against the simulator's real BACnet controllers on loopback: what it finds, what
it says about each, and the configuration snippet it writes. The command runs in a worker thread (its own
event loop, as from a shell) while the simulator serves from the test's loop."""

from __future__ import annotations

import asyncio
import json
import tomllib
from pathlib import Path

import pytest
from bacpypes3.local.analog import AnalogValueObject
from bacpypes3.local.device import DeviceObject
from typer.testing import CliRunner, Result

from edge_agent.cli.app import app
from edge_agent.clock import ManualClock
from edge_agent.config import MqttConfig, load_config
from edge_agent.protocols.bacnet.app import BacnetApplication
from edge_agent.store.buffer import Buffer
from edge_agent.uplink.payloads import device_infos
from edge_agent.uplink.session import Uplink
from edge_sim.devices.bacnet.controllers import RoomController
from edge_sim.simulator import Simulator
from tests.conftest import SIM_START
from tests.support import (
    Broker,
    async_wait_until,
    birth_devices,
    central_subscriber,
    free_base_port,
    free_port,
    in_background,
)
from tests.test_bacnet_discovery import bbmd_application, rooms

pytestmark = pytest.mark.integration

runner = CliRunner()


async def cli(*args: str) -> Result:
    """`edge-agent ARGS` in a worker thread, so the simulator keeps serving meanwhile."""
    return await asyncio.to_thread(runner.invoke, app, list(args))


def port_range(sim: Simulator) -> str:
    """Every controller's address as one HOST:LOW-HIGH (each listens on its own port)."""
    ports = sorted(int(c.info.address.rsplit(":", 1)[1]) for c in sim.controllers)
    return f"127.0.0.1:{ports[0]}-{ports[-1]}"


def room(sim: Simulator) -> RoomController:
    controller = sim.controller("library-reading-1-vav")
    assert isinstance(controller, RoomController)
    return controller


async def test_scan_lists_every_simulated_controller(sim: Simulator) -> None:
    result = await cli("scan", "bacnet", "--address", port_range(sim), "--wait", "1", "--json")
    assert result.exit_code == 0, result.output
    found = {d["instance"]: d for d in json.loads(result.stdout)["devices"]}
    assert set(found) == {c.info.instance for c in sim.controllers}
    for controller in sim.controllers:
        device = found[controller.info.instance]
        assert device["address"] == controller.info.address
        assert device["name"] == controller.info.name
        assert (device["vendor_id"], device["vendor_name"]) == (999, "edge-sim")
        assert device["model_name"].startswith("edge-sim ")
        assert device["max_apdu"] == 1024
        assert device["segmentation"] == "segmentedBoth"
        assert f"device,{controller.info.instance}" in device["object_ids"]
    assert found[1301]["model_name"] == "edge-sim VAV controller"
    assert found[1301]["object_count"] == 9  # the device, 4 sensors, a status, 2 setpoints, the network port

    table = await cli("scan", "bacnet", "--address", port_range(sim), "--wait", "1")
    assert table.exit_code == 0, table.output
    for controller in sim.controllers:
        assert controller.info.name in table.stdout
    assert "edge-sim heat-pump plant controller" in table.stdout
    assert "edge-sim (999)" in table.stdout


async def test_objects_are_listed_with_names_units_and_values(sim: Simulator) -> None:
    vav = room(sim)
    result = await cli("scan", "bacnet", "--address", vav.info.address, "--objects", "--json")
    assert result.exit_code == 0, result.output
    (device,) = json.loads(result.stdout)["devices"]
    objects = {f"{o['type']},{o['instance']}": o for o in device["objects"]}
    temperature = objects["analog-input,1"]
    assert (temperature["name"], temperature["units"]) == ("Zone Temperature", "degrees-celsius")
    assert temperature["present_value"] == pytest.approx(vav.zone.thermal.t_air, abs=0.01)
    assert objects["binary-input,1"]["present_value"] in ("active", "inactive")
    assert objects["binary-input,1"]["units"] is None
    assert objects["analog-value,1"]["name"] == "Cooling Setpoint"

    table = await cli("scan", "bacnet", "--address", vav.info.address, "--objects")
    assert "Discharge Air Temperature" in table.stdout
    assert "parts-per-million" in table.stdout


async def test_the_snippet_passes_config_check_and_reads_a_room_temperature(
    sim: Simulator, tmp_path: Path
) -> None:
    vav = room(sim)
    snippet = tmp_path / "found.toml"
    plant = sim.controller("library-plant").info.address
    args = ("scan", "bacnet", "--address", vav.info.address, "--address", plant, "--add-to", str(snippet))
    result = await cli(*args)
    assert result.exit_code == 0, result.output
    assert f"edge-agent config check {snippet}" in result.stderr

    check = await cli("config", "check", str(snippet))
    assert check.exit_code == 0, check.output
    assert "ok (2 devices" in check.stdout
    data = tomllib.loads(snippet.read_text())
    by_name = {d["name"]: d for d in data["devices"]}
    assert by_name["library-reading-1-vav"]["host"] == vav.info.address
    assert by_name["library-reading-1-vav"]["instance"] == 1301
    points = {p["name"]: p for p in by_name["library-reading-1-vav"]["points"]}
    assert points["zone_temperature"] == {
        "name": "zone_temperature",
        "label": "Zone Temperature",  # the device's own name for it
        "object": "analog-input,1",
        "unit": "degC",
    }
    assert points["zone_co2"]["unit"] == "ppm"
    assert "write_range" not in points["cooling_setpoint"]  # read-only until someone decides the range
    assert {p["device"] for p in data["pollers"]} == set(by_name)

    read = await cli("read", "library-reading-1-vav", "zone_temperature", "--config", str(snippet), "--json")
    assert read.exit_code == 0, read.output
    (reading,) = json.loads(read.stdout)["readings"]
    assert 15 < reading["value"] < 35
    assert reading["value"] == pytest.approx(vav.zone.thermal.t_air, abs=0.01)

    to_stdout = await cli("scan", "bacnet", "--address", vav.info.address, "--snippet")
    assert to_stdout.exit_code == 0, to_stdout.output
    assert tomllib.loads(to_stdout.stdout)["devices"][0]["name"] == "library-reading-1-vav"
    assert "edge-sim VAV controller" in to_stdout.stderr  # the table, kept off stdout

    before = snippet.read_text()
    again = await cli(*args)  # the same devices, scanned twice: nothing added twice
    assert again.exit_code == 0, again.output
    assert f"{vav.info.address} device 1301 (not added again)" in again.stderr
    assert snippet.read_text() == before


async def test_a_device_without_segmentation_still_gives_its_long_object_list() -> None:
    """260 values: the object list is too long for one unsegmented answer, so it is read element by element,
    and the objects' properties in batches that fit."""
    values = [
        AnalogValueObject(
            objectIdentifier=("analog-value", i),
            objectName=f"Value {i}",
            presentValue=float(i),
            units="percent",
            statusFlags=[0, 0, 0, 0],
            eventState="normal",
            outOfService=False,
        )
        for i in range(1, 261)
    ]
    device = DeviceObject(
        objectIdentifier=("device", 77),
        objectName="small controller",
        vendorIdentifier=5,
        vendorName="tiny",
        modelName="T-1",
        maxApduLengthAccepted=206,
        segmentationSupported="noSegmentation",
    )
    address = f"127.0.0.1:{free_port()}"
    async with BacnetApplication(address, [device, *values]):
        result = await cli("scan", "bacnet", "--address", address, "--objects", "--json")
    assert result.exit_code == 0, result.output
    (found,) = json.loads(result.stdout)["devices"]
    assert (found["max_apdu"], found["segmentation"], found["errors"]) == (206, "noSegmentation", [])
    assert found["object_count"] == 262  # the device, 260 values, the network port
    values_found = [o for o in found["objects"] if o["type"] == "analog-value"]
    assert [o["present_value"] for o in values_found] == [float(i) for i in range(1, 261)]
    last = values_found[-1]
    assert (last["instance"], last["name"], last["units"]) == (260, "Value 260", "percent")


async def test_an_instance_range_keeps_to_it(sim: Simulator) -> None:
    args = ("scan", "bacnet", "--address", port_range(sim), "--low", "1300", "--high", "1399", "--json")
    result = await cli(*args, "--wait", "0.5")
    assert result.exit_code == 0, result.output
    assert [d["instance"] for d in json.loads(result.stdout)["devices"]] == [1301, 1302, 1303, 1304]


async def test_a_directed_broadcast_finds_the_controllers_that_listen() -> None:
    port = free_port()
    async with rooms(f"127.0.0.2/8:{port}", f"127.0.0.3/8:{port}"):  # /8: they hear 127.255.255.255
        result = await cli(
            "scan", "bacnet", "--broadcast", f"127.255.255.255:{port}", "--wait", "0.5", "--json"
        )
    assert result.exit_code == 0, result.output
    found = [(d["instance"], d["address"]) for d in json.loads(result.stdout)["devices"]]
    assert found == [(1301, f"127.0.0.2:{port}"), (1302, f"127.0.0.3:{port}")]


async def test_a_scan_through_a_bbmd_finds_its_subnet() -> None:
    port = free_port()
    with bbmd_application(f"127.0.0.1/8:{port}"):
        async with rooms(f"127.0.0.2/8:{port}", f"127.0.0.3/8:{port}"):
            args = ("scan", "bacnet", "--bbmd", f"127.0.0.1:{port}", "--wait", "0.5", "--json")
            result = await cli(*args)
    assert result.exit_code == 0, result.output
    found = [(d["instance"], d["name"]) for d in json.loads(result.stdout)["devices"]]
    assert found == [(1000, "bbmd"), (1301, "library-reading-1-vav"), (1302, "library-reading-2-vav")]


async def test_nothing_answering_is_said_with_reasons(sim: Simulator) -> None:
    port = room(sim).info.address.rsplit(":", 1)[1]
    result = await cli("scan", "bacnet", "--broadcast", f"127.255.255.255:{port}", "--wait", "0.3")
    assert result.exit_code == 0, result.output
    assert "Nothing answered within 0.3 s" in result.stderr
    assert "on loopback, hear only Who-Is sent to their own address" in result.stderr

    silent = await cli("scan", "bacnet", "--address", f"127.0.0.1:{free_port()}", "--wait", "0.3", "--json")
    assert json.loads(silent.stdout) == {"devices": []}
    assert "Nothing answered" in silent.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "has no broadcast address"),  # a global broadcast from an address without a prefix
        (["--address", "127.0.0.1:1", "--low", "5"], "give --low and --high together"),
        (["--address", "127.0.0.1:9-3"], "ports must be 1-65535, low before high"),
        (["--address", "127.0.0.1:1-9999"], "at most 256 addresses"),
        (["--bbmd", "bbmd.local"], "--bbmd 'bbmd.local': expected IP[:PORT]"),
        (["--local-address", "localhost"], "--local-address 'localhost'"),
        (["--address", "127.0.0.1:1", "--json", "--snippet"], "both want stdout"),
    ],
)
async def test_usage_mistakes_exit_2(args: list[str], message: str) -> None:
    result = await cli("scan", "bacnet", "--wait", "0.1", *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr


async def test_a_silent_bbmd_exits_1_naming_it() -> None:
    bbmd = f"127.0.0.1:{free_port()}"
    result = await cli("scan", "bacnet", "--bbmd", bbmd, "--timeout", "0.5", "--wait", "0.1")
    assert result.exit_code == 1, result.output
    assert f"BBMD {bbmd}" in result.stderr
    assert "registration" in result.stderr


async def test_hangul_object_names_become_labels_beside_readable_names(
    broker: Broker, tmp_path: Path
) -> None:
    """A controller that names its objects in Hangul ("1층 열람실 온도"): the scan keeps each name as the
    point's label and derives an ASCII name by romanisation; the result passes `config check`, and the
    Hangul names are what `read` shows and the birth certificate publishes."""
    async with Simulator(
        ManualClock(SIM_START), free_base_port(), serial_bus=False, control=False, hangul_names=True
    ) as sim:
        vav = room(sim)
        site = tmp_path / "site.toml"
        added = await cli("scan", "bacnet", "--address", vav.info.address, "--add-to", str(site))
        assert added.exit_code == 0, added.output
        check = await cli("config", "check", str(site))
        assert check.exit_code == 0, check.output
        (device,) = tomllib.loads(site.read_text())["devices"]
        assert device["name"] == "1cheung-yeollamsil-vav"  # the device object's "1층 열람실 VAV"
        labels = {p["name"]: p["label"] for p in device["points"]}
        assert labels["1cheung_yeollamsil_ondo"] == "1층 열람실 온도"
        assert labels["1cheung_yeollamsil_geupgi_ondo"] == "1층 열람실 급기 온도"
        assert labels["1cheung_yeollamsil_naengbang_seoljeongondo"] == "1층 열람실 냉방 설정온도"
        assert len(labels) == 7

        point = ("1cheung-yeollamsil-vav", "1cheung_yeollamsil_ondo")
        table = await cli("read", "-c", str(site), *point)
        assert table.exit_code == 0, table.output
        assert "1층 열람실 온도" in table.stdout
        read = await cli("read", "-c", str(site), *point, "--json")
        (reading,) = json.loads(read.stdout)["readings"]
        assert reading["label"] == "1층 열람실 온도"
        assert reading["value"] == pytest.approx(vav.zone.thermal.t_air, abs=0.01)

    devices = device_infos(load_config(site))
    async with Buffer(tmp_path / "b.db") as buffer, central_subscriber(broker.port, "gw-hangul") as central:
        uplink = Uplink(MqttConfig(url=f"mqtt://127.0.0.1:{broker.port}"), "gw-hangul", buffer, devices)
        async with in_background(uplink.run()):
            await async_wait_until(lambda: bool(central.status), 10, "the birth certificate")
    (birth,) = [birth_devices(s) for s in central.status if s["online"]]
    published = {p.name: p.label for p in birth[0].points}
    assert published["1cheung_yeollamsil_ondo"] == "1층 열람실 온도"
