"""Issue 21, item 4: [mqtt] urls, several brokers tried in turn. A gateway whose broker is killed carries on
at the next one and every reading arrives; reconnects after a fleet-wide cut are spread by jitter."""

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

from edge_agent.backoff import Backoff
from edge_agent.config import MqttConfig, parse_config
from edge_agent.errors import ConfigError
from edge_agent.store.buffer import Buffer
from edge_agent.uplink.brokers import BrokerRotation
from edge_agent.uplink.commands import Delivery
from edge_agent.uplink.session import RECONNECT_BASE_S, RECONNECT_CAP_S, Uplink, UplinkState
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


def test_each_loss_or_refusal_moves_to_the_next_broker_and_a_failed_round_backs_off() -> None:
    rotation = BrokerRotation(MqttConfig(urls=["mqtt://a", "mqtt://b", "mqtt://c"]).brokers)
    assert rotation.current.host == "a"
    rotation.connected()
    rotation.lost()
    assert rotation.current.host == "b"
    assert [rotation.refused(), rotation.refused(), rotation.refused()] == [False, False, True]
    assert rotation.current.host == "b"  # b, c, a refused: a round; b again after the backoff
    single = BrokerRotation(MqttConfig(url="mqtt://a").brokers)
    assert single.refused()
    assert single.refused()


def test_full_jitter_draws_uniformly_below_the_growing_ceiling() -> None:
    backoff = Backoff(base_s=RECONNECT_BASE_S, cap_s=RECONNECT_CAP_S, _rng=random.Random(7))
    for attempt in range(6):
        ceiling = min(RECONNECT_CAP_S, RECONNECT_BASE_S * 2**attempt)
        draws = []
        for _ in range(4000):
            backoff.attempt = attempt
            draws.append(backoff.next_delay())
        assert all(0 <= d <= ceiling for d in draws)
        for quarter in (1, 2, 3):  # uniform: a quarter of the draws in each quarter of [0, ceiling]
            below = sum(d < ceiling * quarter / 4 for d in draws) / len(draws)
            assert abs(below - quarter / 4) < 0.03, (attempt, quarter, below)


def reconnect_times(fleet: int, outage_s: float, seed: int) -> list[float]:
    """When each gateway of a fleet whose every link was cut at 0 and restored at `outage_s` connects again:
    each follows the uplink's own backoff, its connects failing until the link is back."""
    times = []
    for gateway in range(fleet):
        backoff = Backoff(
            base_s=RECONNECT_BASE_S, cap_s=RECONNECT_CAP_S, _rng=random.Random(seed * 1000 + gateway)
        )
        at = backoff.next_delay()  # the first wait after the loss
        while at < outage_s:
            at += backoff.next_delay()
        times.append(at)
    return times


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_fleet_cut_at_once_does_not_reconnect_in_lockstep(seed: int) -> None:
    fleet = 100
    times = reconnect_times(fleet, outage_s=60.0, seed=seed)
    per_second = Counter(int(t) for t in times)
    assert max(per_second.values()) <= fleet / 3, per_second
    assert max(times) - min(times) > RECONNECT_CAP_S / 2  # spread over the capped wait, not bunched
    assert len(set(times)) == fleet


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
