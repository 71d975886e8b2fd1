"""Technician commands beside a running agent: on the RS-485 bus the agent owns, `read`, `write`,
`scan modbus --serial` and `decode --serial` go through the agent's local socket and take turns with its
polls; the agent is found from another directory without --config; a port held by another process names it.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from edge_agent.clock import ManualClock
from edge_agent.service import local_socket
from edge_sim.devices.modbus_servers import ModbusRtuMeterBus
from edge_sim.simulator import Simulator
from edge_sim.site_meters import RS485
from tests.conftest import SIM_START
from tests.support import Broker, agent_process, free_base_port

pytestmark = pytest.mark.integration

INTERVAL_S = 0.5
SETPOINT = 3100  # an unused holding register in the iEM3255's block (the simulator zeroes it as it ticks)


def site_toml(port: str, broker: Broker, state: Path) -> str:
    units = {"sub-1": (1, "eastron-sdm630"), "sub-2": (2, "abb-b23"), "sub-3": (3, "schneider-iem3255")}
    lines = [
        '[gateway]\nid = "bus-site"',
        f'[buffer]\npath = "{state / "b.db"}"',
        f'[mqtt]\nurl = "{broker.url}"',
        '[log]\nformat = "json"',
    ]
    for name, (unit, profile) in units.items():
        lines += [
            "[[devices]]",
            f'name = "{name}"\nprotocol = "modbus-rtu"\nserial_port = "{port}"',
            f'unit_id = {unit}\nprofile = "{profile}"\nonly_points = ["total_power"]',
        ]
    lines += [
        "[[devices.points]]",  # sub-3's: a writable register, for `write`
        f'name = "setpoint"\ntable = "holding"\naddress = {SETPOINT}',
        'type = "uint16"\nwrite_range = [0, 100]',
    ]
    for name in units:
        lines += ["[[pollers]]", f'device = "{name}"\ninterval_s = {INTERVAL_S}']
    return "\n".join(lines) + "\n"


async def cli(*args: str, cwd: Path, env: Mapping[str, str]) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edge_agent", *args, cwd=cwd, env=dict(env),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(60):
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def polls(state: dict[str, Any], device: str) -> int:
    return int(next(d["polls"] for d in state["devices"] if d["device"] == device))


async def test_technician_commands_go_through_the_agent_that_owns_the_bus(
    broker: Broker, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"  # not the agent's directory: found by the session's link
    elsewhere.mkdir()
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime)}
    env.pop("RUNTIME_DIRECTORY", None)
    async with Simulator(ManualClock(SIM_START), free_base_port(), control=False) as sim:
        bus = sim.hosts[RS485]
        assert isinstance(bus, ModbusRtuMeterBus)
        port = bus.client_port
        config = tmp_path / "site.toml"
        config.write_text(site_toml(port, broker, tmp_path))
        with (tmp_path / "agent.log").open("wb") as log:
            agent = await agent_process(config, stderr=log, env=env)
        try:

            async def status() -> dict[str, Any]:
                code, out, err = await cli("status", "--json", cwd=elsewhere, env=env)  # no --config
                assert code == 0, err
                result: dict[str, Any] = json.loads(out)
                return result

            for _ in range(120):  # bounded: the agent up and polling all three units
                if (runtime / "edge-agent.sock").exists():
                    state = await status()
                    if all(d["polls"] > 0 for d in state["devices"]):
                        break
                await asyncio.sleep(0.25)
            else:
                pytest.fail("the agent did not poll its three units")
            before, started = polls(state, "sub-3"), time.monotonic()

            code, out, err = await cli(
                "write", "sub-3", "setpoint", "42", "--config", str(config), cwd=elsewhere, env=env
            )
            assert code == 0, err
            assert "write 42; reads back 42" in out
            refused = await cli(
                "write", "sub-3", "setpoint", "420", "--config", str(config), cwd=elsewhere, env=env
            )
            assert refused[0] == 2
            assert "outside its write range [0, 100]" in refused[2]

            code, out, err = await cli(
                "read", "sub-3", "--json", "--config", str(config), cwd=elsewhere, env=env
            )
            assert code == 0, err
            values = {v["point"]: v for v in json.loads(out)["readings"]}
            assert values["setpoint"]["quality"] == "good"  # (the simulator rewrites its block as it ticks)
            assert values["total_power"]["quality"] == "good"

            scan = ["scan", "modbus", "--serial", port, "--units", "1-3", "--json"]
            code, out, err = await cli(*scan, cwd=elsewhere, env=env)
            assert code == 0, err
            assert json.loads(out)["answered"] == [1, 2, 3]

            decode = ["decode", "--serial", port, "--unit", "3", "--address", str(SETPOINT), "--json"]
            code, out, err = await cli(*decode, cwd=elsewhere, env=env)
            assert code == 0, err
            registers = {r["address"]: r["value"] for r in json.loads(out)["registers"]}
            assert isinstance(registers[SETPOINT], int)

            swept = await cli(*scan, "--sweep", cwd=elsewhere, env=env)
            assert swept[0] == 1
            assert "the running agent owns this bus at its configured line" in swept[2]

            for args, refusal in (
                ({"function": 6, "address": SETPOINT + 1, "values": [1]}, "not-writable"),  # not a point
                ({"function": 6, "address": SETPOINT, "values": [420]}, "out-of-limits"),
                ({"function": 3, "address": 0, "count": 2}, "modbus-exception"),  # outside the meter's map
            ):
                request = {"command": "modbus_request", "args": {"serial_port": port, "unit": 3, **args}}
                line = await local_socket.request(
                    runtime / "edge-agent.sock", json.dumps(request).encode(), 10
                )
                assert json.loads(line)["error"]["code"] == refusal, line

            after, window = polls(await status(), "sub-3"), time.monotonic() - started
        finally:
            agent.send_signal(signal.SIGTERM)
            async with asyncio.timeout(30):
                await agent.wait()
    due = window / INTERVAL_S
    assert after - before >= 0.6 * due - 2, (after - before, due)  # its schedule kept, within tolerance
    assert not (runtime / "edge-agent.sock").exists()  # the link goes with the agent


async def test_a_port_held_by_another_process_names_it(tmp_path: Path) -> None:
    async with Simulator(ManualClock(SIM_START), free_base_port(), control=False) as sim:
        bus = sim.hosts[RS485]
        assert isinstance(bus, ModbusRtuMeterBus)
        hold = (
            "import serial, sys, time; s = serial.Serial(sys.argv[1], exclusive=True); "
            "print(1, flush=True); time.sleep(60)"
        )
        holder = await asyncio.create_subprocess_exec(
            sys.executable, "-c", hold, bus.client_port, stdout=asyncio.subprocess.PIPE
        )
        try:
            assert holder.stdout is not None
            await asyncio.wait_for(holder.stdout.readline(), 10)
            env = {**os.environ, "XDG_RUNTIME_DIR": str(tmp_path)}
            scan = ["scan", "modbus", "--serial", bus.client_port, "--units", "1"]
            code, _, err = await cli(*scan, cwd=tmp_path, env=env)
        finally:
            holder.kill()
            await holder.wait()
    assert code == 1
    assert "cannot open the serial port: held by" in err
    assert f"(pid {holder.pid})" in err
