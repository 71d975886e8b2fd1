"""Test helpers: free loopback ports, a real mosquitto broker, a central server's subscriber, bounded waiting,
and the agent in a process of its own."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import json
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import aiomqtt

from edge_agent.config import AgentConfig
from edge_agent.service.agent import Agent
from edge_agent.uplink.payloads import (
    Birth,
    CompactBatch,
    CompactBirth,
    CompactPoint,
    DeviceInfo,
    PointInfo,
    ReadingOut,
    ReadingsBatch,
)
from edge_sim.layout import PORTS_USED

LOOPBACK = "127.0.0.1"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _free(port: int, kind: socket.SocketKind) -> bool:
    with socket.socket(socket.AF_INET, kind) as probe:
        try:
            probe.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def _tcp_free(port: int) -> bool:
    return _free(port, socket.SOCK_STREAM)


def _udp_free(port: int) -> bool:
    return _free(port, socket.SOCK_DGRAM)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


def free_base_port() -> int:
    """A simulator base port: the whole range the site's devices use is free for TCP and UDP."""
    for _ in range(200):
        base = random.randint(20000, 60000)
        if all(_tcp_free(p) and _udp_free(p) for p in range(base, base + PORTS_USED)):
            return base
    raise RuntimeError("no free simulator base port on loopback")


def sdm630_devices(
    port: int, units: int, points: list[str] | None = None, **fields: Any
) -> list[dict[str, Any]]:
    """Device entries for SDM630 meters at units 1..`units` of one loopback Modbus TCP port ("meter-<unit>"),
    reading `points` (None: the whole profile), with `fields` added to each."""
    return [
        {
            "name": f"meter-{unit}",
            "protocol": "modbus-tcp",
            "host": LOOPBACK,
            "port": port,
            "unit_id": unit,
            "profile": "eastron-sdm630",
            **({} if points is None else {"only_points": points}),
            **fields,
        }
        for unit in range(1, units + 1)
    ]


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.05)


def started_and_stopped(config: Path) -> str:
    """`edge-agent run --config config` until its log says it started, then SIGTERM; it must exit 0. Its
    log (stdout and stderr)."""
    log = config.with_suffix(".log")
    with log.open("wb") as sink:
        agent = subprocess.Popen(
            [sys.executable, "-m", "edge_agent", "run", "--config", str(config)], stdout=sink, stderr=sink
        )
    try:
        wait_until(lambda: "agent started" in log.read_text(), 20, "the agent started")
    finally:
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(timeout=30) == 0, log.read_text()[-2000:]
    return log.read_text()


async def async_wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.05)


@dataclass
class Broker:
    """A mosquitto broker on loopback, started by the test."""

    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"mqtt://{LOOPBACK}:{self.port}"

    def pause(self) -> None:
        """Freeze the broker (SIGSTOP): connections stay open, nothing is acknowledged."""
        self.process.send_signal(19)

    def resume(self) -> None:
        self.process.send_signal(18)


@contextlib.contextmanager
def run_mosquitto(workdir: Path, port: int | None = None, extra: str = "") -> Iterator[Broker]:
    """mosquitto on loopback; `extra` is appended to the listener's configuration (TLS, passwords)."""
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(binary).exists():
        raise RuntimeError("mosquitto is not installed: run the README's test command, which installs it")
    port = port or free_port()
    conf = workdir / "mosquitto.conf"
    conf.write_text(
        # As root, mosquitto drops to its own user and could not read the test's files; stay the test's user.
        f"user {getpass.getuser()}\nlistener {port} {LOOPBACK}\nset_tcp_nodelay true\npersistence false\n"
        "log_dest stderr\nlog_type error\nlog_type warning\n" + (extra or "allow_anonymous true\n")
    )
    process = subprocess.Popen([binary, "-c", str(conf)], stderr=subprocess.PIPE)
    try:
        wait_until(lambda: not _tcp_free(port) or process.poll() is not None, 10, "mosquitto to listen")
        if process.poll() is not None:
            raise RuntimeError(
                f"mosquitto exited: {process.stderr.read().decode() if process.stderr else ''}"
            )
        yield Broker(port, process)
    finally:
        process.send_signal(18)  # in case a test left it paused
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr:
            process.stderr.close()


