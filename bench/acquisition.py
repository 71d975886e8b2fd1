"""Acquisition benchmarks (issue 4), every figure from one run on this machine.

1. Modbus points per second end to end (poll, decode, pipeline, buffer write) against a raw pymodbus client
   issuing the same planned requests with no decoding, same concurrency, in the same run. Goal: >= 0.8.
   The agent talks Modbus TCP through its own framing (protocols/modbus_tcp.py), cheaper per request than
   pymodbus' client; a raw loop on that framing is printed too, to show the agent's own per-point work.
   Flat out against a loopback server in the same process, both sides are bound by this process' CPU, so
   the ratio is the agent's per-point work against pymodbus' per-request work; it is measured again with
   meters that take 2 ms to answer, as fast real ones do, and with the meters in a process of their own, as
   real meters are separate devices (an extra line, not the figure as specified). The process runs with the
   garbage-collector settings `edge-agent run` makes (gc_tuning.py), the raw loops as well as the agent.
2. Requests per poll cycle for the three meter profiles against one request per point. Goal: <= 1/10.
3. BACnet values per second end to end (BacnetClient.read through the pipeline into the buffer) against a
   raw bacpypes3 ReadPropertyMultiple loop. Goal: >= 0.8.
4. Agent CPU seconds per 1,000 points polled and published: 50 SDM630 meters x 13 points every second,
   the agent in its own process publishing to mosquitto. Goal: <= 0.05.
5. Agent RSS with 50 Modbus devices x 100 points and 30 BACnet devices x 20 points configured.
   Goal: < 120 MiB.

Run: .venv/bin/python -m bench.acquisition [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pymodbus.client import AsyncModbusTcpClient
from tests.conftest import SIM_START
from tests.support import LOOPBACK, free_port, run_mosquitto, sdm630_devices

from bench.meters import meter_server, meters
from edge_agent.config import AgentConfig, ModbusTcpDevice, PollerConfig
from edge_agent.protocols.modbus.planner import PlanLimits, plan_reads
from edge_agent.protocols.modbus.tcp import TcpWire
from edge_agent.service.agent import Agent
from edge_agent.service.gc_tuning import settle_after_startup
from edge_sim.site.site import Site

SDM630_13 = [
    "voltage_l1", "voltage_l2", "voltage_l3", "current_l1", "current_l2", "current_l3", "power_l1",
    "total_power", "power_factor", "frequency", "import_energy", "export_energy", "demand",
]  # fmt: skip


# A fast Modbus TCP meter's answer time (an RS-485 unit at 9600 baud needs ~170 ms for 80 registers).
ANSWER_DELAY_S = 0.002


# --- 1. Modbus end to end against raw pymodbus ---------------------------------------------------------


async def modbus_end_to_end(
    seconds: float, units: int = 10, answer_delay_s: float = 0.0, separate: bool = False
) -> tuple[float, float, int]:
    """(agent points/s, raw points/s, requests per cycle); `answer_delay_s`: every unit answers this late;
    `separate`: the meters run in a process of their own."""
    async with meters(units, answer_delay_s, separate) as port:
        with tempfile.TemporaryDirectory() as state:
            entries = sdm630_devices(port, units)
            for entry in entries:  # a connection per meter, as the raw loops have (the default shares one)
                entry["max_connections"] = units
            config = AgentConfig.model_validate(
                {
                    "buffer": {"path": str(Path(state) / "b.db")},
                    "mqtt": {"url": f"mqtt://{LOOPBACK}:{free_port()}"},
                    "devices": entries,
                }
            )
            # Flat out: a poll interval of 1 ms, below what a configuration may say.
            pollers = [
                PollerConfig.model_construct(device=e["name"], interval_s=0.001, points=None) for e in entries
            ]
            config = config.model_copy(update={"pollers": pollers})
            agent = Agent(config)
            stop = asyncio.Event()
            task = asyncio.create_task(agent.run(stop))
            await asyncio.sleep(1.0)  # warm up: connections, first plans
            start_points, start = agent.status().buffer.appended, time.perf_counter()
            await asyncio.sleep(seconds)
            agent_rate = (agent.status().buffer.appended - start_points) / (time.perf_counter() - start)
            stop.set()
            await task
        device = config.devices[0]
        assert isinstance(device, ModbusTcpDevice)
        blocks = plan_reads(device.points, PlanLimits(device.max_registers, device.max_gap))
        points_per_cycle = len(device.points)

        async def raw_loop(unit: int, deadline: float, counter: list[int]) -> None:
            client = AsyncModbusTcpClient(LOOPBACK, port=port, timeout=2, retries=0, reconnect_delay=0)
            await client.connect()
            try:
                while time.perf_counter() < deadline:
                    for block in blocks:
                        await client.read_input_registers(block.start, count=block.count, device_id=unit)
                    counter[0] += points_per_cycle
            finally:
                client.close()

        counter = [0]
        start = time.perf_counter()
        await asyncio.gather(*(raw_loop(u, start + seconds, counter) for u in range(1, units + 1)))
        raw_rate = counter[0] / (time.perf_counter() - start)
        return agent_rate, raw_rate, len(blocks)


async def own_framing_raw(seconds: float, units: int = 10) -> float:
    """Points/s of the same planned requests through the agent's own Modbus TCP wire, no decoding, no
    link: what the agent's per-point work (decode, pipeline, buffer) is measured against in the notes."""
    async with meters(units) as port:
        config = AgentConfig.model_validate({"devices": sdm630_devices(port, 1)})
        device = config.devices[0]
        assert isinstance(device, ModbusTcpDevice)
        blocks = plan_reads(device.points, PlanLimits(device.max_registers, device.max_gap))

        async def loop(unit: int, deadline: float, counter: list[int]) -> None:
            wire = TcpWire(LOOPBACK, port)
            await wire.connect()
            try:
                while time.perf_counter() < deadline:
                    for block in blocks:
                        await wire.read(block.table, unit, block.start, block.count)
                    counter[0] += len(device.points)
            finally:
                wire.close()

        counter = [0]
        start = time.perf_counter()
        await asyncio.gather(*(loop(u, start + seconds, counter) for u in range(1, units + 1)))
        return counter[0] / (time.perf_counter() - start)


