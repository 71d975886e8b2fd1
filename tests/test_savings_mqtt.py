"""The daily savings report end to end: `edge-agent run` on building time crosses midnight, and the closed
day's report reaches the central broker on .../savings, lands in the ledger, and today's shows in status."""

from __future__ import annotations

import asyncio
import json
import signal
from datetime import datetime
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from edge_agent.clock import ScaledClock
from edge_agent.control.savings.baseline import fit_towt
from edge_sim.baseline_study import hourly_samples, record
from edge_sim.control_study import opening_hours
from edge_sim.simulator import Simulator
from tests.support import LOOPBACK, Broker, agent_process, free_base_port
from tests.test_cli_local import status
from tests.test_control_bacnet import GATEWAY, agent_toml

pytestmark = pytest.mark.integration

START = "2026-08-05T23:45:00+09:00"
SPEED = 300.0  # five building minutes a second: midnight comes after three seconds, once the agent is up


async def test_a_closed_day_is_reported_upstream_and_in_the_ledger(broker: Broker, tmp_path: Path) -> None:
    clock = ScaledClock(datetime.fromisoformat(START), SPEED)
    reports: list[dict[str, Any]] = []
    async with (
        Simulator(clock, free_base_port(), serial_bus=False, control=False) as sim,
        aiomqtt.Client(LOOPBACK, broker.port, identifier="carbon-platform") as central,
    ):
        library = sim.site.building("library")
        baseline = fit_towt(hourly_samples(record("summer", "library", seed=1)), opening_hours(library))
        (tmp_path / "baseline.json").write_text(baseline.to_json())
        config = tmp_path / "agent.toml"
        text = agent_toml(sim, broker, tmp_path).replace('mode = "active"', 'mode = "shadow"')
        config.write_text(
            text.replace("[control]\n", f'[control]\nbaseline = "{tmp_path / "baseline.json"}"\n')
        )
        await central.subscribe(f"edge/{GATEWAY}/savings", qos=1)
        with (tmp_path / "agent.log").open("wb") as log:
            clock_options = ("--clock-speed", str(SPEED), "--clock-start", START)
            agent = await agent_process(config, *clock_options, stderr=log)
        try:
            async with asyncio.timeout(30):
                async for message in central.messages:
                    assert isinstance(message.payload, bytes)
                    reports.append(json.loads(message.payload))
                    break
            today = (await status(config))["control"]["savings_today"]
        finally:
            agent.send_signal(signal.SIGTERM)
            async with asyncio.timeout(45):
                await agent.wait()
        assert agent.returncode == 0, (tmp_path / "agent.log").read_text()[-3000:]

    (report,) = reports
    assert report["gateway"] == GATEWAY
    assert report["day"] == "2026-08-05"
    assert report["final"] is True
    assert report["baseline_model"] == "towt"
    assert 0 < report["hours_covered"] <= 15 / 60 + 1e-6  # the agent saw the day's last 15 minutes at most
    actual, expected = report["actual"], report["baseline"]
    assert 1 < actual["energy_kwh"] / report["hours_covered"] < 400  # the library's night-time demand, kW
    assert 0.5 < expected["energy_kwh"] / actual["energy_kwh"] < 2  # shadow mode: the baseline fits
    assert report["avoided"]["energy_kwh"] == expected["energy_kwh"] - actual["energy_kwh"]
    assert actual["emissions_t"] == actual["energy_kwh"] / 1000 * report["emission_factor_t_per_mwh"]
    assert report["emission_factor_t_per_mwh"] == 0.4173
    uncertainty = report["uncertainty"]  # from the fitted baseline's residuals, over the minutes covered
    assert uncertainty["reporting_hours"] == report["hours_covered"]
    assert uncertainty["fit_hours"] == 7 * 24
    assert 0 < uncertainty["kwh_68"] < uncertainty["kwh_90"]
    assert uncertainty["within_noise"] == (abs(report["avoided"]["energy_kwh"]) < uncertainty["kwh_68"])
    ledger = (tmp_path / "savings.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in ledger] == [report]
    assert today["day"] == "2026-08-06"
    assert today["final"] is False
