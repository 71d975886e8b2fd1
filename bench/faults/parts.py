"""The real parts the attacks run against, each a process of its own on loopback: mosquitto (stopped,
started, frozen), edge-sim, logging Modbus servers, and `edge-agent run` (started, killed, restarted)."""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LOOPBACK = "127.0.0.1"
GATEWAY = "fault-bench"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


def wait_for(condition: Callable[[], bool], timeout_s: float, step_s: float = 0.05) -> bool:
    """Whether `condition` came true within `timeout_s` (never raises on time)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(step_s)
    return True


def listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.2)
        return probe.connect_ex((LOOPBACK, port)) == 0


def stop_process(process: subprocess.Popen[Any], timeout_s: float = 10) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGCONT)
        process.terminate()
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


class Broker:
    """mosquitto with persistence (the observer's session survives a restart), on a fixed port."""

    def __init__(self, workdir: Path) -> None:
        self.port, self.workdir = free_port(), workdir
        self.process: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "mosquitto.conf").write_text(
            f"user {getpass.getuser()}\nlistener {self.port} {LOOPBACK}\nallow_anonymous true\n"
            f"persistence true\npersistence_location {workdir}/\nmax_queued_messages 0\n"
            "log_dest stderr\nlog_type error\n"
        )

    @property
    def url(self) -> str:
        return f"mqtt://{LOOPBACK}:{self.port}"

    def start(self) -> None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.process = subprocess.Popen(
            [binary, "-c", str(self.workdir / "mosquitto.conf")], stderr=subprocess.DEVNULL
        )
        if not wait_for(lambda: listening(self.port), 10):
            raise RuntimeError("mosquitto did not listen")

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
            self.process = None

    def pause(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)


@contextlib.contextmanager
def started(
    *args: str, ready: str, log: Path, timeout_s: float = 60, lines: list[str] | None = None
) -> Iterator[subprocess.Popen[str]]:
    """`python ARGS` until the block ends; ready once a stdout line starts with `ready` (the lines before it
    go to `lines`). Its stdout is read to the end (a full pipe would stall it), its stderr goes to `log`."""
    with log.open("w") as errors:
        process = subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE, stderr=errors, text=True)
    assert process.stdout is not None
    output = process.stdout
    reader: threading.Thread | None = None
    try:
        deadline = time.monotonic() + timeout_s
        for line in output:
            if line.startswith(ready) or time.monotonic() > deadline:
                break
            if lines is not None:
                lines.append(line)
        if process.poll() is not None:
            raise RuntimeError(f"{args[1]} exited {process.returncode}: see {log}")
        reader = threading.Thread(target=output.read, daemon=True)
        reader.start()
        yield process
    finally:
        stop_process(process, 20)
        if reader is not None:
            reader.join(5)
        output.close()


@contextlib.contextmanager
def simulator(base_port: int, log: Path, *clock: str) -> Iterator[dict[str, tuple[str, str]]]:
    """edge-sim's site without the RS-485 bus: the BACnet room controller the bench writes to. `clock`:
    more options of `edge-sim run` (`--speed`, `--start`). Yields each device's address and last word as
    edge-sim printed them, by name ("library-plant": ("127.0.0.1:PORT", "1100"), the BACnet instance)."""
    args = ("-m", "edge_sim", "run", "--base-port", str(base_port), "--no-serial-bus", *clock)
    lines: list[str] = []
    with started(*args, ready="building time", log=log, lines=lines):
        yield {f[0]: (f[2], f[-1].strip("()")) for f in (line.split() for line in lines) if len(f) >= 4}


@dataclass
class ModbusDevice:
    """A logging Modbus server (edge_sim.logging_modbus) and the writes and reads it logged."""

    name: str
    port: int
    log: Path

    def records(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]

    def writes(self) -> list[dict[str, Any]]:
        return [r for r in self.records() if "fc" in r]

    def reads_between(self, start: float, end: float, what: str = "reads") -> int:
        """Requests ("reads") or float32 values ("points") the device served between two unix times."""
        return sum(r[what] for r in self.records() if "reads" in r and start <= r["t"] <= end)


@contextlib.contextmanager
def modbus_device(name: str, workdir: Path, mode: str = "normal") -> Iterator[ModbusDevice]:
    device = ModbusDevice(name, free_port(), workdir / f"{name}.jsonl")
    args = ("-m", "edge_sim.logging_modbus", "--port", str(device.port), "--log", str(device.log))
    with started(*args, "--mode", mode, ready="listening", log=workdir / f"{name}.err"):
        yield device


LOAD_POINTS = 20  # float32 input registers polled from the load device: the readings the ledger counts
VALVE_RANGE = (0.0, 100.0)


