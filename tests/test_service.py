"""The agent as a whole: an orderly stop commits every reading it accepted."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path

from edge_agent.config import AgentConfig, BufferConfig, MqttConfig, PollerConfig
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
