"""The MQTT uplink: publishes buffered readings in batches at QoS 1 and deletes a batch only after PUBACK.

Topics (docs/mqtt.md is the contract):
    {prefix}/{gateway}/readings   batches of readings, QoS 1, not retained
    {prefix}/{gateway}/status     'online' (retained) on connect, 'offline' as the Last Will
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import ssl
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import aiomqtt
import structlog

from edge_agent import __version__
from edge_agent.backoff import Backoff
from edge_agent.buffer import Batch, Buffer, EncodedBatch
from edge_agent.config import MqttConfig
from edge_agent.readings import utc_now

log = structlog.get_logger("edge_agent.uplink")

OFFLINE_TIMEOUT_S = 1.0  # how long a shutdown waits to tell the broker it is going offline


class UplinkState(StrEnum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"


@dataclass(frozen=True, slots=True)
class UplinkStatistics:
    state: UplinkState
    broker: str
    batches_published: int
    readings_published: int
    connects: int
    last_error: str | None


def _iso(ts: datetime) -> str:
    return ts.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def encode_batch(gateway_id: str, batch: Batch, dropped: int = 0, last_dropped_seq: int = 0) -> bytes:
    """The JSON payload of one readings batch (docs/mqtt.md)."""
    body: dict[str, Any] = {
        "gateway": gateway_id,
        "seq_first": batch.first_seq,
        "seq_last": batch.last_seq,
        "sent_at": _iso(utc_now()),
        "dropped": dropped,
        "last_dropped_seq": last_dropped_seq,
        "readings": [
            {
                "seq": item.seq,
                "device": item.reading.device,
                "point": item.reading.point,
                "value": item.reading.value,
                "unit": item.reading.unit,
                "quality": item.reading.quality.value,
                "ts": _iso(item.reading.ts),
            }
            for item in batch.readings
        ],
    }
    return json.dumps(body, separators=(",", ":"), allow_nan=False).encode()


def encode_envelope(
    gateway_id: str, batch: EncodedBatch, dropped: int = 0, last_dropped_seq: int = 0
) -> bytes:
    """The same payload as encode_batch, around readings SQLite already encoded."""
    head = json.dumps(
        {
            "gateway": gateway_id,
            "seq_first": batch.first_seq,
            "seq_last": batch.last_seq,
            "sent_at": _iso(utc_now()),
            "dropped": dropped,
            "last_dropped_seq": last_dropped_seq,
        },
        separators=(",", ":"),
    )
    return f'{head[:-1]},"readings":{batch.readings_json}}}'.encode()


class Uplink:
    def __init__(self, config: MqttConfig, gateway_id: str, buffer: Buffer) -> None:
        self._config = config
        self._gateway_id = gateway_id
        self._buffer = buffer
        base = f"{config.topic_prefix}/{gateway_id}"
        self.readings_topic = f"{base}/readings"
        self.status_topic = f"{base}/status"
        self._state = UplinkState.CONNECTING
        self._batches = 0
        self._readings = 0
        self._connects = 0
        self._last_error: str | None = None

    def statistics(self) -> UplinkStatistics:
        return UplinkStatistics(
            self._state,
            f"{self._config.host}:{self._config.port}",
            self._batches,
            self._readings,
            self._connects,
            self._last_error,
        )

    def _status_payload(self, online: bool) -> bytes:
        return json.dumps({"online": online, "gateway": self._gateway_id, "version": __version__}).encode()

    async def run(self) -> None:
        """Stay connected and keep draining the buffer, forever; the caller cancels."""
        backoff = Backoff(base_s=0.5, cap_s=30.0)
        while True:
            self._state = UplinkState.CONNECTING
            try:
                await self._session(backoff)
            except* (aiomqtt.MqttError, sqlite3.Error) as group:
                error = str(group.exceptions[0])
                broker = self.statistics().broker
                if self._state is UplinkState.CONNECTED:
                    log.warning("uplink lost", broker=broker, error=error)
                elif self._last_error != error:
                    log.warning("uplink cannot connect", broker=broker, error=error)
                self._last_error = error
            self._state = UplinkState.DISCONNECTED
            await asyncio.sleep(backoff.next_delay())

    async def _session(self, backoff: Backoff) -> None:
        will = aiomqtt.Will(self.status_topic, self._status_payload(online=False), qos=1, retain=True)
        try:  # read at every connect: certificates and passwords may be rotated
            tls_context = self._config.tls_context()
            password = self._config.password()
        except (OSError, ssl.SSLError) as exc:
            raise aiomqtt.MqttError(f"cannot read the broker credentials: {exc}") from exc
        async with aiomqtt.Client(
            self._config.host,
            self._config.port,
            identifier=f"edge-agent-{self._gateway_id}",
            keepalive=self._config.keepalive_s,
            will=will,
            timeout=self._config.publish_timeout_s,
            tls_context=tls_context,
            username=self._config.username,
            password=password,
        ) as client:
            try:
                await client.publish(self.status_topic, self._status_payload(online=True), qos=1, retain=True)
                self._state = UplinkState.CONNECTED
                self._connects += 1
                self._last_error = None
                backoff.reset()
                log.info("uplink connected", broker=self.statistics().broker)
                async with asyncio.TaskGroup() as tasks:
                    tasks.create_task(self._watch_connection(client))
                    tasks.create_task(self._drain(client, tasks))
            except asyncio.CancelledError:
                # A clean disconnect suppresses the Last Will, so say 'offline' ourselves.
                with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
                    async with asyncio.timeout(OFFLINE_TIMEOUT_S):
                        await client.publish(self.status_topic, self._status_payload(online=False), 1, True)
                raise

    async def _watch_connection(self, client: aiomqtt.Client) -> None:
        """Raises MqttError as soon as the connection drops, even while nothing is being published."""
        async for _message in client.messages:
            pass  # no subscriptions yet: commands arrive here in a later version

    async def _drain(self, client: aiomqtt.Client, tasks: asyncio.TaskGroup) -> None:
        """Keep up to `in_flight` batches published and waiting for their PUBACKs, oldest first."""
        window = asyncio.Semaphore(self._config.in_flight)
        sent_up_to = 0  # the batches above are not in flight yet
        while True:
            await window.acquire()
            batch = await self._buffer.next_encoded(self._config.batch_size, after_seq=sent_up_to)
            sent_up_to = batch.last_seq
            tasks.create_task(self._publish(client, batch, window))

    async def _publish(self, client: aiomqtt.Client, batch: EncodedBatch, window: asyncio.Semaphore) -> None:
        # publish() returns only after the broker's PUBACK (QoS 1); a timeout or a broken link raises
        # MqttError, the session ends, and the batch, still in the buffer, goes again after reconnecting.
        try:
            stats = self._buffer.statistics()
            payload = encode_envelope(self._gateway_id, batch, stats.dropped, stats.last_dropped_seq)
            await client.publish(self.readings_topic, payload, qos=1)
            await self._buffer.ack(batch)
            self._batches += 1
            self._readings += batch.count
        finally:
            window.release()
