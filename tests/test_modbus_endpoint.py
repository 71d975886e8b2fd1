"""Modbus TCP devices at one host:port share its connections (issue 19): 50 SDM630 meters behind one
gateway, counted at a proxy in front of it, each polled on its schedule; one dead unit among them costs
the others nothing but its own timeouts."""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from edge_agent.acquisition.poller import Health
from edge_agent.config import AgentConfig, ModbusPoint, ModbusTcpDevice
from edge_agent.errors import DeviceUnreachable
from edge_agent.protocols.base import PointResult
from edge_agent.protocols.modbus.client import ModbusClient
from edge_agent.protocols.modbus.endpoint import endpoint_for
from edge_agent.service.agent import Agent
from edge_sim.devices.meters.base import MeterReading
from edge_sim.devices.meters.sdm630 import Sdm630
from edge_sim.devices.modbus_servers import ModbusTcpMeterServer
from edge_sim.faults import Fault, FaultKind
from tests.support import LOOPBACK, async_wait_until, free_port, running_agent, sdm630_devices

METERS = 50
INTERVAL_S = 1.0
WINDOW_S = 6.0  # polls are counted over this long, once every meter is up
TIMEOUT_S = 0.5
POINTS = [
    "voltage_l1", "voltage_l2", "voltage_l3", "current_l1", "current_l2", "current_l3", "power_l1",
    "total_power", "power_factor", "frequency", "import_energy", "export_energy", "demand",
]  # fmt: skip
READING = MeterReading(power_w=42_000.0, import_kwh=1234.0, export_kwh=0.0, demand_w=4e4, max_demand_w=5e4)


@dataclass
class Connections:
    opened: int = 0  # ever accepted
    open: int = 0
    most: int = 0  # open at once
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)


@contextlib.asynccontextmanager
async def counting_proxy(upstream: int) -> AsyncIterator[tuple[int, Connections]]:
    """A loopback TCP proxy in front of `upstream` that counts the connections made to it."""
    counts = Connections()

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        counts.tasks.add(task)
        counts.opened += 1
        counts.open += 1
        counts.most = max(counts.most, counts.open)
        try:
            up_reader, up_writer = await asyncio.open_connection(LOOPBACK, upstream)
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        finally:
            counts.open -= 1
            writer.close()

    server = await asyncio.start_server(serve, LOOPBACK, 0)
    async with server:
        yield server.sockets[0].getsockname()[1], counts
        for task in counts.tasks:
            task.cancel()
        await asyncio.gather(*counts.tasks, return_exceptions=True)


@contextlib.asynccontextmanager
async def gateway(dead: int | None = None) -> AsyncIterator[tuple[int, Connections]]:
    """50 SDM630 meters (units 1-50) on one Modbus TCP server, unit `dead` silent; behind a counting proxy."""
    server = ModbusTcpMeterServer(LOOPBACK, 0, [Sdm630(unit_id=u) for u in range(1, METERS + 1)])
    async with server:
        for unit in range(1, METERS + 1):
            await server.show(unit, READING)
        if dead is not None:
            server.set_fault(dead, Fault(FaultKind.OFFLINE))
        async with counting_proxy(server.port) as proxied:
            yield proxied


def config(tmp_path: Path, port: int, **endpoint: int) -> AgentConfig:
    devices = sdm630_devices(port, METERS, POINTS, timeout_s=TIMEOUT_S, **endpoint)
    return AgentConfig.model_validate(
        {
            "buffer": {"path": str(tmp_path / "buffer.db")},
            "mqtt": {"url": f"mqtt://{LOOPBACK}:{free_port()}"},  # no broker: readings stay buffered
            "devices": devices,
            "pollers": [{"device": d["name"], "interval_s": INTERVAL_S} for d in devices],
        }
    )


async def polls_over_window(agent: Agent, healthy: set[str]) -> dict[str, int]:
    """Polls of each device over WINDOW_S, counted from when every healthy one has been polled."""

    def polls() -> dict[str, int]:
        return {s.device: s.polls for s in agent.status().devices}

    await async_wait_until(lambda: all(polls()[name] > 0 for name in healthy), 30, "every meter polled")
    before = polls()
    await asyncio.sleep(WINDOW_S)
    after = polls()
    return {name: after[name] - before[name] for name in after}


def assert_on_schedule(polled: dict[str, int], healthy: set[str]) -> None:
    due = WINDOW_S / INTERVAL_S
    late = {name: n for name, n in polled.items() if name in healthy and not due - 1 <= n <= due + 1}
    assert not late, f"polls in {WINDOW_S:g} s, {due:g} due: {late}"


def meters_except(dead: int | None = None) -> set[str]:
    return {f"meter-{unit}" for unit in range(1, METERS + 1) if unit != dead}


@pytest.mark.integration
async def test_fifty_meters_behind_one_endpoint_share_one_connection_and_keep_their_schedule(
    tmp_path: Path,
) -> None:
    async with gateway() as (port, connections), running_agent(config(tmp_path, port)) as agent:
        polled = await polls_over_window(agent, meters_except())
        statistics = agent.status().devices
    assert connections.opened == 1
    assert_on_schedule(polled, meters_except())
    assert all(s.health is Health.UP for s in statistics)


