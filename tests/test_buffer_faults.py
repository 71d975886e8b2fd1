"""Issue 17's buffer faults, on the real agent, a real broker and real SQLite files: a buffer locked at start,
one left root-owned, one emptied to 0 bytes, one whose write-ahead log is damaged. In each, every reading
SQLite can still read reaches the central subscriber, new readings are numbered above every earlier one (a
receiver applying docs/mqtt.md's dedup rule keeps them), and whatever is missing is counted as dropped."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from edge_agent.config import AgentConfig
from edge_agent.service.agent import Agent
from edge_agent.store.buffer import Buffer
from edge_sim.devices.meters.base import MeterReading
from edge_sim.devices.meters.sdm630 import Sdm630
from edge_sim.devices.modbus_servers import ModbusTcpMeterServer
from tests.support import LOOPBACK, Broker, Central, async_wait_until, central_subscriber, running_agent
from tests.test_buffer import readings

pytestmark = pytest.mark.integration

GATEWAY = "gw-faults"
ISSUED = 300  # readings the earlier run numbered
DELIVERED = 100  # of them acknowledged by the broker (the receiver has stored seq 1..100)


@contextlib.asynccontextmanager
async def meter() -> AsyncIterator[int]:
    server = ModbusTcpMeterServer(LOOPBACK, 0, [Sdm630(unit_id=1)])
    async with server:
        await server.show(1, MeterReading(40_000.0, 1234.5, 0.0, 39_000.0, 50_000.0))
        yield server.port


def settings(buffer: Path, broker: Broker, meter_port: int) -> dict[str, Any]:
    return {
        "gateway": {"id": GATEWAY},
        "buffer": {"path": str(buffer)},
        "mqtt": {"url": broker.url, "keepalive_s": 5},
        "log": {"level": "warning"},
        "devices": [
            {
                "name": "meter",
                "protocol": "modbus-tcp",
                "host": LOOPBACK,
                "port": meter_port,
                "unit_id": 1,
                "profile": "eastron-sdm630",
            }
        ],
        "pollers": [{"device": "meter", "interval_s": 0.2}],
    }


async def earlier_run(path: Path) -> None:
    """ISSUED readings buffered, the first DELIVERED acknowledged, the rest in commits of 10; closed."""
    async with Buffer(path) as buffer:
        await fill(buffer)


async def fill(buffer: Buffer) -> None:
    await buffer.append(readings(DELIVERED))
    await buffer.ack(await buffer.next_encoded(DELIVERED))
    for start in range(DELIVERED, ISSUED, 10):
        await buffer.append(readings(10, start))


def readable_seqs(path: Path) -> set[int]:
    """What SQLite itself reads from the buffer's files (a copy, so the originals stay as they are)."""
    probe = path.parent / "probe"
    probe.mkdir()
    for suffix in ("", "-wal"):
        if Path(f"{path}{suffix}").exists():
            shutil.copy(f"{path}{suffix}", probe / f"b.db{suffix}")
    with contextlib.closing(sqlite3.connect(probe / "b.db")) as db:
        try:
            return {int(row[0]) for row in db.execute("SELECT seq FROM readings")}
        except sqlite3.OperationalError:  # no table: an empty file
            return set()


async def received_everything(central: Central, readable: set[int]) -> None:
    """Until the readable backlog and a few new readings arrived."""
    expected = readable - set(range(1, DELIVERED + 1))
    await async_wait_until(
        lambda: expected <= set(central.seqs) and max(central.seqs, default=0) > ISSUED + 10,
        30,
        "the readable backlog and new readings",
    )


def assert_receiver_loses_nothing_new(central: Central, readable: set[int], lost: int) -> None:
    delivered = set(range(1, DELIVERED + 1))
    got = set(central.seqs)
    assert readable - delivered <= got  # every reading SQLite could read arrived
    new = got - readable - delivered
    assert new
    assert min(new) > ISSUED  # numbered above every earlier reading: dedup keeps them all
    last_dropped = max(batch.last_dropped_seq for batch in central.batches)
    missing = set(range(1, max(got) + 1)) - got - delivered
    assert all(seq <= last_dropped for seq in missing)  # every gap is a counted, known loss
    assert max(batch.dropped for batch in central.batches) == lost


