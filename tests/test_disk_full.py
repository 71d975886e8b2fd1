"""Issue 17: a disk that fills before the buffer's cap is a state, not a hang. On a 2 MB tmpfs with the broker
down, the real agent keeps polling, drops its oldest readings (counted), says "disk full" in `status`,
reconnects and delivers as soon as the broker is back, and a stop commits every accepted reading or counts
it in `dropped`. With the disk nearly full before the agent starts (other software filled it), the same."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import sqlite3
import subprocess
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from rich.console import Console

from edge_agent.cli.local import _print_status
from edge_agent.config import AgentConfig
from edge_agent.service.agent import Agent
from edge_agent.service.local_socket import request, socket_path
from edge_agent.store.buffer import Buffer
from edge_agent.uplink.brokers import LONGEST_WAIT_S
from edge_sim.devices.meters.base import MeterReading
from edge_sim.devices.meters.sdm630 import Sdm630
from edge_sim.devices.modbus_servers import ModbusTcpMeterServer
from tests.support import LOOPBACK, Broker, async_wait_until, central_subscriber, running_agent
from tests.test_buffer import readings

pytestmark = pytest.mark.integration

GATEWAY = "gw-disk-full"
METERS = 10


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MB tmpfs, unmounted afterwards."""
    mountpoint = tmp_path / "disk"
    mountpoint.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mountpoint)], capture_output=True, check=False
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a 2 MB tmpfs here (root and mount(8) needed): {mounted.stderr.decode()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=True)


@contextlib.asynccontextmanager
async def meters() -> AsyncIterator[int]:
    server = ModbusTcpMeterServer(LOOPBACK, 0, [Sdm630(unit_id=u) for u in range(1, METERS + 1)])
    async with server:
        for unit in range(1, METERS + 1):
            await server.show(unit, MeterReading(40_000.0 + unit, 1234.5, 0.0, 39_000.0, 50_000.0))
        yield server.port


def config(disk: Path, broker: Broker, port: int) -> AgentConfig:
    return AgentConfig.model_validate(
        {
            "gateway": {"id": GATEWAY},
            "buffer": {"path": str(disk / "b.db"), "durability": "normal"},
            "mqtt": {"url": broker.url, "keepalive_s": 5, "publish_timeout_s": 2},
            "log": {"level": "warning"},
            "devices": [
                {
                    "name": f"meter-{u}",
                    "protocol": "modbus-tcp",
                    "host": LOOPBACK,
                    "port": port,
                    "unit_id": u,
                    "profile": "eastron-sdm630",
                }
                for u in range(1, METERS + 1)
            ],
            "pollers": [{"device": f"meter-{u}", "interval_s": 0.1} for u in range(1, METERS + 1)],
        }
    )


def polls(agent: Agent) -> int:
    return sum(s.polls for s in agent.status().devices)


async def status_text(agent: Agent) -> str:
    """What `edge-agent status` prints, asked over the agent's socket."""
    payload = json.dumps({"id": "t", "command": "status", "args": {}}).encode()
    reply = json.loads(await request(socket_path(agent.config), payload, 10))
    printed = io.StringIO()
    _print_status(reply["result"], datetime.now(UTC), Console(file=printed, width=300, markup=False))
    return printed.getvalue()


async def fill_the_disk(agent: Agent) -> None:
    """Until the disk is full and the buffer has dropped readings to go on; polling goes on throughout."""
    await async_wait_until(lambda: agent.buffer.statistics().disk_full, 60, "the disk to fill")
    assert "disk full" in await status_text(agent)
    dropped, polled = agent.buffer.statistics().dropped, polls(agent)
    await async_wait_until(
        lambda: agent.buffer.statistics().dropped > dropped and polls(agent) > polled + 100,
        30,
        "more readings polled and dropped while the disk is full",
    )


async def test_a_full_disk_drops_the_oldest_counted_and_delivers_when_the_broker_is_back(
    broker: Broker, small_disk: Path
) -> None:
    async with meters() as port, central_subscriber(broker.port, GATEWAY) as central:
        broker.pause()  # down before the agent starts: its first session cannot begin
        async with running_agent(config(small_disk, broker, port)) as agent:
            await fill_the_disk(agent)
            broker.resume()
            await async_wait_until(
                lambda: len(central.seqs) > 0, LONGEST_WAIT_S + 10, "data soon after the broker's return"
            )
            await async_wait_until(
                lambda: (
                    agent.uplink.statistics().backlog_sent_up_to >= agent.uplink.statistics().backlog_last > 0
                ),
                60,
                "the backlog delivered",
            )
            polled = polls(agent)
            await async_wait_until(lambda: polls(agent) > polled + 50, 10, "polling going on")
        stats = agent.buffer.statistics()
        waiting = buffered_seqs(small_disk / "b.db")  # left for the next run

        def missing() -> set[int]:
            return set(range(1, agent.buffer.last_seq + 1)) - set(central.seqs) - waiting

        await async_wait_until(
            lambda: len(missing()) <= stats.dropped, 10, "the acknowledged at the subscriber"
        )
    queue = agent.path.statistics()
    assert queue.readings_dropped == 0  # the pollers never lost a reading to a full queue
    # the stop committed every accepted reading, or counted it as dropped (a commit the full disk refused)
    assert queue.readings_accepted == stats.appended + stats.unnumbered
    assert stats.dropped > 0
    assert len(missing()) == stats.dropped - stats.unnumbered  # every missing seq is counted as dropped
    assert max(missing()) <= stats.last_dropped_seq
    assert max(b.dropped for b in central.batches) > 0  # and the receiver was told


