"""Central commands over a real mosquitto to a running agent that polls a simulated BACnet room
controller: replies where the sender asked, writes within limits at the agent's priority, and junk that
never crashes the agent nor writes anything. Commands are untrusted input: bad response topics, retained
commands, replays, expired, unsigned or altered commands, floods and oversize payloads are each answered
with an error and change nothing on the device (counted device-side)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge_agent import signing
from edge_agent.config import AgentConfig, BacnetConfig, BacnetDevice
from edge_agent.protocols.bacnet.client import BacnetClient, local_stack
from edge_agent.service.agent import Agent
from edge_agent.uplink.admission import signed_bytes
from edge_agent.uplink.commands import MAX_COMMAND_BYTES
from edge_sim.devices.bacnet.controllers import RoomController
from edge_sim.site.site import Site
from tests.conftest import SIM_START
from tests.support import LOOPBACK, Broker, async_wait_until, free_port, in_background, running_agent

pytestmark = pytest.mark.integration

GATEWAY = "gw-commands"
BASE = f"edge/{GATEWAY}"
PRIORITY = 10  # the device's write_priority (the default)


def expires(seconds: float = 60) -> str:
    """An `expires` this many seconds from now, as central writes it."""
    return (
        (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat(timespec="seconds").replace("+00:00", "Z")
    )


class Central:
    """A central server's MQTT 5 client: sends commands, collects replies with their properties."""

    def __init__(self, client: aiomqtt.Client) -> None:
        self.client = client
        self.replies: list[tuple[str, dict[str, Any], bytes | None]] = []  # topic, reply, correlation

    async def send(
        self,
        payload: bytes,
        response_topic: str | None = None,
        correlation: bytes | None = None,
        *,
        retain: bool = False,
    ) -> None:
        properties = None
        if response_topic is not None:
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            properties.ResponseTopic = response_topic
            if correlation is not None:
                properties.CorrelationData = correlation
        await self.client.publish(f"{BASE}/command", payload, qos=1, properties=properties, retain=retain)

    async def ask(self, command: dict[str, Any], **route: Any) -> dict[str, Any]:
        """Send a command (an `expires` a minute ahead added when it has none) and wait for a reply."""
        return await self.ask_raw(json.dumps({"expires": expires(), **command}).encode(), **route)

    async def ask_raw(self, payload: bytes, **route: Any) -> dict[str, Any]:
        count = len(self.replies)
        await self.send(payload, **route)
        await async_wait_until(lambda: len(self.replies) > count, 10, f"a reply to {payload[:80]!r}")
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


class WriteCounter:
    """Counts the WriteProperty requests a simulated controller receives: the device's own record."""

    def __init__(self, controller: RoomController) -> None:
        self.count = 0
        app = controller.stack.app
        serve = app.do_WritePropertyRequest

        async def counted(apdu: Any) -> None:
            self.count += 1
            await serve(apdu)

        app.do_WritePropertyRequest = counted


def agent_config(broker: Broker, tmp_path: Path, port: int, **sections: Any) -> AgentConfig:
    """The agent of these tests, polling the room controller at `port`; `sections` replace whole sections."""
    return AgentConfig.model_validate(
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
            **sections,
        }
    )


@contextlib.asynccontextmanager
async def agent_up(config: AgentConfig) -> AsyncIterator[Agent]:
    async with running_agent(config) as agent:
        await async_wait_until(lambda: agent.uplink.statistics().state == "connected", 10, "the uplink")
        await async_wait_until(lambda: agent.pollers[0].statistics().health == "up", 10, "the device up")
        yield agent


@contextlib.asynccontextmanager
async def agent_with_room(broker: Broker, tmp_path: Path) -> AsyncIterator[tuple[Agent, BacnetDevice]]:
    port = free_port()
    config = agent_config(broker, tmp_path, port)
    device = config.devices[0]
    assert isinstance(device, BacnetDevice)
    async with room(port), agent_up(config) as agent:
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

        reply = await seen.ask({"id": "t-2", "command": "status"})
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


