"""Issue 21, item 4: [mqtt] urls, several brokers tried in turn. A gateway whose broker is killed carries on
at the next one and every reading arrives; connection attempts after a fleet-wide cut are spread by jitter,
and an attempt over a link that resets it fails at once rather than at the connect timeout."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Literal

import aiomqtt
import pytest
from structlog.testing import capture_logs

from edge_agent.config import MqttConfig, parse_config
from edge_agent.errors import ConfigError
from edge_agent.store.buffer import Buffer
from edge_agent.uplink.brokers import FIRST_WAIT_S, LONGEST_WAIT_S, BrokerRotation
from edge_agent.uplink.client import CLOSED_BEFORE_CONNACK, UplinkClient
from edge_agent.uplink.commands import Delivery
from edge_agent.uplink.session import Uplink, UplinkState
from tests.support import (
    LOOPBACK,
    Central,
    async_wait_until,
    central_subscriber,
    in_background,
    run_mosquitto,
)
from tests.test_buffer import readings

GATEWAY = "gw-failover"


# --- [mqtt] urls ---------------------------------------------------------------------------------------


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "test")
    return caught.value.problems


def test_urls_list_the_brokers_in_order_with_their_default_ports() -> None:
    config = parse_config('[mqtt]\nurls = ["mqtt://node-a", "mqtts://node-b", "mqtt://10.0.0.3:1884"]\n', "t")
    shown = [(str(b), b.tls) for b in config.mqtt.brokers]
    assert shown == [("node-a:1883", False), ("node-b:8883", True), ("10.0.0.3:1884", False)]
    assert [str(b) for b in parse_config('[mqtt]\nurl = "mqtt://one"\n', "t").mqtt.brokers] == ["one:1883"]


@pytest.mark.parametrize(
    ("urls", "expected"),
    [
        ('["mqtt://a", "http://b"]', "mqtt.urls[1]: expected mqtt://HOST[:PORT] or mqtts://HOST[:PORT]"),
        ('["mqtt://a", "mqtt://b:0"]', "mqtt.urls[1]: bad port in 'mqtt://b:0': 1-65535"),
        (
            '["mqtt://user@a"]',
            "mqtt.urls[0]: expected mqtt://HOST[:PORT] or mqtts://HOST[:PORT], without a user",
        ),
        ('["mqtt://a", "mqtt://A:1883"]', "mqtt.urls: urls[1] 'mqtt://A:1883' is urls[0] again"),
        ("[]", "mqtt.urls: List should have at least 1 item"),
    ],
)
def test_each_url_is_checked_and_a_broker_listed_twice_is_refused(urls: str, expected: str) -> None:
    assert problems(f"[mqtt]\nurls = {urls}\n")[0].startswith(expected)


def test_url_and_urls_together_are_refused() -> None:
    found = problems('[mqtt]\nurl = "mqtt://a"\nurls = ["mqtt://b"]\n')
    assert found == ["mqtt: give url (one broker) or urls (several), not both (line 1)"]


def test_tls_settings_need_an_mqtts_broker_among_the_urls(tmp_path: Path) -> None:
    assert problems('[mqtt]\nurls = ["mqtt://a", "mqtt://b"]\nca_file = "ca.pem"\n')[0].startswith(
        "mqtt: ca_file and cert_file need an mqtts:// url"
    )
    mixed = parse_config('[mqtt]\nurls = ["mqtt://a", "mqtts://b"]\nca_file = "ca.pem"\n', "t").mqtt
    assert [b.tls for b in mixed.brokers] == [False, True]


# --- the order brokers are tried in, and the waits between ---------------------------------------------


def test_each_loss_or_refusal_moves_to_the_next_broker() -> None:
    rotation = BrokerRotation(MqttConfig(urls=["mqtt://a", "mqtt://b", "mqtt://c"]).brokers)
    assert rotation.current.host == "a"
    rotation.connected()
    rotation.lost()
    assert rotation.current.host == "b"
    tried = []
    for _ in range(4):
        rotation.refused()
        tried.append(rotation.current.host)
    assert tried == ["c", "a", "b", "c"]
    single = BrokerRotation(MqttConfig(url="mqtt://a").brokers)
    single.refused()
    assert single.current.host == "a"


def uniform_below(draws: list[float], ceiling: float) -> bool:
    """Every draw in [0, ceiling], a quarter of them in each quarter of it (full jitter)."""
    quarters = [sum(d < ceiling * q / 4 for d in draws) / len(draws) for q in (1, 2, 3)]
    inside = all(0 <= d <= ceiling for d in draws)
    return inside and all(abs(share - q / 4) < 0.03 for share, q in zip(quarters, (1, 2, 3), strict=True))


def test_every_wait_is_full_jitter_below_a_ceiling_that_doubles_at_each_refused_connect() -> None:
    """After a loss: below FIRST_WAIT_S; after each refused connect, whichever broker refused it, twice the
    ceiling, up to LONGEST_WAIT_S; a session that is up starts again from the first."""
    waits: dict[int, list[float]] = {}
    rng = random.Random(7)
    for _ in range(4000):
        rotation = BrokerRotation(MqttConfig(urls=["mqtt://a", "mqtt://b", "mqtt://c"]).brokers, rng=rng)
        rotation.connected()
        rotation.settled()
        rotation.lost()
        waits.setdefault(0, []).append(rotation.next_wait())
        for refusals in range(1, 5):
            rotation.refused()
            waits.setdefault(refusals, []).append(rotation.next_wait())
        rotation.connected()
        rotation.settled()
        rotation.lost()
        waits.setdefault(-1, []).append(rotation.next_wait())  # the next loss: the first wait again
    ceilings = {-1: FIRST_WAIT_S, 0: FIRST_WAIT_S, 1: 2 * FIRST_WAIT_S, 2: LONGEST_WAIT_S, 4: LONGEST_WAIT_S}
    for refusals, ceiling in ceilings.items():
        assert uniform_below(waits[refusals], ceiling), (refusals, ceiling)


def fleet_cut(fleet: int, outage_s: float, seed: int) -> tuple[list[float], list[float]]:
    """A fleet on three brokers, every link cut at 0 and restored at `outage_s`: when each gateway attempts a
    connection and when each has its session again. Each follows the uplink's rotation and waits, its
    connects refused at once (a reset link) until the links are back."""
    attempts, sessions = [], []
    rng = random.Random(seed)
    for _ in range(fleet):
        rotation = BrokerRotation(MqttConfig(urls=["mqtt://a", "mqtt://b", "mqtt://c"]).brokers, rng=rng)
        rotation.connected()
        rotation.settled()
        rotation.lost()
        at = rotation.next_wait()
        while at < outage_s:
            attempts.append(at)
            rotation.refused()
            at += rotation.next_wait()
        attempts.append(at)
        sessions.append(at)
    return attempts, sessions


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_a_fleet_cut_at_once_never_has_a_third_of_it_attempting_in_one_second(seed: int) -> None:
    fleet = 100
    attempts, sessions = fleet_cut(fleet, outage_s=60.0, seed=seed)
    per_second = Counter(int(t) for t in attempts)
    assert max(per_second.values()) <= fleet * 0.3, sorted(per_second.items())  # a third, with margin
    assert max(Counter(int(t) for t in sessions).values()) <= fleet * 0.3
    # the cost: every gateway has its session within the longest wait of the links' return
    assert all(60.0 <= t <= 60.0 + LONGEST_WAIT_S for t in sessions)
    # a long outage settles near one attempt per gateway every LONGEST_WAIT_S / 2
    late = sum(1 for t in attempts if 30.0 <= t < 60.0)
    assert late < fleet * 30.0 / (LONGEST_WAIT_S / 2) * 1.3


def test_one_gateway_after_a_blip_waits_at_most_the_first_wait() -> None:
    """What the spread costs a gateway whose link blipped alone: 5 s on average, FIRST_WAIT_S at most."""
    rng = random.Random(11)
    firsts = []
    for _ in range(2000):
        rotation = BrokerRotation(MqttConfig(url="mqtt://a").brokers, rng=rng)
        rotation.lost()
        firsts.append(rotation.next_wait())
    assert max(firsts) <= FIRST_WAIT_S
    assert abs(sum(firsts) / len(firsts) - FIRST_WAIT_S / 2) < 0.2


# --- a connect over a link that resets it ----------------------------------------------------------------


@contextlib.asynccontextmanager
async def link(answer: Literal["reset", "close", "refuse"]) -> AsyncIterator[int]:
    """A loopback listener that takes a connection and, before any CONNACK, resets it (a cut link, a relay
    whose broker is down), closes it after the CONNECT, or refuses the CONNECT (MQTT 5 CONNACK 0x87)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if answer == "reset":
            writer.transport.abort()
            return
        await reader.read(1)
        if answer == "refuse":
            writer.write(bytes([0x20, 3, 0, 0x87, 0]))
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, LOOPBACK, 0)
    async with server:
        yield server.sockets[0].getsockname()[1]