# --- 2. requests per poll cycle --------------------------------------------------------------------------


def requests_per_cycle() -> dict[str, tuple[int, int]]:
    result = {}
    for profile in ("eastron-sdm630", "schneider-iem3255", "abb-b23"):
        config = AgentConfig.model_validate(
            {"devices": [{"name": "m", "protocol": "modbus-tcp", "host": "h", "profile": profile}]}
        )
        device = config.devices[0]
        assert isinstance(device, ModbusTcpDevice)
        blocks = plan_reads(device.points, PlanLimits(device.max_registers, device.max_gap))
        result[profile] = (len(blocks), len(device.points))
    return result


# --- 3. BACnet end to end against raw RPM ----------------------------------------------------------------


async def bacnet_end_to_end(seconds: float) -> tuple[float, float]:
    from bacpypes3.primitivedata import ObjectIdentifier

    from edge_agent.config import BacnetConfig
    from edge_agent.protocols.bacnet.client import local_stack
    from edge_sim.devices.bacnet.controllers import RoomController

    site = Site(SIM_START, seed=0)
    port = free_port()
    controller = RoomController(site.building("library").zones[0], 1301, f"{LOOPBACK}:{port}", "library")
    async with controller.stack:
        with tempfile.TemporaryDirectory() as state:
            entry = {
                "name": "vav",
                "protocol": "bacnet-ip",
                "host": f"{LOOPBACK}:{port}",
                "instance": 1301,
                "profile": "edge-sim-vav",
            }
            config = AgentConfig.model_validate(
                {
                    "buffer": {"path": str(Path(state) / "b.db")},
                    "mqtt": {"url": f"mqtt://{LOOPBACK}:{free_port()}"},
                    "bacnet": {"local_address": f"{LOOPBACK}:0"},
                    "devices": [entry],
                }
            )
            config = config.model_copy(
                update={
                    "pollers": [PollerConfig.model_construct(device="vav", interval_s=0.001, points=None)]
                }
            )
            agent = Agent(config)
            stop = asyncio.Event()
            task = asyncio.create_task(agent.run(stop))
            await asyncio.sleep(1.0)
            start_values, start = agent.status().buffer.appended, time.perf_counter()
            await asyncio.sleep(seconds)
            agent_rate = (agent.status().buffer.appended - start_values) / (time.perf_counter() - start)
            stop.set()
            await task
            points = config.devices[0].points
        async with local_stack(BacnetConfig(local_address=f"{LOOPBACK}:0")) as stack:
            request: list[Any] = []
            for point in points:
                request += [ObjectIdentifier(point.object), [point.property]]  # type: ignore[union-attr]
            values, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds:
                rows = await stack.app.read_property_multiple(f"{LOOPBACK}:{port}", request)
                values += len(rows)
            raw_rate = values / (time.perf_counter() - start)
    return agent_rate, raw_rate


