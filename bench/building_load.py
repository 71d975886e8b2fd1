"""The agent's CPU at a building's load: this tree against another revision, side by side in one run.

The load is bench/acquisition.py figure 4's: 50 SDM630 meters x 13 points, each polled every second (not
flat out), published to mosquitto at QoS 1. Two `edge-agent run` processes, one on this tree and one on
`--against` (that revision's files, by git archive), each with simulated meters in a process of their
own, publish to one broker at the same time, so both run under the same conditions. Each agent's
CPU (all its threads, to the nanosecond: its process CPU clock) is read over the same windows after a
warm-up. `--against HEAD` measures the two identical trees: the noise floor of the ratio.

Run: .venv/bin/python -m bench.building_load --against REV [--windows 3] [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.support import run_mosquitto, sdm630_devices

from bench.acquisition import SDM630_13, _toml
from bench.meters import meters

ROOT = Path(__file__).resolve().parents[1]
METERS = 50
WARM_UP_S = 15.0  # start-up takes a few CPU seconds; the first polls
_libc = ctypes.CDLL(None, use_errno=True)


def cpu_clock(pid: int) -> int:
    """The CPU clock of another process (all its threads), for time.clock_gettime."""
    clock = ctypes.c_int()  # clockid_t
    if _libc.clock_getcpuclockid(pid, ctypes.byref(clock)) != 0:
        raise OSError(f"no CPU clock for process {pid}")
    return clock.value


def extract(revision: str, into: Path) -> Path:
    """The revision's files, as a tree to run the agent from."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision], capture_output=True, check=True)
    into.mkdir()
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def write_config(name: str, port: int, broker_url: str, workdir: Path) -> Path:
    entries = sdm630_devices(port, METERS, SDM630_13)
    config = {
        "gateway": {"id": name},
        "buffer": {"path": str(workdir / "b.db")},
        "mqtt": {"url": broker_url},
        "log": {"format": "json", "level": "warning"},
        "devices": entries,
        "pollers": [{"device": e["name"], "interval_s": 1.0} for e in entries],
    }
    workdir.mkdir()
    path = workdir / "agent.toml"
    path.write_text(_toml(config))
    return path


async def start_agent(tree: Path, config: Path) -> asyncio.subprocess.Process:
    """`edge-agent run` from a tree's files."""
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edge_agent", "run", "--config", str(config),
        cwd=config.parent, env={**os.environ, "PYTHONPATH": str(tree)},
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip


def readings_buffered(workdir: Path) -> int:
    with sqlite3.connect(workdir / "b.db") as db:
        row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'readings'").fetchone()
    return int(row[0]) if row else 0


async def main(against: str, windows: int, seconds: float) -> None:
    async with contextlib.AsyncExitStack() as stack:
        ports = [await stack.enter_async_context(meters(METERS, separate=True)) for _ in range(2)]
        temp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        broker = stack.enter_context(run_mosquitto(temp))
        other = extract(against, temp / "tree")
        agents = {
            "this tree": await start_agent(ROOT, write_config("this", ports[0], broker.url, temp / "this")),
            against: await start_agent(other, write_config("other", ports[1], broker.url, temp / "other")),
        }
        clocks = {name: cpu_clock(p.pid) for name, p in agents.items()}
        try:
            await asyncio.sleep(WARM_UP_S)
            totals = dict.fromkeys(agents, 0.0)
            for window in range(1, windows + 1):
                before = {name: time.clock_gettime(c) for name, c in clocks.items()}
                await asyncio.sleep(seconds)
                used = {name: time.clock_gettime(c) - before[name] for name, c in clocks.items()}
                a, b = used.values()
                print(
                    f"window {window}: this tree {a / seconds * 1000:.2f} ms CPU/s, {against}"
                    f" {b / seconds * 1000:.2f} ms CPU/s; ratio {a / b:.3f}"
                )
                for name in agents:
                    totals[name] += used[name]
        finally:
            for process in agents.values():
                process.send_signal(signal.SIGTERM)
            for process in agents.values():
                await asyncio.wait_for(process.wait(), 20)
        a, b = totals.values()
        span = windows * seconds
        points = METERS * len(SDM630_13)
        print(
            f"agent CPU over {span:g} s, {METERS} SDM630 x {len(SDM630_13)} points each second"
            f" ({points:,} points/s): this tree {a / span * 1000:.2f} ms/s"
            f" ({a / span / points * 1e6:.1f} us a point), {against} {b / span * 1000:.2f} ms/s;"
            f" ratio {a / b:.3f}"
        )
        counts = [readings_buffered(temp / d) for d in ("this", "other")]
        print(f"readings buffered over the whole run: this tree {counts[0]:,}, {against} {counts[1]:,}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--against", required=True, help="a git revision to compare with (HEAD: noise floor)")
    parser.add_argument("--windows", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=20.0)
    options = parser.parse_args()
    asyncio.run(main(options.against, options.windows, options.seconds))
