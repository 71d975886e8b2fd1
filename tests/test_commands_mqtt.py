"""Central commands over a real mosquitto to a running agent that polls a simulated BACnet room
controller: replies where the sender asked, writes within limits at the agent's priority, and junk that
never crashes the agent nor writes anything."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge_agent.config import AgentConfig, BacnetConfig, BacnetDevice
from edge_agent.protocols.bacnet.client import BacnetClient, local_stack
from edge_agent.service.agent import Agent
from edge_sim.devices.bacnet.controllers import RoomController
from edge_sim.site.site import Site
from tests.conftest import SIM_START
from tests.support import LOOPBACK, Broker, async_wait_until, free_port, in_background, running_agent

pytestmark = pytest.mark.integration

GATEWAY = "gw-commands"
BASE = f"edge/{GATEWAY}"
PRIORITY = 10  # the device's write_priority (the default)


class Central:
    """A central server's MQTT 5 client: sends commands, collects replies with their properties."""

    def __init__(self, client: aiomqtt.Client) -> None:
        self.client = client
        self.replies: list[tuple[str, dict[str, Any], bytes | None]] = []  # topic, reply, correlation

    async def send(
        self, payload: bytes, response_topic: str | None = None, correlation: bytes | None = None
    ) -> None:
        properties = None
        if response_topic is not None:
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            properties.ResponseTopic = response_topic
            if correlation is not None:
                properties.CorrelationData = correlation
        await self.client.publish(f"{BASE}/command", payload, qos=1, properties=properties)

    async def ask(self, command: dict[str, Any], **route: Any) -> dict[str, Any]:
        count = len(self.replies)
        await self.send(json.dumps(command).encode(), **route)
        await async_wait_until(lambda: len(self.replies) > count, 10, f"a reply to {command}")
        return self.replies[-1][1]


@contextlib.asynccontextmanager
async def central(port: int) -> AsyncIterator[Central]:
    async with aiomqtt.Client(
        LOOPBACK, port, identifier="central", protocol=aiomqtt.ProtocolVersion.V5
    ) as client:
        seen = Central(client)
        await client.subscribe(f"{BASE}/reply/#", qos=1)  # the reply topic and everything below it

        async def collect() -> None:
            async for message in client.messages:
                assert isinstance(message.payload, bytes)
                correlation = getattr(message.properties, "CorrelationData", None)
                seen.replies.append((str(message.topic), json.loads(message.payload), correlation))

        async with in_background(collect()):
            yield seen


@contextlib.asynccontextmanager
async def room(port: int) -> AsyncIterator[RoomController]:
    controller = RoomController(
        Site(SIM_START, seed=0).building("library").zones[0], 1301, f"{LOOPBACK}:{port}", "library"
    )
    async with controller.stack:
        yield controller


async def priority_slots(device: BacnetDevice) -> list[float | None]:
    """The setpoint's priority array, read by a BACnet client of the test's own."""
    stack = local_stack(BacnetConfig(local_address=f"{LOOPBACK}:0"))
    async with stack, asyncio.timeout(5), BacnetClient(device, stack) as client:
        return await client.read_priority_array("cooling_setpoint")


@contextlib.asynccontextmanager
async def agent_with_room(broker: Broker, tmp_path: Path) -> AsyncIterator[tuple[Agent, BacnetDevice]]:
    port = free_port()
    config = AgentConfig.model_validate(
        {
            "gateway": {"id": GATEWAY},
            "buffer": {"path": str(tmp_path / "b.db")},
            "mqtt": {"url": broker.url},
            "bacnet": {"local_address": f"{LOOPBACK}:0"},
            "control": {"demand_target_limits_kw": [50, 400]},
            "log": {"level": "warning"},
            "devices": [
                {
                    "name": "vav",
                    "protocol": "bacnet-ip",
                    "host": f"{LOOPBACK}:{port}",
                    "instance": 1301,
                    "profile": "edge-sim-vav",
                }
            ],
            "pollers": [{"device": "vav", "interval_s": 1.0}],
        }
    )
    device = config.devices[0]
    assert isinstance(device, BacnetDevice)
    async with room(port), running_agent(config) as agent:
        await async_wait_until(lambda: agent.uplink.statistics().state == "connected", 10, "the uplink")
        await async_wait_until(lambda: agent.pollers[0].statistics().health == "up", 10, "the device up")
        yield agent, device