# --- 4 and 5: the agent in its own process --------------------------------------------------------------


def _proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime


def _proc_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _toml(config: dict[str, Any]) -> str:
    """Just enough TOML for the benchmark's configurations."""
    lines: list[str] = []

    def value(v: Any) -> str:
        if isinstance(v, str):
            return f'"{v}"'
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
        return str(v)

    for table in ("gateway", "buffer", "mqtt", "bacnet", "log"):
        if table in config:
            lines.append(f"[{table}]")
            lines += [f"{k} = {value(v)}" for k, v in config[table].items()]
    for array in ("devices", "pollers"):
        for item in config.get(array, []):
            lines.append(f"[[{array}]]")
            lines += [f"{k} = {value(v)}" for k, v in item.items()]
    return "\n".join(lines) + "\n"


async def agent_process(config: dict[str, Any], workdir: Path, seconds: float) -> tuple[float, float, int]:
    """Run `edge-agent run` on a configuration for `seconds`; (CPU s, RSS MiB at the end, points buffered)."""
    path = workdir / "agent.toml"
    path.write_text(_toml(config))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edge_agent", "run", "--config", str(path),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    await asyncio.sleep(3.0)  # start-up and the first polls
    cpu0 = _proc_cpu_s(proc.pid)
    await asyncio.sleep(seconds)
    cpu = _proc_cpu_s(proc.pid) - cpu0
    rss = _proc_rss_mib(proc.pid)
    proc.send_signal(signal.SIGTERM)
    await asyncio.wait_for(proc.wait(), 20)
    import sqlite3

    with sqlite3.connect(workdir / "b.db") as db:
        buffered = int(db.execute("SELECT COALESCE(MAX(seq), 0) FROM readings").fetchone()[0])
    return cpu, rss, buffered


async def cpu_per_thousand_points(seconds: float) -> tuple[float, int]:
    server = await meter_server(50)
    try:
        with tempfile.TemporaryDirectory() as state, run_mosquitto(Path(state)) as broker:
            entries = sdm630_devices(server.port, 50, SDM630_13)
            config = {
                "buffer": {"path": str(Path(state) / "b.db")},
                "mqtt": {"url": broker.url},
                "log": {"format": "json", "level": "warning"},
                "devices": entries,
                "pollers": [{"device": e["name"], "interval_s": 1.0} for e in entries],
            }
            cpu, _rss, _ = await agent_process(config, Path(state), seconds)
            points = 50 * len(SDM630_13) * seconds
            return cpu / points * 1000, int(points)
    finally:
        await server.__aexit__(None, None, None)