def f32(value: float) -> float:
    """The float32 nearest `value`, as a double."""
    return float(struct.unpack("<f", struct.pack("<f", value))[0])


def compact_names(birth: Mapping[str, Any]) -> dict[int, tuple[str, str, str, bool]]:
    """A compact birth's aliases: alias -> (device, point, unit, float32)."""
    names: dict[int, tuple[str, str, str, bool]] = {}
    for device in birth["devices"]:
        for index, point in enumerate(birth["point_lists"][device["points"]]):
            names[device["alias"] + index] = (device["name"], point[0], point[1], point[2])
    return names


def read_batch(gateway: str, payload: bytes, births: Mapping[int, Mapping[str, Any]]) -> ReadingsBatch:
    """A readings message as the contract says, in either format (docs/mqtt.md): a json batch as it is, a
    compact one with the aliases of the birth of its session (`births` by bdSeq) and its float32 values
    back to the float32 read."""
    body = json.loads(payload)
    if "readings" in body:
        return ReadingsBatch.model_validate(body)
    batch = CompactBatch.model_validate(body)
    birth = births.get(batch.bdSeq)
    assert birth is not None, f"a compact batch of session {batch.bdSeq} before its birth"
    names = compact_names(birth)
    seqs = batch.seqs or list(range(batch.seq, batch.last + 1))
    readings = []
    for seq, (alias, delta, value, *quality) in zip(seqs, batch.r, strict=True):
        device, point, unit, is_f32 = names[alias] if isinstance(alias, int) else (*alias, False)
        readings.append(
            ReadingOut(
                seq=seq, device=device, point=point, unit=unit, quality=quality[0] if quality else "good",
                value=f32(value) if is_f32 and value is not None else value, ts=_millis(batch.t + delta),
            )
        )  # fmt: skip
    return ReadingsBatch(
        gateway=gateway, seq_first=batch.seq, seq_last=batch.last, historical=batch.hist,
        backlog_last=batch.backlog, sent_at=_millis(batch.sent), dropped=batch.dropped,
        last_dropped_seq=batch.last_dropped, readings=readings,
    )  # fmt: skip


def read_birth(birth: Mapping[str, Any]) -> Birth | CompactBirth:
    """A birth certificate, checked as the model of its format."""
    return (
        CompactBirth.model_validate(birth)
        if birth.get("format") == "compact"
        else Birth.model_validate(birth)
    )


def birth_devices(birth: Mapping[str, Any]) -> list[DeviceInfo]:
    """The devices and points a birth lists, in either format (a compact one's point lists expanded)."""
    compact = read_birth(birth)
    if isinstance(compact, Birth):
        return compact.devices
    return [
        DeviceInfo(
            name=device.name, protocol=device.protocol, address=device.address,
            points=[
                _point_info(point, compact.labels.get(device.name, {}))
                for point in compact.point_lists[device.points]
            ],
        )
        for device in compact.devices
    ]  # fmt: skip


def _point_info(point: CompactPoint, labels: Mapping[str, str]) -> PointInfo:
    write_range = (point[3], point[4]) if len(point) == 5 else None
    return PointInfo(name=point[0], label=labels.get(point[0]), unit=point[1], write_range=write_range)


def _millis(ms: int) -> datetime:
    return EPOCH + timedelta(milliseconds=ms)


@dataclass(frozen=True)
class Arrival:
    """One readings message at the central subscriber."""

    at: float  # event-loop time of its arrival
    payload: dict[str, Any]  # its JSON, as it came (json or compact)
    batch: ReadingsBatch  # the same, read as the contract says (a compact one decoded with its birth)


