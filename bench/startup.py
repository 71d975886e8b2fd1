"""Start-up under systemd (issue 7): `edge-agent run` from process start to READY=1, and its RSS at READY.

The agent runs as a subprocess on the built-in configuration pointed at a running simulator (edge-sim, in a
process of its own, all 21 devices) and a mosquitto broker, with $NOTIFY_SOCKET naming a real datagram
socket that plays systemd's part. READY=1 comes once every device has had its first poll. RSS is VmRSS
from /proc/PID/status the moment READY arrives. Goals: READY within 2 s, RSS under 110 MiB.

References, measured in the same run: a bare interpreter (`python -c pass`), and an interpreter that only
imports what `edge-agent run` imports before it starts (the start-up floor that is imports alone).
`-X importtime` then says where the import time goes. Several runs of each, medians.

Run: .venv/bin/python -m bench.startup [--runs 5]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support import agent_process, free_base_port, notify_socket, run_mosquitto

from edge_agent.config import builtin_config_text, load_config
from edge_sim.layout import DEFAULT_BASE_PORT, PORTS_USED, rs485_link

READY_GOAL_S, RSS_GOAL_MIB = 2.0, 110.0
# What `edge-agent run` imports before it builds the agent (cli.py, then run()'s own imports).
AGENT_IMPORTS = "import edge_agent.cli.app, edge_agent.service.logs, edge_agent.service.agent"
PRINT_RSS = (
    "print(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmRSS:')), flush=True)"
)


class NoReady(Exception):
    """The agent never sent READY=1, or failed; the message ends with its last log lines."""


@dataclass(frozen=True, slots=True)
class Start:
    ready_s: float  # process start to READY=1
    started_s: float | None  # process start to the "agent started" log line (imports, config, buffer, BACnet)
    rss_mib: float  # at READY


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def site_config(base_port: int, buffer: Path, broker_url: str) -> str:
    """The built-in configuration (the simulated site) on the simulator's ports, with a JSON log."""
    text = builtin_config_text()
    text = text.replace(rs485_link(DEFAULT_BASE_PORT), rs485_link(base_port))
    low, high = DEFAULT_BASE_PORT, DEFAULT_BASE_PORT + PORTS_USED
    text = re.sub(
        r"(?<!\d)(\d{5})(?!\d)",
        lambda m: str(int(m[1]) - low + base_port) if low <= int(m[1]) < high else m[1],
        text,
    )
    for old, new in (
        ('path = "edge-agent-buffer.db"', f'path = "{buffer}"'),
        ('url = "mqtt://127.0.0.1:1883"', f'url = "{broker_url}"'),
        ('format = "console"', 'format = "json"'),
    ):
        if old not in text:
            raise SystemExit(f"bench.startup: the built-in configuration no longer says {old!r}")
        text = text.replace(old, new)
    return text


