"""The uplink's formats side by side with a reference gateway loop, in one run (issue 19, Build 7).

50 emulated SDM630 meters (one pymodbus server, in a process of its own, as real meters are separate
devices) x 13 values, polled every second, published to a mosquitto this bench starts. For each format the
agent runs in its own process (`edge-agent run`); a subscriber in this process takes every readings message
and measures:
- CPU: the gateway process' CPU seconds (utime + stime from /proc) per 1,000 values it delivered in the
  window;
- bytes per value: MQTT payload bytes on the readings topic / values in them;
- read-to-broker: when a value reached the subscriber minus its read time (`ts`), p50 and p99 (same clock);
- messages per second on the readings topic (each one a commit, a publish and a PUBACK: the wake-ups that
  cost the agent most of its CPU).
The meters share one host:port, so the agent's devices share one Modbus TCP endpoint: `--connections`
sets its max_connections (default: the agent's, 1: every request in turn on one connection, as behind a
serial gateway; 50 separate meters at their own addresses would each have a connection of their own, as the
reference and the agent before issue 19 have here).
The reference gateway (`--reference`, also a process of its own) is what a minimal gateway does, in the
stdlib alone: the same planned Modbus requests over asyncio streams, decoded with struct, one JSON message
per poll (`{"device", "ts", "values": {name: value}}`) published at QoS 1 over its own MQTT 3.1.1 framing
(PUBACKs read and not waited for); no buffer, no checks, no retries.

`--baseline DIR` adds a row for the agent of another checkout (e.g. main before a change), in format json.

Run: .venv/bin/python -m bench.peers [--seconds 20] [--formats json compact] [--connections 1 16]
     [--baseline ../main]
Add a format: its name to FORMATS and a decoder (payload -> every value's read time, s) to DECODERS.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import struct
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
from tests.support import LOOPBACK, run_mosquitto, sdm630_devices

from bench.acquisition import SDM630_13, _proc_cpu_s, _toml
from bench.meters import meters
from edge_agent.config import AgentConfig, ModbusTcpDevice
from edge_agent.protocols.modbus.planner import PlanLimits, plan_reads

UNITS = 50  # the workload's meters (--units for a lighter one)
WARM_UP_S = 4.0  # after the first message: start-up, connections and first polls done before the window


def _json_times(payload: bytes) -> list[float]:
    return [_iso_s(r["ts"]) for r in json.loads(payload)["readings"]]


def _compact_times(payload: bytes) -> list[float]:
    batch = json.loads(payload)
    return [(batch["t"] + entry[1]) / 1000 for entry in batch["r"]]


def _reference_times(payload: bytes) -> list[float]:
    message = json.loads(payload)
    return [message["ts"] / 1000] * len(message["values"])


def _iso_s(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


FORMATS = ["json", "compact"]  # "sparkplug" once its decoder is in DECODERS
DECODERS: dict[str, Callable[[bytes], list[float]]] = {
    "json": _json_times,
    "compact": _compact_times,
    "reference": _reference_times,
}


@dataclass
class Figures:
    cpu_s: float = 0.0
    payload_bytes: int = 0
    values: int = 0
    messages: int = 0
    seconds: float = 1.0
    latencies_ms: list[float] = field(default_factory=list)

    @property
    def cpu_per_thousand(self) -> float:
        return self.cpu_s / max(self.values, 1) * 1000

    @property
    def bytes_per_value(self) -> float:
        return self.payload_bytes / max(self.values, 1)

    def percentile(self, q: int) -> float:
        if len(self.latencies_ms) < 2:
            return float("nan")
        return statistics.quantiles(self.latencies_ms, n=100)[q - 1]


async def measured(
    port: int,
    topic: str,
    decode: Callable[[bytes], list[float]],
    command: list[str],
    seconds: float,
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> Figures:
    """Run `command` (a gateway process), and over `seconds` after the warm-up take its CPU and every
    readings message it publishes on `topic`."""
    figures = Figures()
    window = [False]
    first = asyncio.Event()
    async with aiomqtt.Client(LOOPBACK, port, identifier="bench-central") as client:
        await client.subscribe(topic, qos=1)

        async def collect() -> None:
            async for message in client.messages:
                arrived = time.time()
                first.set()
                if not window[0] or not isinstance(message.payload, bytes):
                    continue
                times = decode(message.payload)
                figures.payload_bytes += len(message.payload)
                figures.values += len(times)
                figures.messages += 1
                figures.latencies_ms += [(arrived - t) * 1000 for t in times]

        collector = asyncio.create_task(collect())
        process = await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, env=env, cwd=cwd
        )
        try:
            await asyncio.wait_for(first.wait(), 120)
            await asyncio.sleep(WARM_UP_S)
            cpu0, window[0] = _proc_cpu_s(process.pid), True
            await asyncio.sleep(seconds)
            figures.cpu_s, window[0] = _proc_cpu_s(process.pid) - cpu0, False
            figures.seconds = seconds
        finally:
            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(process.wait(), 20)
            collector.cancel()
    return figures


async def agent(
    fmt: str,
    meter_port: int,
    broker_port: int,
    state: Path,
    seconds: float,
    *,
    connections: int = 1,
    tree: Path | None = None,
) -> Figures:
    """The agent publishing in `fmt` with `connections` to the meters' endpoint; `tree`: the agent of that
    checkout instead of this one (its own connection per meter)."""
    endpoint = {} if tree else {"max_connections": connections}  # (a key the tree may not know)
    entries = sdm630_devices(meter_port, UNITS, SDM630_13, **endpoint)
    mqtt = {"url": f"mqtt://{LOOPBACK}:{broker_port}"} | ({} if tree else {"format": fmt})
    name = "baseline" if tree else f"{fmt}-{connections}"
    config: dict[str, Any] = {
        "gateway": {"id": "gw-bench"},
        "buffer": {"path": str(state / f"{name}.db")},
        "mqtt": mqtt,
        "log": {"format": "json", "level": "warning"},
        "devices": entries,
        "pollers": [{"device": e["name"], "interval_s": 1.0} for e in entries],
    }
    path = state / f"{name}.toml"
    path.write_text(_toml(config))
    command = [sys.executable, "-m", "edge_agent", "run", "--config", str(path)]
    env = None if tree is None else {**os.environ, "PYTHONPATH": f"{tree}:{tree / 'hardware-sim'}"}
    # (in the tree's directory: `python -m` puts the working directory ahead of PYTHONPATH)
    topic = "edge/gw-bench/readings"
    return await measured(broker_port, topic, DECODERS[fmt], command, seconds, env=env, cwd=tree)


async def reference(meter_port: int, broker_port: int, seconds: float) -> Figures:
    command = [sys.executable, "-m", "bench.peers", "--units", str(UNITS), "--reference", str(meter_port)]
    command.append(str(broker_port))
    return await measured(broker_port, "reference/readings", DECODERS["reference"], command, seconds)


# --- the reference gateway (its own process) ---------------------------------------------------------------


async def reference_gateway(meter_port: int, broker_port: int) -> None:
    """Poll every unit each second with the planned requests; publish each poll as one JSON message."""
    device = AgentConfig.model_validate({"devices": sdm630_devices(meter_port, 1, SDM630_13)}).devices[0]
    assert isinstance(device, ModbusTcpDevice)
    blocks = [
        (b.start, b.count, [(p.name, p.address - b.start) for p in b.points])
        for b in plan_reads(device.points, PlanLimits(device.max_registers, device.max_gap))
    ]
    broker_in, broker = await asyncio.open_connection(LOOPBACK, broker_port)
    client_id = b"reference"
    connect = b"\x00\x04MQTT\x04\x02\x00\x3c" + struct.pack(">H", len(client_id)) + client_id
    broker.write(b"\x10" + _remaining(len(connect)) + connect)
    await broker_in.readexactly(4)  # CONNACK
    topic = b"reference/readings"
    packet_ids = iter(range(1 << 62))

    async def acks() -> None:
        while True:
            await broker_in.readexactly(4)  # PUBACK (nothing else comes: no subscriptions)

    def publish(payload: bytes) -> None:
        body = (
            struct.pack(">H", len(topic)) + topic + struct.pack(">H", next(packet_ids) % 65535 + 1) + payload
        )
        broker.write(b"\x32" + _remaining(len(body)) + body)

    async def unit(unit_id: int) -> None:
        reader, writer = await asyncio.open_connection(LOOPBACK, meter_port)
        transaction = 0
        next_poll = time.monotonic()
        while True:
            values: dict[str, float] = {}
            for start, count, points in blocks:
                transaction = (transaction + 1) & 0xFFFF
                writer.write(struct.pack(">HHHBBHH", transaction, 0, 6, unit_id, 4, start, count))
                header = await reader.readexactly(9)
                body = await reader.readexactly(header[8])
                for name, offset in points:
                    values[name] = struct.unpack(">f", body[offset * 2 : offset * 2 + 4])[0]
            message = {"device": f"meter-{unit_id}", "ts": int(time.time() * 1000), "values": values}
            publish(json.dumps(message).encode())
            next_poll += 1.0
            await asyncio.sleep(max(0.0, next_poll - time.monotonic()))

    await asyncio.gather(acks(), *(unit(u) for u in range(1, UNITS + 1)))


def _remaining(length: int) -> bytes:
    """MQTT's variable-length 'remaining length'."""
    out = bytearray()
    while True:
        length, digit = length >> 7, length & 0x7F
        out.append(digit | (0x80 if length else 0))
        if not length:
            return bytes(out)