async def test_commands_are_answered_where_the_sender_asked(broker: Broker, tmp_path: Path) -> None:
    # No settling needed: the agent's uplink is connected only once its command subscription is acknowledged,
    # and central() yields once its own reply subscription is.
    async with agent_with_room(broker, tmp_path) as (agent, device), central(broker.port) as seen:
        reply = await seen.ask(
            {"id": "t-1", "command": "set_demand_target", "args": {"kw": 180}},
            response_topic=f"{BASE}/reply/central-1",
            correlation=b"\x00corr-1",
        )
        assert reply["ok"] is True
        assert seen.replies[-1][0] == f"{BASE}/reply/central-1"
        assert seen.replies[-1][2] == b"\x00corr-1"
        assert agent.control.demand_target_kw == 180.0

        # A response topic outside the gateway's prefix is not used: the reply goes to the reply topic.
        reply = await seen.ask({"id": "t-2", "command": "status"}, response_topic="central/replies")
        assert seen.replies[-1][0] == f"{BASE}/reply"
        assert reply["id"] == "t-2"
        assert reply["result"]["buffer"]["dropped"] == 0
        assert reply["result"]["control"]["demand_target_kw"] == 180.0

        reply = await seen.ask(
            {
                "id": "t-3",
                "command": "write_point",
                "args": {"device": "vav", "point": "cooling_setpoint", "value": 27.5},
            }
        )
        assert reply["ok"] is True, reply
        assert (await priority_slots(device))[PRIORITY - 1] == 27.5

        reply = await seen.ask(
            {
                "id": "t-4",
                "command": "write_point",
                "args": {"device": "vav", "point": "cooling_setpoint", "value": 24.0},
            }
        )
        assert reply["ok"] is False, seen.replies[-3:]
        assert reply["error"]["code"] == "out-of-limits"
        reply = await seen.ask(
            {
                "id": "t-5",
                "command": "write_point",
                "args": {"device": "vav", "point": "cooling_setpoint", "value": 27.0, "priority": 8},
            }
        )
        assert reply["error"]["code"] == "out-of-limits", seen.replies[-3:]
        slots = await priority_slots(device)
        assert slots[PRIORITY - 1] == 27.5  # neither refused write touched the controller
        assert slots[7] is None

        reply = await seen.ask(
            {
                "id": "t-6",
                "command": "write_point",
                "args": {"device": "vav", "point": "cooling_setpoint", "value": None},
            }
        )
        assert reply["ok"] is True
        assert await priority_slots(device) == [None] * 16


VALID_ARGS: dict[str, Any] = {"device": "vav", "point": "cooling_setpoint", "value": 27.0}


def write(**changes: Any) -> bytes:
    """A write_point command to the setpoint, with some of its arguments changed."""
    return json.dumps({"id": "j", "command": "write_point", "args": {**VALID_ARGS, **changes}}).encode()


JUNK: list[Callable[[random.Random], bytes]] = [
    lambda rng: rng.randbytes(rng.randrange(1, 200)),
    lambda rng: write()[: rng.randrange(1, 60)],
    lambda rng: b'{"id": "j", "command": "status", "pad": "' + b"x" * 20_000 + b'"}',
    lambda rng: json.dumps(
        {
            "id": "j",
            "command": rng.choice(["writepoint", "reboot", "", "WRITE_POINT", None, 7]),
            "args": VALID_ARGS,
        }
    ).encode(),
    lambda rng: write(
        value=rng.choice([24.0, 30.0, -1e308, 1e308, 25.999, 28.001, "27", True, [27], {"v": 27}])
    ),
    lambda rng: write(point=rng.choice(["zone_temperature", "heating_setpoint_x", "", "../vav"]), value=19.0),
    lambda rng: write().replace(b"27.0", b"NaN"),
    lambda rng: write(priority=rng.choice([0, 1, 8, 16, 17, "10", 9.5])),
]
"""Malformed, mistyped, oversized, unknown and out-of-limits commands."""


async def test_junk_commands_never_crash_the_agent_nor_write(broker: Broker, tmp_path: Path) -> None:
    rng = random.Random(5)
    async with agent_with_room(broker, tmp_path) as (agent, device), central(broker.port) as seen:
        for _ in range(150):
            await seen.send(rng.choice(JUNK)(rng))
        await async_wait_until(lambda: len(seen.replies) >= 150, 30, "a reply to every junk command")
        assert len(seen.replies) == 150
        assert all(reply["ok"] is False for _, reply, _ in seen.replies)
        assert await priority_slots(device) == [None] * 16  # nothing was written
        reply = await seen.ask({"id": "alive", "command": "status"})  # and the agent still answers
        assert reply["ok"] is True
        assert agent.uplink.statistics().commands == 151
