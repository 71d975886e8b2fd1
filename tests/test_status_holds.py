"""The status of an agent without a control loop still lists the writes its journal keeps: a previous run's
control holds not given back yet, and central's `write_point`s (issue 20: `control` listed none after a
crash while a write of ours was still on a controller)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from edge_agent.config import AgentConfig
from edge_agent.service.agent import Agent
from tests.test_holds import hold, journal_with


async def test_status_without_control_lists_the_journals_holds(tmp_path: Path) -> None:
    left = hold("room1/cooling_setpoint", 27.5)
    central = replace(hold("ahu/fan_limit", 60.0, priority=12), owner="central", lease_until=None)
    (await journal_with(tmp_path, left, central)).close()
    agent = Agent(AgentConfig.model_validate({"buffer": {"path": str(tmp_path / "b.db")}}))
    try:
        assert agent.controller is None
        held = {(w.point, w.holder, w.priority, w.value) for w in agent.status().holds}
    finally:
        agent.journal.close()
    assert held == {("room1/cooling_setpoint", "recovered", 10, 27.5), ("ahu/fan_limit", "central", 12, 60.0)}
