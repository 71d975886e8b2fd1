"""The Sparkplug edge node and its primary host's STATE, on a real mosquitto with the agent polling a
simulated meter: nothing is published before the host is online, readings wait in the buffer meanwhile and
then arrive historical, each deleted only once acknowledged; a clean stop says NDEATH itself."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiomqtt
import pytest

from edge_agent.config import AgentConfig
from edge_agent.uplink.sparkplug.proto import Payload
from edge_sim.devices.meters.sdm630 import Sdm630
from edge_sim.devices.modbus_servers import ModbusTcpMeterServer
from tests.support import LOOPBACK, Broker, async_wait_until, in_background, running_agent

pytestmark = pytest.mark.integration

GROUP, GATEWAY, HOST = "site-7", "gw-state", "scada"


def config(broker: Broker, tmp_path: Path, meter_port: int) -> AgentConfig:
    return AgentConfig.model_validate(
        {
            "gateway": {"id": GATEWAY},
            "buffer": {"path": str(tmp_path / "b.db")},
            "mqtt": {"url": broker.url, "format": "sparkplug", "group_id": GROUP, "primary_host_id": HOST},
            "log": {"level": "warning"},
            "devices": [
                {"name": "meter", "protocol": "modbus-tcp", "host": LOOPBACK, "port": meter_port,
                 "profile": "eastron-sdm630", "only_points": ["total_power", "frequency"]},
            ],
            "pollers": [{"device": "meter", "interval_s": 0.2}],
        }
    )  # fmt: skip


@asynccontextmanager
async def host_client(broker: Broker) -> AsyncIterator[tuple[aiomqtt.Client, list[tuple[str, Payload]]]]:
    """A host's MQTT client, and every Sparkplug message of the group, in order."""
    seen: list[tuple[str, Payload]] = []
    async with aiomqtt.Client(LOOPBACK, broker.port, identifier="host") as client:
        await client.subscribe(f"spBv1.0/{GROUP}/#", qos=0)

        async def collect() -> None:
            async for message in client.messages:
                assert isinstance(message.payload, bytes)
                seen.append((str(message.topic).split("/")[2], Payload.FromString(message.payload)))

        async with in_background(collect()):
            yield client, seen


def state(online: bool) -> bytes:
    return json.dumps({"online": online, "timestamp": 1_800_000_000_000 + int(online)}).encode()


async def test_nothing_is_published_until_the_primary_host_is_online_and_the_wait_is_buffered(
    broker: Broker, tmp_path: Path
) -> None:
    async with (
        ModbusTcpMeterServer(LOOPBACK, 0, [Sdm630(unit_id=1)]) as meter,
        host_client(broker) as (client, seen),
    ):
        await client.publish(f"spBv1.0/STATE/{HOST}", state(False), qos=1, retain=True)
        async with running_agent(config(broker, tmp_path, meter.port)) as agent:
            waiting = f"waiting for the primary host {HOST!r} to be online"
            await async_wait_until(lambda: agent.uplink.statistics().last_error == waiting, 20, "the wait")
            await async_wait_until(lambda: agent.buffer.last_seq >= 20, 20, "readings buffered")
            assert agent.uplink.statistics().state != "connected"
            assert seen == []  # no NBIRTH, no data: the host is offline
            held = agent.buffer.last_seq
            assert agent.buffer.statistics().depth >= held  # all of it still in the buffer

            await client.publish(f"spBv1.0/STATE/{HOST}", state(True), qos=1, retain=True)
            await async_wait_until(
                lambda: agent.buffer.statistics().acknowledged >= held, 20, "the backlog sent"
            )
            kinds = [kind for kind, _ in seen]
            assert kinds[:2] == ["NBIRTH", "DBIRTH"]
            metrics = [m for kind, p in seen if kind == "DDATA" for m in p.metrics]
            assert sum(m.is_historical for m in metrics) >= held  # what waited arrives flagged historical
            (bd_seq,) = [m.long_value for m in seen[0][1].metrics if m.name == "bdSeq"]
        # A clean stop: NDEATH, said by the gateway (a clean disconnect suppresses the Will).
        await async_wait_until(lambda: seen[-1][0] == "NDEATH", 10, "NDEATH")
        assert [m.long_value for m in seen[-1][1].metrics if m.name == "bdSeq"] == [bd_seq]
