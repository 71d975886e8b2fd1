"""The MQTT uplink: one session at a time, publishing buffered readings at QoS 1 in two lanes, deleting a
batch only after its PUBACK, and answering central commands. docs/mqtt.md is the contract.

    {prefix}/{gateway}/status    birth (retained, on connect and on rebirth); death as the Last Will
    {prefix}/{gateway}/readings  batches: the live lane first, the backlog behind it through a token bucket
    {prefix}/{gateway}/command   commands in (commands.py), answered on .../reply or the MQTT 5 response topic
                                 (a concrete topic under .../reply); retained ones are refused and cleared
    {prefix}/{gateway}/events    control's audit events: decisions, writes, releases, fallbacks

At connect, everything already buffered is the backlog (seq up to `backlog_last`); what arrives after is
live. Each lane keeps up to `in_flight` batches awaiting their PUBACK. MQTT 5 is tried first unless
configured; a broker that refuses it is spoken to in 3.1.1 from then on. With several brokers ([mqtt] urls)
each loss or refused connect moves on to the next after a jittered wait (brokers.py); a connection closed
before its CONNACK fails the attempt at once (client.py); a session another client with our id takes over is
said loudly and not fought for (takeover.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

import aiomqtt
import structlog
from paho.mqtt.client import MQTT_CLEAN_START_FIRST_ONLY, MQTT_ERR_INVAL, MQTT_ERR_PAYLOAD_SIZE
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from edge_agent import __version__
from edge_agent.cancellation import raise_if_cancelling
from edge_agent.config import MqttConfig
from edge_agent.errors import CommandRefused
from edge_agent.readings import utc_now
from edge_agent.store.buffer import Buffer, EncodedBatch
from edge_agent.uplink.brokers import BrokerRotation
from edge_agent.uplink.client import UplinkClient
from edge_agent.uplink.commands import (
    MAX_CONFIG_COMMAND_BYTES,
    CommandErrorCode,
    CommandReply,
    Delivery,
    ReplyError,
)
from edge_agent.uplink.payloads import (
    Birth,
    BuildingModelInfo,
    CompactBirth,
    ConfigInfo,
    ControlModelInfo,
    Death,
    DeviceInfo,
    TakeoverInfo,
    compact_labels,
    compact_points,
)
from edge_agent.uplink.takeover import TakeoverWatch
from edge_agent.uplink.token_bucket import TokenBucket

log = structlog.get_logger("edge_agent.uplink")

OFFLINE_TIMEOUT_S = 1.0  # how long a shutdown waits to tell the broker it is going offline
COMMAND_QUEUE = 32  # commands waiting for the router; more are answered "busy"
MAX_PACKET_BYTES = 256 * 1024  # MQTT 5: the broker sends us nothing larger (commands.py limits the rest)
MAX_TOPIC_BYTES = 65535
EVENT_QUEUE = 1000  # control events waiting for the broker; the oldest are dropped (and counted)
SESSION_EXPIRY_S = 3600  # MQTT 5: how long a broker keeps our session (commands queued for us) after a loss
REFUSED_V5 = {1, 132}  # CONNACK codes of a broker that does not speak MQTT 5 (3.1.1's 1, MQTT 5's 0x84)

CommandHandler = Callable[[Delivery], Awaitable[bytes]]
"""Takes a delivered command, returns the reply payload; never raises (commands.py)."""
Route = tuple[str, Properties | None]  # where a reply goes: topic, and MQTT 5 properties (correlation data)


class UplinkState(StrEnum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"


@dataclass(frozen=True, slots=True)
class UplinkStatistics:
    state: UplinkState
    broker: str
    mqtt: str  # the protocol version of the current (or last) session
    session: int  # bdSeq of the current (or last) session
    batches_published: int
    readings_published: int
    historical_published: int  # readings of those sent from the backlog
    backlog_last: int  # the current session's backlog: readings up to this seq
    backlog_sent_up_to: int  # ... of which those up to here have been sent
    connects: int
    commands: int
    last_error: str | None
    events_waiting: int  # control's audit events not yet sent
    events_dropped: int  # ... dropped, the oldest first, while the queue was full
    brokers: int = 1  # how many are configured ([mqtt] urls); `broker` is the current (or last) one
    takeovers: int = 0  # times another client with our gateway id took the session (takeover.py)
    last_takeover: datetime | None = None
    taken_over: bool = False  # ... and no session has lasted long since: two gateways share the id?


def _iso(ts: datetime) -> str:
    return ts.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def encode_envelope(
    gateway_id: str,
    batch: EncodedBatch,
    *,
    historical: bool = False,
    backlog_last: int = 0,
    dropped: int = 0,
    last_dropped_seq: int = 0,
) -> bytes:
    """A readings batch (payloads.ReadingsBatch) around the readings SQLite already encoded."""
    head = json.dumps(
        {
            "gateway": gateway_id,
            "seq_first": batch.first_seq,
            "seq_last": batch.last_seq,
            "historical": historical,
            "backlog_last": backlog_last,
            "sent_at": _iso(utc_now()),
            "dropped": dropped,
            "last_dropped_seq": last_dropped_seq,
        },
        separators=(",", ":"),
    )
    return f'{head[:-1]},"readings":{batch.readings_json}}}'.encode()


def encode_compact(
    session: int,
    batch: EncodedBatch,
    *,
    historical: bool = False,
    backlog_last: int = 0,
    dropped: int = 0,
    last_dropped_seq: int = 0,
) -> bytes:
    """A compact readings batch (payloads.CompactBatch) around the entries SQLite already encoded."""
    sent = int(utc_now().timestamp() * 1000)
    seqs = batch.seqs_json or "null"
    return (
        f'{{"bdSeq":{session},"seq":{batch.first_seq},"last":{batch.last_seq},"seqs":{seqs},'
        f'"hist":{"true" if historical else "false"},"backlog":{backlog_last},"dropped":{dropped},'
        f'"last_dropped":{last_dropped_seq},"sent":{sent},"t":{batch.t0_ms},"r":{batch.readings_json}}}'
    ).encode()


class Uplink:
    def __init__(
        self,
        config: MqttConfig,
        gateway_id: str,
        buffer: Buffer,
        devices: list[DeviceInfo] | None = None,
        commands: CommandHandler | None = None,
        *,
        building_model: BuildingModelInfo | None = None,
        float32: frozenset[tuple[str, str]] = frozenset(),
    ) -> None:
        self._config = config
        self._compact = config.format == "compact"
        self._point_lists, self._compact_devices, self._aliases = compact_points(devices or [], float32)
        self._building_model = building_model
        self.control_model: Callable[[], ControlModelInfo | None] | None = None  # asked at each birth
        self.config_info: ConfigInfo | None = None  # the running file's hash and pushed version (birth)
        self._gateway_id = gateway_id
        self._buffer = buffer
        self._devices = devices or []
        self._commands = commands
        base = f"{config.topic_prefix}/{gateway_id}"
        self.readings_topic = f"{base}/readings"
        self.status_topic = f"{base}/status"
        self.command_topic = f"{base}/command"
        self.reply_topic = f"{base}/reply"
        self.events_topic = f"{base}/events"
        self.savings_topic = f"{base}/savings"
        self._mqtt = "3.1.1" if config.protocol == "3.1.1" else "5"
        self._state = UplinkState.CONNECTING
        self._session_number = 0
        self._pending_session: int | None = None  # bdSeq taken for a session not yet connected
        self._backlog_last = 0
        self._backlog_sent = 0
        self._batches = 0
        self._readings = 0
        self._historical = 0
        self._connects = 0
        self._command_count = 0
        self._last_error: str | None = None
        self._rebirth = asyncio.Event()
        self._events: deque[tuple[str, bytes]] = deque(maxlen=EVENT_QUEUE)  # control's events and reports
        self.events_dropped = 0
        self._event_waiting = asyncio.Event()
        self._brokers = BrokerRotation(config.brokers)
        self.takeover = TakeoverWatch()
        self._in_session = False  # the broker accepted the current connection
        self._client_now: aiomqtt.Client | None = None  # the current (or last) connection

    def statistics(self) -> UplinkStatistics:
        return UplinkStatistics(
            self._state,
            str(self._brokers.current),
            self._mqtt,
            self._session_number,
            self._batches,
            self._readings,
            self._historical,
            self._backlog_last,
            self._backlog_sent,
            self._connects,
            self._command_count,
            self._last_error,
            len(self._events),
            self.events_dropped,
            brokers=self._brokers.count,
            takeovers=self.takeover.count,
            last_takeover=self.takeover.last_at,
            taken_over=self.takeover.taken_over(time.monotonic()),
        )

    def request_rebirth(self) -> None:
        """Publish the birth certificate again (the central side lost its retained copy, or wants fresh
        metadata)."""
        self._rebirth.set()

    def send_event(self, payload: bytes) -> None:
        """Queue an event for `.../events` (QoS 1); while disconnected the newest EVENT_QUEUE wait."""
        self._queue_event(self.events_topic, payload)

    def send_savings(self, payload: bytes) -> None:
        """Queue a daily savings report for `.../savings` (QoS 1), in line with the events."""
        self._queue_event(self.savings_topic, payload)

    def _queue_event(self, topic: str, payload: bytes) -> None:
        if len(self._events) == self._events.maxlen:
            self.events_dropped += 1
        self._events.append((topic, payload))
        self._event_waiting.set()

    async def flush_events(self, timeout_s: float) -> None:
        """Give queued events up to `timeout_s` to reach the broker (on stop; only while connected)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                while self._events and self._state is UplinkState.CONNECTED:  # noqa: ASYNC110 - a short bounded wait
                    await asyncio.sleep(0.05)

    def _birth(self) -> bytes:
        stats = self._buffer.statistics()
        fields: dict[str, object] = {
            "gateway": self._gateway_id,
            "bdSeq": self._session_number,
            "version": __version__,
            "mqtt": "5" if self._mqtt == "5" else "3.1.1",
            "connected_at": utc_now(),
            "backlog_last": self._backlog_last,
            "dropped": stats.dropped,
            "last_dropped_seq": stats.last_dropped_seq,
            "building_model": self._building_model,
            "control_model": None if self.control_model is None else self.control_model(),
            "config": self.config_info,
            "takeover": self._takeover_info(),
        }
        if self._compact:  # point names once, by alias (payloads.CompactBirth)
            labels = compact_labels(self._devices)
            compact = {"point_lists": self._point_lists, "devices": self._compact_devices, "labels": labels}
            return CompactBirth.model_validate(fields | compact).model_dump_json().encode()
        return Birth.model_validate(fields | {"devices": self._devices}).model_dump_json().encode()

    def _death(self) -> bytes:
        death = Death(gateway=self._gateway_id, bdSeq=self._session_number, takeover=self._takeover_info())
        return death.model_dump_json().encode()

    def _takeover_info(self) -> TakeoverInfo | None:
        if self.takeover.last_at is None:
            return None
        return TakeoverInfo(count=self.takeover.count, last_at=self.takeover.last_at)

    async def run(self) -> None:
        """Stay connected and keep draining the buffer, forever; the caller cancels."""
        while True:
            self._state = UplinkState.CONNECTING
            retry_now = False
            try:
                await self._session()
            except* (aiomqtt.MqttError, sqlite3.Error) as group:
                retry_now = self._refused_v5(group.exceptions[0])
                if not retry_now:
                    self._failed(group.exceptions[0])
            if not retry_now:
                await asyncio.sleep(self._next_delay())

    def _next_delay(self) -> float:
        """The wait before the next connect, to the next broker: the rotation's jittered wait after a loss or
        a refused connect (brokers.py), longer while another client takes our session."""
        if not self._in_session:
            self._brokers.refused()
            return self._brokers.next_wait()
        self._in_session = False
        now, broker = time.monotonic(), str(self._brokers.current)
        why = self.takeover.lost(_disconnect_reason(self._client_now), now)
        self._brokers.lost()
        if not self.takeover.taken_over(now):
            return self._brokers.next_wait()
        delay = self.takeover.next_delay()
        if why is not None:
            log.error(
                "gateway id taken over by another client: do two gateways share this id?",
                gateway=self._gateway_id,
                broker=broker,
                why=why,
                takeovers=self.takeover.count,
                retry_in_s=round(delay, 1),
            )
        return delay

    def _refused_v5(self, error: BaseException) -> bool:
        """True (and 3.1.1 from now on) when the broker refused MQTT 5 and the configuration allows 3.1.1."""
        rc = getattr(error, "rc", None)
        code = getattr(rc, "value", rc)
        if self._mqtt != "5" or self._config.protocol != "auto" or code not in REFUSED_V5:
            return False
        log.warning("broker refuses MQTT 5: using 3.1.1", broker=self.statistics().broker)
        self._mqtt = "3.1.1"
        return True

    def _failed(self, exc: BaseException) -> None:
        error = str(exc)
        broker = self.statistics().broker
        if self._state is UplinkState.CONNECTED:
            log.warning("uplink lost", broker=broker, error=error)
        elif self._last_error != error:
            log.warning("uplink cannot connect", broker=broker, error=error)
        self._last_error = error
        self._state = UplinkState.DISCONNECTED

    def _client(self) -> aiomqtt.Client:
        broker = self._brokers.current
        try:  # read at every connect: certificates and passwords may be rotated
            tls_context = self._config.tls_context() if broker.tls else None
            password = self._config.password()
        except (OSError, ssl.SSLError) as exc:
            raise aiomqtt.MqttError(f"cannot read the broker credentials: {exc}") from exc
        v5 = self._mqtt == "5"
        # The session (our subscription, commands queued while we were away) is resumed where the broker kept
        # it; Sparkplug B asks edge nodes for a clean one.
        persistent = self._config.format != "sparkplug"
        connect: Properties | None = None
        if v5:
            connect = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            connect.MaximumPacketSize = MAX_PACKET_BYTES  # oversize commands never reach us
            if persistent:
                connect.SessionExpiryInterval = SESSION_EXPIRY_S
        self._client_now = UplinkClient(
            broker.host,
            broker.port,
            identifier=f"edge-agent-{self._gateway_id}",
            protocol=aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
            clean_session=None if v5 else not persistent,
            clean_start=not persistent if v5 else MQTT_CLEAN_START_FIRST_ONLY,  # paho: 3.1.1 takes only that
            keepalive=self._config.keepalive_s,
            will=self._will(),
            timeout=self._config.publish_timeout_s,
            tls_context=tls_context,
            username=self._config.username,
            password=password,
            properties=connect,
        )
        return self._client_now

    async def _session(self) -> None:
        # A connect that fails burns no session number: the pending one waits for the next attempt.
        if self._pending_session is None:
            self._pending_session = await self._buffer.next_session()
        self._session_number = self._pending_session
        async with self._client() as client:
            self._pending_session = None  # the broker holds our will with this bdSeq: it is used
            self._in_session = True
            self._brokers.connected()
            self.takeover.connected(time.monotonic())
            # The backlog is what was buffered before the broker accepted this session (a connect can wait
            # long on a broker that is stuck: what arrives meanwhile is still backlog).
            self._backlog_last, self._backlog_sent = self._buffer.last_seq, 0
            try:
                await self._announce(client)
                self._state = UplinkState.CONNECTED
                self._connects += 1
                self._last_error = None
                self._brokers.settled()
                log.info("uplink connected", broker=self.statistics().broker, mqtt=self._mqtt)
                commands: asyncio.Queue[tuple[Delivery, Route]] = asyncio.Queue(COMMAND_QUEUE)
                async with asyncio.TaskGroup() as tasks:
                    tasks.create_task(self._receive(client, commands))
                    tasks.create_task(self._answer(client, commands))
                    tasks.create_task(self._rebirths(client))
                    tasks.create_task(self._publish_events(client))
                    tasks.create_task(self._live(client, tasks))
                    tasks.create_task(self._backlog(client, tasks))
            except asyncio.CancelledError:
                # A clean disconnect suppresses the Last Will, so say 'offline' ourselves.
                with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
                    async with asyncio.timeout(OFFLINE_TIMEOUT_S):
                        await self._farewell(client)
                raise

    def _will(self) -> aiomqtt.Will:
        """The Last Will the broker publishes when the connection breaks."""
        return aiomqtt.Will(self.status_topic, self._death(), qos=1, retain=True)

    async def _announce(self, client: aiomqtt.Client) -> None:
        """What a new session says and subscribes to before data flows: the birth, the commands."""
        if self._compact:
            await self._buffer.set_aliases(self._aliases)
        await client.publish(self.status_topic, self._birth(), qos=1, retain=True)
        if self._commands is not None:
            await self._subscribe_commands(client)

    async def _farewell(self, client: aiomqtt.Client) -> None:
        """A clean disconnect suppresses the Last Will: the death certificate, said by ourselves."""
        await client.publish(self.status_topic, self._death(), 1, True)

    async def _subscribe_commands(self, client: aiomqtt.Client) -> None:
        """QoS 1; with MQTT 5 a retained command shows its retain flag even when it arrives live (so it is
        refused at once, not only when the broker replays it), and our own clearing of it is not sent back."""
        if self._mqtt != "5":
            await client.subscribe(self.command_topic, qos=1)
            return
        options = SubscribeOptions(qos=1, noLocal=True, retainAsPublished=True)
        await client.subscribe(self.command_topic, options=options)

    async def _receive(self, client: aiomqtt.Client, commands: asyncio.Queue[tuple[Delivery, Route]]) -> None:
        """Takes commands in; raises MqttError as soon as the connection drops, even while idle. Whatever
        cannot wait for the router (too large, retained, a bad response topic, no room) is answered here."""
        async for message in client.messages:
            if self._commands is None:
                continue
            if message.retain:
                await self._clear_retained(client, str(message.topic))
                raise_if_cancelling()
            delivery, route = self._delivery(message)
            del message  # an oversize payload is let go now, not after its reply
            if delivery is None:
                continue
            if delivery.refusal is None:
                try:
                    commands.put_nowait((delivery, route))
                    continue
                except asyncio.QueueFull:
                    message_text = f"{COMMAND_QUEUE} commands are waiting: send it again later"
                    delivery = replace(delivery, refusal=CommandRefused(CommandErrorCode.BUSY, message_text))
            await self._reply(client, delivery, route)
            raise_if_cancelling()

    def _delivery(self, message: aiomqtt.Message) -> tuple[Delivery | None, Route]:
        """The command as the router takes it, with the uplink's own refusal if any, and its reply's route.
        None for an empty message: it carries no command (it is how a retained one is cleared)."""
        payload = message.payload if isinstance(message.payload, bytes) else b""
        topic = str(message.topic)
        route, problem = self._reply_route(message)
        refusal: CommandRefused | None = None
        if len(payload) > MAX_CONFIG_COMMAND_BYTES:  # refused unread, not kept (the router limits the rest)
            size = len(payload)
            payload = b""
            too_large = f"{size} bytes, over {MAX_CONFIG_COMMAND_BYTES}"
            refusal = CommandRefused(CommandErrorCode.TOO_LARGE, too_large)
        elif not payload:
            return None, route
        elif message.retain:
            refusal = CommandRefused(
                CommandErrorCode.RETAINED,
                "a retained command is replayed by the broker at every subscribe: never run; publish "
                "commands with retain off (the gateway clears it where the broker lets it)",
                "retain",
            )
        elif problem is not None:
            refusal = CommandRefused(CommandErrorCode.BAD_RESPONSE_TOPIC, problem, "response_topic")
        return Delivery(payload, topic, refusal), route

    async def _clear_retained(self, client: aiomqtt.Client, topic: str) -> None:
        """An empty retained message deletes the retained command, where the broker's ACL allows it (QoS 0:
        a broker that refuses says nothing, and nothing here fails)."""
        try:
            await client.publish(topic, b"", qos=0, retain=True)
        except Exception as exc:  # only a lost connection ends the session
            if _connection_lost(exc):
                raise
            log.warning("retained command not cleared", topic=topic, error=str(exc))
        else:
            log.warning("retained command cleared", topic=topic)

    async def _answer(self, client: aiomqtt.Client, commands: asyncio.Queue[tuple[Delivery, Route]]) -> None:
        """One command at a time through the router, each answered where the sender asked."""
        while True:
            delivery, route = await commands.get()
            await self._reply(client, delivery, route)
            raise_if_cancelling()

    async def _reply(self, client: aiomqtt.Client, delivery: Delivery, route: Route) -> None:
        """Answers one command. Nothing but a lost connection escapes: a reply that cannot be published
        where asked is replaced by an error reply on the reply topic."""
        reply = await self._reply_payload(delivery)
        self._command_count += 1
        topic, properties = route
        try:
            await client.publish(topic, reply, qos=1, properties=properties)
        except Exception as exc:  # paho refuses some topics with ValueError
            if _connection_lost(exc):
                raise
            log.warning("command reply not published", topic=topic, error=str(exc))
            message = f"the reply could not be published on {topic!r}: {exc}"
            failed = replace(delivery, refusal=CommandRefused(CommandErrorCode.INTERNAL, message))
            try:
                await client.publish(self.reply_topic, await self._reply_payload(failed), qos=1)
            except Exception as again:
                if _connection_lost(again):
                    raise
                log.error("command error reply not published", topic=self.reply_topic, error=str(again))  # noqa: TRY400

    async def _reply_payload(self, delivery: Delivery) -> bytes:
        """The handler's reply; should it ever fail (it should not), an internal error reply all the same."""
        try:
            if self._commands is not None:
                return await self._commands(delivery)
            raise RuntimeError("no command handler")  # noqa: TRY301 - answered below like any failure
        except Exception:
            log.exception("command handler failed")
            error = ReplyError(
                code=CommandErrorCode.INTERNAL, message="internal error; see the gateway's log"
            )
            return CommandReply(id=None, command=None, ok=False, error=error, ts=utc_now()).to_json()

    def _reply_route(self, message: aiomqtt.Message) -> tuple[Route, str | None]:
        """The MQTT 5 response topic when it is a concrete topic under our reply topic (the gateway
        publishes only under its own prefix), else the reply topic and what is wrong with the one asked;
        the correlation data goes back as it came."""
        asked = getattr(message.properties, "ResponseTopic", None)
        correlation = getattr(message.properties, "CorrelationData", None)
        problem = None if asked is None else response_topic_problem(asked, self.reply_topic)
        topic = self.reply_topic if asked is None or problem is not None else asked
        if self._mqtt != "5" or correlation is None:
            return (topic, None), problem
        properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        properties.CorrelationData = correlation
        return (topic, properties), problem

    async def _rebirths(self, client: aiomqtt.Client) -> None:
        while True:
            self._rebirth.clear()
            await self._rebirth.wait()
            await client.publish(self.status_topic, self._birth(), qos=1, retain=True)
            raise_if_cancelling()
            log.info("birth published again", session=self._session_number)

    async def _publish_events(self, client: aiomqtt.Client) -> None:
        while True:
            while self._events:
                topic, payload = self._events[0]
                await client.publish(topic, payload, qos=1)
                self._events.popleft()  # only once the broker has it
                raise_if_cancelling()
            self._event_waiting.clear()
            await self._event_waiting.wait()

    async def _live(self, client: aiomqtt.Client, tasks: asyncio.TaskGroup) -> None:
        """Everything committed after the session began, as it comes, up to `in_flight` batches at once."""
        window = asyncio.Semaphore(self._config.in_flight)
        sent_up_to = self._backlog_last
        limit = self._config.batch_size
        self._buffer.publish_early(limit, compact=self._compact)  # no wait for the commits' flushes
        try:
            while True:
                await window.acquire()
                batch = await self._buffer.next_encoded(limit, after_seq=sent_up_to, compact=self._compact)
                sent_up_to = batch.last_seq
                tasks.create_task(self._publish(client, batch, window, historical=False))
        finally:
            self._buffer.publish_early(None)

    async def _backlog(self, client: aiomqtt.Client, tasks: asyncio.TaskGroup) -> None:
        """What was buffered before the session, oldest first, within the token bucket; then it ends."""
        if self._backlog_last == 0:
            return
        bucket = TokenBucket(self._config.backlog_messages_per_s, self._config.backlog_bytes_per_s)
        window = asyncio.Semaphore(self._config.in_flight)
        started, sent = asyncio.get_running_loop().time(), 0
        while True:
            await window.acquire()
            batch = await self._buffer.backlog_batch(
                self._config.batch_size, self._backlog_sent, self._backlog_last, compact=self._compact
            )
            if batch is None:
                window.release()
                break
            self._backlog_sent = batch.last_seq
            sent += batch.count
            payload = self._payload(batch, historical=True)
            await bucket.take(len(payload))
            tasks.create_task(self._publish(client, batch, window, historical=True, payload=payload))
        if sent:
            seconds = round(asyncio.get_running_loop().time() - started, 1)
            log.info("backlog sent", readings=sent, up_to_seq=self._backlog_last, seconds=seconds)

    def _payload(self, batch: EncodedBatch, *, historical: bool) -> bytes:
        stats = self._buffer.statistics()
        if self._compact:
            return encode_compact(
                self._session_number,
                batch,
                historical=historical,
                backlog_last=self._backlog_last,
                dropped=stats.dropped,
                last_dropped_seq=stats.last_dropped_seq,
            )
        return encode_envelope(
            self._gateway_id,
            batch,
            historical=historical,
            backlog_last=self._backlog_last,
            dropped=stats.dropped,
            last_dropped_seq=stats.last_dropped_seq,
        )

    async def _publish(
        self,
        client: aiomqtt.Client,
        batch: EncodedBatch,
        window: asyncio.Semaphore,
        *,
        historical: bool,
        payload: bytes | None = None,
    ) -> None:
        # publish() returns only after the broker's PUBACK (QoS 1); a timeout or a broken link raises
        # MqttError, the session ends, and the batch, still in the buffer, goes again after reconnecting.
        try:
            body = payload or self._payload(batch, historical=historical)
            await client.publish(self.readings_topic, body, qos=1)
            self._batches += 1  # counted at the PUBACK, before the buffer lets the batch go
            self._readings += batch.count
            if historical:
                self._historical += batch.count
            await self._buffer.ack(batch)
        finally:
            window.release()


