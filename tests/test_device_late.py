"""A device's health as `status` shows it: `late` when its polls stop being answered (not `up` with a poll
minutes old), and `up` again at the first good poll after a repair, not after a minute of backoff."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence

import pytest

from edge_agent.acquisition import poller as poller_module
from edge_agent.acquisition.poller import DevicePoller, Health
from edge_agent.backoff import Backoff
from edge_agent.config import PollerConfig
from edge_agent.errors import DeviceUnreachable
from edge_agent.protocols.base import PointResult
from edge_agent.readings import Reading
from tests.support import async_wait_until
from tests.test_modbus import SDM630_POINTS, meter

INTERVAL_S = 0.1


class Meter:
    """A client of a meter that the test repairs, breaks or silences."""

    def __init__(self) -> None:
        self.answering = asyncio.Event()
        self.answering.set()
        self.refusals = 0  # connection attempts still to refuse

    async def open(self) -> None:
        if self.refusals:
            self.refusals -= 1
            raise DeviceUnreachable("meter-main", "127.0.0.1:502", "connection refused", "refused")

    def read_budget_s(self, points: Sequence[str]) -> float:
        return 3600.0  # a read that hangs is not cut short: only `late` can tell

    async def close(self) -> None:
        return None

    async def read(self, points: Sequence[str]) -> list[PointResult]:
        await self.answering.wait()
        return [PointResult(point, 1.0) for point in points]

    async def write(self, point: str, value: float | None, priority: int | None = None) -> None:
        return None


async def _sink(readings: list[Reading]) -> None:
    return None


@contextlib.asynccontextmanager
async def polling(client: Meter) -> AsyncIterator[DevicePoller]:
    device = meter(502, SDM630_POINTS[:1])
    poller = DevicePoller(
        device, [PollerConfig(device="meter-main", interval_s=INTERVAL_S)], lambda: client, _sink
    )
    task = asyncio.create_task(poller.run())
    try:
        yield poller
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_meter_that_stops_answering_reads_late_not_up() -> None:
    client = Meter()
    async with polling(client) as poller:
        await async_wait_until(lambda: poller.statistics().health is Health.UP, 5, "up")
        client.answering.clear()  # the next read hangs: no error, no answer
        await async_wait_until(lambda: poller.statistics().health is not Health.UP, 5, "not up")
        assert poller.statistics().health is Health.LATE
        client.answering.set()
        await async_wait_until(lambda: poller.statistics().health is Health.UP, 5, "up again")


async def test_a_repaired_device_is_tried_again_within_one_poll_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ceilings: list[float] = []

    class Recorded(Backoff):
        def next_delay(self) -> float:
            ceilings.append(min(self.cap_s, self.base_s * 2 ** min(self.attempt, 32)))
            self.attempt += 1
            return 0.0

    monkeypatch.setattr(poller_module, "Backoff", Recorded)
    client = Meter()
    client.refusals = 12  # down for a dozen attempts: long enough for the backoff to grow to its cap
    async with polling(client) as poller:
        await async_wait_until(lambda: poller.statistics().health is Health.UP, 5, "up after the repair")
    assert len(ceilings) >= 12
    assert max(ceilings) <= INTERVAL_S  # never a wait longer than one poll interval between attempts