JUNK_IDS = itertools.count()
VALID_ARGS: dict[str, Any] = {"device": "vav", "point": "cooling_setpoint", "value": 27.0}


def write(**changes: Any) -> bytes:
    """A write_point command to the setpoint, with some of its arguments changed."""
    body = {
        "id": f"j-{next(JUNK_IDS)}",
        "expires": expires(),
        "command": "write_point",
        "args": {**VALID_ARGS, **changes},
    }
    return json.dumps(body).encode()


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


# --- commands are untrusted input ------------------------------------------------------------------


def setpoint_write(request_id: str, value: float | None, **fields: Any) -> dict[str, Any]:
    args = {"device": "vav", "point": "cooling_setpoint", "value": value}
    return {"id": request_id, "expires": expires(), "command": "write_point", "args": args, **fields}


BAD_RESPONSE_TOPICS = [
    f"{BASE}/reply/+",
    f"{BASE}/reply/#",
    f"{BASE}/reply/+/x",
    f"{BASE}/reply/",
    f"{BASE}/reply//x",
    f"{BASE}/replyx",
    "central/replies",
    "edge/gw-other/reply",
]


async def test_bad_response_topics_get_an_error_reply_and_the_agent_stays_up(
    broker: Broker, tmp_path: Path
) -> None:
    """Wildcards, empty levels and topics outside the gateway's reply topic: each command is answered with
    an error on the reply topic and not run; the agent keeps answering."""
    port = free_port()
    async with room(port) as controller, central(broker.port) as seen:
        writes = WriteCounter(controller)
        async with agent_up(agent_config(broker, tmp_path, port)) as agent:
            for i, topic in enumerate(BAD_RESPONSE_TOPICS):
                reply = await seen.ask(
                    setpoint_write(f"rt-{i}", 27.5), response_topic=topic, correlation=b"c"
                )
                assert seen.replies[-1][0] == f"{BASE}/reply", topic
                assert seen.replies[-1][2] == b"c"  # the correlation data still comes back
                assert reply["ok"] is False
                assert reply["id"] == f"rt-{i}"
                assert reply["error"]["code"] == "bad-response-topic", reply
                assert reply["error"]["field"] == "response_topic"
            assert (await seen.ask({"id": "alive", "command": "status"}))["ok"] is True
            assert agent.uplink.statistics().connects == 1  # no session was lost on the way
        assert writes.count == 0


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_a_retained_command_is_refused_and_cleared(
    broker: Broker, tmp_path: Path, protocol: str
) -> None:
    """A retained write left on the broker, and one published retained (with a wildcard response topic) while
    the agent runs: neither is run when the broker replays it, each is answered with an error and cleared, and
    a restart finds nothing to replay. MQTT 5 sees the retain flag of a live message too (retain as
    published) and refuses it at once; 3.1.1 cannot tell it from a live command until it is replayed."""
    port = free_port()
    async with room(port) as controller, central(broker.port) as seen:
        writes = WriteCounter(controller)
        await seen.send(json.dumps(setpoint_write("kept-1", 27.5)).encode(), retain=True)
        config = agent_config(broker, tmp_path, port, mqtt={"url": broker.url, "protocol": protocol})
        async with agent_up(config) as agent:
            await async_wait_until(lambda: len(seen.replies) >= 1, 10, "the retained command's reply")
            _, reply, _ = seen.replies[0]
            assert (reply["id"], reply["ok"], reply["error"]["code"]) == ("kept-1", False, "retained")
            live = setpoint_write("kept-2", 27.0)
            await seen.send(json.dumps(live).encode(), response_topic=f"{BASE}/reply/#", retain=True)
            await async_wait_until(lambda: len(seen.replies) >= 2, 10, "a reply to the second")
            assert seen.replies[1][0] == f"{BASE}/reply"
            assert seen.replies[1][1]["id"] == "kept-2"
            if protocol == "5":
                assert seen.replies[1][1]["error"]["code"] == "retained"
            else:  # no response topic in 3.1.1, and no retain flag on a live message: it ran
                assert seen.replies[1][1]["ok"] is True
            assert agent.uplink.statistics().connects == 1
        async with agent_up(config):  # 3.1.1: the second is replayed, refused and cleared now
            if protocol == "3.1.1":
                await async_wait_until(lambda: len(seen.replies) >= 3, 10, "the replayed command's reply")
            assert (await seen.ask({"id": "alive", "command": "status"}))["ok"] is True
        async with agent_up(config):  # cleared: nothing is replayed any more
            assert (await seen.ask({"id": "alive-2", "command": "status"}))["ok"] is True
        codes = [(r["id"], None if r["ok"] else r["error"]["code"]) for _, r, _ in seen.replies]
        if protocol == "5":
            assert codes == [
                ("kept-1", "retained"),
                ("kept-2", "retained"),
                ("alive", None),
                ("alive-2", None),
            ]
            assert writes.count == 0
        else:
            replayed = [("kept-1", "retained"), ("kept-2", None), ("kept-2", "retained")]
            assert codes == [*replayed, ("alive", None), ("alive-2", None)]
            assert writes.count == 1  # the live one, once


