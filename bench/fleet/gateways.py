"""A worker process of the fleet: several gateways, each the agent's real Uplink
(edge_agent/uplink/session.py) over its real Buffer (a SQLite file of its own), fed by a simple meter at a
fixed rate. The worker samples every gateway's uplink and buffer state for the bench and, when told, stops
the meters, then stops."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

import structlog

from edge_agent.config import MqttConfig
from edge_agent.readings import Quality, Reading
from edge_agent.store.buffer import Buffer
from edge_agent.uplink.session import Uplink, UplinkState

SAMPLE_S = 0.2  # how often every gateway's state is sampled
TOPIC_PREFIX = "fleet"


@dataclass(frozen=True)
class WorkerSpec:
    index: int
    gateways: list[tuple[str, list[str]]]  # gateway id, its broker URLs (its home node first)
    workdir: Path
    readings_per_tick: int
    tick_s: float
    start_spread_s: float  # gateways start at random within this many seconds


@dataclass(frozen=True, slots=True)
class Sample:
    """One gateway at one instant (time.time())."""

    gateway: str
    at: float
    connected: bool
    connects: int
    broker: str
    depth: int
    oldest_age_s: float | None  # how long the oldest unacknowledged reading has waited
    last_seq: int


@dataclass(frozen=True)
class Final:
    gateway: str
    last_seq: int  # readings 1..last_seq were buffered
    dropped: int
    depth: int
    connects: int
    published: int


def mqtt_config(urls: list[str]) -> MqttConfig:
    """The gateway's [mqtt] table: the broker list where the agent takes one (`urls`, the failover interface
    of issue 21), else the first of them alone."""
    fields: dict[str, Any] = {"topic_prefix": TOPIC_PREFIX}
    if "urls" in MqttConfig.model_fields:
        fields["urls"] = urls
    else:
        fields["url"] = urls[0]
    return MqttConfig.model_validate(fields)


def run_worker(spec: WorkerSpec, reports: Queue[Any], stop_meters: Event, finish: Event) -> None:
    """The worker process' entry point."""
    log_file = (spec.workdir / f"worker-{spec.index}.log").open("a")
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.PrintLoggerFactory(log_file),
    )
    logging.basicConfig(level=logging.WARNING, stream=log_file, force=True)
    asyncio.run(_worker(spec, reports, stop_meters, finish))
    log_file.close()


class _Gateway:
    def __init__(self, gateway_id: str, urls: list[str], workdir: Path) -> None:
        self.id = gateway_id
        self.urls = urls
        self.buffer = Buffer(workdir / f"{gateway_id}.db")
        self.uplink: Uplink | None = None

    def sample(self, now: float) -> Sample:
        stats = self.buffer.statistics()
        up = self.uplink.statistics() if self.uplink is not None else None
        oldest = None if stats.oldest_ts is None else now - stats.oldest_ts.timestamp()
        return Sample(
            self.id,
            now,
            up is not None and up.state is UplinkState.CONNECTED,
            up.connects if up is not None else 0,
            up.broker if up is not None else "",
            stats.depth,
            oldest,
            self.buffer.last_seq,
        )

    def final(self) -> Final:
        stats = self.buffer.statistics()
        up = self.uplink.statistics() if self.uplink is not None else None
        return Final(
            self.id,
            self.buffer.last_seq,
            stats.dropped,
            stats.depth,
            up.connects if up is not None else 0,
            up.readings_published if up is not None else 0,
        )


async def _meter(gateway: _Gateway, per_tick: int, tick_s: float, stop: Event) -> None:
    """Readings at a fixed rate: `per_tick` points every `tick_s`, on the tick."""
    rng = random.Random(gateway.id)
    loop = asyncio.get_running_loop()
    next_tick = loop.time()
    while not stop.is_set():
        ts = datetime.now(UTC)
        readings = [
            Reading("meter-1", f"p{i}", round(rng.uniform(0, 100), 3), "kW", Quality.GOOD, ts)
            for i in range(per_tick)
        ]
        await gateway.buffer.append(readings)
        next_tick += tick_s
        await asyncio.sleep(max(0.0, next_tick - loop.time()))


async def _run_gateway(gateway: _Gateway, spec: WorkerSpec, stop: Event) -> None:
    await asyncio.sleep(random.uniform(0, spec.start_spread_s))
    gateway.uplink = Uplink(mqtt_config(gateway.urls), gateway.id, gateway.buffer)
    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(gateway.uplink.run())
        await _meter(gateway, spec.readings_per_tick, spec.tick_s, stop)


async def _wait(event: Event) -> None:
    while not event.is_set():  # noqa: ASYNC110 - a multiprocessing event, polled
        await asyncio.sleep(0.1)


async def _worker(spec: WorkerSpec, reports: Queue[Any], stop_meters: Event, finish: Event) -> None:
    gateways = [_Gateway(gid, urls, spec.workdir) for gid, urls in spec.gateways]
    async with contextlib.AsyncExitStack() as stack:
        for gateway in gateways:
            await stack.enter_async_context(gateway.buffer)
        started = os.times()
        tasks = [asyncio.create_task(_run_gateway(g, spec, stop_meters)) for g in gateways]
        try:
            while not finish.is_set():
                now = time.time()
                reports.put(("samples", [g.sample(now) for g in gateways]))
                await asyncio.sleep(SAMPLE_S)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        ended = os.times()
        cpu = (ended.user - started.user) + (ended.system - started.system)
        reports.put(("final", spec.index, cpu, [g.final() for g in gateways]))
