"""The clock of a running `edge-agent run` stepped under libfaketime (3 days back, then 5 years ahead, each
undone): each step is logged with its size and direction, `status` says `stepped`, and every reading the
buffer took meanwhile is marked uncertain-time, not good; once the step is undone readings are good again,
and none is lost. A clock behind the time the last run saved holds readings until NTP sets it. The wall
clock alone is faked (FAKETIME_DONT_FAKE_MONOTONIC): the monotonic clock stays true, as it does when NTP or
an operator steps a real clock. (The rules in detail: test_clock_guard.py.)"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import json
import os
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from edge_sim.devices.meters.sdm630 import Sdm630
from edge_sim.devices.modbus_servers import ModbusTcpMeterServer
from tests.support import LOOPBACK, agent_process, async_wait_until, free_port

LIBFAKETIME = next(iter(sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))), None)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        LIBFAKETIME is None, reason="libfaketime is not installed (scripts/setup.sh --test-tools)"
    ),
]

DAY = timedelta(days=1)


@dataclass(frozen=True)
class Row:
    seq: int
    quality: str
    ts: datetime


def rows(buffer: Path, after_seq: int = 0) -> list[Row]:
    """What the agent committed to its buffer (SQLite, read-only beside the running agent)."""
    with contextlib.closing(sqlite3.connect(f"file:{buffer}?mode=ro", uri=True)) as db:
        found = db.execute(
            "SELECT seq, quality, ts_us FROM readings WHERE seq > ? ORDER BY seq", (after_seq,)
        ).fetchall()
    return [Row(seq, quality, datetime.fromtimestamp(us / 1e6, UTC)) for seq, quality, us in found]


def log_events(log: Path) -> list[dict[str, Any]]:
    events = []
    for line in log.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            events.append(json.loads(line))
    return events


def logged(log: Path, event: str) -> Callable[[], bool]:
    return lambda: event in {e["event"] for e in log_events(log)}


def at_least(buffer: Path, count: int, quality: str, after_seq: int) -> Callable[[], bool]:
    """Whether the buffer has committed `count` readings of `quality` after `after_seq`."""
    return lambda: sum(r.quality == quality for r in rows(buffer, after_seq)) >= count


async def status(config: Path) -> dict[str, Any]:
    """`edge-agent status --json`, from a process whose clock is not faked."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edge_agent", "status", "--config", str(config), "--json",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(30):
        out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    result: dict[str, Any] = json.loads(out)
    return result


@contextlib.asynccontextmanager
async def agent_on_a_fake_clock(tmp_path: Path, meter_port: int) -> AsyncIterator[tuple[Path, Path]]:
    """`edge-agent run` polling one meter every 0.2 s, no broker (readings stay in the buffer), its wall clock
    offset by what the test writes into its faketime file. Yields the file and the agent's log."""
    config, offset, log = tmp_path / "agent.toml", tmp_path / "faketime", tmp_path / "agent.log"
    config.write_text(
        f'[log]\nformat = "json"\n[buffer]\npath = "{tmp_path / "b.db"}"\n[mqtt]\nurl = "mqtt://{LOOPBACK}:{free_port()}"\n'
        f'[[devices]]\nname = "meter"\nprotocol = "modbus-tcp"\nhost = "{LOOPBACK}"\nport = {meter_port}\n'
        f'profile = "eastron-sdm630"\n[[pollers]]\ndevice = "meter"\ninterval_s = 0.2\n'
    )
    offset.write_text("+0\n")
    env = {
        **os.environ,
        "LD_PRELOAD": str(LIBFAKETIME),
        "FAKETIME_TIMESTAMP_FILE": str(offset),
        "FAKETIME_NO_CACHE": "1",  # the file is read at every call: the step is immediate
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }
    with log.open("wb") as stderr:
        agent = await agent_process(config, env=env, stderr=stderr)
    try:
        yield offset, log
    finally:
        if agent.returncode is None:
            agent.send_signal(signal.SIGTERM)
        async with asyncio.timeout(20):
            await agent.wait()
    assert agent.returncode == 0, log.read_text()[-3000:]


