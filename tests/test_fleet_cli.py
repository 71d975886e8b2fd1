"""`edge-agent fleet` against a real mosquitto and two real agents polling simulated meters (one speaking the
json format, one compact): the central engineer's view lists both online with their readings; once one is
stopped it is listed offline, the other still online. An unreachable broker is a clear error, exit 3."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from edge_agent import __version__
from edge_agent.config import AgentConfig
from edge_agent.service.agent import Agent
from edge_sim.devices.meters.base import MeterReading
from edge_sim.devices.meters.sdm630 import Sdm630
from edge_sim.devices.modbus_servers import ModbusTcpMeterServer
from tests.support import LOOPBACK, Broker, async_wait_until, free_port, run_mosquitto, running_agent

pytestmark = pytest.mark.integration

LIBRARY, INFO_CENTRE = "library-gw", "info-centre-gw"


def gateway_config(
    gateway: str, unit: int, port: int, broker: Broker, state: Path, *, fmt: str
) -> AgentConfig:
    state.mkdir()
    return AgentConfig.model_validate(
        {
            "gateway": {"id": gateway},
            "buffer": {"path": str(state / "b.db")},
            "mqtt": {"url": broker.url, "format": fmt},
            "log": {"level": "warning"},
            "devices": [
                {
                    "name": "main-meter",
                    "protocol": "modbus-tcp",
                    "host": LOOPBACK,
                    "port": port,
                    "unit_id": unit,
                    "profile": "eastron-sdm630",
                }
            ],
            "pollers": [{"device": "main-meter", "interval_s": 0.5}],
        }
    )


@contextlib.asynccontextmanager
async def publishing(config: AgentConfig) -> AsyncIterator[Agent]:
    async with running_agent(config) as agent:
        await async_wait_until(
            lambda: agent.uplink.statistics().readings_published > 0, 20, f"{config.gateway.id}'s readings"
        )
        yield agent


async def fleet(*options: str) -> tuple[int, str, str]:
    """`edge-agent fleet OPTIONS` in a process of its own: exit code, stdout, stderr."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edge_agent", "fleet", *options,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(60):
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def by_gateway(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["gateway"]: row for row in document["gateways"]}


async def test_fleet_lists_both_gateways_then_one_offline_once_stopped(
    broker: Broker, tmp_path: Path
) -> None:
    meters = ModbusTcpMeterServer(LOOPBACK, 0, [Sdm630(unit_id=1), Sdm630(unit_id=2)])
    async with meters:
        for unit in (1, 2):
            await meters.show(unit, MeterReading(40_000.0 + unit, 1234.5, 0.0, 39_000.0, 50_000.0))
        library = gateway_config(LIBRARY, 1, meters.port, broker, tmp_path / "library", fmt="json")
        info_centre = gateway_config(INFO_CENTRE, 2, meters.port, broker, tmp_path / "info", fmt="compact")
        async with publishing(library):
            async with publishing(info_centre):
                code, out, err = await fleet("--broker", broker.url, "--json", "--once", "--for", "3")
                assert code == 0, err
                seen = by_gateway(json.loads(out))
                assert set(seen) == {LIBRARY, INFO_CENTRE}
                for gateway, fmt in ((LIBRARY, "json"), (INFO_CENTRE, "compact")):
                    row = seen[gateway]
                    assert (row["state"], row["format"], row["version"]) == ("online", fmt, __version__)
                    assert row["bdSeq"] == 1
                    assert row["last_reading"] is not None  # readings came while it watched
                    assert row["backlog"]["last_batch_historical"] is False
                    assert row["takeover"] is None
            # the information centre's agent stopped cleanly: its death is retained
            code, out, err = await fleet("--broker", broker.url, "--json", "--for", "2", "--refresh", "0.5")
            assert code == 0, err
            lines = out.splitlines()
            assert len(lines) >= 2  # a live document per refresh, one a line
            seen = by_gateway(json.loads(lines[-1]))
            assert (seen[INFO_CENTRE]["state"], seen[LIBRARY]["state"]) == ("offline", "online")
            assert seen[INFO_CENTRE]["version"] is None  # no birth retained: its last one was replaced
            code, out, err = await fleet("--broker", broker.url, "--once", "--for", "1")
            assert code == 0, err
            table = {line.split()[1]: line for line in out.splitlines() if "-gw " in line}
            assert "offline" in table[INFO_CENTRE]
            assert "online" in table[LIBRARY]
            assert "2 gateways: 1 online, 1 offline" in out