@pytest.mark.integration
@pytest.mark.parametrize("answer", ["reset", "close"])
@pytest.mark.parametrize("protocol", [aiomqtt.ProtocolVersion.V5, aiomqtt.ProtocolVersion.V311])
async def test_a_connection_closed_before_its_connack_fails_the_connect_at_once(
    answer: Literal["reset", "close"], protocol: aiomqtt.ProtocolVersion
) -> None:
    """Not after the connect timeout (aiomqtt alone waits it out: 'Operation timed out')."""
    async with link(answer) as port:
        client = UplinkClient(LOOPBACK, port, identifier="edge-agent-x", protocol=protocol, timeout=600)
        with pytest.raises(aiomqtt.MqttError) as failed:
            async with asyncio.timeout(60):
                await client.__aenter__()
    assert str(failed.value) == CLOSED_BEFORE_CONNACK


@pytest.mark.integration
async def test_a_refused_connect_still_says_the_brokers_code() -> None:
    async with link("refuse") as port:
        client = UplinkClient(LOOPBACK, port, identifier="edge-agent-x", protocol=aiomqtt.ProtocolVersion.V5)
        with pytest.raises(aiomqtt.MqttCodeError) as failed:
            async with asyncio.timeout(60):
                await client.__aenter__()
    assert getattr(failed.value.rc, "value", failed.value.rc) == 0x87