# ------------------------------------------------------------------------------------------------------------


async def main(seconds: float, formats: list[str], connections: list[int], baseline: Path | None) -> None:
    async with meters(UNITS, separate=True) as meter_port:
        with tempfile.TemporaryDirectory() as state, run_mosquitto(Path(state)) as broker:
            ref = await reference(meter_port, broker.port, seconds)
            if baseline is not None:
                before = await agent("json", meter_port, broker.port, Path(state), seconds, tree=baseline)
            results = {
                f"{fmt} c={n}": await agent(fmt, meter_port, broker.port, Path(state), seconds, connections=n)
                for n in connections
                for fmt in formats
            }
    print(f"{UNITS} SDM630 x {len(SDM630_13)} values each second, {seconds:g} s per run")
    rows: list[tuple[str, Figures]] = [("reference", ref), *results.items()]
    if baseline is not None:
        rows.insert(1, ("json@base", before))
    heads = ("CPU s/1000 values", "x ref", "B/value", "p50 ms", "p99 ms", "values", "msg/s")
    print(f"{'':13} {heads[0]:>17} {heads[1]:>6} {heads[2]:>8} {heads[3]:>7} {heads[4]:>7} {heads[5]:>7}"
          f" {heads[6]:>6}")  # fmt: skip
    for name, f in rows:
        ratio = f.cpu_per_thousand / ref.cpu_per_thousand
        print(
            f"{name:13} {f.cpu_per_thousand:17.4f} {ratio:6.1f} {f.bytes_per_value:8.1f}"
            f" {f.percentile(50):7.1f} {f.percentile(99):7.1f} {f.values:7d} {f.messages / f.seconds:6.1f}"
        )
    print("goals: compact <= 30 B/value; read-to-broker p99 <= 20 ms; CPU no worse than json before issue 19")


def _arguments() -> Any:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--formats", nargs="+", default=FORMATS, choices=list(DECODERS))
    parser.add_argument("--units", type=int, default=UNITS)
    parser.add_argument("--connections", nargs="+", type=int, default=[1], help="to the meters, at most")
    parser.add_argument("--baseline", type=Path, help="another checkout's agent, as a json row")
    parser.add_argument("--reference", nargs=2, type=int, metavar=("METER_PORT", "BROKER_PORT"))
    return parser.parse_args()


if __name__ == "__main__":
    arguments = _arguments()
    UNITS = arguments.units
    if arguments.reference:
        asyncio.run(reference_gateway(*arguments.reference))
    else:
        asyncio.run(main(arguments.seconds, arguments.formats, arguments.connections, arguments.baseline))
