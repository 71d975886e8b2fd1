"""The MQTT uplink against a real mosquitto on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from edge_agent.config import MqttConfig
from edge_agent.readings import Quality, Reading
from edge_agent.store.buffer import Buffer
from edge_agent.uplink.commands import Delivery
from edge_agent.uplink.payloads import ReadingOut, ReadingsBatch
from edge_agent.uplink.session import Uplink, UplinkState, encode_envelope
from tests.reference_batches import encode_batch, next_batch
from tests.support import (
    LOOPBACK,
    Broker,
    async_wait_until,
    central_subscriber,
    free_port,
    in_background,
    run_mosquitto,
)
from tests.test_buffer import EDGE_VALUES, T0, bits, readings

pytestmark = pytest.mark.integration

GATEWAY = "gw-test"


FORMATS = [pytest.param({}, id="default-compact"), pytest.param({"format": "json"}, id="json")]


@contextlib.asynccontextmanager
async def running_uplink(buffer: Buffer, port: int, **settings: Any) -> AsyncIterator[Uplink]:
    config = MqttConfig(url=f"mqtt://{LOOPBACK}:{port}", batch_size=100, publish_timeout_s=30, **settings)
    uplink = Uplink(config, GATEWAY, buffer)
    async with in_background(uplink.run()):
        yield uplink


@pytest.mark.parametrize("settings", FORMATS)
async def test_batches_reach_the_subscriber_then_leave_the_buffer(
    broker: Broker, tmp_path: Path, settings: dict[str, str]
) -> None:
    async with Buffer(tmp_path / "b.db") as buffer, central_subscriber(broker.port, GATEWAY) as central:
        await buffer.append(readings(250))
        async with running_uplink(buffer, broker.port, **settings) as uplink:
            await async_wait_until(lambda: len(central.seqs) == 250, 10, "250 readings at the subscriber")
            await async_wait_until(lambda: buffer.statistics().depth == 0, 5, "an empty buffer")
            assert uplink.statistics().state is UplinkState.CONNECTED
        assert central.seqs == list(range(1, 251))
        first = central.batches[0]
        assert (first.gateway, first.seq_first, first.seq_last) == (GATEWAY, 1, 100)
        assert (first.dropped, first.last_dropped_seq) == (0, 0)
        assert first.readings[0] == ReadingOut(
            seq=1, device="meter-main", point="total_power", value=0.0, unit="W", quality="good", ts=T0
        )
        wire = central.arrivals[0].payload
        if settings.get("format") == "json":  # the deprecated form, kept for one release
            assert wire["readings"][0] == {
                "seq": 1,
                "device": "meter-main",
                "point": "total_power",
                "value": 0.0,
                "unit": "W",
                "quality": "good",
                "ts": "2026-08-05T05:00:00.000Z",
            }
        else:  # compact: a point its birth does not list (none here) is named in place
            assert wire["r"][0] == [["meter-main", "total_power", "W"], 0, 0.0]
        await async_wait_until(lambda: len(central.status) >= 2, 5, "online and offline status")
        assert [s["online"] for s in central.status][:1] == [True]
        assert central.status[-1]["online"] is False  # a clean stop says offline


async def test_nothing_leaves_the_buffer_before_its_puback(broker: Broker, tmp_path: Path) -> None:
    async with (
        Buffer(tmp_path / "b.db") as buffer,
        central_subscriber(broker.port, GATEWAY) as central,
        running_uplink(buffer, broker.port) as uplink,
    ):
        await async_wait_until(lambda: uplink.statistics().state is UplinkState.CONNECTED, 5, "connected")
        broker.pause()  # the broker holds the PUBLISH and never acknowledges it
        try:
            await buffer.append(readings(30))
            await asyncio.sleep(1.5)
            assert buffer.statistics().depth == 30
            assert uplink.statistics().batches_published == 0
        finally:
            broker.resume()
        await async_wait_until(lambda: buffer.statistics().depth == 0, 10, "the buffer to drain")
        await async_wait_until(lambda: len(set(central.seqs)) == 30, 10, "all 30 at the subscriber")


async def test_broker_down_at_start_then_up(tmp_path: Path) -> None:
    port = free_port()
    async with Buffer(tmp_path / "b.db") as buffer, running_uplink(buffer, port) as uplink:
        await buffer.append(readings(20))
        await async_wait_until(lambda: uplink.statistics().last_error is not None, 5, "a failed connect")
        assert uplink.statistics().state is not UplinkState.CONNECTED
        assert buffer.statistics().depth == 20
        with run_mosquitto(tmp_path, port):
            await async_wait_until(lambda: buffer.statistics().depth == 0, 60, "the buffer to drain")
            assert uplink.statistics().readings_published == 20


async def test_sqlite_encoded_readings_match_the_python_encoding(tmp_path: Path) -> None:
    """The uplink's fast path (JSON built by SQLite) says exactly what encode_batch says."""
    base = datetime(2026, 8, 5, 5, 0, 59, 999_999, tzinfo=UTC)
    tricky = [
        Reading("m", "p", 230.5, "V", Quality.GOOD, base),
        Reading("m", "q", None, "degC", Quality.BAD, base + timedelta(microseconds=1)),
        Reading(
            "m", "r", -1.25e-7, "", Quality.UNAVAILABLE, base + timedelta(days=400, microseconds=123_456)
        ),
        Reading("m", "s", 1e15 / 3, "kWh", Quality.GOOD, base + timedelta(milliseconds=1)),
    ]
    async with Buffer(tmp_path / "b.db") as buffer:
        await buffer.append(tricky)
        python = encode_batch(GATEWAY, next_batch(buffer, 10), dropped=3, last_dropped_seq=2)
        sqlite = encode_envelope(GATEWAY, await buffer.next_encoded(10), dropped=3, last_dropped_seq=2)
    assert json.loads(sqlite)["readings"] == json.loads(python)["readings"]  # to the last bit of every double
    checked = ReadingsBatch.model_validate_json(sqlite)  # and it is what the contract says
    assert [r.seq for r in checked.readings] == [1, 2, 3, 4]
    assert checked.dropped == 3
    assert checked.readings[1].value is None