@pytest.mark.integration
async def test_a_gateway_whose_first_broker_resets_every_connection_moves_on_at_once(tmp_path: Path) -> None:
    """The first broker's link resets every connection: one failed attempt, one jittered wait, and the
    gateway is on the second broker, well before a connect would time out (2 minutes here)."""
    with run_mosquitto(tmp_path) as broker:
        async with link("reset") as cut, Buffer(tmp_path / "buffer.db") as buffer:
            await buffer.append(readings(20))
            config = MqttConfig(urls=[f"mqtt://{LOOPBACK}:{cut}", broker.url], publish_timeout_s=120)
            uplink = Uplink(config, GATEWAY, buffer)
            with capture_logs() as logged:
                async with in_background(uplink.run()):
                    await async_wait_until(
                        lambda: uplink.statistics().state is UplinkState.CONNECTED,
                        FIRST_WAIT_S + 30,
                        "the uplink on the second broker",
                    )
                    await async_wait_until(lambda: buffer.statistics().depth == 0, 30, "the readings sent")
    failures = [e for e in logged if e["event"] == "uplink cannot connect"]
    assert [(e["broker"], e["error"]) for e in failures] == [(f"{LOOPBACK}:{cut}", CLOSED_BEFORE_CONNACK)]
    assert uplink.statistics().broker == f"{LOOPBACK}:{broker.port}"


