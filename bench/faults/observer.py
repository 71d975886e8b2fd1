"""The independent observer: an MQTT client of its own (paho, not the agent's code) that subscribes to
everything on the broker and keeps, per gateway, the ledger of sequence numbers docs/mqtt.md promises. It
reads both readings formats: a compact batch is read with the aliases of its session's birth, as the json
batch would say it.

Its session is persistent (clean start off, a long session expiry, a broker with persistence), so a broker
stopped and started again keeps the subscription and queues what arrived while it was reconnecting.
"""

from __future__ import annotations

import json
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

LOOPBACK = "127.0.0.1"


SKEW_S = 3600.0  # a reading stamped further than this from the observer's own clock is wrongly stamped


def off_clock(ts: object) -> bool:
    try:
        stamped = datetime.fromisoformat(str(ts).replace("Z", "+00:00"))
    except ValueError:
        return True
    return abs(stamped.timestamp() - time.time()) > SKEW_S


Expected = dict[int, tuple[str, str, float | None]]  # seq -> (device, point, value) found in a buffer file
Aliases = dict[int, tuple[str, str, bool]]  # a compact birth's alias -> (device, point, float32)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def compact_aliases(birth: dict[str, Any]) -> Aliases:
    """The aliases a compact birth gives its devices' points (docs/mqtt.md, The compact format)."""
    aliases: Aliases = {}
    for device in birth["devices"]:
        for i, point in enumerate(birth["point_lists"][device["points"]]):
            aliases[device["alias"] + i] = (device["name"], point[0], bool(point[2]))
    return aliases


def as_json_batch(batch: dict[str, Any], aliases: Aliases) -> dict[str, Any]:
    """A compact batch as the json batch says it (the fields the ledger reads): names, ISO times, and a
    float32 point's value back to the float32 read."""
    seqs = batch["seqs"] or range(batch["seq"], batch["last"] + 1)
    readings = []
    for seq, entry in zip(seqs, batch["r"], strict=True):
        alias, delta, value = entry[:3]
        device, point, f32 = aliases[alias] if isinstance(alias, int) else (alias[0], alias[1], False)
        if f32 and value is not None:
            value = struct.unpack("<f", struct.pack("<f", value))[0]
        ts = (EPOCH + timedelta(milliseconds=batch["t"] + delta)).isoformat(timespec="milliseconds")
        quality = entry[3] if len(entry) > 3 else "good"
        readings.append(
            {"seq": seq, "device": device, "point": point, "value": value, "quality": quality,
             "ts": ts.replace("+00:00", "Z")}
        )  # fmt: skip
    return {"readings": readings, "dropped": batch["dropped"], "last_dropped_seq": batch["last_dropped"]}


@dataclass
class Ledger:
    """What a receiver applying docs/mqtt.md's dedup and gap rules holds for one gateway."""

    first: dict[int, tuple[Any, ...]] = field(default_factory=dict)  # seq -> the reading's content
    first_at: dict[int, float] = field(default_factory=dict)  # seq -> monotonic time of first arrival
    duplicated: int = 0  # same seq, same content: at-least-once
    collisions: int = 0  # same seq, other content: a new reading the dedup rule throws away
    collided: set[int] = field(default_factory=set)
    last_dropped_seq: int = 0  # the highest the gateway ever reported
    dropped_reported: int = 0  # the highest `dropped` count reported
    good: dict[str, int] = field(default_factory=dict)  # device -> readings of quality good
    skewed: int = 0  # readings stamped more than SKEW_S away from the observer's clock
    skewed_unmarked: int = 0  # of those, published with quality good

    def add(self, batch: dict[str, Any], now: float) -> None:
        self.last_dropped_seq = max(self.last_dropped_seq, int(batch.get("last_dropped_seq") or 0))
        self.dropped_reported = max(self.dropped_reported, int(batch.get("dropped") or 0))
        for reading in batch.get("readings", []):
            seq = int(reading["seq"])
            content = (reading.get("device"), reading.get("point"), reading.get("ts"), reading.get("value"))
            if off_clock(reading.get("ts")):
                self.skewed += 1
                self.skewed_unmarked += reading.get("quality") == "good"
            if reading.get("quality") == "good":
                self.good[str(reading.get("device"))] = self.good.get(str(reading.get("device")), 0) + 1
            seen = self.first.get(seq)
            if seen is None:
                self.first[seq], self.first_at[seq] = content, now
            elif seen == content:
                self.duplicated += 1
            else:
                self.collisions += 1
                self.collided.add(seq)

    @property
    def highest(self) -> int:
        return max(self.first, default=0)

    def missing(self, upto: int | None = None) -> set[int]:
        """Seqs at or below `upto` (default: the highest seen) never received and not reported dropped."""
        top = self.highest if upto is None else upto
        return {s for s in range(self.last_dropped_seq + 1, top + 1) if s not in self.first}

    def lost(
        self, pending: set[int], excused: set[int] | None = None, expected: Expected | None = None
    ) -> int:
        """Readings a receiver will never have: gaps not dropped nor still buffered, seqs reused by new
        readings, and `expected` ones (e.g. readable in a damaged buffer) that never came. `excused`: seqs
        nobody could deliver (unreadable even to SQLite)."""
        expected = expected or {}
        never = (self.missing() | set(expected)) - set(self.first) - pending - (excused or set())
        replaced = {  # delivered under its seq: another reading (the one in the buffer never will be)
            s for s, (device, point, value) in expected.items()
            if s in self.first and self.first[s][:2] + self.first[s][3:] != (device, point, value)
        }  # fmt: skip
        return (
            len({s for s in never if s > self.last_dropped_seq})
            + self.collisions
            + len(replaced - self.collided)
        )

    def new_since(self, moment: float, beyond: int = 0) -> float | None:
        """Seconds from `moment` to the first reading received after it that was not seen before it (and
        whose seq is above `beyond`: committed by a run started after the fault)."""
        after = [t for s, t in self.first_at.items() if t >= moment and s > beyond]
        return min(after) - moment if after else None


