"""Load shaving over real BACnet, the simulator at 60x: the agent (its own process, on building time, under
systemd's notify protocol) writes at priority 10, backs off a point an operator takes at priority 8, and on
SIGTERM says STOPPING=1 and gives every point back, so the simulated controllers return to their own
sequence. Its audit events reach the broker."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from edge_agent.clock import ScaledClock
from edge_agent.config import AgentConfig, BacnetConfig, BacnetDevice
from edge_agent.protocols.bacnet.client import BacnetClient, local_stack
from edge_sim.simulator import Simulator
from tests.support import LOOPBACK, Broker, async_wait_until, free_base_port, in_background
from tests.test_service_notify import messages

pytestmark = pytest.mark.integration

START = "2026-08-05T14:00:00+09:00"  # a hot Wednesday afternoon, the library open
SPEED = 60.0  # one control step (60 s of building time) per wall-clock second
GATEWAY = "gw-control"
ROOMS = {"room1": "library-reading-1-vav", "room2": "library-reading-2-vav"}


def agent_toml(sim: Simulator, broker: Broker, state: Path) -> str:
    where = {e.name: e.address for e in sim.endpoints()}
    meter_host, meter_port = where["library-main-meter"].split(":")
    bacnet = {"ahu": ("library-ahu", "edge-sim-ahu"), "plant": ("library-plant", "edge-sim-plant")}
    bacnet |= {name: (controller, "edge-sim-vav") for name, controller in ROOMS.items()}
    lines = [
        f'[gateway]\nid = "{GATEWAY}"',
        f'[buffer]\npath = "{state / "b.db"}"',
        f'[mqtt]\nurl = "{broker.url}"',
        f'[bacnet]\nlocal_address = "{LOOPBACK}:0"',
        '[log]\nformat = "json"',
        "[control]",
        'mode = "active"',
        "demand_target_kw = 10.0",  # far below the library's demand: shed all the way
        'demand = "meter/total_power"',
        'outdoor_temperature = "ahu/outdoor_air_temperature"',
        'plant_limit = "plant/demand_limit"',
        "open_days = [0, 1, 2, 3, 4, 5, 6]",
        "close_hour = 22",
        "zones = [",
        *(
            f'  {{ name = "{n}", temperature = "{n}/zone_temperature",'
            f' cooling_setpoint = "{n}/cooling_setpoint", co2 = "{n}/zone_co2" }},'
            for n in ROOMS
        ),
        "]",
        "[[devices]]",
        'name = "meter"\nprotocol = "modbus-tcp"',
        f'host = "{meter_host}"\nport = {meter_port}\nprofile = "schneider-iem3255"',
        'only_points = ["total_power"]',
    ]
    for name, (controller, profile) in bacnet.items():
        info = sim.controller(controller).info
        lines += [
            "[[devices]]",
            f'name = "{name}"\nprotocol = "bacnet-ip"\nhost = "{info.address}"',
            f'instance = {info.instance}\nprofile = "{profile}"',
        ]
    for name in ("meter", *bacnet):
        lines += ["[[pollers]]", f'device = "{name}"\ninterval_s = 0.5']
    return "\n".join(lines) + "\n"


async def slots(sim: Simulator, controller: str, profile: str, point: str) -> list[float | None]:
    info = sim.controller(controller).info
    device = AgentConfig.model_validate(
        {
            "devices": [
                {
                    "name": "probe",
                    "protocol": "bacnet-ip",
                    "host": info.address,
                    "instance": info.instance,
                    "profile": profile,
                }
            ]
        }
    ).devices[0]
    assert isinstance(device, BacnetDevice)
    stack = local_stack(BacnetConfig(local_address=f"{LOOPBACK}:0"))
    async with stack, asyncio.timeout(5), BacnetClient(device, stack) as client:
        return await client.read_priority_array(point)


async def room_slots(sim: Simulator, room: str) -> list[float | None]:
    return await slots(sim, ROOMS[room], "edge-sim-vav", "cooling_setpoint")


async def operator_writes(sim: Simulator, room: str, value: float) -> None:
    address = sim.controller(ROOMS[room]).info.address
    async with local_stack(BacnetConfig(local_address=f"{LOOPBACK}:0")) as stack, asyncio.timeout(5):
        await stack.app.write_property(address, "analog-value,1", "present-value", value, priority=8)


async def eventually(probe: Any, timeout_s: float, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await probe():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.3)


async def test_writes_back_off_for_the_operator_and_are_released_on_sigterm(
    broker: Broker, tmp_path: Path
) -> None:
    clock = ScaledClock(datetime.fromisoformat(START), SPEED)
    events: list[dict[str, Any]] = []
    async with (
        Simulator(clock, free_base_port(), serial_bus=False, control=False) as sim,
        aiomqtt.Client(LOOPBACK, broker.port, identifier="central") as central,
    ):
        await central.subscribe(f"edge/{GATEWAY}/events", qos=1)

        async def collect() -> None:
            async for message in central.messages:
                assert isinstance(message.payload, bytes)
                events.append(json.loads(message.payload))

        config = tmp_path / "agent.toml"
        config.write_text(agent_toml(sim, broker, tmp_path))
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)  # systemd's side of sd_notify
        notify.bind(str(tmp_path / "notify"))
        notify.setblocking(False)
        async with in_background(collect()):
            # The agent logs to a file (a full pipe would block its logging); the child keeps the file open.
            with (tmp_path / "agent.log").open("wb") as log:
                agent = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "edge_agent", "run", "--config", str(config),
                    "--clock-speed", str(SPEED), "--clock-start", START,
                    stdout=asyncio.subprocess.DEVNULL, stderr=log,
                    env={**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "4000000"},
                )  # fmt: skip
            try:
                assert "READY=1" in (await messages(notify, "READY=1", 20))[-1]

                # The agent sheds: both rooms' cooling setpoints and the plant's limit held at priority 10.
                async def shedding() -> bool:
                    plant = await slots(sim, "library-plant", "edge-sim-plant", "demand_limit")
                    rooms = [await room_slots(sim, r) for r in ROOMS]
                    return plant[9] is not None and all(s[9] is not None and s[9] > 26 for s in rooms)

                await eventually(shedding, 30, "the agent's writes at priority 10")

                # An operator takes room1 at priority 8: the agent gives its slot back and keeps off.
                await operator_writes(sim, "room1", 25.5)
                await eventually(lambda: _slot_is_free(sim, "room1"), 10, "the agent backing off room1")
                await asyncio.sleep(3)  # three more control steps
                held = await room_slots(sim, "room1")
                assert held[9] is None
                assert held[7] == 25.5
                assert (await room_slots(sim, "room2"))[9] is not None  # room2 is still shed
                assert sim.site.building("library").zones[0].overrides.cooling_sp == 25.5
            finally:
                agent.send_signal(signal.SIGTERM)
                async with asyncio.timeout(45):  # generous: CI machines are shared and slow
                    await agent.wait()
            assert agent.returncode == 0, (tmp_path / "agent.log").read_text()[-3000:]
            stopping = await messages(notify, "STOPPING=1", 5)
            notify.close()
            assert "STOPPING=1" in stopping[-1]

            # Every point the agent wrote is given back; the operator's write stays.
            assert (await room_slots(sim, "room1"))[7] == 25.5
            assert await room_slots(sim, "room2") == [None] * 16
            assert await slots(sim, "library-plant", "edge-sim-plant", "demand_limit") == [None] * 16
            await sim.step()
            library = sim.site.building("library")
            assert library.demand_limit_pct is None  # the plant follows its own sequence again
            assert library.zones[1].overrides.cooling_sp is None
            await async_wait_until(
                lambda: any(
                    e["kind"] == "release" and e.get("point") == "plant/demand_limit" for e in events
                ),
                10,
                "the release event",
            )
    kinds = {e["kind"] for e in events}
    assert {"mode", "decision", "write", "operator", "release"} <= kinds
    operator = [e for e in events if e["kind"] == "operator"]
    assert operator[0]["point"] == "room1/cooling_setpoint"
    assert operator[0]["priority"] == 8
    assert all(e["priority"] == 10 for e in events if e["kind"] == "write")


async def _slot_is_free(sim: Simulator, room: str) -> bool:
    return (await room_slots(sim, room))[9] is None
