"""A configuration pushed over MQTT (apply_config) to a real agent process polling a simulated meter, through
a real mosquitto: a bad file is refused with the very messages `edge-agent config check` prints; a good one is
applied (the agent restarts on it) and kept once healthy; one that validates but leaves every device down is
rolled back by the agent itself within [remote] health_timeout_s; one the agent cannot start on is rolled
back at once. The birth's `config` (hash, version) follows each step, and each step is an event."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_agent import signing
from edge_agent.uplink.admission import signed_bytes
from edge_sim.devices.meters.sdm630 import Sdm630
from edge_sim.devices.modbus_servers import ModbusTcpMeterServer
from tests.support import (
    LOOPBACK,
    Broker,
    agent_process,
    async_wait_until,
    free_port,
    in_background,
    notify_socket,
    read_batch,
)

pytestmark = pytest.mark.integration

GATEWAY = "gw-config-push"
BASE = f"edge/{GATEWAY}"
HEALTH_TIMEOUT_S = 4.0  # [remote] health_timeout_s of the running files
STEP_S = 60.0  # bound on each wait: a restart, a trial, a birth


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def agent_toml(tmp_path: Path, broker: Broker, meter_port: int, key: Ed25519PrivateKey, **more: Any) -> str:
    """The gateway's file: one SDM630 polled every `interval_s` (0.5 s); `bacnet`: [bacnet] local_address."""
    bacnet = f'[bacnet]\nlocal_address = "{more["bacnet"]}"\n' if "bacnet" in more else ""
    return (
        f'[gateway]\nid = "{GATEWAY}"\n'
        f'[buffer]\npath = "{tmp_path / "b.db"}"\n'
        f'[mqtt]\nurl = "{broker.url}"\n'
        f'[commands]\ntrusted_keys = ["{signing.public_key_text(key)}"]\n'
        f"[remote]\nhealth_timeout_s = {HEALTH_TIMEOUT_S}\n"
        f'[log]\nformat = "json"\n{bacnet}'
        f'[[devices]]\nname = "main-meter"\nprotocol = "modbus-tcp"\nhost = "{LOOPBACK}"\n'
        f'port = {meter_port}\nprofile = "eastron-sdm630"\n'
        f'[[pollers]]\ndevice = "main-meter"\ninterval_s = {more.get("interval_s", 0.5)}\n'
    )


@dataclass
class Central:
    """The central platform: sends signed commands, sees births, replies and events in order."""

    client: aiomqtt.Client
    key: Ed25519PrivateKey
    births: list[dict[str, Any]] = field(default_factory=list)
    replies: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    seqs: list[int] = field(default_factory=list)
    sent: int = 0

    async def ask(self, command: str, timeout_s: float = STEP_S, **args: Any) -> dict[str, Any]:
        """A signed command, expiring in a minute; its reply."""
        expires = (datetime.now(UTC) + timedelta(seconds=60)).isoformat(timespec="seconds")
        self.sent += 1
        request = {"id": f"c-{self.sent}", "expires": expires.replace("+00:00", "Z"), "command": command}
        text = json.dumps({**request, "args": args}, separators=(",", ":"))
        signature = signing.sign(self.key, signed_bytes(f"{BASE}/command", text))
        envelope = {"signed": text, "signature": signature}
        await self.client.publish(f"{BASE}/command", json.dumps(envelope).encode(), qos=1)
        answered = lambda: any(r["id"] == request["id"] for r in self.replies)  # noqa: E731
        await async_wait_until(answered, timeout_s, f"a reply to {command}")
        return next(r for r in self.replies if r["id"] == request["id"])

    async def listening(self) -> None:
        """Once the agent answers commands (its birth comes before its command subscription)."""
        for _ in range(int(STEP_S)):
            with contextlib.suppress(AssertionError):
                await self.ask("status", timeout_s=1.0)
                return
        raise AssertionError("the agent does not answer commands")

    def config_birth(self, sha: str, version: str | None) -> Callable[[], bool]:
        wanted = {"sha256": sha, "version": version}
        return lambda: bool(self.births) and self.births[-1].get("config") == wanted

    def event(self, step: str, version: str | None = None) -> Callable[[], bool]:
        return lambda: any(e["step"] == step and e.get("version") == version for e in self.events)


