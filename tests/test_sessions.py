"""MQTT sessions against a real mosquitto: birth and death certificates with bdSeq, the 3.1.1 fallback,
and the backlog lane draining behind live data."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from edge_agent.config import AgentConfig, MqttConfig
from edge_agent.store.buffer import Buffer
from edge_agent.uplink.payloads import Death, device_infos
from edge_agent.uplink.session import Uplink, UplinkState
from tests.mqtt_proxy import mqtt311_front
from tests.support import (
    LOOPBACK,
    Broker,
    async_wait_until,
    birth_devices,
    central_subscriber,
    free_port,
    in_background,
    read_birth,
    run_mosquitto,
)
from tests.test_buffer import readings

pytestmark = pytest.mark.integration

GATEWAY = "gw-sessions"
DEVICES = device_infos(
    AgentConfig.model_validate(
        {
            "devices": [
                {
                    "name": "vav-1",
                    "protocol": "bacnet-ip",
                    "host": "127.0.0.1:47808",
                    "instance": 7,
                    "profile": "edge-sim-vav",
                }
            ]
        }
    )
)


@contextlib.asynccontextmanager
async def running(uplink: Uplink) -> AsyncIterator[Uplink]:
    async with in_background(uplink.run()):
        yield uplink


def mqtt(port: int, **settings: Any) -> MqttConfig:
    return MqttConfig(url=f"mqtt://{LOOPBACK}:{port}", **settings)


async def test_each_session_is_born_and_dies_with_its_own_bdseq(broker: Broker, tmp_path: Path) -> None:
    async with Buffer(tmp_path / "b.db") as buffer, central_subscriber(broker.port, GATEWAY) as seen:
        for _ in range(2):
            async with running(Uplink(mqtt(broker.port), GATEWAY, buffer, DEVICES)) as uplink:
                await async_wait_until(lambda: uplink.statistics().state is UplinkState.CONNECTED, 5, "up")
                uplink.request_rebirth()
                await async_wait_until(lambda: len(seen.status) % 3 == 2, 5, "the birth, twice")
            await async_wait_until(lambda: len(seen.status) % 3 == 0, 5, "the death")
    births = [s for s in seen.status if s["online"]]
    deaths = [Death.model_validate(s) for s in seen.status if not s["online"]]
    assert [read_birth(b).bdSeq for b in births] == [1, 1, 2, 2]  # a rebirth keeps the session's number
    assert [d.bdSeq for d in deaths] == [1, 2]
    vav = birth_devices(births[0])[0]
    assert vav.name == "vav-1"
    setpoint = next(p for p in vav.points if p.name == "cooling_setpoint")
    assert (setpoint.unit, setpoint.write_range) == ("degC", (26.0, 28.0))
    assert read_birth(births[0]).mqtt == "5"


async def test_the_last_will_carries_the_session_of_a_killed_agent(broker: Broker, tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(
        f'[gateway]\nid = "{GATEWAY}"\n[buffer]\npath = "{tmp_path / "b.db"}"\n'
        f'[mqtt]\nurl = "{broker.url}"\nkeepalive_s = 5\n'
    )
    async with central_subscriber(broker.port, GATEWAY) as seen:
        for _ in range(2):
            agent = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "edge_agent", "run", "--config", str(config),
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
            await async_wait_until(lambda: bool(seen.status) and seen.status[-1]["online"], 20, "a birth")
            agent.send_signal(signal.SIGKILL)
            await agent.wait()
            await async_wait_until(lambda: not seen.status[-1]["online"], 20, "the Last Will")
    sessions = [(s["online"], s["bdSeq"]) for s in seen.status]
    assert sessions == [(True, 1), (False, 1), (True, 2), (False, 2)]


async def test_a_broker_without_mqtt5_is_spoken_to_in_311(broker: Broker, tmp_path: Path) -> None:
    async with (
        mqtt311_front(broker.port) as front,
        Buffer(tmp_path / "b.db") as buffer,
        central_subscriber(broker.port, GATEWAY) as seen,
    ):
        await buffer.append(readings(10))
        async with running(Uplink(mqtt(front.port), GATEWAY, buffer, DEVICES)) as uplink:
            await async_wait_until(lambda: buffer.statistics().depth == 0, 10, "the readings sent")
            assert uplink.statistics().mqtt == "3.1.1"
        assert front.refused_v5 == 1  # asked once, then remembered
        assert read_birth(seen.status[0]).mqtt == "3.1.1"
        assert seen.seqs == list(range(1, 11))


async def test_mqtt5_only_never_falls_back(broker: Broker, tmp_path: Path) -> None:
    async with mqtt311_front(broker.port) as front, Buffer(tmp_path / "b.db") as buffer:
        await buffer.append(readings(10))
        uplink = Uplink(mqtt(front.port, protocol="5"), GATEWAY, buffer)
        async with running(uplink):
            await async_wait_until(lambda: front.refused_v5 >= 2, 10, "a second attempt")
            assert uplink.statistics().state is not UplinkState.CONNECTED
            assert "protocol" in (uplink.statistics().last_error or "").lower()
        assert front.relayed == 0
        assert buffer.statistics().depth == 10


async def test_backlog_drains_behind_live_readings_within_its_rate(broker: Broker, tmp_path: Path) -> None:
    """3,000 readings wait from an outage; once connected they go as historical batches at no more than
    20 messages/s, while readings taken after the connect go first, as live batches."""
    settings = {"batch_size": 100, "backlog_messages_per_s": 20.0}
    async with Buffer(tmp_path / "b.db") as buffer, central_subscriber(broker.port, GATEWAY) as seen:
        await buffer.append(readings(3000))
        async with running(Uplink(mqtt(broker.port, **settings), GATEWAY, buffer)) as uplink:
            await async_wait_until(lambda: uplink.statistics().state is UplinkState.CONNECTED, 5, "up")
            await buffer.append(readings(50, start=3000))
            await async_wait_until(lambda: buffer.statistics().depth == 0, 20, "everything sent")
    batches = [a.batch for a in seen.arrivals]
    historical = [b for b in batches if b.historical]
    current = [b for b in batches if not b.historical]
    assert [r.seq for b in historical for r in b.readings] == list(range(1, 3001))
    assert [r.seq for b in current for r in b.readings] == list(range(3001, 3051))
    assert all(b.backlog_last == 3000 for b in batches)
    assert batches.index(current[0]) < batches.index(historical[-1])  # live did not wait
    # 30 batches at 20/s after a burst of 20: the limiter spread the backlog over about half a second.
    times = [a.at for a in seen.arrivals if a.batch.historical]
    assert times[-1] - times[0] >= 0.4
    assert uplink.statistics().historical_published == 3000


async def test_failed_connects_burn_no_session_number(tmp_path: Path) -> None:
    """A broker that is not there yet: every attempt fails, and the first session that connects is still
    bdSeq 1 (receivers see no gap in the session numbers)."""
    port = free_port()
    attempts = 0

    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal attempts
        await reader.read(1)  # the CONNECT begins
        attempts += 1
        writer.write(bytes([0x20, 3, 0, 0x87, 0]))  # MQTT 5 CONNACK: not authorized
        await writer.drain()
        writer.close()

    async with Buffer(tmp_path / "b.db") as buffer:
        uplink = Uplink(mqtt(port, protocol="5"), GATEWAY, buffer, DEVICES)
        async with running(uplink):
            server = await asyncio.start_server(refuse, LOOPBACK, port)
            async with server:
                # the waits after refused connects: below 10 s, then 20 s, then 30 s (brokers.py)
                await async_wait_until(lambda: attempts >= 3, 45, "three failed connects")
            with run_mosquitto(tmp_path, port) as broker:
                await async_wait_until(lambda: uplink.statistics().state is UplinkState.CONNECTED, 45, "up")
                async with central_subscriber(broker.port, GATEWAY) as seen:  # the birth is retained
                    await async_wait_until(lambda: bool(seen.status), 5, "the birth")
                    assert read_birth(seen.status[-1]).bdSeq == 1
                    assert uplink.statistics().session == 1
