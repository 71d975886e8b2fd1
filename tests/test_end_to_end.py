"""A reading's whole journey on real parts, each in its own process: edge-sim serves the devices,
edge-agent polls them, mosquitto brokers, and this test subscribes as the central server would."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from edge_agent.config import BacnetConfig
from edge_agent.protocols.bacnet.client import local_stack
from edge_agent.uplink.payloads import ReadingOut
from edge_sim.site_meters import METERS, RS485
from tests.support import (
    LOOPBACK,
    Broker,
    Central,
    async_wait_until,
    central_subscriber,
    free_base_port,
    mbpoll_float,
)
from tests.test_uplink import GATEWAY

pytestmark = pytest.mark.integration

SIM_DEVICES_WITHOUT_SERIAL_BUS = len([m for m in METERS if m.host != RS485]) + 14  # meters + controllers

AGENT_CONFIG = """
[gateway]
id = "{gateway}"

[buffer]
path = "{buffer}"

[mqtt]
url = "{broker}"

[bacnet]
local_address = "127.0.0.1:0"

[log]
format = "json"

[[devices]]
name = "meter-main"
protocol = "modbus-tcp"
host = "127.0.0.1"
port = {meter_port}
points = [
    {{ name = "total_power", table = "input", address = 0x0034, unit = "W" }},
    {{ name = "import_energy", table = "input", address = 0x0048, unit = "kWh" }},
]

[[devices]]
name = "room-101"
protocol = "bacnet-ip"
host = "127.0.0.1:{room_port}"
instance = 1301
points = [{{ name = "zone_temperature", object = "analog-input,1", unit = "degC" }}]

[[pollers]]
device = "meter-main"
interval_s = 0.2

[[pollers]]
device = "room-101"
interval_s = 0.2
"""


@contextlib.asynccontextmanager
async def process(*args: str, ready_lines: int = 0) -> AsyncIterator[asyncio.subprocess.Process]:
    """Start `python -m ...`; wait for its first lines; SIGTERM it on the way out and expect exit 0."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        async with asyncio.timeout(20):
            for _ in range(ready_lines):
                assert proc.stdout is not None
                line = await proc.stdout.readline()
                assert line, (
                    f"{args[1]} ended early: {(await proc.stderr.read()).decode() if proc.stderr else ''}"
                )
        yield proc
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(15):
            _, err = await proc.communicate()
        assert proc.returncode == 0, f"{args[1]} exited {proc.returncode}: {err.decode()[-2000:]}"


def latest(central: Central, point: str) -> ReadingOut | None:
    found = [r for b in central.batches for r in b.readings if r.point == point]
    return found[-1] if found else None


def buffered_seqs(db: Path) -> tuple[int | None, int]:
    """(lowest sequence number still buffered, rows buffered), read as another process would."""
    with contextlib.closing(sqlite3.connect(db, timeout=5)) as conn:
        low, count = conn.execute("SELECT MIN(seq), COUNT(*) FROM readings").fetchone()
    return low, count


async def bacnet_zone_temperature(port: int) -> float:
    async with local_stack(BacnetConfig(local_address=f"{LOOPBACK}:0")) as stack, asyncio.timeout(5):
        value = await stack.app.read_property(f"{LOOPBACK}:{port}", "analog-input,1", "present-value")
    return float(value)


async def test_readings_travel_from_simulator_to_subscriber(broker: Broker, tmp_path: Path) -> None:
    base = free_base_port()
    db = tmp_path / "buffer.db"
    config = tmp_path / "agent.toml"
    config.write_text(
        AGENT_CONFIG.format(
            gateway=GATEWAY, buffer=db, broker=broker.url, meter_port=base + 1, room_port=base + 13
        )
    )
    # A slow building clock: values stay put while the independent clients read them.
    sim_args = ("-m", "edge_sim", "run", "--speed", "0.001", "--base-port", str(base), "--no-serial-bus")
    async with (
        central_subscriber(broker.port, GATEWAY) as central,
        process(*sim_args, ready_lines=SIM_DEVICES_WITHOUT_SERIAL_BUS),
        process("-m", "edge_agent", "run", "--config", str(config)),
    ):
        await async_wait_until(
            lambda: (
                latest(central, "total_power") is not None and latest(central, "zone_temperature") is not None
            ),
            20,
            "power and temperature at the subscriber",
        )
        power = latest(central, "total_power")
        temperature = latest(central, "zone_temperature")
        assert power is not None
        assert temperature is not None
        assert (power.device, power.unit, power.quality) == ("meter-main", "W", "good")
        assert (temperature.unit, temperature.quality) == ("degC", "good")
        assert power.value == pytest.approx(await mbpoll_float(base + 1, 53), rel=1e-5)
        assert temperature.value == pytest.approx(await bacnet_zone_temperature(base + 13), abs=1e-3)

        # Freeze the broker: publishes go unacknowledged, so nothing may leave the buffer.
        received_before = max(central.seqs)
        broker.pause()
        try:
            await asyncio.sleep(2.0)
            low_paused, count_paused = buffered_seqs(db)
            received_paused = max(central.seqs)
            await asyncio.sleep(1.0)
            low_later, count_later = buffered_seqs(db)
        finally:
            broker.resume()
        assert low_paused is not None
        assert low_later == low_paused  # no delete while no PUBACK came
        assert count_later > count_paused  # polling went on, into the buffer
        # Rows are deleted oldest first, so everything below the lowest buffered seq was deleted: each of
        # those must have gone through the broker to the subscriber already.
        assert received_paused >= low_paused - 1

        # Released, the broker acknowledges; every reading arrives, none missing.
        await async_wait_until(lambda: max(central.seqs) >= low_later + count_later, 20, "the backlog")
        seqs = sorted(set(central.seqs))
        assert seqs == list(range(seqs[0], seqs[-1] + 1)), "a gap in the sequence"
        assert max(central.seqs) > received_before
