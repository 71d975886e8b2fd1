"""The compact format ([mqtt] format = "compact") as a central server would take it: every message checked
against its JSON Schema in docs/schemas/ by a generic validator (jsonschema), aliases resolved from the
birth, and every reading decoded back to what was buffered, bit for bit."""

from __future__ import annotations

import contextlib
import json
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]

from edge_agent.config import AgentConfig, MqttConfig
from edge_agent.readings import Quality, Reading
from edge_agent.store.buffer import Buffer, EncodedBatch
from edge_agent.uplink.payloads import compact_points, device_infos, float32_points
from edge_agent.uplink.session import Uplink
from tests.support import LOOPBACK, Broker, async_wait_until, f32, in_background, read_batch

pytestmark = pytest.mark.integration

GATEWAY = "gw-compact"
SCHEMAS = Path(__file__).resolve().parent.parent / "docs" / "schemas"
T0 = datetime(2026, 8, 5, 5, 0, tzinfo=UTC)


def meter(name: str, unit_id: int, label: str | None = None) -> dict[str, Any]:
    """A meter's entry; `label` names its total_power point in the device's own words."""
    labelled = {} if label is None else {"label": label}
    return {
        "name": name,
        "protocol": "modbus-tcp",
        "host": LOOPBACK,
        "port": 1502,
        "unit_id": unit_id,
        "points": [
            {"name": "total_power", "table": "input", "address": 52, "unit": "W"} | labelled,  # float32
            {"name": "voltage", "table": "input", "address": 0, "type": "uint16", "scale": 0.1, "unit": "V"},
        ],
    }


CONFIG = AgentConfig.model_validate(
    {
        "devices": [
            meter("meter-1", 1, label="본관 유효전력"),
            meter("meter-2", 2),
            {"name": "vav-1", "protocol": "bacnet-ip", "host": "127.0.0.1:47808", "instance": 7,
             "profile": "edge-sim-vav"},
        ]
    }
)  # fmt: skip


def at(ms: float) -> datetime:
    return T0 + timedelta(milliseconds=ms)


READINGS = [
    Reading("meter-1", "total_power", f32(61822.35), "W", Quality.GOOD, at(0)),
    Reading("meter-1", "voltage", 230.10000000000002, "V", Quality.GOOD, at(0)),
    Reading("meter-2", "total_power", f32(1.0000001), "W", Quality.GOOD, at(1)),  # 9 digits needed
    Reading("meter-2", "total_power", f32(-1.0e-7), "W", Quality.GOOD, at(13.9)),  # ms truncated
    Reading("meter-2", "voltage", -0.0, "V", Quality.GOOD, at(13)),
    Reading("meter-2", "voltage", 1e308, "V", Quality.BAD, at(9)),  # time going back a little
    Reading("meter-1", "total_power", f32(3.4e38), "W", Quality.BAD, at(2000)),  # implausible, kept
    Reading("meter-1", "total_power", None, "W", Quality.BAD, at(2001)),
    Reading("meter-1", "voltage", None, "V", Quality.UNAVAILABLE, at(2001)),
    Reading("meter-2", "total_power", f32(0.1), "W", Quality.UNCERTAIN_TIME, at(2002)),
    Reading("vav-1", "zone_temperature", 21.5, "degC", Quality.GOOD, at(2003)),
    Reading("old-meter", "energy", 5e-324, "kWh", Quality.GOOD, at(2004)),  # not in the birth
] * 3


@dataclass
class Seen:
    births: list[dict[str, Any]] = field(default_factory=list)
    batches: list[dict[str, Any]] = field(default_factory=list)
    payload_bytes: int = 0


@contextlib.asynccontextmanager
async def subscriber(port: int) -> AsyncIterator[Seen]:
    seen = Seen()
    async with aiomqtt.Client(LOOPBACK, port, identifier="central") as client:
        await client.subscribe(f"edge/{GATEWAY}/#", qos=1)

        async def collect() -> None:
            async for message in client.messages:
                assert isinstance(message.payload, bytes)
                body = json.loads(message.payload)
                if str(message.topic).endswith("/status") and body["online"]:
                    seen.births.append(body)
                elif str(message.topic).endswith("/readings"):
                    seen.batches.append(body)
                    seen.payload_bytes += len(message.payload)

        async with in_background(collect()):
            yield seen


def decode(birth: dict[str, Any], batch: dict[str, Any]) -> list[tuple[int, Reading]]:
    """A compact batch back to (seq, reading), with nothing but the birth of its session."""
    assert batch["bdSeq"] == birth["bdSeq"]
    read = read_batch(GATEWAY, json.dumps(batch).encode(), {birth["bdSeq"]: birth})
    return [
        (r.seq, Reading(r.device, r.point, r.value, r.unit, Quality(r.quality), r.ts)) for r in read.readings
    ]