@dataclass
class Central:
    """What a central server subscribed to one gateway sees: every readings batch, and every status message
    (births and deaths), in order of arrival."""

    arrivals: list[Arrival] = field(default_factory=list)
    status: list[dict[str, Any]] = field(default_factory=list)
    births: dict[int, dict[str, Any]] = field(default_factory=dict)  # compact births, by bdSeq

    @property
    def batches(self) -> list[ReadingsBatch]:
        """Each readings message, read as the contract says, whichever format it came in."""
        return [arrival.batch for arrival in self.arrivals]

    @property
    def seqs(self) -> list[int]:
        """Every reading's sequence number, in order of arrival, duplicates included."""
        return [reading.seq for arrival in self.arrivals for reading in arrival.batch.readings]


@contextlib.asynccontextmanager
async def central_subscriber(port: int, gateway: str) -> AsyncIterator[Central]:
    """Subscribe to edge/GATEWAY/# on the broker at `port` as the central platform would, at QoS 1, until the
    block ends. Its own connection outlives a paused broker (long keepalive)."""
    seen = Central()
    async with aiomqtt.Client(LOOPBACK, port, identifier="central", keepalive=600) as client:
        await client.subscribe(f"edge/{gateway}/#", qos=1)

        async def collect() -> None:
            async for message in client.messages:
                assert isinstance(message.payload, bytes)
                if str(message.topic).endswith("/readings"):
                    at = asyncio.get_running_loop().time()
                    batch = read_batch(gateway, message.payload, seen.births)
                    seen.arrivals.append(Arrival(at, json.loads(message.payload), batch))
                elif str(message.topic).endswith("/status"):
                    status = json.loads(message.payload)
                    seen.status.append(status)
                    if status["online"] and status.get("format") == "compact":
                        seen.births[status["bdSeq"]] = status

        async with in_background(collect()):
            yield seen


async def mbpoll_float(port: int, register: int, table: int = 3) -> float:
    """Read a big-endian float32 with mbpoll (libmodbus): an independent Modbus client. `register` is the
    datasheet's 1-based number within its table (3: input registers, 4: holding registers)."""
    process = await asyncio.create_subprocess_exec(
        "mbpoll", "-m", "tcp", "-a", "1", "-r", str(register), "-c", "1", "-t", f"{table}:float", "-B", "-1",
        "-p", str(port), LOOPBACK,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(10):
        out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    match = re.search(rf"^\[{register}\]:\s+(\S+)\s*$", out.decode(), re.M)
    assert match, out.decode()
    return float(match.group(1))


@contextlib.asynccontextmanager
async def running_agent(config: AgentConfig) -> AsyncIterator[Agent]:
    """The agent running in this event loop; stopped in order (and awaited) on the way out."""
    agent = Agent(config)
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    try:
        yield agent
    finally:
        stop.set()
        async with asyncio.timeout(15):
            await task


@contextlib.asynccontextmanager
async def in_background(work: Coroutine[Any, Any, object]) -> AsyncIterator[asyncio.Task[object]]:
    """Run `work` as a task for the duration of the block; cancelled and awaited on the way out."""
    task = asyncio.create_task(work)
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def agent_process(
    config: Path,
    *options: str,
    stderr: int | IO[bytes] = asyncio.subprocess.PIPE,
    env: Mapping[str, str] | None = None,
) -> asyncio.subprocess.Process:
    """`edge-agent run --config CONFIG OPTIONS` in a process of its own; its stdout is dropped, its log is
    on `stderr`."""
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edge_agent", "run", "--config", str(config), *options,
        env=env, stdout=asyncio.subprocess.DEVNULL, stderr=stderr,
    )  # fmt: skip


@contextlib.contextmanager
def notify_socket() -> Iterator[tuple[str, socket.socket]]:
    """systemd's side of the notify protocol: a bound, non-blocking datagram socket and its path."""
    with (
        tempfile.TemporaryDirectory(prefix="sdn") as directory,
        socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock,
    ):
        path = str(Path(directory) / "notify")
        sock.bind(path)
        sock.setblocking(False)
        yield path, sock
