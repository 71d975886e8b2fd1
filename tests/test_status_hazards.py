"""Issue 20, item 4: `status` shows hazards first, on real processes. A simulated meter that stops answering
reads `late` within three poll intervals (not `up` with a poll minutes old), and a write left on a
controller by an agent killed with SIGKILL is listed from its journal while no agent runs."""

from __future__ import annotations

import asyncio
import json
import signal
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from edge_agent.clock import ScaledClock
from edge_agent.service.local_socket import request
from edge_sim.faults import Fault, FaultKind
from edge_sim.simulator import Simulator
from tests.support import LOOPBACK, Broker, agent_process, free_base_port, free_port
from tests.test_cli_local import cli
from tests.test_control_bacnet import SPEED, START, agent_toml, eventually, slots

pytestmark = pytest.mark.integration

INTERVAL_S = 0.5


def meter_toml(sim: Simulator, state: Path) -> str:
    """The library's main meter alone, polled every INTERVAL_S; a read may wait 20 s for its answer."""
    host, port = {e.name: e.address for e in sim.endpoints()}["library-main-meter"].split(":")
    return f"""
[gateway]
id = "status-test"
[buffer]
path = "{state / "b.db"}"
[mqtt]
url = "mqtt://{LOOPBACK}:{free_port()}"
[log]
format = "json"
[[devices]]
name = "meter"
protocol = "modbus-tcp"
host = "{host}"
port = {port}
profile = "schneider-iem3255"
only_points = ["total_power"]
timeout_s = 20
[[pollers]]
device = "meter"
interval_s = {INTERVAL_S}
"""


async def meter_health(socket: Path) -> str:
    reply = json.loads(await request(socket, b'{"id": "t", "command": "status", "args": {}}', 10))
    [meter] = reply["result"]["devices"]
    return str(meter["health"])


async def test_a_meter_that_stops_answering_reads_late(tmp_path: Path) -> None:
    clock = ScaledClock(datetime.fromisoformat(START), SPEED)
    async with Simulator(clock, free_base_port(), serial_bus=False, control=False) as sim:
        config = tmp_path / "agent.toml"
        config.write_text(meter_toml(sim, tmp_path))
        socket = tmp_path / "edge-agent.sock"
        with (tmp_path / "agent.log").open("wb") as log:
            agent = await agent_process(config, stderr=log)
        try:

            async def up() -> bool:
                return socket.exists() and await meter_health(socket) == "up"

            await eventually(up, 30, "the meter up")
            await sim.inject("library-main-meter", Fault(FaultKind.OFFLINE))  # silent: its reads hang
            seen: list[str] = []

            async def not_up() -> bool:
                seen.append(await meter_health(socket))
                return seen[-1] != "up"

            await eventually(not_up, 15, "the silent meter not shown up")
            assert seen[-1] == "late"  # before its read times out (20 s): late, not up
            code, out, err = await cli("status", "--config", str(config))
            assert code == 0, err
            hazards = out.split("\n\n")[0]  # printed before the device table
            assert "hazards:" in hazards
            assert "device meter: late" in hazards
        finally:
            agent.send_signal(signal.SIGTERM)
            async with asyncio.timeout(45):
                await agent.wait()
        assert agent.returncode == 0, (tmp_path / "agent.log").read_text()[-3000:]


async def test_status_lists_a_hold_left_by_an_agent_killed_with_sigkill(
    broker: Broker, tmp_path: Path
) -> None:
    clock = ScaledClock(datetime.fromisoformat(START), SPEED)
    async with Simulator(clock, free_base_port(), serial_bus=False, control=False) as sim:
        config = tmp_path / "agent.toml"
        config.write_text(agent_toml(sim, broker, tmp_path))
        with (tmp_path / "agent.log").open("wb") as log:
            agent = await agent_process(
                config, "--clock-speed", str(SPEED), "--clock-start", START, stderr=log
            )
        try:

            async def plant_held() -> bool:
                return (await slots(sim, "library-plant", "edge-sim-plant", "demand_limit"))[9] is not None

            await eventually(plant_held, 40, "the agent holding the plant's demand limit at priority 10")
        finally:
            agent.send_signal(signal.SIGKILL)
            await agent.wait()
        assert await plant_held()  # still on the controller: nobody gave it back

        code, out, err = await cli("status", "--config", str(config))
        assert code == 3, out
        assert "not running" in err
        assert "holds (left by a run that is not answering) plant/demand_limit" in out
        assert "at priority 10" in out

        code, out, _ = await cli("status", "--config", str(config), "--json")
        assert code == 3
        left: dict[str, Any] = json.loads(out)
        assert left["running"] is False
        plant = [h for h in left["holds"] if h["point"] == "plant/demand_limit"]
        assert plant, left
        assert plant[0]["priority"] == 10
        assert plant[0]["holder"] == "left"
