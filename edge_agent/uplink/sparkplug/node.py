"""The uplink as a Sparkplug B 3.0 edge node (docs/mqtt.md, "Sparkplug B"): the session, lanes, buffer
acknowledgements and command router of session.py, with Sparkplug's births, data, death and commands.

    spBv1.0/<group>/NBIRTH/<gateway>           bdSeq, Node Control/Rebirth (seq 0, QoS 0)
    spBv1.0/<group>/DBIRTH/<gateway>/<device>  every point: name, alias, Double, unit, write range (QoS 0)
    spBv1.0/<group>/DDATA/<gateway>/<device>   readings by alias; the backlog with is_historical (QoS 1)
    spBv1.0/<group>/NDEATH/<gateway>           the Last Will, with the birth's bdSeq
    spBv1.0/<group>/NCMD/<gateway>             Node Control/Rebirth = true: births again
    spBv1.0/<group>/DCMD/<gateway>/<device>    writes, through the command router (dcmd.py)
    spBv1.0/STATE/<primary host>               nothing is published while the primary host is offline

Every message but NDEATH carries seq, 0 at NBIRTH and one more (mod 256) per message, in the order they
reach the wire: a seq is taken just before paho queues its message, and never while births are queued.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiomqtt
import structlog
from google.protobuf.message import DecodeError

from edge_agent.cancellation import raise_if_cancelling
from edge_agent.errors import CommandRefused
from edge_agent.readings import utc_now
from edge_agent.store.buffer import EncodedBatch
from edge_agent.uplink.commands import CommandErrorCode, Delivery
from edge_agent.uplink.payloads import ConfigInfo
from edge_agent.uplink.session import COMMAND_QUEUE, Route, Uplink
from edge_agent.uplink.sparkplug.dcmd import write_requests
from edge_agent.uplink.sparkplug.host_state import PrimaryHost
from edge_agent.uplink.sparkplug.metrics import (
    REBIRTH,
    SEQ_MODULUS,
    Catalog,
    Latest,
    data_messages,
    device_birth,
    millis,
    node_birth,
    node_death,
)
from edge_agent.uplink.sparkplug.proto import DataType, Payload
from edge_agent.uplink.sparkplug.topics import Topics

log = structlog.get_logger("edge_agent.uplink")


class SparkplugUplink(Uplink):
    """Uplink for [mqtt] format = "sparkplug"."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.topics = Topics(self._config.group_id, self._gateway_id, self._config.primary_host_id)
        self._catalog = Catalog(self._devices)
        self._host = (
            None if self._config.primary_host_id is None else PrimaryHost(self._config.primary_host_id)
        )
        self._seq = 0
        self._births_lock = asyncio.Lock()  # held while births (or the death) are queued: no data in between
        self.latest: Latest | None = None  # the births' values (the agent's LatestValues.get)

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) % SEQ_MODULUS
        return self._seq

    def _will(self) -> aiomqtt.Will:
        death = node_death(self._session_number, millis(utc_now()))
        return aiomqtt.Will(self.topics.ndeath, death, qos=1, retain=False)

    async def _farewell(self, client: aiomqtt.Client) -> None:
        await client.publish(self.topics.ndeath, node_death(self._session_number, millis(utc_now())), qos=1)

    async def _announce(self, client: aiomqtt.Client) -> None:
        self._births_lock = asyncio.Lock()  # each session its own
        await client.subscribe(self.topics.ncmd, qos=1)
        if self._commands is not None:
            await client.subscribe(self.topics.dcmd_all, qos=1)
        if self._host is not None and self.topics.state is not None:
            await client.subscribe(self.topics.state, qos=1)
            await self._host_online(client)
            # What was buffered while the host was away goes as the backlog: is_historical.
            self._backlog_last, self._backlog_sent = self._buffer.last_seq, 0
        await self._births(client)

    async def _host_online(self, client: aiomqtt.Client) -> None:
        """Waits for the primary host's STATE to say online (retained: at once, when it is), at every
        connection: the host may have gone while the gateway was away."""
        assert self._host is not None
        self._host.online = False
        self._last_error = f"waiting for the primary host {self._host.host_id!r} to be online"
        log.info("uplink waits for the primary host", host=self._host.host_id)
        async for message in client.messages:
            if str(message.topic) == self.topics.state and isinstance(message.payload, bytes):
                self._host.update(message.payload)
                if self._host.online:
                    return

    async def _births(self, client: aiomqtt.Client) -> None:
        """NBIRTH (seq 0) and every DBIRTH, queued with no data in between."""
        async with self._births_lock:
            now = millis(utc_now())
            birth = node_birth(self._session_number, now, self.takeover.count)
            if self.control_model is not None and (model := self.control_model()) is not None:
                for name, value in (("File", model.file), ("SHA256", model.sha256), ("Stage", model.stage)):
                    metric = f"Control Model/{name}"  # the birth's control_model
                    birth.metrics.add(
                        name=metric, timestamp=now, datatype=DataType.STRING, string_value=value
                    )
            for name, text in config_metrics(self.config_info):
                birth.metrics.add(name=name, timestamp=now, datatype=DataType.STRING, string_value=text)
            birth.seq = self._seq = 0
            await client.publish(self.topics.nbirth, birth.SerializeToString(), qos=0)
            for device in self._catalog.devices:
                payload = device_birth(device, self._catalog, now, self.latest)
                payload.seq = self._next_seq()
                await client.publish(self.topics.dbirth(device.name), payload.SerializeToString(), qos=0)

    async def _rebirths(self, client: aiomqtt.Client) -> None:
        while True:
            self._rebirth.clear()
            await self._rebirth.wait()
            await self._births(client)
            raise_if_cancelling()
            log.info("births published again", session=self._session_number)

    def _payload(self, batch: EncodedBatch, *, historical: bool) -> bytes:
        """The batch's data messages, for the backlog's byte budget (sent with their seq by _publish)."""
        messages = data_messages(json.loads(batch.readings_json), self._catalog, historical=historical)
        parts = [*messages.devices.values(), *([] if messages.node is None else [messages.node])]
        return b"".join(part.SerializeToString() for part in parts)

    async def _publish(
        self,
        client: aiomqtt.Client,
        batch: EncodedBatch,
        window: asyncio.Semaphore,
        *,
        historical: bool,
        payload: bytes | None = None,
    ) -> None:
        # As session.py: QoS 1, and the batch leaves the buffer only once every message of it has its PUBACK.
        try:
            messages = data_messages(json.loads(batch.readings_json), self._catalog, historical=historical)
            async with asyncio.TaskGroup() as sends:
                for device, data in messages.devices.items():
                    sends.create_task(self._send(client, self.topics.ddata(device), data))
                if messages.node is not None:
                    sends.create_task(self._send(client, self.topics.ndata, messages.node))
            self._batches += 1
            self._readings += batch.count
            if historical:
                self._historical += batch.count
            await self._buffer.ack(batch)
        finally:
            window.release()

    async def _send(self, client: aiomqtt.Client, topic: str, data: Any) -> None:
        async with self._births_lock:
            pass  # births being queued go first
        # No await between taking the seq and paho queueing the message: seq order is wire order.
        data.timestamp = millis(utc_now())
        data.seq = self._next_seq()
        await client.publish(topic, data.SerializeToString(), qos=1)

    async def _receive(self, client: aiomqtt.Client, commands: asyncio.Queue[tuple[Delivery, Route]]) -> None:
        async for message in client.messages:
            topic = str(message.topic)
            body = message.payload if isinstance(message.payload, bytes) else b""
            if topic == self.topics.state and self._host is not None:
                if self._host.update(body) and not self._host.online:
                    await self._births_lock.acquire()  # for good: no data after the death
                    await self._farewell(client)
                    raise aiomqtt.MqttError(f"the primary host {self._host.host_id!r} went offline")
            elif topic == self.topics.ncmd:
                self._node_command(body)
            elif (device := self.topics.dcmd_device(topic)) is not None and self._commands is not None:
                if message.retain:
                    await self._clear_retained(client, topic)
                await self._device_command(client, commands, topic, device, body, retained=message.retain)

    def _node_command(self, body: bytes) -> None:
        try:
            metrics = Payload.FromString(body).metrics
        except DecodeError as exc:
            log.warning("NCMD unreadable: ignored", error=str(exc))
            return
        for metric in metrics:
            if (
                metric.name == REBIRTH
                and metric.WhichOneof("value") == "boolean_value"
                and metric.boolean_value
            ):
                log.info("rebirth requested (NCMD)")
                self.request_rebirth()
            else:
                log.warning(
                    "NCMD metric not supported: ignored", metric=metric.name or f"alias {metric.alias}"
                )

    async def _device_command(
        self,
        client: aiomqtt.Client,
        commands: asyncio.Queue[tuple[Delivery, Route]],
        topic: str,
        device: str,
        body: bytes,
        *,
        retained: bool,
    ) -> None:
        """Each metric of a DCMD as a write_point delivery for the router; refusals answered on the reply
        topic, as every command's."""
        route: Route = (self.reply_topic, None)
        for write in write_requests(topic, device, body, self._catalog, utc_now()):
            refusal = write.refusal
            if refusal is None and retained:
                message = "a retained DCMD is replayed by the broker at every subscribe: never run"
                refusal = CommandRefused(CommandErrorCode.RETAINED, message, "retain")
            delivery = Delivery(write.request or b"{}", topic, refusal)
            if refusal is None:
                try:
                    commands.put_nowait((delivery, route))
                    continue
                except asyncio.QueueFull:
                    message = f"{COMMAND_QUEUE} commands are waiting: send it again later"
                    delivery = Delivery(
                        delivery.payload, topic, CommandRefused(CommandErrorCode.BUSY, message)
                    )
            await self._reply(client, delivery, route)


def config_metrics(info: ConfigInfo | None) -> list[tuple[str, str]]:
    """The NBIRTH's String metrics for the running configuration file: its hash, and its pushed version."""
    if info is None:
        return []
    return [("Config/SHA256", info.sha256)] + ([("Config/Version", info.version)] if info.version else [])