@pytest.mark.parametrize("settings", FORMATS)
async def test_the_subscriber_gets_every_double_bit_for_bit(
    broker: Broker, tmp_path: Path, settings: dict[str, str]
) -> None:
    """Through a buffer file and the broker, -0.0, the largest doubles and the smallest come out as they
    went in, as json.loads reads them; whatever is not finite arrives as null (docs/mqtt.md)."""
    sent = [*EDGE_VALUES, math.nan, math.inf, -math.inf]
    good = [Reading("m", f"p{i}", v, "W", Quality.GOOD, T0) for i, v in enumerate(sent)]
    bad = [r._replace(quality=Quality.BAD) for r in good]  # kept for diagnosis, through json.dumps
    async with Buffer(tmp_path / "b.db") as buffer, central_subscriber(broker.port, GATEWAY) as central:
        await buffer.append(good + bad)
        async with running_uplink(buffer, broker.port, **settings):
            await async_wait_until(lambda: len(central.seqs) == 2 * len(sent), 10, "every reading")
    received = {r.seq: r.value for b in central.batches for r in b.readings}
    assert bits([received[seq] for seq in sorted(received)]) == bits([*EDGE_VALUES, None, None, None] * 2)


async def test_cap_hit_during_an_outage_is_reported_exactly(tmp_path: Path) -> None:
    """The buffer fills while the broker is away: the oldest readings go, and what the receiver misses is
    exactly what every batch says was dropped."""
    port = free_port()
    async with Buffer(tmp_path / "b.db", cap_bytes=1 << 20) as buffer:
        for start in range(0, 30_000, 1000):  # about 1.5 MiB of readings: over the 1 MiB cap
            await buffer.append(readings(1000, start=start))
        stats = buffer.statistics()
        assert stats.dropped > 0
        with run_mosquitto(tmp_path, port):
            async with central_subscriber(port, GATEWAY) as central, running_uplink(buffer, port):
                await async_wait_until(lambda: buffer.statistics().depth == 0, 60, "the backlog to drain")
                await async_wait_until(
                    lambda: len(set(central.seqs)) == stats.depth, 10, "every kept reading"
                )
    received = sorted(set(central.seqs))
    missing = set(range(1, 30_001)) - set(received)
    assert missing == set(range(1, stats.last_dropped_seq + 1))  # the oldest, and only those
    assert len(missing) == stats.dropped
    assert {(b.dropped, b.last_dropped_seq) for b in central.batches} == {
        (stats.dropped, stats.last_dropped_seq)
    }
    births = [s for s in central.status if s["online"]]  # the session's status says it too
    assert (births[0]["dropped"], births[0]["last_dropped_seq"]) == (stats.dropped, stats.last_dropped_seq)


async def test_a_failing_command_handler_or_reply_never_ends_the_session(
    broker: Broker, tmp_path: Path
) -> None:
    """A handler that raises, and a reply paho will not publish (it raises before sending): each command is
    answered with an internal error on the reply topic, and the session goes on."""
    handled: list[Delivery] = []

    async def handler(delivery: Delivery) -> bytes:
        handled.append(delivery)
        if delivery.payload == b"raise":
            raise RuntimeError("a bug")
        if delivery.refusal is None:
            return ["not", "bytes"]  # type: ignore[return-value]  # paho raises TypeError on publish
        return json.dumps({"refused": delivery.refusal.code, "message": delivery.refusal.message}).encode()

    config = MqttConfig(url=broker.url, protocol="5")
    replies: list[dict[str, object]] = []
    async with (
        Buffer(tmp_path / "b.db") as buffer,
        aiomqtt.Client(LOOPBACK, broker.port, identifier="central") as central,
    ):
        await central.subscribe(f"edge/{GATEWAY}/reply/#", qos=1)

        async def collect() -> None:
            async for message in central.messages:
                assert isinstance(message.payload, bytes)
                replies.append(json.loads(message.payload))

        uplink = Uplink(config, GATEWAY, buffer, commands=handler)
        async with in_background(uplink.run()), in_background(collect()):
            await async_wait_until(lambda: uplink.statistics().state is UplinkState.CONNECTED, 10, "up")
            await central.publish(f"edge/{GATEWAY}/command", b"raise", qos=1)
            await async_wait_until(lambda: len(replies) == 1, 10, "the first reply")
            assert replies[0]["ok"] is False
            assert replies[0]["error"] == {
                "code": "internal", "message": "internal error; see the gateway's log", "field": None
            }  # fmt: skip
            await central.publish(f"edge/{GATEWAY}/command", b"unpublishable", qos=1)
            await async_wait_until(lambda: len(replies) == 2, 10, "the second reply")
            assert replies[1]["refused"] == "internal"
            assert "could not be published" in str(replies[1]["message"])
            assert uplink.statistics().state is UplinkState.CONNECTED
            assert uplink.statistics().connects == 1