async def rss_large_configuration(seconds: float) -> float:
    server = await meter_server(50)
    try:
        with tempfile.TemporaryDirectory() as state:
            modbus = [
                {
                    "name": f"meter-{u}",
                    "protocol": "modbus-tcp",
                    "host": LOOPBACK,
                    "port": server.port,
                    "unit_id": u,
                    "points": [{"name": f"p{i}", "table": "input", "address": 2 * i} for i in range(100)],
                }
                for u in range(1, 51)
            ]
            bacnet = [
                {
                    "name": f"vav-{n}",
                    "protocol": "bacnet-ip",
                    "host": f"{LOOPBACK}:{free_port()}",  # nobody there: devices down, as after a power cut
                    "instance": 3000 + n,
                    "points": [{"name": f"ai{i}", "object": f"analog-input,{i}"} for i in range(1, 21)],
                }
                for n in range(30)
            ]
            config = {
                "buffer": {"path": str(Path(state) / "b.db")},
                "mqtt": {"url": f"mqtt://{LOOPBACK}:{free_port()}"},
                "bacnet": {"local_address": f"{LOOPBACK}:0"},
                "log": {"format": "json", "level": "error"},
                "devices": modbus + bacnet,
                "pollers": [{"device": d["name"], "interval_s": 1.0} for d in modbus + bacnet],
            }
            _cpu, rss, _ = await agent_process(config, Path(state), seconds)
            return rss
    finally:
        await server.__aexit__(None, None, None)


async def main(seconds: float) -> None:
    # The agent's process settings (`edge-agent run` makes them): in this process for the raw loops too.
    settle_after_startup()
    agent_rate, raw_rate, blocks = await modbus_end_to_end(seconds)
    print(
        f"1. Modbus end to end: {agent_rate:,.0f} points/s; raw pymodbus, same {blocks} planned requests per"
    )
    print(f"   meter, no decoding: {raw_rate:,.0f} points/s; ratio {agent_rate / raw_rate:.2f} (goal >= 0.8)")
    own = await own_framing_raw(seconds)
    work_us = (1 / agent_rate - 1 / own) * 1e6
    print(
        f"   the agent's own Modbus TCP wire, same requests, no decoding: {own:,.0f} points/s; the agent's"
        f" work per point on top: {work_us:.2f} us"
    )
    agent_rate, raw_rate, _ = await modbus_end_to_end(seconds, answer_delay_s=ANSWER_DELAY_S)
    print(
        f"   with meters answering after {ANSWER_DELAY_S * 1000:g} ms: {agent_rate:,.0f} against"
        f" {raw_rate:,.0f} points/s; ratio {agent_rate / raw_rate:.2f}"
    )
    agent_rate, raw_rate, _ = await modbus_end_to_end(seconds, separate=True)
    print(
        f"   flat out, meters in a process of their own: {agent_rate:,.0f} against {raw_rate:,.0f} points/s;"
        f" ratio {agent_rate / raw_rate:.2f}"
    )
    for profile, (requests, points) in requests_per_cycle().items():
        print(
            f"2. {profile}: {points} points in {requests} requests per cycle: {requests / points:.3f}"
            " (goal <= 0.1)"
        )
    bacnet_agent, bacnet_raw = await bacnet_end_to_end(seconds)
    print(f"3. BACnet end to end: {bacnet_agent:,.0f} values/s; raw bacpypes3 RPM loop: {bacnet_raw:,.0f};")
    print(f"   ratio {bacnet_agent / bacnet_raw:.2f} (goal >= 0.8)")
    per_thousand, points = await cpu_per_thousand_points(seconds)
    print(
        "4. agent CPU per 1,000 points polled and published"
        f" (50 SDM630 x 13 points each second, {points:,} points):"
    )
    print(f"   {per_thousand:.3f} s (goal <= 0.05; today's gateways 0.06-0.4)")
    rss = await rss_large_configuration(seconds)
    print(f"5. agent RSS with 50 Modbus x 100 points and 30 BACnet x 20 points: {rss:.0f} MiB (goal < 120)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0)
    asyncio.run(main(parser.parse_args().seconds))