async def test_an_unreachable_broker_is_a_clear_error_and_exit_3() -> None:
    url = f"mqtt://{LOOPBACK}:{free_port()}"
    code, out, err = await fleet("--broker", url, "--json", "--once", "--for", "1")
    assert code == 3
    assert out == ""
    assert f"cannot reach the broker at {url}" in err


async def next_document(
    lines: asyncio.StreamReader, wanted: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """Read the live JSON lines until one satisfies `wanted` (bounded by the caller's timeout)."""
    while True:
        line = await lines.readline()
        assert line, "edge-agent fleet ended early"
        document: dict[str, Any] = json.loads(line)
        if wanted(document):
            return document


async def test_a_sparkplug_gateway_shows_from_its_nbirth_until_its_ndeath_and_ctrl_c_ends_the_watch(
    broker: Broker, tmp_path: Path
) -> None:
    watch = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edge_agent", "fleet", "--broker", broker.url, "--json", "--refresh", "0.3",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert watch.stdout is not None
    try:
        async with asyncio.timeout(60):
            await next_document(watch.stdout, lambda d: d["connection"] == "connected")  # subscribed
            meters = ModbusTcpMeterServer(LOOPBACK, 0, [Sdm630(unit_id=1)])
            async with meters:
                await meters.show(1, MeterReading(40_001.0, 1234.5, 0.0, 39_000.0, 50_000.0))
                config = gateway_config("sp-gw", 1, meters.port, broker, tmp_path / "sp", fmt="sparkplug")
                async with publishing(config):
                    seen = await next_document(
                        watch.stdout,
                        lambda d: any(g["last_reading"] is not None for g in d["gateways"]),
                    )
                    (gateway,) = seen["gateways"]
                    assert (gateway["gateway"], gateway["state"], gateway["format"]) == (
                        "sp-gw",
                        "online",
                        "sparkplug",
                    )
                    assert gateway["bdSeq"] == 1
                await next_document(watch.stdout, lambda d: d["gateways"][0]["state"] == "offline")
            watch.send_signal(signal.SIGINT)
            out, err = await watch.communicate()
    finally:
        if watch.returncode is None:
            watch.kill()
            await watch.wait()
    assert watch.returncode == 0, err.decode()
    assert json.loads(out.splitlines()[-1])["gateways"][0]["state"] == "offline"  # the last word


async def listening(port: int) -> None:
    while True:
        try:
            _, writer = await asyncio.open_connection(LOOPBACK, port)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        writer.close()
        await writer.wait_closed()
        return


async def test_a_lost_broker_is_reported_and_the_watch_resubscribes_when_it_is_back(tmp_path: Path) -> None:
    port = free_port()
    with run_mosquitto(tmp_path, port) as broker:
        watch = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "edge_agent", "fleet", "--broker", broker.url, "--json", "--refresh", "0.3",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert watch.stdout is not None
        async with asyncio.timeout(30):
            await next_document(watch.stdout, lambda d: d["connection"] == "connected")
    try:
        async with asyncio.timeout(60):
            lost = await next_document(watch.stdout, lambda d: d["connection"] != "connected")
            assert lost["gateways"] == []
            with run_mosquitto(tmp_path, port) as again:
                await listening(
                    again.port
                )  # the port's old connections may have fooled run_mosquitto's check
                async with aiomqtt.Client(LOOPBACK, again.port, identifier="late-gw") as gateway:
                    death = {"online": False, "gateway": "late-gw", "bdSeq": 4}
                    await gateway.publish("edge/late-gw/status", json.dumps(death), qos=1, retain=True)
                back = await next_document(
                    watch.stdout, lambda d: d["connection"] == "connected" and d["gateways"]
                )
                assert [(g["gateway"], g["state"]) for g in back["gateways"]] == [("late-gw", "offline")]
            watch.send_signal(signal.SIGINT)
            await watch.communicate()
    finally:
        if watch.returncode is None:
            watch.kill()
            await watch.wait()
    assert watch.returncode == 0