@contextlib.contextmanager
def simulator(base_port: int) -> Iterator[None]:
    """edge-sim serving the whole site (the RS-485 bus too, with socat) until the block ends."""
    serial = [] if shutil.which("socat") else ["--no-serial-bus"]
    process = subprocess.Popen(
        [sys.executable, "-m", "edge_sim", "run", "--base-port", str(base_port), *serial],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 60
        for line in process.stdout:  # the last line it prints once every device is served
            if line.startswith("building time") or time.monotonic() > deadline:
                break
        if process.poll() is not None:
            raise SystemExit(f"bench.startup: edge-sim exited {process.returncode}")
        yield
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def one_start(config: Path) -> Start:
    """Start the agent, wait for READY=1, measure, stop it with SIGTERM."""
    loop = asyncio.get_running_loop()
    with notify_socket() as (path, sock):
        env = {**os.environ, "NOTIFY_SOCKET": path}
        start = time.perf_counter()
        agent = await agent_process(config, env=env)
        started: list[float] = []
        log: list[bytes] = []

        async def watch_log() -> None:
            assert agent.stderr is not None
            async for line in agent.stderr:
                log.append(line)
                if not started and b'"agent started"' in line:
                    started.append(time.perf_counter() - start)

        log_reader = asyncio.create_task(watch_log())

        async def ready() -> tuple[float, float]:
            while b"READY=1" not in await loop.sock_recv(sock, 4096):
                pass
            return time.perf_counter() - start, rss_mib(agent.pid)

        waiting, exiting = asyncio.create_task(ready()), asyncio.create_task(agent.wait())
        await asyncio.wait([waiting, exiting], timeout=30, return_when=asyncio.FIRST_COMPLETED)
        ready_s = rss = None
        if waiting.done():
            ready_s, rss = waiting.result()
        waiting.cancel()
        if agent.returncode is None:
            agent.send_signal(signal.SIGTERM)
        async with asyncio.timeout(20):
            await agent.wait()
        await log_reader
    if ready_s is None or rss is None or agent.returncode != 0:
        tail = b"".join(log[-20:]).decode(errors="replace")
        raise NoReady(f"no READY=1, or the agent exited {agent.returncode}:\n{tail}")
    return Start(ready_s, started[0] if started else None, rss)


def reference(code: str) -> tuple[float, float]:
    """(seconds, VmRSS MiB) from starting `python -c code` to the moment it has run `code` (the
    interpreter's tear-down is not counted: the agent's READY comes before any)."""
    start = time.perf_counter()
    with subprocess.Popen(
        [sys.executable, "-c", f"{code}\n{PRINT_RSS}"], stdout=subprocess.PIPE, text=True
    ) as child:
        assert child.stdout is not None
        line = child.stdout.readline()
        elapsed = time.perf_counter() - start
    if child.returncode != 0 or not line.strip():
        raise SystemExit(f"bench.startup: reference {code!r} failed")
    return elapsed, int(line) / 1024


def import_profile(code: str) -> tuple[dict[str, float], float]:
    """Self import time summed per top-level package (ms), and the total (ms), from -X importtime."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code], check=True, capture_output=True, text=True
    )
    per_package: dict[str, float] = defaultdict(float)
    for line in done.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)", line)
        if match:
            per_package[match[4].split(".")[0]] += int(match[1]) / 1000
    return dict(per_package), sum(per_package.values())


def median(values: list[float]) -> float:
    return statistics.median(values)


def configured(path: Path) -> str:
    """The agent's imports and the configuration parsed and checked (profiles merged, pydantic)."""
    load = f"load_config(Path({str(path)!r}))"
    return f"{AGENT_IMPORTS}\nfrom pathlib import Path\nfrom edge_agent.config import load_config\n{load}"


async def measure(runs: int) -> None:
    references: dict[str, list[tuple[float, float]]] = defaultdict(list)
    starts: list[Start] = []
    with tempfile.TemporaryDirectory(prefix="edge-startup-") as state, run_mosquitto(Path(state)) as broker:
        base = free_base_port()
        config = Path(state) / "agent.toml"
        buffer = Path(state) / "buffer.db"
        config.write_text(site_config(base, buffer, broker.url))
        with simulator(base):
            try:
                await one_start(config)  # warm-up: the OS file cache, the buffer file created
            except NoReady as failure:
                raise SystemExit(f"bench.startup: {failure}") from None
            settings = load_config(config)
            for _ in range(runs):  # interleaved, so that each sees the same load on the machine
                for name, code in (
                    ("bare", "pass"),
                    ("imports", AGENT_IMPORTS),
                    ("config", configured(config)),
                    ("onnx", "import onnxruntime"),
                ):
                    references[name].append(reference(code))
                starts.append(await one_start(config))

    ready, rss = median([s.ready_s for s in starts]), median([s.rss_mib for s in starts])
    started = median([s.started_s for s in starts if s.started_s is not None] or [float("nan")])
    (bare_s, bare_rss), (import_s, import_rss), (config_s, config_rss), (onnx_s, onnx_rss) = (
        (median([t for t, _ in references[n]]), median([r for _, r in references[n]]))
        for n in ("bare", "imports", "config", "onnx")
    )
    devices = len(settings.devices)
    print(f"edge-agent run, {devices} simulated devices, medians of {runs} runs (after one warm-up):")
    print(f"  process start to READY=1              {ready:6.2f} s   (goal < {READY_GOAL_S:g} s)")
    print(
        f"    of which to the 'agent started' log {started:6.2f} s   (imports, configuration, buffer, BACnet)"
    )
    print(f"    then the first poll of every device {ready - started:6.2f} s")
    print(f"  RSS at READY                          {rss:6.1f} MiB (goal < {RSS_GOAL_MIB:g} MiB)")
    print(f"  every run: READY {', '.join(f'{s.ready_s:.2f}' for s in starts)} s;")
    print(f"             RSS {', '.join(f'{s.rss_mib:.1f}' for s in starts)} MiB")
    print("references, same run, interleaved with the agent's starts (start to the code run, RSS then):")
    print(f"  bare interpreter (python -c pass)     {bare_s:6.2f} s   {bare_rss:6.1f} MiB")
    print(f"  the agent's imports only              {import_s:6.2f} s   {import_rss:6.1f} MiB")
    print(f"  imports + this configuration loaded   {config_s:6.2f} s   {config_rss:6.1f} MiB")
    print(f"  import onnxruntime alone (a model)    {onnx_s:6.2f} s   {onnx_rss:6.1f} MiB")
    print("ratios:")
    print(f"  READY / imports only                  {ready / import_s:6.2f}")
    print(f"  READY / imports + configuration       {ready / config_s:6.2f}")
    print(f"  READY / bare interpreter              {ready / bare_s:6.2f}")
    print(f"  RSS at READY / imports only           {rss / import_rss:6.2f}")
    per_package, total = import_profile(AGENT_IMPORTS)
    top = sorted(per_package.items(), key=lambda item: -item[1])[:10]
    print(f"where the import time goes (-X importtime, self time per top-level package, {total:.0f} ms):")
    for package, ms in top:
        print(f"  {package:<24} {ms:6.0f} ms  {ms / total:5.1%}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    asyncio.run(measure(parser.parse_args().runs))


if __name__ == "__main__":
    main()
