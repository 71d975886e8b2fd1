"""`edge-agent status` and `edge-agent control` against a running agent (its own process) over its local
UNIX socket: what a technician sees, and control switched from the command line reaching the devices."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from datetime import UTC, datetime
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from edge_agent.cli import local as cli_local
from edge_agent.clock import ScaledClock
from edge_agent.config import parse_config
from edge_agent.service.agent import point_labels
from edge_sim.simulator import Simulator
from tests.support import Broker, agent_process, free_base_port
from tests.test_control_bacnet import SPEED, START, agent_toml, eventually, slots


async def cli(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edge_agent", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(30):
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def status(config: Path) -> dict[str, Any]:
    code, out, err = await cli("status", "--config", str(config), "--json")
    assert code == 0, err
    result: dict[str, Any] = json.loads(out)
    return result


@pytest.mark.integration
async def test_status_and_control_from_the_command_line(broker: Broker, tmp_path: Path) -> None:
    clock = ScaledClock(datetime.fromisoformat(START), SPEED)
    async with Simulator(clock, free_base_port(), serial_bus=False, control=False) as sim:
        config = tmp_path / "agent.toml"
        config.write_text(agent_toml(sim, broker, tmp_path))
        with (tmp_path / "agent.log").open("wb") as log:
            clock_options = ("--clock-speed", str(SPEED), "--clock-start", START)
            agent = await agent_process(config, *clock_options, stderr=log)
        try:

            async def plant_held() -> bool:
                return (await slots(sim, "library-plant", "edge-sim-plant", "demand_limit"))[9] is not None

            await eventually(plant_held, 30, "the agent holding the plant's demand limit")
            state = await status(config)
            assert {d["device"] for d in state["devices"]} == {"meter", "ahu", "plant", "room1", "room2"}
            assert all(d["health"] == "up" and d["last_success"] for d in state["devices"])
            assert state["uplink"]["state"] == "connected"
            assert state["buffer"]["cap_bytes"] > 0
            control = state["control"]
            assert control["mode"] == "active"
            assert control["steps"] >= 1
            plant = [w for w in control["writes"] if w["point"] == "plant/demand_limit"]
            assert plant[0]["priority"] == 10

            code, out, err = await cli("status", "--config", str(config))
            assert code == 0, err
            assert "room2" in out
            assert "up" in out
            assert "holds plant/demand_limit" in out
            assert "control: active" in out
            assert "clock: " in out

            # Shadow from the command line: the agent gives its writes back and keeps deciding.
            code, out, err = await cli("control", "shadow", "--config", str(config))
            assert code == 0, err
            assert "mode set to shadow" in out

            async def plant_free() -> bool:
                return (await slots(sim, "library-plant", "edge-sim-plant", "demand_limit"))[9] is None

            await eventually(plant_free, 10, "the plant's slot 10 released")
            control = (await status(config))["control"]
            assert control["mode"] == "shadow"
            assert control["writes"] == []

            # A target outside the configured limits is refused and changes nothing.
            code, _, err = await cli("control", "--target", "1e9", "--config", str(config))
            assert code == 2
            assert "out-of-limits" in err
            assert (await status(config))["control"]["demand_target_kw"] == 10.0
        finally:
            agent.send_signal(signal.SIGTERM)
            async with asyncio.timeout(45):
                await agent.wait()
        assert agent.returncode == 0, (tmp_path / "agent.log").read_text()[-3000:]

    code, _, err = await cli("status", "--config", str(config))
    assert code == 3
    assert f"not running, or not on {tmp_path / 'edge-agent.sock'}" in err
    assert not (tmp_path / "edge-agent.sock").exists()  # removed on stop


def test_brackets_in_names_and_errors_print_as_they_are() -> None:
    out = StringIO()
    cli_local._print_control({"mode": "off", "demand_target_kw": None}, Console(file=out, markup=False))
    assert "(no [control] points configured)" in out.getvalue()
    device = {"device": "m", "health": "down", "last_success": None, "polls": 0, "failures": 3}
    status = {
        "gateway": "gw",
        "devices": [{**device, "last_error": "[Errno 111] Connection refused"}],
        "buffer": {"depth": 0, "oldest_ts": None, "size_bytes": 0, "cap_bytes": 1e6, "dropped": 0},
        "queue": {"batches_waiting": 0, "capacity": 10},
        "uplink": {
            "state": "connecting", "broker": "b:1883", "mqtt": "5", "session": 1, "readings_published": 0,
            "events_waiting": 0, "events_dropped": 0, "last_error": "[Errno 111] Connection refused",
        },
        "clock": {"state": "synchronized", "held": 0},
        "control": {"mode": "off", "demand_target_kw": None},
    }  # fmt: skip
    printed = StringIO()
    cli_local._print_status(status, datetime.now(UTC), Console(file=printed, width=200, markup=False))
    assert printed.getvalue().count("[Errno 111] Connection refused") == 2


def test_status_prints_disk_full_clock_steps_and_todays_saving_with_its_uncertainty() -> None:
    control = {
        "mode": "active", "demand_target_kw": 100.0, "policy": "rules", "fallback": None, "steps": 12,
        "missing_inputs": [], "writes": [], "backed_off": [],
        "savings_today": {
            "avoided": {"energy_kwh": 2.04, "energy_cost_krw": 295.4}, "hours_covered": 0.5,
            "uncertainty": {"kwh_68": 3.01, "within_noise": True},
        },
    }  # fmt: skip
    clock = {"state": "stepped", "held": 0, "steps": 1, "last_step_s": -259200.0, "uncertain": 140}
    printed = StringIO()
    console = Console(file=printed, width=200, markup=False)
    cli_local._print_control(control, console)
    cli_local._print_status(
        {
            "gateway": "gw", "devices": [], "queue": {"batches_waiting": 0, "capacity": 10},
            "buffer": {
                "depth": 0, "oldest_ts": None, "size_bytes": 0, "cap_bytes": 1e6, "dropped": 75,
                "unnumbered": 60, "disk_full": True, "write_state": "disk full",
                "write_reason": "the disk has no room: the oldest readings make way for the newest",
            },
            "uplink": {
                "state": "connected", "broker": "b:1883", "mqtt": "5", "session": 1, "readings_published": 0,
                "events_waiting": 0, "events_dropped": 0, "last_error": None,
            },
            "clock": clock, "control": {"mode": "off", "demand_target_kw": None},
        },
        datetime.now(UTC),
        console,
    )  # fmt: skip
    text = printed.getvalue()
    assert "saving today 2.0 kWh +- 3.0 (68%), within the baseline's noise, 295 KRW, over 0.5 h" in text
    assert "gateway gw: hazards:\n  buffer: disk full: the disk has no room: the oldest" in text
    assert "buffer: disk full; 0 readings unsent" in text
    assert "dropped unsent 75 (ever: the cap, a full disk or queue, a damaged file, a stop), 60 of" in text
    assert "clock: stepped; 1 step(s), the last -259200 s; 140 readings sent as uncertain-time" in text


def test_status_names_held_and_stale_points_with_their_labels() -> None:
    """Points configured with a label (a scan keeps a BACnet object's own name there) show it beside the
    point wherever status names one: writes held, points backed off, stale inputs."""
    config = parse_config(
        """
[[devices]]
name = "room1"
protocol = "bacnet-ip"
host = "127.0.0.1:47808"
instance = 1301
points = [
  { name = "cooling_sp", label = "1층 열람실 냉방 설정온도", object = "analog-value,1" },
  { name = "t", label = "1층 열람실 온도", object = "analog-input,1" },
  { name = "co2", object = "analog-input,2" },
]
""",
        "site",
    )
    labels = point_labels(config)
    assert labels == {"room1/cooling_sp": "1층 열람실 냉방 설정온도", "room1/t": "1층 열람실 온도"}
    held = {"point": "room1/cooling_sp", "value": 27.0, "priority": 10, "since": None, "lease_until": None}
    control = {
        "mode": "active", "demand_target_kw": 100.0, "policy": "rules", "fallback": None, "steps": 3,
        "missing_inputs": ["room1/t", "room1/co2"], "writes": [held], "backed_off": ["room1/cooling_sp"],
    }  # fmt: skip
    printed = StringIO()
    cli_local._print_control(control, Console(file=printed, width=200, markup=False), labels)
    text = printed.getvalue()
    assert "holds room1/cooling_sp (1층 열람실 냉방 설정온도) = 27 at priority 10" in text
    assert "backs off room1/cooling_sp (1층 열람실 냉방 설정온도): an operator holds it" in text
    assert "inputs missing or stale: room1/t (1층 열람실 온도), room1/co2" in text