def buffered_seqs(path: Path) -> set[int]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return {int(row[0]) for row in db.execute("SELECT seq FROM readings")}


async def test_a_stop_on_a_full_disk_commits_every_accepted_reading(broker: Broker, small_disk: Path) -> None:
    broker.pause()
    async with meters() as port, running_agent(config(small_disk, broker, port)) as agent:
        await fill_the_disk(agent)
    queue, stats = agent.path.statistics(), agent.buffer.statistics()
    assert queue.readings_dropped == 0
    assert queue.readings_accepted == stats.appended + stats.unnumbered  # committed or counted as dropped
    assert stats.disk_full  # it stopped while full, and lost nothing it had not counted


def fill(disk: Path, leave_bytes: int) -> None:
    """Another program fills the disk but for `leave_bytes`."""
    stat = os.statvfs(disk)
    (disk / "filler").write_bytes(b"\0" * (stat.f_bavail * stat.f_frsize - leave_bytes))


async def test_a_disk_other_software_filled_loses_nothing_it_does_not_report(
    broker: Broker, small_disk: Path
) -> None:
    """The fault bench's case: 256 KiB left on the disk (no room for the reserve), the broker down. Every
    reading the gateway accepted reaches the receiver, stays buffered, or is counted in the `dropped` it
    reports (and keeps for the next session's envelopes); the stop is not a failure."""
    fill(small_disk, 256 * 1024)
    async with meters() as port, central_subscriber(broker.port, GATEWAY) as central:
        broker.pause()
        async with running_agent(config(small_disk, broker, port)) as agent:
            await fill_the_disk(agent)
            polled = polls(agent)
            await async_wait_until(lambda: polls(agent) > polled + 300, 30, "polling going on on a full disk")
            broker.resume()
            await async_wait_until(
                lambda: len(central.seqs) > 0, LONGEST_WAIT_S + 10, "data soon after the broker's return"
            )
            newest = agent.buffer.last_seq
            await async_wait_until(
                lambda: max(central.seqs) > newest, 20, "readings committed after the return delivered"
            )
        stats, queue = agent.buffer.statistics(), agent.path.statistics()
        await asyncio.sleep(1)  # the last acknowledged batches reach the subscriber
    accepted = queue.readings_accepted + queue.readings_dropped  # every reading passed on by the pollers
    received = set(central.seqs)
    buffered = buffered_seqs(small_disk / "b.db")
    assert stats.dropped > 0
    assert len(received) + len(buffered - received) + stats.dropped >= accepted  # nothing unaccounted
    assert len(set(range(1, agent.buffer.last_seq + 1)) - received - buffered) <= stats.dropped
    kept = json.loads((small_disk / "b.db.seq").read_text())
    assert kept["dropped"] == stats.dropped  # the next session's envelopes carry every loss


async def test_a_disk_with_no_room_at_all_drops_what_it_refuses_counted_and_stores_again_later(
    small_disk: Path,
) -> None:
    """Nothing of ours left to drop and not a byte free: the writer is not held; each refused reading is
    counted in `dropped` (kept in the ledger), and readings are stored again once the disk has room."""
    async with Buffer(small_disk / "b.db", durability="normal") as buffer:
        await buffer.append(readings(10))
        await buffer.ack(await buffer.next_encoded(10))  # delivered: nothing left to drop
        await buffer._run(buffer._apply_acks)  # (deleted now, not with the first commit on the full disk)
        fill(small_disk, 0)
        for batch in range(50):
            async with asyncio.timeout(5):  # (a writer held here would never return)
                await buffer.append(readings(200, 10 + 200 * batch))
        full = buffer.statistics()
        assert full.disk_full
        assert full.unnumbered > 0  # refused (then the reserve's room kept the newest), and said so
        assert full.appended + full.unnumbered == 10 + 50 * 200  # every reading stored or counted
        assert full.dropped - full.unnumbered == full.appended - full.depth - 10  # the rest dropped oldest
        (small_disk / "filler").unlink()
        await buffer.append(readings(5, 20_000))
        assert buffer.statistics().appended == full.appended + 5
    kept = json.loads((small_disk / "b.db.seq").read_text())
    assert kept["dropped"] == full.dropped  # and none dropped once the disk had room
