"""One of ten devices misbehaves; the other nine keep their schedule (issue 4's acceptance)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from edge_agent.config import AgentConfig
from edge_agent.readings import Quality
from edge_sim.devices.modbus_servers import ModbusTcpMeterServer
from edge_sim.faults import Fault, FaultKind
from edge_sim.simulator import Simulator
from tests.support import LOOPBACK, async_wait_until, free_port, running_agent

pytestmark = pytest.mark.integration

VICTIM = "library-lighting-meter"
INTERVAL_S = 0.5
RUN_S = 3.0


def devices(sim: Simulator) -> list[dict[str, Any]]:
    def port(host: str) -> int:
        server = sim.hosts[host]
        assert isinstance(server, ModbusTcpMeterServer)
        return server.port

    modbus = [
        ("library-main-meter", "main-library", 1, "schneider-iem3255"),
        ("info-centre-main-meter", "main-info-centre", 1, "eastron-sdm630"),
        ("library-hvac-meter", "gateway", 1, "abb-b23"),
        ("library-lighting-meter", "gateway", 2, "eastron-sdm630"),
        ("library-plugs-meter", "gateway", 3, "eastron-sdm630"),
    ]
    entries: list[dict[str, Any]] = [
        {
            "name": name,
            "protocol": "modbus-tcp",
            "host": LOOPBACK,
            "port": port(host),
            "unit_id": unit,
            "profile": profile,
            "only_points": ["total_power", "frequency"],
            "timeout_s": 0.4,
        }
        for name, host, unit, profile in modbus
    ]
    for name in (
        "library-plant",
        "library-ahu",
        "library-reading-1-vav",
        "library-lobby-vav",
        "info-centre-ahu",
    ):
        info = sim.controller(name).info
        profile = {"plant": "edge-sim-plant", "ahu": "edge-sim-ahu"}.get(info.kind, "edge-sim-vav")
        entries.append(
            {
                "name": name,
                "protocol": "bacnet-ip",
                "host": info.address,
                "instance": info.instance,
                "profile": profile,
            }
        )
    return entries


@pytest.mark.parametrize(
    "fault",
    [
        Fault(FaultKind.OFFLINE),
        Fault(FaultKind.SLOW, delay_s=1.0),
        Fault(FaultKind.EXCEPTION, code=4),
        Fault(FaultKind.CORRUPT),
    ],
    ids=lambda f: str(f.kind),
)
async def test_nine_keep_their_interval_while_one_misbehaves(
    sim: Simulator, tmp_path: Path, fault: Fault
) -> None:
    entries = devices(sim)
    config = AgentConfig.model_validate(
        {
            "buffer": {"path": str(tmp_path / "b.db")},
            "mqtt": {"url": f"mqtt://{LOOPBACK}:{free_port()}"},
            "bacnet": {"local_address": f"{LOOPBACK}:0"},
            "devices": entries,
            "pollers": [{"device": e["name"], "interval_s": INTERVAL_S} for e in entries],
        }
    )
    with capture_logs() as logs:
        async with running_agent(config) as agent:
            await async_wait_until(lambda: all(d.polls > 0 for d in agent.status().devices), 10, "all polled")
            await sim.inject(VICTIM, fault)
            before = {d.device: d.polls for d in agent.status().devices}
            await asyncio.sleep(RUN_S)
            during = {d.device: d.polls - before[d.device] for d in agent.status().devices}
            victim_quality = {r.quality for r in agent.latest.snapshot() if r.device == VICTIM}
            await sim.inject(VICTIM, None)
            await async_wait_until(
                lambda: next(d for d in agent.status().devices if d.device == VICTIM).health == "up",
                30,
                "recovery",
            )
    expected = RUN_S / INTERVAL_S
    healthy = {name: polls for name, polls in during.items() if name != VICTIM}
    assert all(polls >= expected - 2 for polls in healthy.values()), healthy
    assert victim_quality <= {Quality.BAD, Quality.STALE}, victim_quality
    victim_events = [
        e["event"] for e in logs if e.get("device") == VICTIM and e["event"].startswith("device ")
    ]
    assert victim_events[0] == "device up"
    assert victim_events[1] in ("device down", "device degraded")
    assert victim_events[2:] == ["device up"]  # one line going bad, one coming back
    others = [e for e in logs if e.get("device") not in (VICTIM, None) and e["event"] != "device up"]
    assert [e["event"] for e in others if e["event"].startswith("device ")] == []
