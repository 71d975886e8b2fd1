"""A device supervisor keeps its schedule, survives a dead device, and logs only state changes."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Sequence

import pytest
from structlog.testing import capture_logs

from edge_agent.acquisition.poller import DevicePoller, Health
from edge_agent.config import PollerConfig
from edge_agent.protocols.base import PointResult
from edge_agent.protocols.modbus.client import ModbusClient
from edge_agent.readings import Quality, Reading
from edge_sim.devices.meters.base import MeterReading
from edge_sim.devices.meters.sdm630 import Sdm630
from edge_sim.devices.modbus_servers import ModbusTcpMeterServer
from tests.support import LOOPBACK, async_wait_until, free_port
from tests.test_modbus import SDM630_POINTS, meter

pytestmark = pytest.mark.integration


@contextlib.asynccontextmanager
async def meter_on(port: int, power_w: float) -> AsyncIterator[ModbusTcpMeterServer]:
    async with ModbusTcpMeterServer(LOOPBACK, port, [Sdm630(1)]) as server:
        await server.show(1, MeterReading(power_w, 1000.0, 0.0, power_w, power_w))
        yield server


async def test_device_down_and_back_is_logged_once_each_way() -> None:
    port = free_port()
    device = meter(port, SDM630_POINTS[:2], timeout_s=0.5)
    received: list[Reading] = []

    async def sink(readings: list[Reading]) -> None:
        received.extend(readings)

    poller = DevicePoller(
        device, [PollerConfig(device="meter-main", interval_s=0.1)], lambda: ModbusClient(device), sink
    )
    with capture_logs() as logs:
        task: asyncio.Task[None] | None = None
        try:
            async with meter_on(port, 5000.0):
                task = asyncio.create_task(poller.run())
                await async_wait_until(lambda: len(received) >= 10, 5, "readings")
                assert poller.statistics().health is Health.UP
            await async_wait_until(lambda: poller.statistics().health is Health.DOWN, 5, "down")
            down_at = len(received)
            await asyncio.sleep(1.0)  # several missed intervals and reconnect attempts
            assert len(received) == down_at  # bad readings once, not at every attempt
            async with meter_on(port, 7000.0):
                await async_wait_until(lambda: poller.statistics().health is Health.UP, 15, "back up")
                await async_wait_until(lambda: received[-2].value == 7000.0, 5, "the new power reading")
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    events = [e["event"] for e in logs]
    assert events == ["device up", "device down", "device up"]
    lost = [r for r in received if r.quality is Quality.BAD]
    assert {r.point for r in lost} == {"total_power", "import_energy"}
    assert len(lost) == 2
    assert all(r.value is None for r in lost)
    assert poller.statistics().failures >= 2


async def test_an_interval_is_kept_while_the_device_answers() -> None:
    port = free_port()
    device = meter(port, SDM630_POINTS[:1])
    stamps: list[float] = []

    async def sink(readings: list[Reading]) -> None:
        stamps.append(asyncio.get_running_loop().time())

    poller = DevicePoller(
        device, [PollerConfig(device="meter-main", interval_s=0.2)], lambda: ModbusClient(device), sink
    )
    async with meter_on(port, 1.0):
        task = asyncio.create_task(poller.run())
        await async_wait_until(lambda: len(stamps) >= 11, 10, "eleven polls")
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    gaps = sorted(b - a for a, b in itertools.pairwise(stamps))
    assert gaps[len(gaps) // 2] == pytest.approx(0.2, abs=0.05)  # the median: one stall on CI is fine


class _FlakyClient:
    """A client whose library blows up in a way no DeviceError describes, a given number of times."""

    failures_left = 3

    async def open(self) -> None:
        if _FlakyClient.failures_left > 0:
            _FlakyClient.failures_left -= 1
            raise ValueError("bacpypes3 could not parse something")

    async def close(self) -> None:
        pass

    def read_budget_s(self, points: Sequence[str]) -> float:
        return 1.0

    async def read(self, points: Sequence[str]) -> list[PointResult]:
        return [PointResult(name, 1.0) for name in points]

    async def write(self, point: str, value: float | None, priority: int | None = None) -> None:
        pass


async def test_an_unexpected_error_is_a_device_down_not_a_dead_poller() -> None:
    device = meter(free_port(), SDM630_POINTS[:1])
    received: list[Reading] = []

    async def sink(readings: list[Reading]) -> None:
        received.extend(readings)

    poller = DevicePoller(device, [PollerConfig(device="meter-main", interval_s=0.1)], _FlakyClient, sink)
    with capture_logs() as logs:
        task = asyncio.create_task(poller.run())
        try:
            await async_wait_until(lambda: poller.statistics().health is Health.UP, 20, "recovery")
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    events = [e["event"] for e in logs]
    assert events.count("device down") == 1
    assert events[-1] == "device up"
    assert "poller error" in events  # said loudly, with the traceback
    assert received[0].quality is Quality.BAD
    assert received[-1].quality is Quality.GOOD