@contextlib.asynccontextmanager
async def central(broker: Broker, key: Ed25519PrivateKey) -> AsyncIterator[Central]:
    async with aiomqtt.Client(LOOPBACK, broker.port, identifier="central", keepalive=600) as client:
        seen = Central(client, key)
        for topic in ("status", "reply", "events", "readings"):
            await client.subscribe(f"{BASE}/{topic}", qos=1)

        async def collect() -> None:
            async for message in client.messages:
                assert isinstance(message.payload, bytes)
                data = json.loads(message.payload)
                topic = str(message.topic).rsplit("/", 1)[1]
                if topic == "status" and data["online"]:
                    seen.births.append(data)
                elif topic == "reply":
                    seen.replies.append(data)
                elif topic == "events" and data.get("kind") == "config":
                    seen.events.append(data)
                elif topic == "readings":
                    batch = read_batch(GATEWAY, message.payload, {b["bdSeq"]: b for b in seen.births})
                    seen.seqs.extend(reading.seq for reading in batch.readings)

        async with in_background(collect()):
            yield seen


@contextlib.asynccontextmanager
async def gateway(
    config: Path, log: Path, notify: str | None = None
) -> AsyncIterator[asyncio.subprocess.Process]:
    """`edge-agent run --config CONFIG`, its log in `log`, telling systemd's `notify` socket (if any) how it
    is doing; stopped with SIGTERM at the end, exiting 0."""
    env = None if notify is None else {**os.environ, "NOTIFY_SOCKET": notify}
    with log.open("wb") as stderr:
        agent = await agent_process(config, stderr=stderr, env=env)
    try:
        yield agent
    finally:
        if agent.returncode is None:
            agent.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            await agent.wait()
    assert agent.returncode == 0, tail(log)


async def states(sock: socket.socket, seen: list[str]) -> None:
    """What the agent tells systemd (READY=1, RELOADING=1, STOPPING=1), in order, into `seen`."""
    loop = asyncio.get_running_loop()
    while True:
        datagram = (await loop.sock_recv(sock, 4096)).decode()
        seen.extend(line for line in datagram.splitlines() if line.endswith("=1"))


def tail(log: Path) -> str:
    return log.read_text()[-3000:]


async def config_check(text: str, path: Path) -> list[str]:
    """What `edge-agent config check` prints about `text` (as the file at `path`), one entry a line."""
    await asyncio.to_thread(path.write_text, text)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edge_agent", "config", "check", str(path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(30):
        _, err = await process.communicate()
    assert process.returncode == 2
    return err.decode().splitlines()


async def test_a_bad_configuration_is_refused_with_the_messages_of_config_check(
    broker: Broker, tmp_path: Path
) -> None:
    key = signing.new_private_key()
    config, log = tmp_path / "agent.toml", tmp_path / "agent.log"
    async with ModbusTcpMeterServer(LOOPBACK, 0, [Sdm630(unit_id=1)]) as meter:
        running = agent_toml(tmp_path, broker, meter.port, key)
        config.write_text(running)
        bad = (
            running.replace('protocol = "modbus-tcp"', 'protocol = "modbus-tpc"')
            .replace('device = "main-meter"', 'device = "main-metre"')
            .replace("[remote]\n", "[remote]\nhealth_timeout = 3\n")
        ) + f"# {'x' * 20_000}\n"  # over 16 KiB: apply_config alone may be
        async with central(broker, key) as seen, gateway(config, log):
            await async_wait_until(seen.config_birth(sha256(running), None), STEP_S, "the first birth")
            await seen.listening()
            reply = await seen.ask("apply_config", version="v2", config=bad)
            assert (reply["ok"], reply["error"]["code"], reply["error"]["field"]) == (
                False, "invalid", "args.config",
            )  # fmt: skip
            printed = await config_check(bad, tmp_path / "pushed.toml")
            heading, *problems = reply["error"]["message"].splitlines()
            assert len(problems) == 3, reply["error"]["message"]
            assert problems == printed[1:]  # the same messages, by name and line
            assert heading.split(": ", 1)[1] == printed[0].split(": ", 1)[1]  # "... not valid (3 problems)"
            assert "did you mean 'modbus-tcp'?" in problems[1] + problems[2]
            assert (await seen.ask("status"))["result"]["uplink"]["connects"] == 1  # no restart
            assert len(seen.births) == 1
        assert config.read_text() == running  # nothing written
        assert not (tmp_path / "agent.toml.last-good").exists()


