"""The agent as a whole: an orderly stop commits every reading it accepted."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path

from edge_agent.config import AgentConfig, BufferConfig, ModbusPoint, MqttConfig, PollerConfig
from edge_agent.service import Agent
from edge_sim.simulator import Simulator
from tests.support import LOOPBACK, async_wait_until, free_port
from tests.test_modbus import SDM630_POINTS, meter, sdm630_port


async def test_stop_commits_every_accepted_reading(sim: Simulator, tmp_path: Path) -> None:
    db = tmp_path / "buffer.db"
    config = AgentConfig(
        buffer=BufferConfig(path=db),
        mqtt=MqttConfig(url=f"mqtt://{LOOPBACK}:{free_port()}"),  # nobody there: nothing leaves the buffer
        devices=[meter(sdm630_port(sim), SDM630_POINTS)],
        pollers=[PollerConfig(device="meter-main", interval_s=0.1)],
    )
    agent = Agent(config)
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    await async_wait_until(lambda: agent.status().queue.readings_accepted >= 40, 15, "40 readings")
    stop.set()
    async with asyncio.timeout(15):
        await task
    accepted = agent.status().queue.readings_accepted
    with contextlib.closing(sqlite3.connect(db)) as conn:
        stored = conn.execute("SELECT COUNT(*) FROM readings").fetchone()[0]
    assert stored == accepted
    assert accepted % len(SDM630_POINTS) == 0  # whole polls only


async def test_plausibility_and_deadband_shape_what_is_sent(sim: Simulator, tmp_path: Path) -> None:
    db = tmp_path / "buffer.db"
    points = [
        ModbusPoint(
            name="voltage_l1", table="input", address=0x00, unit="V", deadband=1.0, max_silence_s=600
        ),
        ModbusPoint(name="total_power", table="input", address=0x34, unit="W", plausible=(0, 10)),  # too low
    ]
    config = AgentConfig(
        buffer=BufferConfig(path=db),
        mqtt=MqttConfig(url=f"mqtt://{LOOPBACK}:{free_port()}"),
        devices=[meter(sdm630_port(sim), points)],
        pollers=[PollerConfig(device="meter-main", interval_s=0.1)],
    )
    agent = Agent(config)
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    await async_wait_until(lambda: agent.status().queue.readings_accepted >= 10, 15, "10 readings")
    stop.set()
    async with asyncio.timeout(15):
        await task
    with contextlib.closing(sqlite3.connect(db)) as conn:
        rows = conn.execute("SELECT point, value, quality FROM readings ORDER BY seq").fetchall()
    voltages = [r for r in rows if r[0] == "voltage_l1"]
    powers = [r for r in rows if r[0] == "total_power"]
    assert len(voltages) == 1  # 220 V, steady: sent once, then held by the deadband
    assert len(powers) >= 9
    assert all(quality == "bad" and value is not None and value > 10 for _, value, quality in powers)
    latest = agent.latest.snapshot()
    assert {r.point for r in latest} == {"voltage_l1", "total_power"}  # status still sees every poll