async def test_steps_back_and_ahead_are_logged_and_readings_taken_meanwhile_are_marked(
    tmp_path: Path,
) -> None:
    buffer, config = tmp_path / "b.db", tmp_path / "agent.toml"
    async with (
        ModbusTcpMeterServer(LOOPBACK, 0, [Sdm630(unit_id=1)]) as meter,
        agent_on_a_fake_clock(tmp_path, meter.port) as (offset, log),
    ):
        await async_wait_until(logged(log, "agent started"), 30, "the agent started")
        await async_wait_until(at_least(buffer, 1, "good", 0), 30, "readings in the buffer")
        assert (await status(config))["clock"]["state"] in {"synchronized", "unsynchronized"}
        for fake, step_s, direction in (("-3d", -3 * 86400, "back"), ("+5y", 5 * 365 * 86400, "ahead")):
            before = rows(buffer)[-1].seq
            offset.write_text(f"{fake}\n")
            marked = at_least(buffer, 20, "uncertain-time", before)
            await async_wait_until(marked, 30, f"readings marked after the step {fake}")
            clock = (await status(config))["clock"]
            assert clock["state"] == "stepped"
            assert abs(clock["last_step_s"] - step_s) < 5  # (the two processes' clocks, a second apart)
            step = [e for e in log_events(log) if e["event"] == "clock stepped"][-1]
            assert (step["direction"], step["level"]) == (direction, "warning")
            assert abs(step["step_s"] - step_s) < 5
            offset.write_text("+0\n")  # undone
            undone = rows(buffer)[-1].seq
            good = at_least(buffer, 20, "good", undone)
            await async_wait_until(good, 30, f"good readings after {fake} was undone")
            assert (await status(config))["clock"]["state"] != "stepped"
    events = [e["event"] for e in log_events(log)]
    assert events.count("clock stepped") == 4  # two steps, each undone
    assert events.count("clock step undone: readings are no longer marked") == 2

    now = datetime.now(UTC)
    stored = rows(buffer)
    assert [r.seq for r in stored] == list(range(1, len(stored) + 1))  # none lost
    off = [r for r in stored if abs(r.ts - now) > DAY]  # stamped by a stepped clock
    assert {r.quality for r in off} == {"uncertain-time"}, (
        "a reading with a stepped clock's time sent as good"
    )
    assert any(r.ts < now - 2 * DAY for r in off)
    assert any(r.ts > now + 4 * 365 * DAY for r in off)
    # Readings stamped right are good, except the few of a batch that straddled an undo.
    right = [r for r in stored if abs(r.ts - now) <= DAY]
    assert sum(r.quality == "good" for r in right) > 0.9 * len(right)
    saved = datetime.fromisoformat((tmp_path / "b.db.clock").read_text().split()[0])  # the next start's floor
    assert abs(saved - now) < timedelta(minutes=1)  # saved at stop: the trusted time, not a stepped one


async def test_a_clock_behind_the_time_saved_by_the_last_run_holds_readings_until_it_is_set(
    tmp_path: Path,
) -> None:
    """The floor is the last run's saved time, not a fixed date: an hour behind a time NTP had synchronised
    (a power cut, the time restored from an older save), readings are held; when NTP steps the clock 2 hours
    ahead, they go out with their times corrected by the step."""
    buffer, config = tmp_path / "b.db", tmp_path / "agent.toml"
    started_at = datetime.now(UTC)
    (tmp_path / "b.db.clock").write_text(f"{(started_at + timedelta(hours=1)).isoformat()} synchronized\n")
    async with (
        ModbusTcpMeterServer(LOOPBACK, 0, [Sdm630(unit_id=1)]) as meter,
        agent_on_a_fake_clock(tmp_path, meter.port) as (offset, log),
    ):
        not_set = logged(log, "clock not set: readings are held until it is")
        await async_wait_until(not_set, 30, "the clock taken as not set")
        clock: dict[str, Any] = {"held": 0}
        async with asyncio.timeout(30):
            while clock["held"] < 50:
                clock = (await status(config))["clock"]
                assert clock["state"] == "not set"
        assert rows(buffer) == []
        offset.write_text("+2h\n")  # NTP sets the clock
        await async_wait_until(at_least(buffer, 50, "good", 0), 30, "the held readings released")
        clock = (await status(config))["clock"]
        assert (clock["state"], clock["held"]) == ("unsynchronized", 0)
        assert clock["corrected"] >= 50
    stored = rows(buffer)
    assert {r.quality for r in stored} == {"good"}
    assert min(r.ts for r in stored) > started_at + timedelta(hours=2) - timedelta(seconds=5)  # corrected
    assert [r.seq for r in stored] == list(range(1, len(stored) + 1))
    events = [e for e in log_events(log) if e["event"] == "clock stepped"]
    assert [e["direction"] for e in events] == ["ahead"]
