"""Issue 17, item 5: the agent killed with SIGKILL while it sheds over real BACnet leaves its priority-10
writes on the controllers; the next start gives them back (read from the priority arrays by a client of
the test's own) before control's first step, then control sheds again."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from edge_agent.clock import ScaledClock
from edge_sim.simulator import Simulator
from tests.support import LOOPBACK, Broker, async_wait_until, free_base_port, in_background
from tests.test_control_bacnet import GATEWAY, ROOMS, SPEED, START, agent_toml, eventually, room_slots, slots

pytestmark = pytest.mark.integration

OURS = 10  # control's priority (the default write_priority)
WRITTEN = ("room1/cooling_setpoint", "room2/cooling_setpoint", "plant/demand_limit")


async def our_slots(sim: Simulator) -> dict[str, float | None]:
    """What each point the agent writes shows at our priority, read by a BACnet client of the test's own."""
    plant = await slots(sim, "library-plant", "edge-sim-plant", "demand_limit")
    found = {"plant/demand_limit": plant[OURS - 1]}
    for room in ROOMS:
        found[f"{room}/cooling_setpoint"] = (await room_slots(sim, room))[OURS - 1]
    return found


async def shedding(sim: Simulator) -> bool:
    return all(value is not None for value in (await our_slots(sim)).values())


def log_lines(path: Path) -> list[dict[str, Any]]:
    lines = []
    for line in path.read_text().splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            continue  # a traceback or another tool's line: not ours to read
    return lines


def logged(path: Path, event: str) -> bool:
    return any(line.get("event") == event for line in log_lines(path))


async def start(config: Path, log: Path) -> asyncio.subprocess.Process:
    with log.open("wb") as stderr:  # the child keeps the file open
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "edge_agent", "run", "--config", str(config),
            "--clock-speed", str(SPEED), "--clock-start", START,
            stdout=asyncio.subprocess.DEVNULL, stderr=stderr,
        )  # fmt: skip


async def kill(agent: asyncio.subprocess.Process) -> None:
    agent.send_signal(signal.SIGKILL)
    await agent.wait()


async def test_the_next_start_gives_back_what_a_killed_run_held_before_its_first_step(
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

        active = tmp_path / "active.toml"
        active.write_text(agent_toml(sim, broker, tmp_path))
        shadow = tmp_path / "shadow.toml"
        shadow.write_text(active.read_text().replace('mode = "active"', 'mode = "shadow"'))
        async with in_background(collect()):
            # 1. A run sheds at priority 10, and is killed: its writes stay on the controllers.
            first = await start(active, tmp_path / "first.log")
            try:
                await eventually(lambda: shedding(sim), 40, "the first run's writes at priority 10")
            finally:
                await kill(first)
            left = await our_slots(sim)
            assert all(value is not None for value in left.values()), left

            # 2. The next start, the same configuration: every hold given back before control's first step,
            # then control sheds again.
            seen = len(events)
            second_log = tmp_path / "second.log"
            second = await start(active, second_log)
            try:
                await async_wait_until(lambda: logged(second_log, "control mode"), 40, "the first step")
                await eventually(lambda: shedding(sim), 40, "the second run's writes")
            finally:
                await kill(second)  # and killed in its turn
            lines = [line.get("event") for line in log_lines(second_log)]
            first_step = lines.index("control mode")  # logged by control's first step
            released = [
                line["point"]
                for line in log_lines(second_log)
                if line.get("event") == "recovered hold released"
            ]
            assert sorted(released) == sorted(WRITTEN), second_log.read_text()[-3000:]
            assert max(i for i, event in enumerate(lines) if event == "recovered hold released") < first_step
            await async_wait_until(
                lambda: any(e["kind"] == "decision" for e in events[seen:]), 10, "the second run's events"
            )
            run = events[seen:]
            kinds = [e["kind"] for e in run]
            recovered = [
                e for e in run if e["kind"] == "release" and e.get("reason") == "recovered after a restart"
            ]
            assert sorted(e["point"] for e in recovered) == sorted(WRITTEN)
            assert max(run.index(e) for e in recovered) < kinds.index("decision")
            assert all(e["priority"] == OURS for e in recovered)

            # 3. A start in shadow mode (decides, never writes): the priority arrays show every hold of the
            # killed run given back.
            third_log = tmp_path / "third.log"
            third = await start(shadow, third_log)
            try:
                await async_wait_until(
                    lambda: logged(third_log, "control mode"), 40, "the shadow run's first step"
                )
                assert await our_slots(sim) == dict.fromkeys(WRITTEN)
            finally:
                third.send_signal(signal.SIGTERM)
                async with asyncio.timeout(45):
                    await third.wait()
            assert third.returncode == 0, third_log.read_text()[-3000:]
