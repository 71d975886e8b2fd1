"""The agent as a whole: an orderly stop commits every reading it accepted."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest

from edge_agent.clock import ManualClock
from edge_agent.config import AgentConfig, BufferConfig, ModbusPoint, MqttConfig, PollerConfig
from edge_sim.simulator import Simulator
from tests.support import LOOPBACK, async_wait_until, free_port, running_agent
from tests.test_modbus import SDM630_POINTS, meter, sdm630_port

pytestmark = pytest.mark.integration


async def test_stop_commits_every_accepted_reading(sim: Simulator, tmp_path: Path) -> None:
    db = tmp_path / "buffer.db"
    config = AgentConfig(
        buffer=BufferConfig(path=db),
        mqtt=MqttConfig(url=f"mqtt://{LOOPBACK}:{free_port()}"),  # nobody there: nothing leaves the buffer
        devices=[meter(sdm630_port(sim), SDM630_POINTS)],
        pollers=[PollerConfig(device="meter-main", interval_s=0.1)],
    )
    async with running_agent(config) as agent:
        await async_wait_until(lambda: agent.status().queue.readings_accepted >= 40, 15, "40 readings")
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
    async with running_agent(config) as agent:
        await async_wait_until(lambda: agent.status().queue.readings_accepted >= 10, 15, "10 readings")
    with contextlib.closing(sqlite3.connect(db)) as conn:
        rows = conn.execute("SELECT point, value, quality FROM readings ORDER BY seq").fetchall()
    voltages = [r for r in rows if r[0] == "voltage_l1"]
    powers = [r for r in rows if r[0] == "total_power"]
    assert len(voltages) == 1  # 220 V, steady: sent once, then held by the deadband
    assert len(powers) >= 9
    assert all(quality == "bad" and value is not None and value > 10 for _, value, quality in powers)
    latest = agent.latest.snapshot()
    assert {r.point for r in latest} == {"voltage_l1", "total_power"}  # status still sees every poll


async def test_cov_points_arrive_without_polling(sim: Simulator, clock: ManualClock, tmp_path: Path) -> None:
    """A point on COV changes between polls, and the change reaches the agent at once."""
    info = sim.controller("library-reading-1-vav").info
    config = AgentConfig.model_validate(
        {
            "buffer": {"path": str(tmp_path / "b.db")},
            "mqtt": {"url": f"mqtt://{LOOPBACK}:{free_port()}"},
            "bacnet": {"local_address": f"{LOOPBACK}:0"},
            "devices": [
                {
                    "name": "vav",
                    "protocol": "bacnet-ip",
                    "host": info.address,
                    "instance": info.instance,
                    "profile": "edge-sim-vav",
                    "only_points": ["zone_temperature", "cooling_setpoint"],
                    "points": [{"name": "zone_temperature", "cov": True}],
                }
            ],
            "pollers": [{"device": "vav", "interval_s": 3600}],  # polled once an hour: COV or nothing
        }
    )
    zone = sim.site.building("library").zone("reading-1")
    async with running_agent(config) as agent:
        await async_wait_until(
            lambda: agent.latest.get("vav/zone_temperature") is not None, 10, "first value"
        )
        zone.overrides.cooling_sp = 30.0  # let the room warm up
        for _ in range(10):  # 30 building minutes
            clock.advance(180)
            await sim.step()
        await async_wait_until(
            lambda: (
                (r := agent.latest.get("vav/zone_temperature")) is not None
                and abs((r.value or 0) - zone.thermal.t_air) < 0.11
            ),
            10,
            "the COV notification",
        )
    polls = next(d for d in agent.status().devices if d.device == "vav").polls
    assert polls >= 3  # the one poll of cooling_setpoint, and COV notifications
