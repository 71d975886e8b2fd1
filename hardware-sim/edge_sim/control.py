"""A control channel into a running `edge-sim run`: JSON lines over TCP on loopback, one request and one
answer per line. `edge-sim fault ...` is its client; tests may use `send` directly.

    {"op": "set", "device": "library-main-meter", "fault": "slow", "delay_s": 3}
    {"op": "clear", "device": "library-main-meter"}
    {"op": "clock-jump", "seconds": 3600}
    {"op": "list"}
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

from edge_sim.faults import Fault, FaultKind
from edge_sim.layout import CONTROL_OFFSET

if TYPE_CHECKING:
    from edge_sim.simulator import Simulator

MAX_LINE = 4096


def control_port(base_port: int) -> int:
    return base_port + CONTROL_OFFSET


async def _handle(sim: Simulator, request: dict[str, Any]) -> dict[str, Any]:
    op = request.get("op")
    if op == "set":
        fault = Fault(
            FaultKind(request["fault"]),
            delay_s=float(request.get("delay_s", 0.0)),
            code=int(request.get("code", 4)),
        )
        await sim.inject(str(request["device"]), fault)
    elif op == "clear":
        await sim.inject(str(request["device"]), None)
    elif op == "clock-jump":
        sim.clock.jump(float(request["seconds"]))
    elif op != "list":
        raise ValueError(f"unknown op {op!r}: set, clear, clock-jump or list")
    return {"ok": True, "faults": sim.faults(), "building_time": sim.clock.now().isoformat()}


async def serve(sim: Simulator, host: str, port: int) -> asyncio.Server:
    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                try:
                    answer = await _handle(sim, json.loads(line[:MAX_LINE]))
                except (ValueError, KeyError, TypeError) as exc:  # a bad request: say why, keep serving
                    answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
                writer.write(json.dumps(answer).encode() + b"\n")
                await writer.drain()
        finally:
            writer.close()

    return await asyncio.start_server(client, host, port)


async def send(host: str, port: int, request: dict[str, Any], timeout_s: float = 10.0) -> dict[str, Any]:
    """One request to a running simulator; its answer."""
    async with asyncio.timeout(timeout_s):
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(json.dumps(request).encode() + b"\n")
            await writer.drain()
            answer: dict[str, Any] = json.loads(await reader.readline())
        finally:
            writer.close()
            await writer.wait_closed()
    return answer