@pytest.mark.integration
async def test_a_dead_unit_leaves_the_other_49_on_schedule_on_the_same_connection(tmp_path: Path) -> None:
    dead = 17
    async with gateway(dead) as (port, connections), running_agent(config(tmp_path, port)) as agent:
        polled = await polls_over_window(agent, meters_except(dead))
        statistics = {s.device: s for s in agent.status().devices}
    # The dead unit's timeouts are its own: the connection is neither torn down nor made again for them.
    assert connections.opened == 1
    assert_on_schedule(polled, meters_except(dead))
    assert polled[f"meter-{dead}"] == 0
    down = statistics.pop(f"meter-{dead}")
    assert down.health is Health.DOWN
    assert down.last_error is not None
    assert f"meter-{dead}" in down.last_error
    assert "no answer" in down.last_error
    assert all(s.health is Health.UP for s in statistics.values())


@pytest.mark.integration
async def test_a_cap_of_two_connections_is_honoured(tmp_path: Path) -> None:
    dead = 3
    async with (
        gateway(dead) as (port, connections),
        running_agent(config(tmp_path, port, max_connections=2)) as agent,
    ):
        polled = await polls_over_window(agent, meters_except(dead))
    assert connections.most == connections.opened == 2  # both used, never a third, never made again
    assert_on_schedule(polled, meters_except(dead))


# --- a slow unit's late answers on a shared connection ----------------------------------------------------


@contextlib.asynccontextmanager
async def slow_unit_gateway(
    slow: int, late_s: float
) -> AsyncIterator[tuple[int, asyncio.Event, list[tuple[asyncio.Task[Any], asyncio.StreamWriter]]]]:
    """A Modbus TCP server answering every unit at once but `slow`, which answers `late_s` late (each
    request on its own, as a gateway with a queue per unit does). Yields its port, an event set once a
    late answer has been sent, and its connections."""
    sent_late = asyncio.Event()
    tasks: set[asyncio.Task[None]] = set()
    connections: list[tuple[asyncio.Task[Any], asyncio.StreamWriter]] = []

    async def answer(writer: asyncio.StreamWriter, frame: bytes, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        writer.write(frame)
        if delay_s:
            sent_late.set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        connections.append((task, writer))
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                transaction, _protocol, length = struct.unpack(">HHH", await reader.readexactly(6))
                request = await reader.readexactly(length)
                unit, count = request[0], struct.unpack(">H", request[4:6])[0]
                body = bytes([request[1], 2 * count]) + bytes(2 * count)
                frame = struct.pack(">HHHB", transaction, 0, len(body) + 1, unit) + body
                task = asyncio.create_task(answer(writer, frame, late_s if unit == slow else 0.0))
                tasks.add(task)
                task.add_done_callback(tasks.discard)

    server = await asyncio.start_server(serve, LOOPBACK, 0)
    async with server:
        yield server.sockets[0].getsockname()[1], sent_late, connections
        for task in list(tasks):
            task.cancel()
        for _, writer in connections:
            writer.close()
        await asyncio.gather(*(serving for serving, _ in connections), return_exceptions=True)


@pytest.mark.integration
async def test_a_slow_units_late_answer_is_not_taken_as_garbage_by_the_others_on_its_connection() -> None:
    """Unit 2 answers after its timeout while unit 1 is asked hundreds of times on the same connection:
    unit 2's read times out (its own failure) and every read of unit 1 stays good."""
    async with slow_unit_gateway(slow=2, late_s=0.5) as (port, sent_late, _):
        meters = two_meters(port)
        endpoint = endpoint_for(meters[0])
        fast, slow = (ModbusClient(meter, endpoint) for meter in meters)
        try:
            slow_read = asyncio.create_task(slow.read(["power"]))
            results: list[PointResult] = []
            while not sent_late.is_set() or len(results) < 100:
                results += await fast.read(["power"])
            with pytest.raises(DeviceUnreachable, match=r"meter-2.*no answer within 0\.2 s"):
                await slow_read
            results += await fast.read(["power"])
        finally:
            endpoint.close()
    assert [r for r in results if r.value != 0.0] == []


def two_meters(port: int, in_flight: int = 1) -> list[ModbusTcpDevice]:
    point = ModbusPoint(name="power", table="input", address=0x34, type="uint16")
    return [
        ModbusTcpDevice(
            name=f"meter-{unit}",
            protocol="modbus-tcp",
            host=LOOPBACK,
            port=port,
            unit_id=unit,
            points=[point],
            timeout_s=0.2,
            in_flight=in_flight,
        )
        for unit in (1, 2)
    ]


@pytest.mark.parametrize("in_flight", [1, 2])
@pytest.mark.integration
async def test_requests_in_flight_on_one_connection(in_flight: int) -> None:
    """With two requests in flight, unit 1 is read while unit 2's request waits for its answer, on the
    same connection; with one, unit 1 waits for unit 2's timeout."""
    async with slow_unit_gateway(slow=2, late_s=1.0) as (port, _, connections):
        meters = two_meters(port, in_flight)
        endpoint = endpoint_for(meters[0])
        fast, slow = (ModbusClient(meter, endpoint) for meter in meters)
        try:
            slow_read = asyncio.create_task(slow.read(["power"]))
            await asyncio.sleep(0)  # unit 2's request goes first
            [fast_result] = await fast.read(["power"])
            slow_pending = not slow_read.done()
            with pytest.raises(DeviceUnreachable):
                await slow_read
        finally:
            endpoint.close()
    assert fast_result.value == 0.0
    assert slow_pending is (in_flight == 2)
    assert len(connections) == 1
