"""A 3-node NATS server cluster on loopback, started from Debian's nats-server: JetStream (which NATS's MQTT
gateway needs for QoS 1, retained messages and sessions) and an MQTT listener on every node. Nodes can be
killed (SIGKILL: a crash, not a shutdown) and restarted with their store; their CPU time is kept across
restarts."""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
from tests.support import LOOPBACK

CLUSTER_NAME = "fleet"
V311 = aiomqtt.ProtocolVersion.V311  # NATS speaks MQTT 3.1.1 only


@dataclass(frozen=True)
class NodePorts:
    client: int  # NATS protocol
    route: int  # cluster routes
    mqtt: int


def proc_cpu_s(pid: int) -> float:
    """A process' CPU seconds (utime + stime, its threads included) from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class NatsCluster:
    def __init__(self, workdir: Path, nodes: int = 3) -> None:
        binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
        if not Path(binary).exists():
            raise RuntimeError("nats-server is not installed: apt-get install nats-server")
        self._binary = binary
        self._workdir = workdir
        self.ports = [NodePorts(_node_port(), _node_port(), _node_port()) for _ in range(nodes)]
        self._processes: list[subprocess.Popen[bytes] | None] = [None] * nodes
        self._cpu_dead = [0.0] * nodes  # CPU seconds of the node's killed processes
        for index in range(nodes):
            self._conf(index).write_text(self._config(index))

    def name(self, index: int) -> str:
        return f"n{index + 1}"

    def mqtt_url(self, index: int) -> str:
        return f"mqtt://{LOOPBACK}:{self.ports[index].mqtt}"

    def _conf(self, index: int) -> Path:
        return self._workdir / f"{self.name(index)}.conf"

    def _config(self, index: int) -> str:
        ports = self.ports[index]
        routes = ", ".join(f"nats-route://{LOOPBACK}:{p.route}" for p in self.ports)
        store = self._workdir / f"{self.name(index)}-jetstream"
        return (
            f"server_name: {self.name(index)}\n"
            f"listen: {LOOPBACK}:{ports.client}\n"
            f'jetstream {{ store_dir: "{store}", max_memory_store: 256MB, max_file_store: 4GB }}\n'
            f"cluster {{ name: {CLUSTER_NAME}, listen: {LOOPBACK}:{ports.route}, routes: [{routes}] }}\n"
            f"mqtt {{ listen: {LOOPBACK}:{ports.mqtt} }}\n"
        )

    def start(self, index: int | None = None) -> None:
        """Start one node (or every node)."""
        for i in range(len(self.ports)) if index is None else [index]:
            log = (self._workdir / f"{self.name(i)}.log").open("ab")
            self._processes[i] = subprocess.Popen(
                [self._binary, "-c", str(self._conf(i))], stdout=log, stderr=subprocess.STDOUT
            )
            log.close()

    def kill(self, index: int) -> None:
        process = self._processes[index]
        if process is None:
            return
        self._cpu_dead[index] += proc_cpu_s(process.pid)
        process.send_signal(signal.SIGKILL)
        process.wait()
        self._processes[index] = None

    def alive(self, index: int) -> bool:
        process = self._processes[index]
        return process is not None and process.poll() is None

    def cpu_s(self) -> list[float]:
        """Every node's CPU seconds so far, its killed processes included."""
        return [
            dead + (proc_cpu_s(p.pid) if p is not None and p.poll() is None else 0.0)
            for dead, p in zip(self._cpu_dead, self._processes, strict=True)
        ]

    def stop(self) -> None:
        for process in self._processes:
            if process is not None and process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + 10
        for index, process in enumerate(self._processes):
            if process is None:
                continue
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            self._processes[index] = None


def _node_port() -> int:
    """A free port below the kernel's ephemeral range (32768 up): a killed node's port must still be
    free when it restarts, and the gateways' outgoing connections take ephemeral ports by the hundred."""
    for _ in range(500):
        port = random.randint(20000, 32000)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((LOOPBACK, port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port in 20000-32000")


async def wait_ready(url_port: int, timeout_s: float = 60.0) -> None:
    """Until the node at this MQTT port accepts an MQTT session (its JetStream is up and the MQTT streams
    exist), or RuntimeError."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            async with aiomqtt.Client(
                LOOPBACK, url_port, identifier=f"fleet-ready-{url_port}", protocol=V311, timeout=10
            ):
                return
        except aiomqtt.MqttError as exc:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the NATS node on MQTT port {url_port} is not ready: {exc}") from exc
            await asyncio.sleep(0.5)