@dataclass(frozen=True)
class Message:
    at: float
    topic: str
    payload: bytes
    retained: bool
    correlation: bytes | None


class Observer:
    """Subscribed to '#' on the broker; readings go to the ledger, every other message is kept."""

    def __init__(self, port: int, gateway: str, client_id: str = "fault-observer") -> None:
        self.gateway, self.lock = gateway, threading.Lock()
        self.ledger = Ledger()
        self.aliases: dict[int, Aliases] = {}  # by session (bdSeq), from the compact births seen
        self.messages: list[Message] = []
        self.connected = threading.Event()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        self._client.on_message = self._on_message
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = lambda *_: self.connected.clear()
        self._client.reconnect_delay_set(1, 1)
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = 3600
        self._client.connect_async(LOOPBACK, port, keepalive=600, clean_start=False, properties=properties)
        self._client.loop_start()
        if not self.connected.wait(10):
            self.close()
            raise RuntimeError(f"the observer could not connect to the broker on port {port}")

    def _on_connect(self, client: mqtt.Client, _u: object, _f: object, reason: Any, _p: object) -> None:
        if not reason.is_failure:
            client.subscribe("#", qos=1)
            self.connected.set()

    def _on_message(self, _c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        now = time.monotonic()
        correlation = getattr(message.properties, "CorrelationData", None)
        with self.lock:
            if message.topic == f"edge/{self.gateway}/readings":
                try:
                    batch = json.loads(message.payload)
                    if "r" in batch:  # compact: its session's birth names the aliases
                        batch = as_json_batch(batch, self.aliases[batch["bdSeq"]])
                    self.ledger.add(batch, now)
                except (ValueError, KeyError, TypeError, IndexError, struct.error):
                    self.messages.append(
                        Message(now, "malformed-readings", bytes(message.payload), False, None)
                    )
                return
            if message.topic == f"edge/{self.gateway}/status":
                self._take_birth(bytes(message.payload))
            self.messages.append(
                Message(now, message.topic, bytes(message.payload), message.retain, correlation)
            )

    def _take_birth(self, payload: bytes) -> None:
        """A compact birth's aliases, kept for the batches of its session."""
        try:
            birth = json.loads(payload)
            if isinstance(birth, dict) and birth.get("online") and birth.get("format") == "compact":
                self.aliases[int(birth["bdSeq"])] = compact_aliases(birth)
        except (ValueError, KeyError, TypeError, IndexError):
            pass  # not a birth this observer can read: the batches of its session are malformed to it

    def publish(
        self, topic: str, payload: bytes, *, retain: bool = False, response_topic: str | None = None,
        correlation: bytes | None = None,
    ) -> None:  # fmt: skip
        properties = None
        if response_topic is not None or correlation is not None:
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            if response_topic is not None:
                properties.ResponseTopic = response_topic
            if correlation is not None:
                properties.CorrelationData = correlation
        info = self._client.publish(topic, payload, qos=1, retain=retain, properties=properties)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise RuntimeError(f"the observer could not publish to {topic}: rc {info.rc}")

    def replies(self, since: float = 0.0) -> list[dict[str, Any]]:
        """Replies to commands (on the reply topic or anywhere else the agent published them)."""
        found = []
        with self.lock:
            for m in self.messages:
                if m.at >= since and ("/reply" in m.topic or m.topic.startswith("foreign/")):
                    try:
                        body = json.loads(m.payload)
                    except ValueError:
                        continue
                    if isinstance(body, dict):
                        found.append({**body, "_topic": m.topic, "_correlation": m.correlation})
        return found

    def where(self, test: Callable[[Message], bool]) -> list[Message]:
        with self.lock:
            return [m for m in self.messages if test(m)]

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