def _modbus_entry(device: ModbusDevice, points: list[str]) -> str:
    return (
        f'[[devices]]\nname = "{device.name}"\nprotocol = "modbus-tcp"\nhost = "{LOOPBACK}"\n'
        f"port = {device.port}\ntimeout_s = 1\npoints = [{', '.join(points)}]\n"
    )


def agent_config(
    workdir: Path, mqtt_url: str, buffer: Path, load: ModbusDevice, *, room_port: int | None,
    extra_modbus: tuple[ModbusDevice, ...] = (), interval_s: float = 0.2, trusted_key: str | None = None,
    protocol: str = "auto",
) -> Path:  # fmt: skip
    """An agent configuration: the load device (20 points and a writable `valve`), edge-sim's room
    controller 1301 (its setpoints writable), and any extra Modbus devices, polled every `interval_s`.
    `trusted_key` (`ed25519:<base64>`): only commands signed by it run. `protocol`: MQTT's version."""
    load_points = [
        f'{{ name = "load_{i}", table = "input", address = {2 * i}, unit = "kW" }}'
        for i in range(LOAD_POINTS)
    ]
    low, high = VALVE_RANGE
    valve = f'{{ name = "valve", table = "holding", address = 100, write_range = [{low}, {high}] }}'
    text = [
        f'[gateway]\nid = "{GATEWAY}"\n',
        f'[buffer]\npath = "{buffer}"\n',
        f'[mqtt]\nurl = "{mqtt_url}"\nkeepalive_s = 5\npublish_timeout_s = 5\nprotocol = "{protocol}"\n',
        f'[bacnet]\nlocal_address = "{LOOPBACK}:0"\n',
        '[log]\nformat = "json"\n',
        "[control]\ndemand_target_limits_kw = [50, 400]\n",
        f"[commands]\ntrusted_keys = {json.dumps([trusted_key] if trusted_key else [])}\n",
        _modbus_entry(load, [*load_points, valve]),
    ]
    pollers = [load.name]
    for device in extra_modbus:
        text.append(_modbus_entry(device, ['{ name = "p", table = "input", address = 0 }']))
        pollers.append(device.name)
    if room_port is not None:
        text.append(
            f'[[devices]]\nname = "room"\nprotocol = "bacnet-ip"\nhost = "{LOOPBACK}:{room_port}"\n'
            'instance = 1301\nprofile = "edge-sim-vav"\n'
        )
        pollers.append("room")
    text += [f'[[pollers]]\ndevice = "{name}"\ninterval_s = {interval_s}\n' for name in pollers]
    path = workdir / "agent.toml"
    path.write_text("\n".join(text))
    return path


@dataclass
class AgentProcess:
    """`edge-agent run` as systemd would run it: restarted after an unexpected exit (counted as a crash)."""

    config: Path
    log: Path
    process: subprocess.Popen[bytes] | None = None
    crashes: int = 0
    exits: list[int] = field(default_factory=list)  # every unexpected exit code
    env: dict[str, str] = field(default_factory=dict)  # added to the environment (LD_PRELOAD, ...)
    args: tuple[str, ...] = ()  # more options of `edge-agent run` (--clock-speed, --clock-start)
    log_offset: int = 0

    def start(self) -> None:
        if self.alive():
            raise RuntimeError("the bench started a second agent on the same buffer")
        self.log_offset = self.log.stat().st_size if self.log.exists() else 0
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "edge_agent", "run", "--config", str(self.config), *self.args],
                stdout=subprocess.DEVNULL, stderr=log, env=env,
            )  # fmt: skip

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def check(self, restart: bool = True) -> bool:
        """Count an unexpected exit as a crash (and restart, as the unit would); whether it was up."""
        if self.process is None or self.process.poll() is None:
            return True
        self.crashes += 1
        self.exits.append(self.process.returncode)
        self.process = None
        if restart:
            self.start()
        return False

    def kill9(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self.process = None

    def started(self) -> bool:
        """Whether this run has logged "agent started" (its signal handlers are in place by then)."""
        with self.log.open("rb") as log:
            log.seek(self.log_offset)
            return b'"agent started"' in log.read()

    def stop(self, timeout_s: float = 30) -> int | None:
        """SIGTERM once it has started, and wait; the exit code (None: it was not running, already
        counted)."""
        wait_for(lambda: self.started() or not self.alive(), 30)
        if not self.check(restart=False):
            return None
        if self.process is None:
            return None
        code = stop_process(self.process, timeout_s)
        self.process = None
        return code

    def log_lines(self, needle: str) -> list[str]:
        if not self.log.exists():
            return []
        return [line for line in self.log.read_text(errors="replace").splitlines() if needle in line]

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
