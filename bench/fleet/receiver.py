"""The central side of the bench: one subscriber per broker node (MQTT 3.1.1, QoS 1, a persistent session),
each counting every reading's seq per gateway as it arrives, and every birth and death. A subscriber whose
node is down waits for it and resumes its session; the union of the three is what central received."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiomqtt
from tests.support import LOOPBACK

from bench.fleet.cluster import V311


@dataclass
class Counts:
    """What one subscriber saw."""

    node: str
    seqs: dict[str, bytearray] = field(default_factory=dict)  # gateway -> deliveries of each seq (index)
    messages: int = 0
    births: dict[str, list[float]] = field(default_factory=dict)  # gateway -> arrival times
    deaths: dict[str, list[float]] = field(default_factory=dict)
    sessions: int = 0  # connections made
    resumed: int = 0  # ... of which the broker said it kept the session (session present)
    retained_births: int = 0  # births that came as retained messages (at a subscribe)

    def add(self, gateway: str, seqs: list[int]) -> None:
        counts = self.seqs.setdefault(gateway, bytearray())
        need = max(seqs, default=0) + 1
        if len(counts) < need:
            counts.extend(bytes(need - len(counts)))
        for seq in seqs:
            counts[seq] = min(255, counts[seq] + 1)

    def duplicates(self) -> int:
        return sum(max(0, c - 1) for counts in self.seqs.values() for c in counts)


class Subscriber:
    def __init__(self, node: str, port: int, prefix: str) -> None:
        self.counts = Counts(node)
        self._port = port
        self._prefix = prefix

    async def run(self, connected: asyncio.Event) -> None:
        """Forever: connect to its node, resume the session, count; the caller cancels."""
        while True:
            with contextlib.suppress(aiomqtt.MqttError):
                await self._session(connected)
            await asyncio.sleep(1.0)

    async def _session(self, connected: asyncio.Event) -> None:
        client = aiomqtt.Client(
            LOOPBACK,
            self._port,
            identifier=f"fleet-bench-central-{self.counts.node}",
            protocol=V311,
            clean_session=False,
            keepalive=10,
            timeout=10,
        )
        present: list[bool] = []
        _record_session_present(client, present)
        async with client:
            self.counts.sessions += 1
            self.counts.resumed += any(present)
            await client.subscribe(f"{self._prefix}/+/readings", qos=1)
            await client.subscribe(f"{self._prefix}/+/status", qos=1)
            connected.set()
            async for message in client.messages:
                self._take(str(message.topic), message.payload, message.retain)

    def _take(self, topic: str, payload: object, retained: bool) -> None:
        if not isinstance(payload, bytes) or not payload:
            return
        gateway, kind = topic.split("/")[-2:]
        body = json.loads(payload)
        now = time.time()
        if kind == "readings":
            self.counts.messages += 1
            self.counts.add(gateway, _seqs(body))
        elif "connected_at" in body:  # a birth (docs/mqtt.md); a death has no connected_at
            self.counts.births.setdefault(gateway, []).append(now)
            self.counts.retained_births += retained
        else:
            self.counts.deaths.setdefault(gateway, []).append(now)


def _seqs(batch: dict[str, Any]) -> list[int]:
    """Every reading's seq in a batch of either format (docs/mqtt.md): json's `readings`, or compact's."""
    if "readings" in batch:
        return [int(r["seq"]) for r in batch["readings"]]
    return list(batch["seqs"] or range(batch["seq"], batch["last"] + 1))


def _record_session_present(client: aiomqtt.Client, present: list[bool]) -> None:
    """aiomqtt does not tell whether the broker kept the session: the CONNACK's flag, caught on its way."""
    paho = client._client
    original: Callable[..., None] = paho.on_connect  # type: ignore[assignment]

    def on_connect(*args: Any) -> None:
        present.append(bool(args[2].session_present))
        original(*args)

    paho.on_connect = on_connect