# --- a broker killed under a running gateway -----------------------------------------------------------


@contextlib.asynccontextmanager
async def central_on(port: int) -> AsyncIterator[Central]:
    """The central subscriber on one broker, which the test may kill under it."""
    with contextlib.suppress(aiomqtt.MqttError):
        async with central_subscriber(port, GATEWAY) as seen:
            yield seen


@pytest.mark.integration
async def test_a_gateway_fails_over_to_the_next_broker_and_every_reading_arrives(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    total, step = 1500, 10
    with run_mosquitto(tmp_path / "a") as first, run_mosquitto(tmp_path / "b") as second:
        config = MqttConfig(urls=[first.url, second.url], batch_size=50)
        async with (
            Buffer(tmp_path / "buffer.db") as buffer,
            central_on(first.port) as on_first,
            central_on(second.port) as on_second,
        ):
            uplink = Uplink(config, GATEWAY, buffer)

            async def meter() -> None:  # readings keep coming, across the kill
                for start in range(0, total, step):
                    await buffer.append(readings(step, start=start))
                    await asyncio.sleep(0.01)

            with capture_logs() as logged:
                async with in_background(uplink.run()), in_background(meter()) as metering:
                    await async_wait_until(
                        lambda: len(on_first.seqs) >= 300, 30, "readings at the first broker"
                    )
                    assert uplink.statistics().broker == f"127.0.0.1:{first.port}"
                    first.process.kill()  # the node dies: no DISCONNECT, no goodbye
                    await async_wait_until(
                        lambda: (
                            uplink.statistics().broker == f"127.0.0.1:{second.port}"
                            and uplink.statistics().state is UplinkState.CONNECTED
                        ),
                        30,
                        "the uplink at the second broker",
                    )
                    await metering
                    await async_wait_until(lambda: buffer.statistics().depth == 0, 60, "the backlog drained")
                    await async_wait_until(
                        lambda: len(set(on_first.seqs) | set(on_second.seqs)) == total, 10, "every reading"
                    )
    received = on_first.seqs + on_second.seqs
    assert set(received) == set(range(1, total + 1))  # none lost
    repeated = len(received) - total  # at least once: only the batches in flight at the kill, again
    assert 0 <= repeated <= 2 * config.in_flight * config.batch_size
    assert sorted(set(on_second.seqs)) == list(
        range(min(on_second.seqs), total + 1)
    )  # no gap after the switch
    switched = [e for e in logged if e["event"] == "uplink switched broker"]
    assert [(e["previous"], e["broker"]) for e in switched] == [
        (f"127.0.0.1:{first.port}", f"127.0.0.1:{second.port}")
    ]
    assert uplink.statistics().brokers == 2


@pytest.mark.integration
@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_a_command_sent_while_the_gateway_was_away_arrives_when_its_session_resumes(
    tmp_path: Path, protocol: Literal["5", "3.1.1"]
) -> None:
    delivered: list[bytes] = []

    async def handler(delivery: Delivery) -> bytes:
        delivered.append(delivery.payload)
        return b"{}"

    with run_mosquitto(tmp_path) as broker:
        config = MqttConfig(url=broker.url, protocol=protocol)
        async with Buffer(tmp_path / "buffer.db") as buffer:
            uplink = Uplink(config, GATEWAY, buffer, commands=handler)
            async with in_background(uplink.run()):
                await async_wait_until(lambda: uplink.statistics().state is UplinkState.CONNECTED, 10, "up")
            async with aiomqtt.Client(LOOPBACK, broker.port) as central:
                await central.publish(uplink.command_topic, b'{"while": "away"}', qos=1)
            async with in_background(uplink.run()):
                await async_wait_until(lambda: bool(delivered), 10, "the command queued by the broker")
    assert delivered == [b'{"while": "away"}']