async def test_a_replayed_command_id_runs_once_across_reconnects_and_restarts(
    broker: Broker, tmp_path: Path
) -> None:
    """The issue's case: a write, then a newer one, then the first sent again (a replay): the replay gets
    the first reply again and does not undo the newer write, after a reconnect and after a restart."""
    port = free_port()
    first = json.dumps(setpoint_write("w-1", 27.5)).encode()
    async with room(port) as controller, central(broker.port) as seen:
        writes = WriteCounter(controller)
        config = agent_config(broker, tmp_path, port)
        device = config.devices[0]
        assert isinstance(device, BacnetDevice)
        async with agent_up(config) as agent:
            original = await seen.ask_raw(first)
            assert original["ok"] is True
            assert (await seen.ask(setpoint_write("w-2", 26.5)))["ok"] is True
            assert writes.count == 2
            assert await seen.ask_raw(first) == original  # the first reply again, not a second run
            broker.pause()  # the session is lost and comes back
            await async_wait_until(
                lambda: agent.uplink.statistics().state != "connected", 30, "the link lost"
            )
            broker.resume()
            await async_wait_until(lambda: agent.uplink.statistics().state == "connected", 45, "reconnected")
            assert await seen.ask_raw(first) == original
        async with agent_up(config):  # a restart: the ids are on disk
            assert await seen.ask_raw(first) == original
            reused = await seen.ask(setpoint_write("w-1", 26.0))  # the same id with other content
            assert reused["error"]["code"] == "duplicate"
        assert writes.count == 2
        assert (await priority_slots(device))[PRIORITY - 1] == 26.5  # the newer write stands


async def test_expired_and_far_future_commands_are_refused(broker: Broker, tmp_path: Path) -> None:
    port = free_port()
    async with room(port) as controller, central(broker.port) as seen:
        writes = WriteCounter(controller)
        async with agent_up(agent_config(broker, tmp_path, port, commands={"max_expiry_s": 600})):
            cases = {"old": expires(-120), "far": expires(3600), "none": None, "garbled": "tomorrow"}
            for name, when in cases.items():
                command = setpoint_write(name, 27.5, expires=when)
                if when is None:
                    del command["expires"]
                reply = await seen.ask_raw(json.dumps(command).encode())
                assert reply["ok"] is False
                assert reply["error"]["field"] == "expires", reply
                assert reply["error"]["code"] == ("expired" if name in ("old", "far") else "invalid")
            assert (await seen.ask(setpoint_write("in-time", 27.5)))["ok"] is True
        assert writes.count == 1


def signed(key: Any, command: dict[str, Any], topic: str = f"{BASE}/command") -> dict[str, str]:
    text = json.dumps(command)
    return {"signed": text, "signature": signing.sign(key, signed_bytes(topic, text))}


