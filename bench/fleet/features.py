"""What of MQTT the uplink relies on, tried on the running cluster before the fleet starts: MQTT 5 refused
the way the uplink's fallback to 3.1.1 expects, QoS 1, a retained birth seen from another node, the Last Will
when a link breaks, a persistent session resumed on another node, and a client id taken over across nodes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiomqtt
from tests.support import LOOPBACK

from bench.fleet.cluster import V311, NatsCluster
from bench.fleet.proxy import LinkProxy
from edge_agent.uplink.session import REFUSED_V5

WAIT_S = 10.0  # how long a check waits for a message


@dataclass(frozen=True)
class Feature:
    name: str
    works: bool
    detail: str


def _client(port: int, identifier: str, **options: object) -> aiomqtt.Client:
    return aiomqtt.Client(LOOPBACK, port, identifier=identifier, protocol=V311, timeout=10, **options)  # type: ignore[arg-type]


async def _first(client: aiomqtt.Client, count: int = 1) -> list[aiomqtt.Message]:
    got: list[aiomqtt.Message] = []
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(WAIT_S):
            async for message in client.messages:
                got.append(message)
                if len(got) == count:
                    break
    return got


async def mqtt5_refused(cluster: NatsCluster) -> Feature:
    try:
        async with aiomqtt.Client(
            LOOPBACK, cluster.ports[0].mqtt, identifier="fleet-check-v5", protocol=aiomqtt.ProtocolVersion.V5
        ):
            return Feature("MQTT 5 refused, 3.1.1 fallback", False, "MQTT 5 accepted")
    except aiomqtt.MqttCodeError as exc:
        code = getattr(exc.rc, "value", exc.rc)
        ok = code in REFUSED_V5
        return Feature("MQTT 5 refused, 3.1.1 fallback", ok, f"CONNACK {code} ({exc.rc})")


async def qos1_retained(cluster: NatsCluster) -> Feature:
    topic = "fleet-check/retained"
    async with _client(cluster.ports[0].mqtt, "fleet-check-pub") as publisher:
        await publisher.publish(topic, b"birth", qos=1, retain=True)  # returns at the PUBACK
    async with _client(cluster.ports[1].mqtt, "fleet-check-sub") as subscriber:
        await subscriber.subscribe(topic, qos=1)
        got = await _first(subscriber)
    async with _client(cluster.ports[0].mqtt, "fleet-check-pub") as publisher:
        await publisher.publish(topic, b"", qos=1, retain=True)
    ok = bool(got) and got[0].retain and got[0].payload == b"birth"
    detail = "PUBACK; retained copy on another node" if ok else "no retained copy"
    return Feature("QoS 1 + retained (n1 -> n2)", ok, detail)


async def last_will(cluster: NatsCluster) -> Feature:
    topic = "fleet-check/will"
    link = LinkProxy(cluster.ports[0].mqtt)
    await link.start()
    try:
        async with _client(cluster.ports[2].mqtt, "fleet-check-will-sub") as subscriber:
            await subscriber.subscribe(topic, qos=1)
            will = aiomqtt.Will(topic, b"offline", qos=1, retain=False)
            dying = _client(link.port, "fleet-check-will", will=will, keepalive=5)
            await dying.__aenter__()
            link.cut()
            got = await _first(subscriber)
            with contextlib.suppress(aiomqtt.MqttError):  # takes the broken link's error
                async for _ in dying.messages:
                    pass
    finally:
        await link.close()
    ok = bool(got) and got[0].payload == b"offline"
    detail = "published to n3" if ok else f"none within {WAIT_S:.0f} s"
    return Feature("Last Will on a broken link", ok, detail)


async def persistent_session(cluster: NatsCluster) -> Feature:
    topic = "fleet-check/queued"
    identifier = "fleet-check-persistent"
    async with _client(cluster.ports[0].mqtt, identifier, clean_session=False) as subscriber:
        await subscriber.subscribe(topic, qos=1)
    async with _client(cluster.ports[2].mqtt, "fleet-check-pub") as publisher:
        for n in range(3):
            await publisher.publish(topic, str(n).encode(), qos=1)
    async with _client(cluster.ports[1].mqtt, identifier, clean_session=False) as subscriber:
        got = await _first(subscriber, 3)
    async with _client(cluster.ports[1].mqtt, identifier, clean_session=True):
        pass  # the session is dropped
    payloads = [m.payload for m in got]
    ok = payloads == [b"0", b"1", b"2"]
    return Feature("persistent session (n1 -> n2)", ok, f"queued QoS 1 messages delivered: {len(got)} of 3")


async def takeover(cluster: NatsCluster) -> Feature:
    """Two sessions with one client id on two nodes: the broker should end the older one."""
    identifier = "fleet-check-twin"
    first = _client(cluster.ports[0].mqtt, identifier, keepalive=5)
    await first.__aenter__()
    try:
        async with _client(cluster.ports[1].mqtt, identifier, keepalive=5):
            try:
                async with asyncio.timeout(WAIT_S):
                    async for _ in first.messages:
                        pass
                ended = True
            except aiomqtt.MqttError:
                ended = True
            except TimeoutError:
                ended = False
    finally:
        with contextlib.suppress(Exception):
            await first.__aexit__(None, None, None)
    detail = "older session closed" if ended else f"both open after {WAIT_S:.0f} s"
    return Feature("one client id on two nodes", ended, detail)


CHECKS: list[Callable[[NatsCluster], Awaitable[Feature]]] = [
    mqtt5_refused,
    qos1_retained,
    last_will,
    persistent_session,
    takeover,
]


async def check_features(cluster: NatsCluster) -> list[Feature]:
    features = []
    for check in CHECKS:
        try:
            features.append(await check(cluster))
        except aiomqtt.MqttError as exc:
            features.append(Feature(check.__name__, False, f"failed: {exc}"))
    return features