def response_topic_problem(asked: object, reply_topic: str) -> str | None:
    """What keeps `asked` from being a reply's topic: `reply_topic` itself or a concrete topic below it."""
    if not isinstance(asked, str) or not asked:
        return "the response topic must be a non-empty topic name"
    shown = repr(asked[:200])
    size = len(asked.encode(errors="surrogatepass"))
    problems = (
        (
            asked != reply_topic and not asked.startswith(f"{reply_topic}/"),
            f"response topic {shown} is outside the gateway's reply topic {reply_topic!r}",
        ),
        ("+" in asked or "#" in asked, f"response topic {shown} holds a wildcard (+ or #)"),
        ("\0" in asked, f"response topic {shown} holds a NUL character"),
        (any("\ud800" <= c <= "\udfff" for c in asked), f"response topic {shown} is not UTF-8 text"),
        (size > MAX_TOPIC_BYTES, f"the response topic has {size} bytes, over MQTT's {MAX_TOPIC_BYTES}"),
        ("" in asked.split("/"), f"response topic {shown} has an empty level"),
    )
    return next((message for wrong, message in problems if wrong), None)


def _disconnect_reason(client: aiomqtt.Client | None) -> int | None:
    """The reason code the connection ended with (MQTT 5 DISCONNECT's, or paho's own for a closed socket);
    None when it ended on our side."""
    ended = None if client is None else client._disconnected  # aiomqtt keeps it there only
    if ended is None or not ended.done() or ended.cancelled():
        return None
    error = ended.exception()
    rc = getattr(error, "rc", None)
    code = getattr(rc, "value", rc)
    return code if isinstance(code, int) else None


def _connection_lost(exc: BaseException) -> bool:
    """True for aiomqtt's errors that mean the session is over; not for a packet paho would not build."""
    if isinstance(exc, aiomqtt.MqttCodeError) and exc.rc in (MQTT_ERR_PAYLOAD_SIZE, MQTT_ERR_INVAL):
        return False
    return isinstance(exc, aiomqtt.MqttError)
