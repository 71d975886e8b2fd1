"""The agent killed with SIGKILL at random moments, across broker outages: the central subscriber sees no gap
in the sequence but the known losses its envelopes count (readings handed to the uplink before their commit's
flush, when the kill comes first: issue 19), and duplicates stay within what was in flight (issue 5's
acceptance, on real processes)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support import LOOPBACK, async_wait_until, central_subscriber, free_base_port, run_mosquitto
from tests.test_end_to_end import AGENT_CONFIG, SIM_DEVICES_WITHOUT_SERIAL_BUS, process
from tests.test_uplink import GATEWAY

pytestmark = pytest.mark.integration

KILLS = 5
IN_FLIGHT = 2 * 4 * 500  # two lanes x mqtt.in_flight x mqtt.batch_size: the most a kill leaves unacknowledged


def buffered(db: Path) -> int:
    with contextlib.closing(sqlite3.connect(db, timeout=5)) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM readings").fetchone()[0])


def still_buffered_and_assigned(db: Path) -> tuple[set[int], int]:
    """(seqs still waiting in the buffer, the highest seq ever assigned)."""
    with contextlib.closing(sqlite3.connect(db, timeout=5)) as conn:
        waiting = {int(row[0]) for row in conn.execute("SELECT seq FROM readings")}
        assigned = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'readings'").fetchone()
    return waiting, int(assigned[0]) if assigned else 0


def assigned_so_far(db: Path) -> int:
    """The highest seq any run has committed (0 before a run made the buffer)."""
    if not db.exists():
        return 0
    try:
        return still_buffered_and_assigned(db)[1]
    except sqlite3.OperationalError as error:  # a run killed while it made the buffer's tables
        if "no such table" not in str(error):
            raise
        return 0


async def test_sigkill_across_outages_leaves_no_gap(tmp_path: Path) -> None:
    rng = random.Random(20261129)
    base = free_base_port()
    db = tmp_path / "buffer.db"
    config = tmp_path / "agent.toml"
    with run_mosquitto(tmp_path) as first_broker:
        port = first_broker.port
    broker_dir = tmp_path / "broker"
    broker_dir.mkdir()
    config.write_text(
        AGENT_CONFIG.format(
            gateway=GATEWAY,
            buffer=db,
            broker=f"mqtt://{LOOPBACK}:{port}",
            meter_port=base + 1,
            room_port=base + 13,
        )
    )
    sim_args = ("-m", "edge_sim", "run", "--speed", "60", "--base-port", str(base), "--no-serial-bus")
    with run_mosquitto(broker_dir, port) as broker:
        async with (
            central_subscriber(broker.port, GATEWAY) as central,
            process(*sim_args, ready_lines=SIM_DEVICES_WITHOUT_SERIAL_BUS),
        ):

            def published_beyond(seq: int) -> Callable[[], bool]:
                """Whether a reading newer than `seq` reached the subscriber: the run that took it is up."""
                return lambda: max(central.seqs, default=0) > seq

            for kill in range(KILLS):
                assigned_before = assigned_so_far(db)
                agent = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "edge_agent", "run", "--config", str(config),
                    stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
                )  # fmt: skip
                outage = kill % 2 == 1
                if outage:  # connected and publishing, then the broker stops answering
                    await async_wait_until(published_beyond(assigned_before), 30, "this run's readings")
                    broker.pause()
                await asyncio.sleep(rng.uniform(1.0, 3.0))
                agent.send_signal(signal.SIGKILL)  # mid-publish, when the broker is paused
                await agent.wait()
                if outage:
                    broker.resume()
            # A last run, left alone until everything buffered has gone out. Its readings at the subscriber
            # (seqs beyond every earlier run's) show it is up, and so stops cleanly on SIGTERM.
            assigned_before = assigned_so_far(db)
            async with process("-m", "edge_agent", "run", "--config", str(config)):
                await async_wait_until(published_beyond(assigned_before), 30, "the last run's readings")
                await async_wait_until(lambda: buffered(db) < 50, 60, "the backlog to drain")

            def caught_up() -> bool:
                waiting, assigned = still_buffered_and_assigned(db)
                return set(range(1, assigned + 1)) <= set(central.seqs) | waiting | counted_losses()

            def counted_losses() -> set[int]:
                """Seqs the envelopes say were dropped, that the subscriber lacks."""
                last = central.batches[-1].last_dropped_seq if central.batches else 0
                return set(range(1, last + 1)) - set(central.seqs)

            # Stopped: what left the buffer was acknowledged by the broker, and reaches the subscriber.
            await async_wait_until(caught_up, 10, "every reading that left the buffer at the subscriber")
    seqs = central.seqs
    distinct = sorted(set(seqs))
    waiting, assigned = still_buffered_and_assigned(db)
    last = central.batches[-1]
    gaps = set(range(1, distinct[-1] + 1)) - set(distinct)
    assert all(seq <= last.last_dropped_seq for seq in gaps), "a gap in the sequence no envelope counts"
    assert len(gaps) <= last.dropped
    # Every reading ever numbered is at the subscriber, still waiting in the buffer, or a counted loss.
    counted = set(range(1, last.last_dropped_seq + 1))
    assert set(range(1, assigned + 1)) <= set(distinct) | waiting | counted
    assert len(seqs) - len(distinct) <= KILLS * IN_FLIGHT  # resent after a kill: what was in flight
    assert assigned > 50