def no_file_moved_aside(directory: Path) -> bool:
    return not any(".corrupt-" in p.name for p in directory.iterdir())


def locked(path: Path, seconds: float, mode: str = "EXCLUSIVE") -> subprocess.Popen[bytes]:
    """Another process holding the buffer locked for `seconds`, from when this returns: EXCLUSIVE (no one
    else may even read it), NORMAL (a write lock while the agent has it open)."""
    holder = subprocess.Popen(
        [sys.executable, "-c", (
            "import sqlite3, sys, time\n"
            "db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=10)\n"
            "db.execute(f'PRAGMA locking_mode={sys.argv[3]}'); db.execute('BEGIN EXCLUSIVE')\n"
            "db.execute(\"INSERT OR REPLACE INTO meta VALUES ('held', 1)\")\n"
            "print('locked', flush=True); time.sleep(float(sys.argv[2])); db.execute('ROLLBACK')\n"
        ), str(path), str(seconds), mode],
        stdout=subprocess.PIPE,
    )  # fmt: skip
    assert holder.stdout is not None
    assert holder.stdout.readline() == b"locked\n"
    return holder


def damage_the_log(path: Path) -> None:
    """Noise in the page of a late frame of the write-ahead log: its checksum fails."""
    wal = Path(f"{path}-wal").read_bytes()
    page_size = int.from_bytes(wal[8:12], "big")
    frames = (len(wal) - 32) // (24 + page_size)
    damaged = 32 + (frames * 2 // 3) * (24 + page_size) + 24 + page_size // 2
    Path(f"{path}-wal").write_bytes(wal[:damaged] + b"\xff" * 64 + wal[damaged + 64 :])


async def test_a_buffer_locked_for_5_s_at_start_is_waited_for(broker: Broker, tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    await earlier_run(path)
    readable = readable_seqs(path)
    holder = locked(path, seconds=5)
    try:
        async with (
            meter() as port,
            central_subscriber(broker.port, GATEWAY) as central,
            running_agent(AgentConfig.model_validate(settings(path, broker, port))),
        ):
            await received_everything(central, readable)
    finally:
        await asyncio.to_thread(holder.communicate, timeout=10)
    assert holder.returncode == 0  # the lock really was held until its end
    assert no_file_moved_aside(tmp_path)
    assert_receiver_loses_nothing_new(central, readable, lost=0)


async def test_a_zero_byte_buffer_continues_the_numbers_and_counts_the_loss(
    broker: Broker, tmp_path: Path
) -> None:
    path = tmp_path / "b.db"
    await earlier_run(path)
    path.write_bytes(b"")
    async with (
        meter() as port,
        central_subscriber(broker.port, GATEWAY) as central,
        running_agent(AgentConfig.model_validate(settings(path, broker, port))),
    ):
        await received_everything(central, set())
    assert_receiver_loses_nothing_new(central, set(), lost=ISSUED - DELIVERED)


async def test_a_damaged_write_ahead_log_keeps_what_sqlite_reads_and_counts_the_rest(
    broker: Broker, tmp_path: Path
) -> None:
    running, path = tmp_path / "running", tmp_path / "b.db"
    running.mkdir()
    async with Buffer(running / "b.db") as buffer:  # a crash: the files as they are while it runs
        await fill(buffer)
        for name in ("b.db", "b.db-wal", "b.db.seq", "b.db.mark"):
            shutil.copy(running / name, tmp_path / name)
    damage_the_log(path)
    readable = readable_seqs(path)
    assert DELIVERED < max(readable) < ISSUED  # SQLite silently reads only the frames before the damage
    async with (
        meter() as port,
        central_subscriber(broker.port, GATEWAY) as central,
        running_agent(AgentConfig.model_validate(settings(path, broker, port))),
    ):
        await received_everything(central, readable)
    assert_receiver_loses_nothing_new(central, readable, lost=ISSUED - max(readable))


@contextlib.contextmanager
def world_readable_directory() -> Iterator[Path]:
    """A directory `nobody` may use (pytest's tmp_path is closed to other users)."""
    directory = Path(tempfile.mkdtemp(prefix="edge-agent-buffer-"))
    try:
        directory.chmod(0o777)
        yield directory
    finally:
        shutil.rmtree(directory)


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="needs root (to leave root-owned files) and util-linux's setpriv (to run the agent as nobody)",
)
async def test_a_root_owned_buffer_stops_the_start_naming_the_fix_and_loses_nothing(broker: Broker) -> None:
    with world_readable_directory() as directory:
        path = directory / "b.db"
        await earlier_run(path)  # as root: the files are root's, 0644
        readable = readable_seqs(path)
        async with meter() as port, central_subscriber(broker.port, GATEWAY) as central:
            config = directory / "agent.toml"
            config.write_text(toml(settings(path, broker, port)))
            config.chmod(0o644)
            first = await agent_as_nobody(config)
            _, stderr = await asyncio.wait_for(first.communicate(), 30)
            assert first.returncode == 2  # needs an operator: the unit does not restart it
            fix = re.search(r"chown (\S+) (.+)$", stderr.decode().strip().splitlines()[-1])
            assert fix is not None, stderr.decode()
            assert no_file_moved_aside(directory)
            assert readable_seqs_again(path) == readable  # untouched
            fix_it = ["chown", fix.group(1), *fix.group(2).split()]  # the fix the message names
            await asyncio.to_thread(subprocess.run, fix_it, check=True)
            second = await agent_as_nobody(config)
            try:
                await received_everything(central, readable)
            finally:
                second.send_signal(signal.SIGTERM)
                await asyncio.wait_for(second.communicate(), 30)
            assert second.returncode == 0
        assert_receiver_loses_nothing_new(central, readable, lost=0)


def readable_seqs_again(path: Path) -> set[int]:
    shutil.rmtree(path.parent / "probe", ignore_errors=True)
    return readable_seqs(path)


async def agent_as_nobody(config: Path) -> asyncio.subprocess.Process:
    """`edge-agent run` as nobody. It keeps one capability, to read and search any directory: the test's
    Python lives under /root (closed to others); writing a file that is not its own stays refused."""
    return await asyncio.create_subprocess_exec(
        "setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
        "--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search",
        sys.executable, "-m", "edge_agent", "run", "--config", str(config),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


def toml(values: dict[str, Any]) -> str:
    """The few shapes settings() uses, as TOML."""
    lines: list[str] = []
    for section, body in values.items():
        items = body if isinstance(body, list) else [body]
        for item in items:
            lines.append(f"[[{section}]]" if isinstance(body, list) else f"[{section}]")
            lines += [f"{key} = {value!r}".replace("'", '"') for key, value in item.items()]
    return "\n".join(lines) + "\n"


async def test_a_stop_that_cannot_commit_counts_what_it_lost_as_dropped(
    broker: Broker, tmp_path: Path
) -> None:
    path = tmp_path / "b.db"
    async with meter() as port:
        agent = Agent(AgentConfig.model_validate(settings(path, broker, port)))
        stop = asyncio.Event()
        running = asyncio.create_task(agent.run(stop))
        await async_wait_until(lambda: agent.buffer.last_seq > 20, 10, "readings committed")
        holder = await asyncio.to_thread(locked, path, 15, "NORMAL")  # another process takes the write lock
        await async_wait_until(lambda: agent.path.waiting > 0, 10, "readings waiting for the disk")
        dropped = agent.buffer.statistics().dropped
        stop.set()
        await running  # the loss is counted and kept: not a failed stop
        await asyncio.to_thread(holder.communicate, timeout=20)
    stats, queue = agent.buffer.statistics(), agent.path.statistics()
    lost = queue.readings_accepted - stats.appended
    assert lost > 0
    assert stats.dropped == dropped + lost == stats.unnumbered + dropped
    kept = json.loads((tmp_path / "b.db.seq").read_text())
    assert kept["dropped"] == stats.dropped  # the next session's envelopes report them
    async with Buffer(path) as again:
        assert again.statistics().dropped == stats.dropped
