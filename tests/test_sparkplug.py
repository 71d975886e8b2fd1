"""Sparkplug B pieces without a broker: the [mqtt] keys, DCMD metrics as write_point commands through the
command router and its admission, the primary host's STATE, and the data and death payloads.
tests/test_sparkplug_interop.py runs the whole against an independent host."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from edge_agent import signing
from edge_agent.config import AgentConfig, CommandsConfig, ConfigError, parse_config
from edge_agent.readings import Quality, Reading
from edge_agent.uplink.admission import CommandAdmission
from edge_agent.uplink.commands import CommandRouter, Delivery
from edge_agent.uplink.payloads import device_infos
from edge_agent.uplink.sparkplug.dcmd import write_requests
from edge_agent.uplink.sparkplug.host_state import PrimaryHost
from edge_agent.uplink.sparkplug.metrics import Catalog, data_messages, device_birth, node_death
from edge_agent.uplink.sparkplug.proto import DataType, Payload
from tests.test_commands import CONFIG, FakeAgent

NOW = datetime(2026, 8, 5, 5, 0, 0, tzinfo=UTC)
TOPIC = "spBv1.0/plant-a/DCMD/gw/room-101"
CATALOG = Catalog(device_infos(AgentConfig.model_validate(CONFIG)))
SETPOINT = next(m.alias for m in CATALOG.device_metrics("room-101") if m.point == "cooling_setpoint")
TEMPERATURE = next(m.alias for m in CATALOG.device_metrics("room-101") if m.point == "zone_temperature")


def dcmd(*metrics: dict[str, Any], timestamp: datetime | None = NOW) -> bytes:
    payload = Payload() if timestamp is None else Payload(timestamp=round(timestamp.timestamp() * 1000))
    for metric in metrics:
        payload.metrics.add(**metric)
    return bytes(payload.SerializeToString())


def requests(body: bytes, device: str = "room-101") -> list[dict[str, Any]]:
    return [json.loads(w.request) for w in write_requests(TOPIC, device, body, CATALOG, NOW) if w.request]


def problems(body: bytes, device: str = "room-101") -> list[tuple[str, str]]:
    writes = write_requests(TOPIC, device, body, CATALOG, NOW)
    return [(w.refusal.code, w.refusal.message) for w in writes if w.refusal is not None]


# --- configuration ----------------------------------------------------------------------------------


def test_the_format_and_sparkplug_ids_default_and_bad_ones_are_named() -> None:
    mqtt = AgentConfig.model_validate({}).mqtt
    assert (mqtt.format, mqtt.group_id, mqtt.primary_host_id) == ("compact", "edge-agent", None)
    for key, value in (
        ("group_id", "plant/a"),
        ("group_id", "a+"),
        ("primary_host_id", "#"),
        ("format", "xml"),
    ):
        with pytest.raises(ConfigError, match=rf"mqtt\.{key}"):
            parse_config(f'[mqtt]\n{key} = "{value}"\n', "agent.toml")


# --- DCMD -------------------------------------------------------------------------------------------


def test_a_dcmd_metric_by_alias_or_by_name_is_a_write_point_command() -> None:
    by_alias = requests(dcmd({"alias": SETPOINT, "datatype": DataType.DOUBLE, "double_value": 26.5}))
    by_name = requests(dcmd({"name": "cooling_setpoint", "datatype": DataType.FLOAT, "float_value": 25.0}))
    assert [r["args"] for r in by_alias + by_name] == [
        {"device": "room-101", "point": "cooling_setpoint", "value": 26.5},
        {"device": "room-101", "point": "cooling_setpoint", "value": 25.0},
    ]
    assert by_alias[0]["command"] == "write_point"
    assert by_alias[0]["expires"] == "2026-08-05T05:01:00.000Z"  # 60 s after the DCMD's timestamp


def test_signed_integers_and_null_are_read_as_sparkplug_means_them() -> None:
    minus_five = {"name": "cooling_setpoint", "datatype": DataType.INT32, "int_value": 2**32 - 5}
    null = {"name": "cooling_setpoint", "datatype": DataType.DOUBLE, "is_null": True}
    assert [r["args"]["value"] for r in requests(dcmd(minus_five, null))] == [-5.0, None]


def test_a_redelivered_dcmd_keeps_its_ids_and_another_dcmd_gets_new_ones() -> None:
    body = dcmd({"alias": SETPOINT, "datatype": DataType.DOUBLE, "double_value": 26.5})
    other = dcmd({"alias": SETPOINT, "datatype": DataType.DOUBLE, "double_value": 26.5}, timestamp=None)
    assert requests(body)[0]["id"] == requests(body)[0]["id"] != requests(other)[0]["id"]


def test_what_no_write_can_come_of_is_named() -> None:
    assert problems(dcmd({"alias": 999, "datatype": DataType.DOUBLE, "double_value": 1.0})) == [
        ("unknown-point", "room-101: no metric with alias 999 (see its DBIRTH)")
    ]
    meter_alias = {"alias": SETPOINT, "datatype": DataType.DOUBLE, "double_value": 1.0}
    assert problems(dcmd(meter_alias), device="meter-main")[0][0] == "unknown-point"
    text = {"name": "cooling_setpoint", "datatype": DataType.STRING, "string_value": "27"}
    assert problems(dcmd(text)) == [
        ("invalid", "room-101/cooling_setpoint: a write takes a number, not string_value")
    ]
    assert problems(b"\xff\xff\xff")[0][0] == "malformed"
    many = [{"alias": SETPOINT, "datatype": DataType.DOUBLE, "double_value": 27.0}] * 2000
    assert problems(dcmd(*many)) == [("too-large", f"{len(dcmd(*many))} bytes, over 16384")]  # one refusal


async def _routed(
    body: bytes, tmp_path: Path, commands: CommandsConfig, now: datetime
) -> list[dict[str, Any]]:
    agent = FakeAgent()
    admission = CommandAdmission(commands, tmp_path / "commands.db", now=lambda: now)
    router = CommandRouter(agent, now=lambda: now, admission=admission)
    replies = []
    for write in write_requests(TOPIC, "room-101", body, CATALOG, now):
        assert write.request is not None
        replies.append(json.loads((await router.handle_delivery(Delivery(write.request, TOPIC))).to_json()))
    admission.close()
    return [*replies, {"writes": agent.writes}]


async def test_dcmd_writes_pass_the_routers_limits_priorities_and_once_only(tmp_path: Path) -> None:
    body = dcmd(
        {"alias": SETPOINT, "datatype": DataType.DOUBLE, "double_value": 27.0},
        {"alias": SETPOINT, "datatype": DataType.DOUBLE, "double_value": 35.0},
    )
    first = await _routed(body, tmp_path, CommandsConfig(), NOW)
    assert [r.get("ok") for r in first[:2]] == [True, False]
    assert first[1]["error"]["code"] == "out-of-limits"
    assert first[2] == {"writes": [("room-101", "cooling_setpoint", 27.0, 12)]}  # the device's priority
    again = await _routed(body, tmp_path, CommandsConfig(), NOW)  # the broker delivers it once more
    assert again[2] == {"writes": []}  # answered from the record, not run twice
    late = await _routed(dcmd(timestamp=NOW - timedelta(minutes=5)), tmp_path, CommandsConfig(), NOW)
    assert late == [{"writes": []}]
    stale = dcmd(
        {"alias": SETPOINT, "datatype": DataType.DOUBLE, "double_value": 27.0},
        timestamp=NOW - timedelta(minutes=5),
    )
    assert (await _routed(stale, tmp_path, CommandsConfig(), NOW))[0]["error"]["code"] == "expired"


async def test_a_gateway_that_takes_signed_commands_only_refuses_every_dcmd(tmp_path: Path) -> None:
    key = signing.public_key_text(signing.new_private_key().public_key())
    body = dcmd({"alias": SETPOINT, "datatype": DataType.DOUBLE, "double_value": 27.0})
    replies = await _routed(body, tmp_path, CommandsConfig(trusted_keys=[key]), NOW)
    assert replies[0]["error"]["code"] == "unsigned"
    assert replies[1] == {"writes": []}


# --- STATE, data, death -----------------------------------------------------------------------------


def state(online: bool, timestamp: int) -> bytes:
    return json.dumps({"online": online, "timestamp": timestamp}).encode()


def test_the_primary_hosts_state_follows_its_newest_message_only() -> None:
    host = PrimaryHost("scada-1")
    assert host.online is False
    assert host.update(state(True, 100)) is True
    assert host.update(state(False, 50)) is False  # an older STATE: stale
    assert host.online is True
    for junk in (b"online", b'{"online": "yes", "timestamp": 200}', b'{"online": true}', b"[]"):
        assert host.update(junk) is False
    assert host.online is True
    assert host.update(state(False, 200)) is True
    assert host.online is False


def _reading(device: str, point: str, value: float | None, quality: str = "good") -> dict[str, Any]:
    return {"seq": 1, "device": device, "point": point, "value": value, "unit": "degC", "quality": quality,
            "ts": "2026-08-05T05:00:00.250Z"}  # fmt: skip


def test_data_goes_by_alias_per_device_with_its_time_quality_and_history() -> None:
    messages = data_messages(
        [_reading("room-101", "zone_temperature", 24.5),
         _reading("room-101", "cooling_setpoint", None, "bad"),
         _reading("gone", "old_point", 3.0, "stale")],
        CATALOG,
        historical=True,
    )  # fmt: skip
    assert set(messages.devices) == {"room-101"}
    temperature, setpoint = messages.devices["room-101"].metrics
    assert (temperature.alias, temperature.double_value, temperature.is_historical) == (
        TEMPERATURE,
        24.5,
        True,
    )
    assert temperature.timestamp == round(
        datetime(2026, 8, 5, 5, 0, 0, 250_000, tzinfo=UTC).timestamp() * 1000
    )
    assert not temperature.HasField("properties")  # good: no Quality
    assert setpoint.is_null
    assert list(setpoint.properties.keys) == ["Quality"]
    assert setpoint.properties.values[0].int_value == 0
    assert messages.node is not None
    (old,) = messages.node.metrics  # a point no birth names: by name, in NDATA
    assert old.name == "gone/old_point"
    assert not old.HasField("alias")


def test_bd_seq_runs_0_to_255() -> None:
    (metric,) = Payload.FromString(node_death(300, 0)).metrics
    assert (metric.name, metric.long_value) == ("bdSeq", 44)


def test_a_device_birth_names_every_point_with_unit_range_and_latest_value() -> None:
    (room,) = [d for d in CATALOG.devices if d.name == "room-101"]
    newest = {
        "room-101/zone_temperature": Reading("room-101", "zone_temperature", 24.5, "degC", Quality.STALE, NOW)
    }
    birth = device_birth(room, CATALOG, 0, newest.get)
    metrics = {m.name: m for m in birth.metrics}
    temperature, setpoint = metrics["zone_temperature"], metrics["cooling_setpoint"]
    assert (temperature.double_value, temperature.timestamp) == (24.5, round(NOW.timestamp() * 1000))
    properties = dict(zip(temperature.properties.keys, temperature.properties.values, strict=True))
    assert properties["engUnit"].string_value == "degC"
    assert properties["readOnly"].boolean_value is True
    assert properties["Quality"].int_value == 64
    assert setpoint.is_null  # not read yet
    properties = dict(zip(setpoint.properties.keys, setpoint.properties.values, strict=True))
    assert (properties["writeLow"].double_value, properties["writeHigh"].double_value) == (22.0, 28.0)
    assert properties["readOnly"].boolean_value is False
