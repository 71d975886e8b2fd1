"""The command line on a bus the running agent owns: its requests go through the agent's local socket
(`modbus_request`, service/bus_requests.py) and take turns with the agent's polls, instead of fighting the
agent for the serial port. When no agent owns the bus, the tools open it themselves; when something else
holds the port, `holder` says who.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from edge_agent.config import AgentConfig, ModbusDevice, ModbusRtuDevice
from edge_agent.errors import ExceptionAnswer, MalformedAnswer, Refused
from edge_agent.protocols.modbus.pdu import Table
from edge_agent.protocols.modbus.wire import Wire
from edge_agent.service.bus_requests import COMMAND
from edge_agent.service.local_socket import find_socket, is_socket, request, well_known_sockets

T = TypeVar("T")
FUNCTIONS: dict[Table, int] = {"coil": 1, "discrete": 2, "holding": 3, "input": 4}
PROBE_TIMEOUT_S = 3.0
REFUSALS = ("invalid", "not-writable", "out-of-limits", "unknown-link")


class AgentWire:
    """A wire whose every request is a `modbus_request` to the agent (one connection each)."""

    def __init__(self, socket: Path, bus: dict[str, str], timeout_s: float) -> None:
        self._socket = socket
        self._bus = bus  # {"serial_port": ...} or {"link": ...}
        self._timeout_s = timeout_s

    @property
    def connected(self) -> bool:
        return True

    async def connect(self) -> None:
        return None

    async def _ask(self, args: dict[str, Any]) -> list[int]:
        payload = json.dumps({"id": "cli", "command": COMMAND, "args": self._bus | args}).encode()
        try:
            reply = json.loads(await request(self._socket, payload, self._timeout_s))
        except TimeoutError:
            raise
        except OSError as exc:
            raise ConnectionError(f"the agent on {self._socket}: {exc.strerror or exc}") from exc
        if reply.get("ok"):
            return list(reply["result"].get("values", []))
        error = reply.get("error") or {}
        code, message = error.get("code"), str(error.get("message"))
        if code == "modbus-exception":
            raise ExceptionAnswer(int(error.get("exception") or 0))
        if code == "malformed":
            raise MalformedAnswer(message)
        if code in REFUSALS:
            raise Refused(f"the agent refused: {message}")
        if code == "timeout":
            raise TimeoutError(message)
        raise ConnectionError(message)

    async def read(self, table: Table, unit: int, start: int, count: int) -> list[int] | list[bool]:
        values = await self._ask(
            {"function": FUNCTIONS[table], "unit": unit, "address": start, "count": count}
        )
        return [bool(v) for v in values] if table in ("coil", "discrete") else values

    async def write_coil(self, unit: int, address: int, value: bool, *, multiple: bool) -> None:
        args = {"function": 15 if multiple else 5, "unit": unit, "address": address, "values": [int(value)]}
        await self._ask(args)

    async def write_registers(self, unit: int, address: int, words: list[int], *, multiple: bool) -> None:
        function = 16 if multiple or len(words) > 1 else 6
        await self._ask({"function": function, "unit": unit, "address": address, "values": words})

    def close(self) -> None:
        return None


class AgentLink:
    """A Link (protocols/modbus/link.py) through the agent: the agent keeps the bus' turns, writes first
    and its frame gap; here each request is only bounded, allowing for the agent's units' turns."""

    def __init__(self, socket: Path, bus: dict[str, str], units: int) -> None:
        self.socket = socket
        self._bus = bus
        self._units = units

    def join(self, unit: str) -> None:
        return None

    @property
    def rounds(self) -> int:
        return self._units + 1  # the agent's units, and ours

    async def connect(self, *, timeout_s: float) -> None:
        return None

    async def call(
        self, operation: Callable[[Wire], Awaitable[T]], *, timeout_s: float, write: bool = False
    ) -> T:
        budget = timeout_s * (self.rounds + 1) + 1  # the agent's own bound, and the socket's way
        async with asyncio.timeout(budget):
            return await operation(AgentWire(self.socket, self._bus, budget))

    def close(self) -> None:
        return None


def bus_of(device: ModbusDevice) -> dict[str, str]:
    """How the agent knows the device's link: a serial bus by its port, any other by its key."""
    if isinstance(device, ModbusRtuDevice):
        return {"serial_port": device.serial_port}
    return {"link": device.link}


def candidates(config: AgentConfig | None) -> list[Path]:
    """Sockets an agent may answer on: the configuration's (when given), then the well-known ones."""
    found = [] if config is None else [find_socket(config)]
    return [p for p in dict.fromkeys([*found, *well_known_sockets()]) if is_socket(p)]


async def agent_link(bus: dict[str, str], config: AgentConfig | None = None) -> AgentLink | None:
    """A link through the running agent that owns `bus` ({"serial_port": ...} or {"link": ...}); None when
    no agent answers, or none owns it."""
    for socket in candidates(config):
        payload = json.dumps({"id": "cli", "command": COMMAND, "args": bus}).encode()
        try:
            reply = json.loads(await request(socket, payload, PROBE_TIMEOUT_S))
        except (OSError, TimeoutError, ValueError):
            continue
        if reply.get("ok") and isinstance(reply.get("result"), dict):
            return AgentLink(socket, bus, len(reply["result"].get("units", [])))
    return None


def holder(device_path: str) -> str | None:
    """Who holds a serial port open: 'edge-agent run (pid 812, unit edge-agent.service)', 'minicom (pid
    77)', an edge-agent first; None when nobody (that this user may see) does."""
    try:
        target = os.path.realpath(device_path)
        pids = [entry for entry in os.listdir("/proc") if entry.isdigit() and int(entry) != os.getpid()]
    except OSError:
        return None
    found = sorted((_describe(pid) for pid in pids if _has_open(pid, target)), key=_agent_first)
    return ", ".join(found) or None


def _agent_first(description: str) -> bool:
    return not description.startswith("edge-agent")


def _has_open(pid: str, target: str) -> bool:
    fds = Path("/proc", pid, "fd")
    try:
        return any(os.path.realpath(fd) == target for fd in fds.iterdir())
    except OSError:
        return False


def _describe(pid: str) -> str:
    try:
        argv = Path("/proc", pid, "cmdline").read_bytes().split(b"\0")
        name = Path("/proc", pid, "comm").read_text().strip()
    except OSError:
        return f"process {pid}"
    words = [w.decode(errors="replace") for w in argv if w]
    if "edge_agent" in words or any(Path(w).name == "edge-agent" for w in words):
        name = "edge-agent " + ("run" if "run" in words else "command")
    unit = _unit(pid)
    return f"{name} (pid {pid}" + (f", unit {unit})" if unit else ")")


def _unit(pid: str) -> str | None:
    """The systemd unit of a process, from its cgroup path."""
    try:
        cgroup = Path("/proc", pid, "cgroup").read_text()
    except OSError:
        return None
    for part in cgroup.replace("\n", "/").split("/"):
        if part.endswith(".service"):
            return part
    return None
