"""Devices polled on one interval take evenly spread phases within it (the agent's pollers do not all fire
at the same instant), and each still polls on its own interval from its phase."""

from __future__ import annotations

import sqlite3
import statistics
from collections import Counter, defaultdict
from itertools import pairwise
from pathlib import Path

import pytest

from edge_agent.acquisition.phases import PHASES, STAGGER_MAX_S, start_offsets
from edge_agent.config import AgentConfig
from edge_sim.devices.meters.sdm630 import Sdm630
from edge_sim.devices.modbus_servers import ModbusTcpMeterServer
from tests.support import LOOPBACK, async_wait_until, free_port, running_agent, sdm630_devices

METERS = 10
INTERVAL_S = 1.0


def test_devices_on_one_interval_are_spread_evenly_over_it_in_a_few_groups() -> None:
    assert start_offsets([1.0] * 4) == [0.0, 0.5, 0.0, 0.5]
    offsets = start_offsets([1.0] * 50)
    assert sorted(Counter(offsets).values()) == [25, 25]  # each group shares its wake-ups


def test_each_interval_spreads_its_own_devices_and_unpolled_ones_wait_for_nothing() -> None:
    offsets = start_offsets([2.0, 60.0, None, 2.0, 60.0])
    assert offsets == [0.0, 0.0, 0.0, 1.0, STAGGER_MAX_S / 2]


def test_a_long_interval_spreads_its_first_polls_over_seconds_not_the_interval() -> None:
    offsets = start_offsets([900.0] * 500)
    assert max(offsets) < STAGGER_MAX_S  # a start reads every meter within seconds
    assert len(set(offsets)) == PHASES


def config(tmp_path: Path, port: int) -> AgentConfig:
    devices = sdm630_devices(port, METERS, ["total_power"])
    return AgentConfig.model_validate(
        {
            "buffer": {"path": str(tmp_path / "buffer.db")},
            "mqtt": {"url": f"mqtt://{LOOPBACK}:{free_port()}"},  # no broker: readings stay buffered
            "devices": devices,
            "pollers": [{"device": d["name"], "interval_s": INTERVAL_S} for d in devices],
        }
    )


@pytest.mark.integration
async def test_meters_on_one_endpoint_poll_at_spread_phases_each_on_its_interval(tmp_path: Path) -> None:
    server = ModbusTcpMeterServer(LOOPBACK, 0, [Sdm630(unit_id=u) for u in range(1, METERS + 1)])
    async with server, running_agent(config(tmp_path, server.port)) as agent:

        def polled_thrice() -> bool:
            return all(s.polls >= 3 for s in agent.status().devices)

        await async_wait_until(polled_thrice, 30, "three polls of every meter")
    times: defaultdict[str, list[float]] = defaultdict(list)
    with sqlite3.connect(tmp_path / "buffer.db") as db:
        for device, ts_us in db.execute("SELECT device, ts_us FROM readings ORDER BY seq"):
            times[device].append(ts_us / 1e6)
    assert len(times) == METERS
    # Each meter keeps its interval from its own phase (a poll's time is when its answer came).
    gaps = [later - earlier for polls in times.values() for earlier, later in pairwise(polls)]
    assert statistics.median(gaps) == pytest.approx(INTERVAL_S, abs=0.1)
    # The first polls spread over the interval in PHASES groups, not all at once.
    firsts = sorted(polls[0] for polls in times.values())
    assert firsts[-1] - firsts[0] > INTERVAL_S / 2
    steps = [later - earlier for earlier, later in pairwise(firsts)]
    assert sum(step > INTERVAL_S / PHASES / 2 for step in steps) == PHASES - 1