async def test_a_good_configuration_is_applied_and_one_leaving_every_device_down_rolled_back(
    broker: Broker, tmp_path: Path
) -> None:
    key = signing.new_private_key()
    config, log = tmp_path / "agent.toml", tmp_path / "agent.log"
    async with ModbusTcpMeterServer(LOOPBACK, 0, [Sdm630(unit_id=1)]) as meter:
        first = agent_toml(tmp_path, broker, meter.port, key)
        good = agent_toml(tmp_path, broker, meter.port, key, interval_s=0.4)
        dead = agent_toml(tmp_path, broker, free_port(), key)  # valid; nothing answers there
        config.write_text(first)
        told: list[str] = []  # to systemd
        with notify_socket() as (path, sock):
            async with (
                central(broker, key) as seen,
                in_background(states(sock, told)),
                gateway(config, log, path) as agent,
            ):
                await async_wait_until(seen.config_birth(sha256(first), None), STEP_S, "the first birth")
                await seen.listening()
                reply = await seen.ask("apply_config", version="v2", config=good)
                assert reply["ok"], reply
                assert reply["result"]["sha256"] == sha256(good)
                assert reply["result"]["restart"] is True
                await async_wait_until(seen.config_birth(sha256(good), "v2"), STEP_S, "the birth of v2")
                await async_wait_until(seen.event("healthy", "v2"), STEP_S, "v2 healthy")
                assert seen.event("applied", "v2")()
                assert config.read_text() == good
                assert (tmp_path / "agent.toml.last-good").read_text() == first
                assert agent.returncode is None  # the same process, executed again
                await seen.listening()
                reply = await seen.ask("apply_config", version="v3", config=dead)
                assert reply["ok"], reply
                await async_wait_until(seen.config_birth(sha256(dead), "v3"), STEP_S, "the birth of v3")
                await async_wait_until(seen.config_birth(sha256(good), "v2"), STEP_S, "v2 back")
                await async_wait_until(seen.event("rolled-back", "v2"), STEP_S, "the rollback's event")
                rollback = next(e for e in seen.events if e["step"] == "rolled-back")
                assert "v3 rolled back to v2" in rollback["message"]
                assert f"not healthy within {HEALTH_TIMEOUT_S:g} s" in rollback["reason"]
                assert "main-meter" in rollback["reason"]
                assert rollback["sha256"] == sha256(good)
                assert not seen.event("healthy", "v3")()
                assert config.read_text() == good
                steps = [(b["config"]["version"], b["bdSeq"]) for b in seen.births]
                assert [version for version, _ in steps] == [None, "v2", "v3", "v2"]
                await async_wait_until(lambda: len(seen.seqs) > 0 and max(seen.seqs) > 50, STEP_S, "readings")
                top = max(seen.seqs)
                await async_wait_until(lambda: told.count("READY=1") == 4, STEP_S, "ready on v2 again")
                # Each restart a reload to systemd, same pid: never STOPPING=1, which would end the unit.
                assert told == ["READY=1", "RELOADING=1"] * 3 + ["READY=1"]
        # Three restarts, and the buffer kept across each: every reading's seq once at least, none missing.
        assert set(seen.seqs) >= set(range(1, top + 1))


async def test_a_configuration_the_agent_cannot_start_on_is_rolled_back_at_once(
    broker: Broker, tmp_path: Path
) -> None:
    key = signing.new_private_key()
    config, log = tmp_path / "agent.toml", tmp_path / "agent.log"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind((LOOPBACK, 0))
        port = taken.getsockname()[1]
        async with ModbusTcpMeterServer(LOOPBACK, 0, [Sdm630(unit_id=1)]) as meter:
            first = agent_toml(tmp_path, broker, meter.port, key)
            unstartable = agent_toml(tmp_path, broker, meter.port, key, bacnet=f"{LOOPBACK}:{port}")
            unstartable += (  # a BACnet device: the stack must bind the taken port, and cannot
                f'[[devices]]\nname = "room"\nprotocol = "bacnet-ip"\nhost = "{LOOPBACK}:{free_port()}"\n'
                'instance = 7\npoints = [{ name = "t", object = "analog-input,1", unit = "degC" }]\n'
            )
            config.write_text(first)
            async with central(broker, key) as seen, gateway(config, log):
                await async_wait_until(seen.config_birth(sha256(first), None), STEP_S, "the first birth")
                await seen.listening()
                reply = await seen.ask("apply_config", version="v2", config=unstartable)
                assert reply["ok"], reply
                await async_wait_until(seen.event("rolled-back"), STEP_S, "the rollback's event")
                await async_wait_until(seen.config_birth(sha256(first), None), STEP_S, "the first file back")
            rollback = next(e for e in seen.events if e["step"] == "rolled-back")
            assert "could not run on it" in rollback["reason"]
            assert "cannot bind" in rollback["reason"]
            assert [b["config"]["sha256"] for b in seen.births] == [sha256(first)] * 2  # v2 never came up
            assert config.read_text() == first
