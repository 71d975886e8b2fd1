"""One supervisor per device: opens the connection, reads each point group on its interval, reconnects
with full-jitter backoff while the device is down, and logs health only when it changes.

A device is `late` when no poll has been answered for LATE_INTERVALS of its shortest interval, whatever
its last known health (a poll that hangs, a stalled loop): `status` never shows `up` with a poll minutes old.
Reconnecting waits at most one poll interval, so a repaired device reads `up` at its next poll.
The first poll after the start may wait `first_poll_s` (phases.py spreads devices over their interval);
after a reconnect a device polls at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

import structlog

from edge_agent.acquisition.underway import PollsUnderway
from edge_agent.backoff import Backoff
from edge_agent.cancellation import raise_if_cancelling
from edge_agent.config import BacnetDevice, ModbusDevice, PollerConfig
from edge_agent.errors import DeviceError, DeviceGarbage, DeviceUnreachable
from edge_agent.protocols.base import PointResult, ProtocolClient
from edge_agent.protocols.watchdog import Watchdog
from edge_agent.readings import Quality, Reading, utc_now

log = structlog.get_logger("edge_agent.polling")
LATE_INTERVALS = 3.0  # no poll answered for this many intervals: `late`
RECONNECT_CAP_S = 60.0  # the longest wait between connection attempts, for a device polled less often
_GOOD, _BAD, _UNAVAILABLE = Quality.GOOD, Quality.BAD, Quality.UNAVAILABLE

ReadingSink = Callable[[list[Reading]], Awaitable[None]]
ClientFactory = Callable[[], ProtocolClient]


class Subscription(Protocol):
    """Values the device sends by itself (BACnet COV); the points it covers are not polled."""

    @property
    def cov_points(self) -> tuple[str, ...]: ...

    def __aiter__(self) -> AsyncIterator[PointResult]: ...


Subscribe = Callable[[ProtocolClient], AbstractAsyncContextManager[Subscription]]


class Health(StrEnum):
    UNKNOWN = "unknown"
    UP = "up"
    DEGRADED = "degraded"  # connected, but some points fail
    LATE = "late"  # no poll answered for LATE_INTERVALS intervals (hung, or the loop stalled)
    DOWN = "down"


@dataclass(frozen=True, slots=True)
class PollerStatistics:
    device: str
    health: Health
    polls: int
    failures: int
    last_success: datetime | None
    last_error: str | None


@dataclass
class _Group:
    points: tuple[str, ...]
    interval_s: float
    due: float = 0.0


class DevicePoller:
    def __init__(
        self,
        device: ModbusDevice | BacnetDevice,
        pollers: Sequence[PollerConfig],
        client_factory: ClientFactory,
        sink: ReadingSink,
        subscribe: Subscribe | None = None,
        *,
        first_poll_s: float = 0.0,
        underway: PollsUnderway | None = None,
    ) -> None:
        self.device = device
        self._underway = underway or PollsUnderway()  # shared with the reading path's writer
        self._first_poll_s = first_poll_s  # after the start; 0 once polling (a reconnect polls at once)
        self._units = {p.name: p.unit for p in device.points}
        self._groups = [
            _Group(tuple(p.points or self._units), p.interval_s) for p in pollers if p.device == device.name
        ]
        self._polled = sorted({name for group in self._groups for name in group.points})
        self._interval_s = min((g.interval_s for g in self._groups), default=RECONNECT_CAP_S)
        self._late_after_s: float | None = None  # while polling: LATE_INTERVALS of the shortest interval
        self._answered_at = 0.0  # monotonic: the last poll answered, or the start
        self._client_factory = client_factory
        self._sink = sink
        self._subscribe = subscribe
        self._health = Health.UNKNOWN
        self._polls = 0
        self._failures = 0
        self._last_success: datetime | None = None
        self._last_error: str | None = None
        self._client: ProtocolClient | None = None  # while connected: writes go through it

    async def write(self, point: str, value: float | None, priority: int | None = None) -> None:
        """Write one point through the device's live connection (None relinquishes, on BACnet). Raises
        DeviceUnreachable while the device is down, or any DeviceError the device answers with."""
        client = self._client
        if client is None:
            message = "not connected (the device is down or not polled)"
            raise DeviceUnreachable(self.device.name, self.device.address, message, "not connected")
        try:
            async with asyncio.timeout(self.device.timeout_s * 2):
                await client.write(point, value, priority)
        except TimeoutError as exc:
            message = f"write of {point}: no answer within {self.device.timeout_s * 2:g} s"
            raise DeviceUnreachable(self.device.name, self.device.address, message, "timeout") from exc

    async def priority_array(self, point: str) -> list[float | None] | None:
        """The point's BACnet priority slots through the live connection; None for a protocol without."""
        client = self._client
        if client is None:
            message = "not connected (the device is down or not polled)"
            raise DeviceUnreachable(self.device.name, self.device.address, message, "not connected")
        read = getattr(client, "read_priority_array", None)
        if read is None:
            return None
        try:
            async with asyncio.timeout(self.device.timeout_s * 2):
                slots: list[float | None] = await read(point)
        except TimeoutError as exc:
            message = f"priority array of {point}: no answer within {self.device.timeout_s * 2:g} s"
            raise DeviceUnreachable(self.device.name, self.device.address, message, "timeout") from exc
        return slots

    def statistics(self) -> PollerStatistics:
        health = self._health
        late = self._late_after_s is not None and time.monotonic() - self._answered_at > self._late_after_s
        if late and health is not Health.DOWN:
            health = Health.LATE
        return PollerStatistics(
            self.device.name, health, self._polls, self._failures, self._last_success, self._last_error
        )

    def _set_health(self, health: Health, error: DeviceError | None = None) -> None:
        self._last_error = str(error) if error else self._last_error
        if health is self._health:
            return
        if health is Health.UP:
            log.info("device up", device=self.device.name, address=self.device.address)
        elif health is Health.DEGRADED:
            log.warning("device degraded", device=self.device.name, error=str(error))
        else:
            log.warning("device down", device=self.device.name, error=str(error))
        self._health = health

    async def run(self) -> None:
        """Poll forever; the caller cancels. No failure of the device, or of the code talking to it,
        ends the loop: it is logged as the device going down, and retried with backoff."""
        if not self._groups:
            return
        self._answered_at = time.monotonic()
        self._late_after_s = LATE_INTERVALS * self._interval_s
        # Attempts at most one interval apart: a repaired device is back at its next poll, not a minute on.
        backoff = Backoff(base_s=min(0.5, self._interval_s), cap_s=min(RECONNECT_CAP_S, self._interval_s))
        while True:
            try:
                client = self._client_factory()
            except Exception as exc:  # a device entry the protocol layer cannot use
                await self._lost(self._as_device_error(exc, "cannot set up a client"))
                await asyncio.sleep(backoff.next_delay())
                continue
            try:
                async with asyncio.timeout(self.device.timeout_s):
                    await client.open()
                raise_if_cancelling()
                await self._poll_until_lost(client, backoff)
            except Exception as exc:
                await self._lost(self._as_device_error(exc, "cannot connect"))
            finally:
                with contextlib.suppress(Exception):
                    await client.close()
            await asyncio.sleep(backoff.next_delay())

    def _as_device_error(self, exc: Exception, message: str) -> DeviceError:
        if isinstance(exc, DeviceError):
            return exc
        if isinstance(exc, TimeoutError):
            return DeviceUnreachable(self.device.name, self.device.address, message, "timeout")
        # Not a device answer we know: say so loudly once, then treat it as the device being down.
        log.error("poller error", device=self.device.name, error=repr(exc), exc_info=exc)
        return DeviceGarbage(self.device.name, self.device.address, f"{message}: {exc!r}", type(exc).__name__)

    async def _poll_until_lost(self, client: ProtocolClient, backoff: Backoff) -> None:
        async with contextlib.AsyncExitStack() as session:
            on_cov: set[str] = set()
            if self._subscribe is not None:
                async with asyncio.timeout(self.device.timeout_s * 4):
                    subscription = await session.enter_async_context(self._subscribe(client))
                on_cov = set(subscription.cov_points)
                feed = asyncio.create_task(self._feed(subscription), name=f"cov {self.device.name}")
                session.push_async_callback(_stop, feed)
            groups = [
                _Group(tuple(p for p in g.points if p not in on_cov), g.interval_s) for g in self._groups
            ]
            self._client = client
            session.callback(setattr, self, "_client", None)
            polled = [g for g in groups if g.points]
            if not polled:  # everything arrives by COV, when it changes: no schedule to be late on
                self._late_after_s = None
                session.callback(setattr, self, "_late_after_s", LATE_INTERVALS * self._interval_s)
            await self._poll(client, polled, backoff)

    async def _feed(self, subscription: Subscription) -> None:
        async for result in subscription:
            await self._deliver([result])

    async def _poll(self, client: ProtocolClient, groups: list[_Group], backoff: Backoff) -> None:
        loop = asyncio.get_running_loop()
        if not groups:  # everything arrives by subscription
            await asyncio.Event().wait()
        start, self._first_poll_s = loop.time() + self._first_poll_s, 0.0
        for group in groups:
            group.due = start
        watchdog = Watchdog()  # bounds each poll
        try:
            while True:
                group = min(groups, key=lambda g: g.due)
                await asyncio.sleep(max(0.0, group.due - loop.time()))
                budget_s = client.read_budget_s(group.points)
                self._underway.begin()
                try:
                    with watchdog.within(budget_s):
                        results = await client.read(group.points)
                    raise_if_cancelling()
                    backoff.reset()
                    await self._deliver(results)
                except TimeoutError as exc:
                    message = f"no answer within {budget_s:g} s"
                    device, address = self.device.name, self.device.address
                    raise DeviceUnreachable(device, address, message, "timeout") from exc
                finally:
                    self._underway.end()
                # Keep the schedule; after a stall, skip missed slots instead of bursting to catch up.
                group.due = max(group.due + group.interval_s, loop.time())
        finally:
            watchdog.close()

    async def _deliver(self, results: list[PointResult]) -> None:
        now = utc_now()
        self._polls += 1
        self._answered_at = time.monotonic()
        device, units = self.device.name, self._units  # (this runs for every point of every poll)
        readings = [
            Reading(
                device,
                point,
                value,
                units[point],
                _BAD if failure is not None else _UNAVAILABLE if unavailable else _GOOD,
                now,
            )
            for point, value, failure, unavailable in results
        ]
        error = next((r.error for r in results if r.error is not None), None)
        if error is not None:
            self._failures += 1
            self._set_health(Health.DEGRADED, error)
        else:
            self._last_success = now
            self._set_health(Health.UP)
        await self._sink(readings)

    async def _lost(self, error: DeviceError) -> None:
        """Record the loss once: every point's quality turns bad, then nothing until the device is back."""
        self._failures += 1
        if self._health is Health.DOWN:
            self._last_error = str(error)
            return
        self._set_health(Health.DOWN, error)
        now = utc_now()
        await self._sink(
            [
                Reading(self.device.name, name, None, self._units[name], Quality.BAD, now)
                for name in self._polled
            ]
        )


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