async def test_with_signing_on_only_commands_signed_for_this_gateway_run(
    broker: Broker, tmp_path: Path
) -> None:
    key, stranger = signing.new_private_key(), signing.new_private_key()
    port = free_port()
    async with room(port) as controller, central(broker.port) as seen:
        writes = WriteCounter(controller)
        trusted = {"trusted_keys": [signing.public_key_text(key)]}
        async with agent_up(agent_config(broker, tmp_path, port, commands=trusted)):
            unsigned = await seen.ask(setpoint_write("u-1", 27.5))
            assert (unsigned["id"], unsigned["error"]["code"]) == ("u-1", "unsigned")  # matched by its id
            altered = signed(key, setpoint_write("a-1", 27.5))
            altered["signed"] = altered["signed"].replace("27.5", "26.5")
            other_gateway = signed(key, setpoint_write("o-1", 27.5), topic="edge/gw-other/command")
            wrong_key = signed(stranger, setpoint_write("k-1", 27.5))
            for envelope, claimed in ((altered, "a-1"), (other_gateway, "o-1"), (wrong_key, "k-1")):
                reply = await seen.ask_raw(json.dumps(envelope).encode())
                assert (reply["ok"], reply["error"]["code"]) == (False, "bad-signature"), reply
                assert reply["id"] == claimed  # the id it claims, so the sender can match the refusal
            assert writes.count == 0
            reply = await seen.ask_raw(json.dumps(signed(key, setpoint_write("s-1", 27.5))).encode())
            assert (reply["ok"], reply["id"]) == (True, "s-1")
        assert writes.count == 1


async def test_a_flood_gets_a_reply_for_every_command(broker: Broker, tmp_path: Path) -> None:
    """1,000 commands sent as fast as the broker takes them: each is answered, done or "busy"."""
    async with agent_with_room(broker, tmp_path) as (agent, _), central(broker.port) as seen:
        for i in range(1000):
            await seen.send(json.dumps({"id": f"f-{i}", "expires": expires(), "command": "status"}).encode())
        await async_wait_until(lambda: len(seen.replies) >= 1000, 120, "a reply to every command")
        replies = {r["id"]: r for _, r, _ in seen.replies}
        assert sorted(replies) == sorted(f"f-{i}" for i in range(1000))
        assert len(seen.replies) == 1000
        busy = [r for r in replies.values() if not r["ok"]]
        assert all(r["error"]["code"] == "busy" for r in busy)
        assert agent.uplink.statistics().connects == 1


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_an_oversize_payload_is_refused_unread(broker: Broker, tmp_path: Path, protocol: str) -> None:
    """Over MAX_COMMAND_BYTES: answered too-large with no id (it was not parsed); over the MQTT 5 maximum
    packet size the broker does not even deliver it. The agent answers the next command."""
    port = free_port()
    async with room(port) as controller, central(broker.port) as seen:
        writes = WriteCounter(controller)
        config = agent_config(broker, tmp_path, port, mqtt={"url": broker.url, "protocol": protocol})
        async with agent_up(config):
            pad = "x" * (MAX_COMMAND_BYTES + 1)
            reply = await seen.ask_raw(json.dumps({**setpoint_write("big", 27.5), "pad": pad}).encode())
            assert (reply["id"], reply["error"]["code"]) == (None, "too-large")
            huge = json.dumps({**setpoint_write("huge", 27.5), "pad": "x" * 10_000_000}).encode()
            if protocol == "3.1.1":  # delivered, and refused unread
                reply = await seen.ask_raw(huge)
                assert (reply["id"], reply["error"]["code"]) == (None, "too-large")
            else:  # the broker keeps it from us
                await seen.send(huge)
            reply = await seen.ask({"id": "after", "command": "status"})
            assert (reply["id"], reply["ok"]) == ("after", True)
            assert len(seen.replies) == (3 if protocol == "3.1.1" else 2)
        assert writes.count == 0