def as_sent(reading: Reading) -> tuple[Any, ...]:
    """What a batch carries of a reading: its time to the millisecond, its value's bits."""
    ms = reading.ts.replace(microsecond=reading.ts.microsecond // 1000 * 1000)
    value = None if reading.value is None else reading.value.hex()
    return reading.device, reading.point, value, reading.unit, reading.quality, ms


def compact_uplink(buffer: Buffer, port: int) -> Uplink:
    config = MqttConfig(url=f"mqtt://{LOOPBACK}:{port}", batch_size=8, format="compact")
    return Uplink(config, GATEWAY, buffer, device_infos(CONFIG), float32=float32_points(CONFIG))


async def test_a_generic_validator_and_the_birth_decode_every_reading(broker: Broker, tmp_path: Path) -> None:
    readings_schema = Draft202012Validator(json.loads((SCHEMAS / "compact_readings.json").read_text()))
    birth_schema = Draft202012Validator(json.loads((SCHEMAS / "compact_birth.json").read_text()))
    async with Buffer(tmp_path / "b.db") as buffer, subscriber(broker.port) as seen:
        await buffer.append(READINGS)
        await buffer.ack(EncodedBatch(6, 7, 2, "[]"))  # delivered before: the rest is not consecutive
        async with in_background(compact_uplink(buffer, broker.port).run()):
            await async_wait_until(lambda: buffer.statistics().depth == 0, 10, "every reading acknowledged")
            await buffer.append(READINGS[:4])  # live, after the session began
            await async_wait_until(lambda: buffer.statistics().depth == 0, 10, "the live ones too")
            await async_wait_until(lambda: sum(len(b["r"]) for b in seen.batches) == 38, 5, "all at central")
    (birth,) = seen.births
    birth_schema.validate(birth)
    assert birth["labels"] == {"meter-1": {"total_power": "본관 유효전력"}}  # as the json birth has them
    received: dict[int, Reading] = {}
    for batch in seen.batches:
        readings_schema.validate(batch)
        received.update(decode(birth, batch))
    expected = dict(enumerate(READINGS + READINGS[:4], start=1))
    del expected[6], expected[7]
    got = {seq: as_sent(r) for seq, r in received.items()}
    assert got == {seq: as_sent(r) for seq, r in expected.items()}
    assert any(batch["seqs"] is not None for batch in seen.batches)  # the gap at 6-7 was said
    assert any(batch["hist"] for batch in seen.batches)
    assert not seen.batches[-1]["hist"]


def test_identical_devices_share_one_point_list_in_the_birth_whatever_their_labels() -> None:
    lists, devices, aliases = compact_points(device_infos(CONFIG), float32_points(CONFIG))
    assert [d.points for d in devices] == [0, 0, 1]
    assert [d.alias for d in devices] == [0, 2, 4]
    assert aliases[:4] == [
        ("meter-1", "total_power", 0, True),
        ("meter-1", "voltage", 1, False),  # scaled: not a float32 as read
        ("meter-2", "total_power", 2, True),
        ("meter-2", "voltage", 3, False),
    ]
    assert lists[0] == [("total_power", "W", True), ("voltage", "V", False)]


SDM630 = {
    "voltage_l1": 230.0, "voltage_l2": 231.0, "voltage_l3": 229.0, "current_l1": 61.0, "current_l2": 60.0,
    "current_l3": 62.0, "power_l1": 14000.0, "total_power": 42000.0, "power_factor": 0.95, "frequency": 50.0,
    "import_energy": 123456.0, "export_energy": 0.0, "demand": 40000.0,
}  # fmt: skip


def sdm630_polls(meters: int, rng: random.Random) -> tuple[AgentConfig, list[Reading]]:
    """A second of 50 SDM630 meters polled: each value a float32 near its typical figure, the meters read
    a few ms apart."""
    points = [{"name": n, "table": "input", "address": 2 * i, "unit": "-"} for i, n in enumerate(SDM630)]
    config = AgentConfig.model_validate(
        {"devices": [meter(f"meter-{m}", m) | {"points": points} for m in range(1, meters + 1)]}
    )
    readings = [
        Reading(f"meter-{m}", name, f32(typical * rng.uniform(0.9, 1.1)), "-", Quality.GOOD, at(20 * m))
        for m in range(1, meters + 1)
        for name, typical in SDM630.items()
    ]
    return config, readings


async def test_fifty_sdm630_take_at_most_30_bytes_a_value(broker: Broker, tmp_path: Path) -> None:
    """The worst case: one message per poll (each poll its own commit, published as it is made)."""
    config, polls = sdm630_polls(50, random.Random(19))
    mqtt = MqttConfig(url=f"mqtt://{LOOPBACK}:{broker.port}", format="compact")
    async with Buffer(tmp_path / "b.db") as buffer, subscriber(broker.port) as seen:
        uplink = Uplink(mqtt, GATEWAY, buffer, device_infos(config), float32=float32_points(config))
        async with in_background(uplink.run()):
            await async_wait_until(lambda: bool(seen.births), 5, "the birth")
            for meter_readings in (polls[i : i + 13] for i in range(0, len(polls), 13)):
                await buffer.append(meter_readings)  # one commit per poll
            await async_wait_until(lambda: sum(len(b["r"]) for b in seen.batches) == 650, 10, "every value")
    assert seen.payload_bytes / 650 <= 30
