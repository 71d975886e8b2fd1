"""Commands from the central platform: what each one changes, what the reply says, and that nothing a
malformed, hostile or out-of-range request does gets past the checks."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import math
import re
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs
from typer.testing import CliRunner

from edge_agent import signing
from edge_agent.cli.app import app
from edge_agent.config import AgentConfig, CommandsConfig, ConfigError, parse_config
from edge_agent.control.points import Holder
from edge_agent.control.settings import ControlMode, ControlSettings
from edge_agent.errors import CommandRefused, DeviceRejected, DeviceUnreachable
from edge_agent.readings import Quality, Reading
from edge_agent.service.control_setup import control_settings
from edge_agent.uplink import commands
from edge_agent.uplink.admission import CommandAdmission, signed_bytes
from edge_agent.uplink.command_log import CommandLog
from edge_agent.uplink.commands import (
    COMMAND_NAMES,
    MAX_COMMAND_BYTES,
    CommandErrorCode,
    CommandReply,
    CommandRouter,
    Delivery,
    command_schemas,
)
from edge_agent.uplink.session import response_topic_problem

SCHEMAS_DIR = Path(__file__).resolve().parent.parent / "docs" / "schemas"
NOW = datetime(2026, 8, 5, 5, 0, 0, 250_000, tzinfo=UTC)

CONFIG = {
    "control": {"demand_target_limits_kw": [50.0, 500.0]},
    "devices": [
        {
            "name": "meter-main",
            "protocol": "modbus-tcp",
            "host": "127.0.0.1",
            "points": [
                {"name": "demand_period", "table": "holding", "address": 2, "type": "uint16",
                 "write_range": [5, 60]},
                {"name": "total_power", "table": "holding", "address": 0x34, "unit": "W"},
            ],
        },
        {
            "name": "room-101",
            "protocol": "bacnet-ip",
            "host": "127.0.0.1",
            "instance": 1001,
            "write_priority": 12,
            "points": [
                {"name": "cooling_setpoint", "object": "analog-value,1", "unit": "degC",
                 "write_range": [22, 28]},
                {"name": "zone_temperature", "object": "analog-input,1", "unit": "degC"},
            ],
        },
    ],
}  # fmt: skip
AGENT_CONFIG = AgentConfig.model_validate(CONFIG)
# (device, point) -> write range and whether BACnet: what the fuzz test's oracle checks writes against
WRITABLE = {("meter-main", "demand_period"): (5, 60, False), ("room-101", "cooling_setpoint"): (22, 28, True)}


class Health(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"


@dataclass(frozen=True, slots=True)
class DeviceHealth:
    name: str
    health: Health
    last: Reading | None


@dataclass(frozen=True, slots=True)
class FakeStatus:
    gateway: str
    started: datetime
    devices: list[DeviceHealth]
    ratio: float
    window: tuple[int, int]


STATUS = FakeStatus(
    gateway="library-01",
    started=NOW,
    devices=[
        DeviceHealth(
            "meter-main", Health.ONLINE, Reading("meter-main", "total_power", 1.5, "W", Quality.GOOD, NOW)
        ),
        DeviceHealth("room-101", Health.OFFLINE, None),
    ],
    ratio=math.nan,
    window=(9, 15),
)

Write = tuple[str, str, float | None, int | None]


@dataclass
class FakeAgent:
    config: AgentConfig = AGENT_CONFIG
    control: ControlSettings = field(default_factory=lambda: control_settings(AGENT_CONFIG.control))
    writes: list[Write] = field(default_factory=list)
    rebirths: int = 0
    write_error: Exception | None = None
    write_blocks: bool = False
    rebirth_error: Exception | None = None
    status_tree: object = STATUS
    writing: asyncio.Event = field(default_factory=asyncio.Event)  # set once a write has begun

    def status(self) -> object:
        return self.status_tree

    @property
    def points(self) -> FakeAgent:
        return self

    def latest(self, ref: str) -> Reading | None:
        return None

    async def write(self, ref: str, value: float | None, priority: int | None) -> None:
        self.writing.set()
        if self.write_blocks:
            await asyncio.Event().wait()
        if self.write_error is not None:
            raise self.write_error
        device, point = ref.split("/")
        self.writes.append((device, point, value, priority))

    async def holder(self, ref: str) -> Holder:
        return Holder(prioritised=False)

    def rebirth(self) -> None:
        if self.rebirth_error is not None:
            raise self.rebirth_error
        self.rebirths += 1


def request(command: str, args: Any = None, request_id: str = "cmd-1") -> bytes:
    body: dict[str, Any] = {"id": request_id, "command": command}
    if args is not None:
        body["args"] = args
    return json.dumps(body).encode()


def write(device: str, point: str, value: Any, **extra: Any) -> bytes:
    return request("write_point", {"device": device, "point": point, "value": value, **extra})


async def send(agent: FakeAgent, payload: bytes) -> CommandReply:
    return await CommandRouter(agent, now=lambda: NOW).handle(payload)


def refused(reply: CommandReply, code: CommandErrorCode, field_path: str | None = None) -> str:
    """Assert the reply refuses with this code (and field); give back its message."""
    assert not reply.ok
    assert reply.result is None
    assert reply.error is not None, reply
    assert reply.error.code is code, reply.error
    if field_path is not None:
        assert reply.error.field == field_path
    return reply.error.message


# --- each command's effect and reply ------------------------------------------------------------------


async def test_set_demand_target_sets_it_and_the_reply_is_compact_json() -> None:
    agent = FakeAgent()
    with capture_logs() as logs:
        reply = await send(agent, request("set_demand_target", {"kw": 320.5}))
    assert agent.control.demand_target_kw == 320.5
    assert json.loads(reply.to_json()) == {
        "id": "cmd-1",
        "command": "set_demand_target",
        "ok": True,
        "result": {"demand_target_kw": 320.5},
        "error": None,
        "ts": "2026-08-05T05:00:00.250Z",
    }
    assert b" " not in reply.to_json()
    assert logs == [
        {"event": "command done", "id": "cmd-1", "command": "set_demand_target", "log_level": "info"}
    ]


async def test_reply_timestamp_is_utc_milliseconds_with_z() -> None:
    reply = await CommandRouter(FakeAgent()).handle(request("rebirth"))
    ts = json.loads(reply.to_json())["ts"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", ts), ts


@pytest.mark.parametrize("kw", [50, 50.0, 500.0])
async def test_demand_target_limits_are_inclusive(kw: float) -> None:
    agent = FakeAgent()
    assert (await send(agent, request("set_demand_target", {"kw": kw}))).ok
    assert agent.control.demand_target_kw == kw


@pytest.mark.parametrize("kw", [49.999, 500.001, 0, -100])
async def test_demand_target_outside_limits_is_refused_and_unchanged(kw: float) -> None:
    agent = FakeAgent()
    message = refused(
        await send(agent, request("set_demand_target", {"kw": kw})), CommandErrorCode.OUT_OF_LIMITS, "args.kw"
    )
    assert "[50.0, 500.0]" in message
    assert agent.control.demand_target_kw is None


@pytest.mark.parametrize("mode", list(ControlMode))
async def test_set_control_mode(mode: ControlMode) -> None:
    agent = FakeAgent()
    reply = await send(agent, request("set_control_mode", {"mode": mode.value}))
    assert reply.ok
    assert reply.result == {"mode": mode.value}
    assert agent.control.mode is mode


async def test_unknown_control_mode_is_invalid() -> None:
    agent = FakeAgent()
    reply = await send(agent, request("set_control_mode", {"mode": "auto"}))
    assert "off" in refused(reply, CommandErrorCode.INVALID, "args.mode")
    assert agent.control.mode is ControlMode.OFF


async def test_rebirth_with_or_without_empty_args() -> None:
    agent = FakeAgent()
    for payload in (request("rebirth"), request("rebirth", {})):
        reply = await send(agent, payload)
        assert reply.ok
        assert reply.result == {}
    assert agent.rebirths == 2
    refused(await send(agent, request("rebirth", {"now": True})), CommandErrorCode.INVALID, "args.now")
    assert agent.rebirths == 2


async def test_status_serialises_a_dataclass_tree_with_datetimes_enums_and_nan() -> None:
    reply = await send(FakeAgent(), request("status"))
    assert reply.ok
    assert reply.result == {
        "gateway": "library-01",
        "started": "2026-08-05T05:00:00.250000Z",
        "devices": [
            {
                "name": "meter-main",
                "health": "online",
                "last": {
                    "device": "meter-main",
                    "point": "total_power",
                    "value": 1.5,
                    "unit": "W",
                    "quality": "good",
                    "ts": "2026-08-05T05:00:00.250000Z",
                },
            },
            {"name": "room-101", "health": "offline", "last": None},
        ],
        "ratio": None,  # NaN is not JSON
        "window": [9, 15],
    }
    assert json.loads(reply.to_json())["result"] == reply.result


async def test_status_that_is_not_a_dataclass_is_an_internal_error() -> None:
    agent = FakeAgent(status_tree=object())
    refused(await send(agent, request("status")), CommandErrorCode.INTERNAL)


# --- write_point ------------------------------------------------------------------------------------


async def test_modbus_write_takes_no_priority() -> None:
    agent = FakeAgent()
    reply = await send(agent, write("meter-main", "demand_period", 15))
    assert reply.ok
    assert reply.result == {"device": "meter-main", "point": "demand_period", "value": 15.0, "priority": None}
    assert agent.writes == [("meter-main", "demand_period", 15.0, None)]

    reply = await send(agent, write("meter-main", "demand_period", 15, priority=10))
    assert "priority" in refused(reply, CommandErrorCode.INVALID, "args.priority")
    assert len(agent.writes) == 1


async def test_bacnet_write_defaults_to_the_devices_priority() -> None:
    agent = FakeAgent()
    reply = await send(agent, write("room-101", "cooling_setpoint", 26.5))
    assert reply.ok
    assert reply.result == {"device": "room-101", "point": "cooling_setpoint", "value": 26.5, "priority": 12}
    assert agent.writes == [("room-101", "cooling_setpoint", 26.5, 12)]


@pytest.mark.parametrize("priority", [9, 10, 15])
async def test_bacnet_write_at_priorities_9_to_15(priority: int) -> None:
    agent = FakeAgent()
    assert (await send(agent, write("room-101", "cooling_setpoint", 26, priority=priority))).ok
    assert agent.writes == [("room-101", "cooling_setpoint", 26.0, priority)]


@pytest.mark.parametrize("priority", [1, 2, 5, 8, 16])
async def test_bacnet_write_never_overrides_operators_or_life_safety(priority: int) -> None:
    agent = FakeAgent()
    for value in (26, None):
        reply = await send(agent, write("room-101", "cooling_setpoint", value, priority=priority))
        message = refused(reply, CommandErrorCode.OUT_OF_LIMITS, "args.priority")
        assert f"priority {priority}" in message
        assert "9-15" in message
    assert agent.writes == []


@pytest.mark.parametrize("priority", [0, 17, 10.0, "10", True])
async def test_priority_outside_bacnet_or_not_an_integer_is_invalid(priority: object) -> None:
    agent = FakeAgent()
    refused(
        await send(agent, write("room-101", "cooling_setpoint", 26, priority=priority)),
        CommandErrorCode.INVALID,
        "args.priority",
    )
    assert agent.writes == []


async def test_null_relinquishes_a_bacnet_point_at_the_devices_priority() -> None:
    agent = FakeAgent()
    assert (await send(agent, write("room-101", "cooling_setpoint", None))).ok
    assert (await send(agent, write("room-101", "cooling_setpoint", None, priority=14))).ok
    assert agent.writes == [
        ("room-101", "cooling_setpoint", None, 12),
        ("room-101", "cooling_setpoint", None, 14),
    ]


async def test_modbus_points_cannot_be_relinquished_and_value_is_required() -> None:
    agent = FakeAgent()
    message = refused(
        await send(agent, write("meter-main", "demand_period", None)), CommandErrorCode.INVALID, "args.value"
    )
    assert "meter-main/demand_period" in message
    missing = request("write_point", {"device": "room-101", "point": "cooling_setpoint"})
    refused(await send(agent, missing), CommandErrorCode.INVALID, "args.value")
    assert agent.writes == []


@pytest.mark.parametrize(
    ("device", "point", "value", "bounds"),
    [
        ("meter-main", "demand_period", 4.99, "[5.0, 60.0]"),
        ("meter-main", "demand_period", 61, "[5.0, 60.0]"),
        ("room-101", "cooling_setpoint", 21.9, "[22.0, 28.0]"),
        ("room-101", "cooling_setpoint", -1e300, "[22.0, 28.0]"),
    ],
)
async def test_write_outside_write_range_is_refused(
    device: str, point: str, value: float, bounds: str
) -> None:
    agent = FakeAgent()
    message = refused(
        await send(agent, write(device, point, value)), CommandErrorCode.OUT_OF_LIMITS, "args.value"
    )
    assert f"{device}/{point}" in message
    assert bounds in message
    assert agent.writes == []


async def test_write_range_bounds_are_inclusive() -> None:
    agent = FakeAgent()
    for value in (5, 60):
        assert (await send(agent, write("meter-main", "demand_period", value))).ok
    assert [w[2] for w in agent.writes] == [5.0, 60.0]


@pytest.mark.parametrize(
    ("device", "point"), [("meter-main", "total_power"), ("room-101", "zone_temperature")]
)
async def test_point_without_write_range_is_not_writable(device: str, point: str) -> None:
    agent = FakeAgent()
    message = refused(await send(agent, write(device, point, 1)), CommandErrorCode.NOT_WRITABLE, "args.point")
    assert f"{device}/{point}" in message
    assert agent.writes == []


async def test_unknown_device_or_point_is_named() -> None:
    agent = FakeAgent()
    reply = await send(agent, write("meter-spare", "demand_period", 10))
    assert "'meter-spare'" in refused(reply, CommandErrorCode.UNKNOWN_POINT, "args.device")
    reply = await send(agent, write("meter-main", "demand_limit", 10))
    message = refused(reply, CommandErrorCode.UNKNOWN_POINT, "args.point")
    assert "'meter-main'" in message
    assert "'demand_limit'" in message
    assert agent.writes == []


@pytest.mark.parametrize(
    "error",
    [
        DeviceRejected("room-101", "analog-value,1", "write-access-denied", "property"),
        DeviceUnreachable("room-101", "127.0.0.1", "no answer"),
    ],
)
async def test_device_errors_are_reported(error: Exception) -> None:
    agent = FakeAgent(write_error=error)
    reply = await send(agent, write("room-101", "cooling_setpoint", 24))
    assert refused(reply, CommandErrorCode.DEVICE_ERROR) == str(error)
    assert reply.id == "cmd-1"


async def test_a_write_that_hangs_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(commands, "WRITE_TIMEOUT_S", 0.05)
    reply = await send(FakeAgent(write_blocks=True), write("room-101", "cooling_setpoint", 24))
    assert "room-101/cooling_setpoint" in refused(reply, CommandErrorCode.TIMEOUT)


async def test_cancellation_is_not_swallowed() -> None:
    agent = FakeAgent(write_blocks=True)
    task = asyncio.create_task(send(agent, write("room-101", "cooling_setpoint", 24)))
    async with asyncio.timeout(5):
        await agent.writing.wait()  # cancelled while the write hangs
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_bug_in_a_handler_still_gets_a_reply_and_a_traceback_in_the_log() -> None:
    agent = FakeAgent(rebirth_error=RuntimeError("boom"))
    with capture_logs() as logs:
        reply = await send(agent, request("rebirth"))
    assert "RuntimeError" in refused(reply, CommandErrorCode.INTERNAL)
    assert reply.id == "cmd-1"
    assert reply.command == "rebirth"
    assert len(logs) == 1
    assert logs[0]["log_level"] == "warning"
    assert logs[0]["code"] == "internal"
    assert isinstance(logs[0]["exc_info"], RuntimeError)


# --- requests that are not commands ---------------------------------------------------------------


async def test_oversized_payload_is_refused_unread() -> None:
    padded = request("rebirth")[:-1] + b" " * (MAX_COMMAND_BYTES - len(request("rebirth"))) + b"}"
    assert len(padded) == MAX_COMMAND_BYTES
    assert (await send(FakeAgent(), padded)).ok

    reply = await send(FakeAgent(), padded[:-1] + b" }")
    assert str(MAX_COMMAND_BYTES) in refused(reply, CommandErrorCode.TOO_LARGE)
    assert reply.id is None


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\xff\xfe{}",
        b"not json",
        b'{"id": "cmd-1", "command": "rebirth"',
        b"[1, 2]",
        b'"rebirth"',
        b"null",
        b'{"id": "cmd-1", "command": "set_demand_target", "args": {"kw": NaN}}',
        b'{"id": "cmd-1", "command": "set_demand_target", "args": {"kw": Infinity}}',
        json.dumps({"id": "cmd-1", "command": "rebirth"}).encode("utf-16"),
        b"[" * 5000 + b"]" * 5000,
    ],
)
async def test_malformed_payloads(payload: bytes) -> None:
    reply = await send(FakeAgent(), payload)
    refused(reply, CommandErrorCode.MALFORMED)
    assert reply.id is None
    assert reply.command is None


async def test_unknown_command_is_named_with_the_known_ones() -> None:
    reply = await send(FakeAgent(), request("reboot"))
    message = refused(reply, CommandErrorCode.UNKNOWN_COMMAND)
    assert "'reboot'" in message
    assert all(name in message for name in COMMAND_NAMES)
    assert reply.id == "cmd-1"
    assert reply.command is None


@pytest.mark.parametrize(
    ("body", "field_path"),
    [
        ({"id": "cmd-1", "command": "set_demand_target", "args": {"kw": "100"}}, "args.kw"),
        ({"id": "cmd-1", "command": "set_demand_target", "args": {"kw": True}}, "args.kw"),
        ({"id": "cmd-1", "command": "set_demand_target", "args": {"kw": 10**400}}, "args.kw"),
        ({"id": "cmd-1", "command": "set_demand_target", "args": {"kw": 100, "unit": "kW"}}, "args.unit"),
        ({"id": "cmd-1", "command": "set_demand_target", "args": [100]}, "args"),
        ({"id": "cmd-1", "command": "set_demand_target"}, "args"),
        ({"id": "cmd-1", "command": "write_point", "args": {"device": "room-101", "point": "cooling_setpoint",
                                                         "value": "24"}}, "args.value"),
        ({"id": "cmd-1", "command": "write_point", "args": {"device": 7, "point": "cooling_setpoint",
                                                         "value": 24}}, "args.device"),
        ({"id": "cmd-1", "command": "rebirth", "urgent": True}, "urgent"),
        ({"id": "cmd-1"}, "command"),
        ({"id": "cmd-1", "command": 5}, "command"),
    ],
)  # fmt: skip
async def test_schema_violations_name_the_field_and_keep_the_id(
    body: dict[str, Any], field_path: str
) -> None:
    reply = await send(FakeAgent(), json.dumps(body).encode())
    assert refused(reply, CommandErrorCode.INVALID, field_path).startswith(f"{field_path}: ")
    assert reply.id == "cmd-1"


async def test_huge_number_as_json_text_is_invalid_not_infinite() -> None:
    payload = b'{"id": "cmd-1", "command": "set_demand_target", "args": {"kw": 1e400}}'
    refused(await send(FakeAgent(), payload), CommandErrorCode.INVALID, "args.kw")


@pytest.mark.parametrize("request_id", ["", "a" * 65, "has space", "a/b", 42, None])
async def test_a_bad_id_is_invalid_and_not_echoed(request_id: object) -> None:
    reply = await send(FakeAgent(), json.dumps({"id": request_id, "command": "rebirth"}).encode())
    refused(reply, CommandErrorCode.INVALID, "id")
    assert reply.id is None
    assert reply.command == "rebirth"


async def test_id_allows_its_whole_alphabet() -> None:
    request_id = "Az09_.:-" + "x" * 56
    reply = await send(FakeAgent(), request("rebirth", request_id=request_id))
    assert reply.ok
    assert reply.id == request_id


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"{", CommandErrorCode.MALFORMED),
        (request("reboot"), CommandErrorCode.UNKNOWN_COMMAND),
        (request("set_demand_target", {"kw": "1"}), CommandErrorCode.INVALID),
        (write("room-101", "cooling_setpoint", 40), CommandErrorCode.OUT_OF_LIMITS),
        (b" " * (MAX_COMMAND_BYTES + 1), CommandErrorCode.TOO_LARGE),
    ],
)
async def test_every_refusal_logs_one_warning(payload: bytes, code: CommandErrorCode) -> None:
    with capture_logs() as logs:
        reply = await send(FakeAgent(), payload)
    assert reply.error is not None
    assert logs == [
        {
            "event": "command refused",
            "log_level": "warning",
            "id": reply.id,
            "command": reply.command,
            "code": code.value,
            "error": reply.error.message,
        }
    ]


# --- the published schemas ------------------------------------------------------------------------


def test_schema_files_match_the_models() -> None:
    """Regenerate with `.venv/bin/python scripts/write_schemas.py` after changing a model."""
    for name, schema in command_schemas().items():
        on_disk = json.loads((SCHEMAS_DIR / name).read_text(encoding="utf-8"))
        assert on_disk == schema, f"docs/schemas/{name} is out of date: run scripts/write_schemas.py"
        assert on_disk["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_command_schema_offers_every_command() -> None:
    schema = command_schemas()["command.json"]
    assert set(schema["discriminator"]["mapping"]) == set(COMMAND_NAMES)


# --- fuzz: nothing gets past the checks ------------------------------------------------------------

DEVICES = ["meter-main", "room-101", "meter-spare"]
POINTS = ["demand_period", "total_power", "cooling_setpoint", "zone_temperature", "nope"]
NUMBERS = (
    st.integers(-100, 1000)
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([4.999, 5, 60, 60.001, 21.99, 22, 28, 28.01, 49.99, 50, 500, 500.01, 10**400])
    | st.sampled_from([math.nan, math.inf, -math.inf])  # JSON text gets NaN and Infinity: malformed
)
JSON = st.recursive(
    st.none() | st.booleans() | NUMBERS | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)
ARG_VALUES = (
    NUMBERS
    | st.sampled_from([*DEVICES, *POINTS, "off", "shadow", "active", "auto", "12", None, True, False])
    | JSON
)
ARGS = st.dictionaries(
    st.sampled_from(["kw", "mode", "device", "point", "value", "priority"]) | st.text(max_size=6),
    ARG_VALUES,
    max_size=5,
)
IDS = st.sampled_from(["cmd-1", "Z" * 64]) | st.text(max_size=70) | JSON
REQUESTS = st.fixed_dictionaries(
    {"id": IDS, "command": st.sampled_from(COMMAND_NAMES) | st.text(max_size=20) | JSON},
    optional={"args": ARGS | JSON, "extra": JSON},
)
WRITES = st.tuples(
    st.sampled_from(list(WRITABLE)) | st.tuples(st.sampled_from(DEVICES), st.sampled_from(POINTS)),
    st.fixed_dictionaries(
        {"value": st.one_of(st.none(), st.floats(4, 62), st.floats(21, 29), NUMBERS)},
        optional={"priority": st.none() | st.integers(0, 17) | ARG_VALUES},
    ),
).map(
    lambda t: {"id": "w-1", "command": "write_point", "args": {"device": t[0][0], "point": t[0][1], **t[1]}}
)
TARGETS = st.fixed_dictionaries(
    {
        "id": st.just("t-1"),
        "command": st.just("set_demand_target"),
        "args": st.fixed_dictionaries({"kw": NUMBERS}),
    }
)


def _encoded(body: object) -> bytes:
    return json.dumps(body).encode()  # NaN and Infinity come out as (invalid) JSON literals


JUNK = st.binary(max_size=64) | st.tuples((REQUESTS | WRITES).map(_encoded), st.integers(0, 200)).map(
    lambda t: t[0][: t[1]]  # cut short
)
EXTREMES = st.integers(0, 20_000).flatmap(
    lambda n: st.sampled_from(
        [
            write("x" * n, "cooling_setpoint", 24),
            request("rebirth", request_id="i" * n),
            b'{"id":"n","command":"rebirth","args":' + b"[" * (n // 5) + b"]" * (n // 5) + b"}",
        ]
    )
)
PAYLOADS = st.one_of(JUNK, REQUESTS.map(_encoded), WRITES.map(_encoded), TARGETS.map(_encoded), EXTREMES)


def _within(value: object, low: float, high: float) -> bool:
    return type(value) in (int, float) and low <= value <= high  # type: ignore[operator]


def _valid_write(args: dict[str, Any]) -> bool:
    if not {"device", "point", "value"} <= set(args) <= {"device", "point", "value", "priority"}:
        return False
    device, point, value, priority = args["device"], args["point"], args["value"], args.get("priority")
    target = WRITABLE.get((device, point)) if isinstance(device, str) and isinstance(point, str) else None
    if target is None:
        return False
    low, high, bacnet = target
    if not bacnet:
        return priority is None and _within(value, low, high)
    priority = 12 if priority is None else priority
    return type(priority) is int and 9 <= priority <= 15 and (value is None or _within(value, low, high))


ORACLES: dict[str, Callable[[dict[str, Any]], bool]] = {
    "rebirth": lambda args: args == {},
    "status": lambda args: args == {},
    "set_demand_target": lambda args: set(args) == {"kw"} and _within(args["kw"], 50, 500),
    "set_control_mode": lambda args: set(args) == {"mode"} and args["mode"] in ("off", "shadow", "active"),
    "write_point": _valid_write,
}


def genuinely_valid(payload: bytes) -> bool:
    """An independent reading of the request rules, for the fake's configuration."""
    try:
        body = json.loads(payload.decode("utf-8"), parse_constant=lambda c: 1 / 0)
    except (ValueError, RecursionError, ZeroDivisionError):
        return False
    if (
        len(payload) > MAX_COMMAND_BYTES
        or not isinstance(body, dict)
        or not set(body) <= {"id", "command", "args"}
    ):
        return False
    request_id, command, args = body.get("id"), body.get("command"), body.get("args", {})
    if not isinstance(request_id, str) or not re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", request_id):
        return False
    oracle = ORACLES.get(command) if isinstance(command, str) else None
    return oracle is not None and isinstance(args, dict) and oracle(args)


def _write_is_safe(write: Write) -> bool:
    target = WRITABLE.get((write[0], write[1]))
    if target is None:
        return False
    low, high, bacnet = target
    value, priority = write[2], write[3]
    if not bacnet:
        return priority is None and value is not None and low <= value <= high
    return priority is not None and 9 <= priority <= 15 and (value is None or low <= value <= high)


async def handled_safely(payload: bytes) -> None:
    """One request through the router: a reply whatever it is, ok only when valid, no unsafe write."""
    agent = FakeAgent()
    with capture_logs() as logs:
        reply = await send(agent, payload)
    assert isinstance(reply, CommandReply)
    assert json.loads(reply.to_json())["ok"] is reply.ok
    assert reply.ok is genuinely_valid(payload), reply
    assert (reply.error is None) is reply.ok
    assert len(logs) == 1
    assert logs[0]["log_level"] == ("info" if reply.ok else "warning")
    assert all(_write_is_safe(w) for w in agent.writes), agent.writes
    assert len(agent.writes) == (1 if reply.ok and reply.command == "write_point" else 0)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload=PAYLOADS)
def test_fuzz_any_payload_gets_a_reply_and_only_valid_ones_act(payload: bytes) -> None:
    asyncio.run(handled_safely(payload))


async def test_every_write_at_the_boundaries_follows_the_rules() -> None:
    """Every target x value x priority near a limit: random draws rarely land exactly on them."""
    targets = [*WRITABLE, ("meter-main", "total_power"), ("room-101", "zone_temperature"), ("x", "y")]
    values = [None, 4.999, 5, 60, 60.001, 21.999, 22, 28, 28.001, -1e308, "24", True, [24]]
    absent = object()
    priorities = [absent, None, 0, 1, 8, 9, 12, 15, 16, 17, 10.0, "10", False]
    for (device, point), value, priority in itertools.product(targets, values, priorities):
        extra = {} if priority is absent else {"priority": priority}
        await handled_safely(write(device, point, value, **extra))


# --- commands from the broker: admission (signature, expiry, once-only) --------------------------------

TOPIC = "edge/gw-01/command"
EXAMPLE_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))  # docs/mqtt.md's worked example
EXAMPLE_TEXT = '{"id":"c-1","expires":"2026-12-07T17:00:00Z","command":"set_demand_target","args":{"kw":180}}'
EXAMPLE_SIGNATURE = "i8zuXLdiL7MGhqVG1jt1KcsxE4bzdJWtxna5CQrxP31KYI+RlgGm618WvyN8x/9s6DUQprk4uH6QEMS653fmBA=="


def mqtt_request(request_id: str, expires_in_s: float = 60, **body: Any) -> bytes:
    expires = (NOW + timedelta(seconds=expires_in_s)).isoformat().replace("+00:00", "Z")
    return json.dumps({"id": request_id, "expires": expires, "command": "status", **body}).encode()


def admitted_router(
    agent: FakeAgent, log_path: Path, now: datetime = NOW, **commands_config: Any
) -> tuple[CommandRouter, CommandAdmission]:
    admission = CommandAdmission(CommandsConfig(**commands_config), log_path, now=lambda: now)
    return CommandRouter(agent, now=lambda: now, admission=admission), admission


async def deliver(router: CommandRouter, payload: bytes, topic: str = TOPIC) -> CommandReply:
    return await router.handle_delivery(Delivery(payload, topic))


def test_the_documented_signature_example_holds() -> None:
    """docs/mqtt.md's worked example: the bytes signed, the public key and the signature it shows."""
    message = signed_bytes(TOPIC, EXAMPLE_TEXT)
    assert message == b"edge-agent command v1\nedge/gw-01/command\n" + EXAMPLE_TEXT.encode()
    assert signing.public_key_text(EXAMPLE_KEY) == "ed25519:A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg="
    assert signing.sign(EXAMPLE_KEY, message) == EXAMPLE_SIGNATURE
    docs = (SCHEMAS_DIR.parent / "mqtt.md").read_text(encoding="utf-8")
    assert EXAMPLE_SIGNATURE in docs
    assert json.dumps(EXAMPLE_TEXT)[1:-1] in docs  # the envelope's `signed` string, escaped as shown


async def test_a_signed_command_runs_only_with_a_trusted_signature_for_its_topic(tmp_path: Path) -> None:
    agent = FakeAgent()
    key_text = signing.public_key_text(EXAMPLE_KEY)
    router, _ = admitted_router(agent, tmp_path / "c.db", trusted_keys=[key_text])
    text = mqtt_request("s-1", command="set_demand_target", args={"kw": 180}).decode()
    envelope = {"signed": text, "signature": signing.sign(EXAMPLE_KEY, signed_bytes(TOPIC, text))}
    refused(await deliver(router, text.encode()), CommandErrorCode.UNSIGNED)
    for topic in ("edge/gw-02/command", "other/gw-01/command"):  # meant for another gateway
        refused(await deliver(router, json.dumps(envelope).encode(), topic), CommandErrorCode.BAD_SIGNATURE)
    tampered = {**envelope, "signed": text.replace("180", "480")}
    refused(await deliver(router, json.dumps(tampered).encode()), CommandErrorCode.BAD_SIGNATURE, "signature")
    refused(await deliver(router, json.dumps({**envelope, "x": 1}).encode()), CommandErrorCode.INVALID)
    assert agent.control.demand_target_kw != 180
    reply = await deliver(router, json.dumps(envelope).encode())
    assert (reply.ok, reply.id) == (True, "s-1")
    assert agent.control.demand_target_kw == 180


async def test_without_trusted_keys_a_signed_envelope_is_opened_unchecked(tmp_path: Path) -> None:
    router, _ = admitted_router(FakeAgent(), tmp_path / "c.db")
    envelope = {"signed": mqtt_request("e-1").decode(), "signature": "not checked"}
    assert (await deliver(router, json.dumps(envelope).encode())).ok


def test_trusted_keys_are_checked_in_the_configuration() -> None:
    key = signing.public_key_text(EXAMPLE_KEY)
    with pytest.raises(ConfigError, match=r"commands\.trusted_keys: .*trusted_keys\[1\]: .*32 bytes"):
        parse_config(f'[commands]\ntrusted_keys = ["{key}", "ed25519:AAAA"]\n', "t")


@pytest.mark.parametrize(
    ("offset_s", "accepted"),
    [(-29, True), (-31, False), (3600 + 29, True), (3600 + 31, False), (0, True)],
)
async def test_expiry_is_checked_against_the_window_and_the_skew(
    tmp_path: Path, offset_s: float, accepted: bool
) -> None:
    router, _ = admitted_router(FakeAgent(), tmp_path / "c.db", max_expiry_s=3600, clock_skew_s=30)
    reply = await deliver(router, mqtt_request("x-1", offset_s))
    if accepted:
        assert reply.ok, reply
    else:
        refused(reply, CommandErrorCode.EXPIRED, "expires")


async def test_a_command_over_mqtt_needs_an_expiry_the_local_socket_does_not(tmp_path: Path) -> None:
    router, _ = admitted_router(FakeAgent(), tmp_path / "c.db")
    payload = request("set_demand_target", {"kw": 100})
    refused(await deliver(router, payload), CommandErrorCode.INVALID, "expires")
    assert (await router.handle(payload)).ok
    bad_date = mqtt_request("d-1").replace(b'"expires": "2026-08-05', b'"expires": "2026-02-30')
    refused(await deliver(router, bad_date), CommandErrorCode.INVALID, "expires")


async def test_a_replayed_id_gets_the_first_reply_and_does_not_run_again(tmp_path: Path) -> None:
    agent = FakeAgent()
    payload = mqtt_request("w-1", command="write_point", args={"device": "room-101",
                           "point": "cooling_setpoint", "value": 25.0})  # fmt: skip
    router, admission = admitted_router(agent, tmp_path / "c.db")
    first = await deliver(router, payload)
    assert first.ok
    assert await deliver(router, payload) == first
    admission.close()
    restarted, _ = admitted_router(agent, tmp_path / "c.db", now=NOW + timedelta(seconds=5))
    assert await deliver(restarted, payload) == first  # remembered on disk
    other = payload.replace(b"25.0", b"26.0")
    refused(await deliver(restarted, other), CommandErrorCode.DUPLICATE, "id")
    assert agent.writes == [("room-101", "cooling_setpoint", 25.0, 12)]


async def test_an_id_taken_by_a_command_that_never_finished_is_not_run_again(tmp_path: Path) -> None:
    """The gateway stopped while the command ran: its outcome is unknown, so its replay is refused."""
    payload = mqtt_request("w-2")
    log = CommandLog(tmp_path / "c.db")
    assert log.take("w-2", hashlib.sha256(payload).digest(), NOW.timestamp() + 600, NOW.timestamp()) is None
    log.close()
    router, _ = admitted_router(FakeAgent(), tmp_path / "c.db")
    assert "outcome is unknown" in refused(await deliver(router, payload), CommandErrorCode.DUPLICATE)


async def test_a_command_whose_id_cannot_be_recorded_is_not_run(tmp_path: Path) -> None:
    agent = FakeAgent()
    router, _ = admitted_router(agent, tmp_path / "missing" / "c.db")
    payload = mqtt_request("n-1", command="set_demand_target", args={"kw": 100})
    message = refused(await deliver(router, payload), CommandErrorCode.NOT_RECORDED)
    assert "not run" in message
    assert agent.control.demand_target_kw != 100


def test_ids_are_forgotten_once_their_command_has_expired(tmp_path: Path) -> None:
    log = CommandLog(tmp_path / "c.db")
    for i in range(5):
        assert log.take(f"old-{i}", b"d", forget_after=100.0 + i, now=50.0) is None
    assert log.take("new", b"d", forget_after=1000.0, now=200.0) is None
    log.close()
    with sqlite3.connect(tmp_path / "c.db") as db:
        assert db.execute("SELECT id FROM taken").fetchall() == [("new",)]


async def test_a_delivery_refused_by_the_uplink_is_answered_with_its_id_and_never_run(tmp_path: Path) -> None:
    agent = FakeAgent()
    router, _ = admitted_router(agent, tmp_path / "c.db")
    payload = mqtt_request("b-1", command="set_demand_target", args={"kw": 100})
    busy = CommandRefused(CommandErrorCode.BUSY, "32 commands are waiting")
    reply = await router.handle_delivery(Delivery(payload, TOPIC, busy))
    refused(reply, CommandErrorCode.BUSY)
    assert (reply.id, reply.command) == ("b-1", "set_demand_target")
    assert agent.control.demand_target_kw != 100
    assert (await deliver(router, payload)).ok  # refused before it was recorded: it may come again


REPLY = "edge/gw-01/reply"


@pytest.mark.parametrize(
    ("asked", "problem"),
    [
        (REPLY, None),
        (f"{REPLY}/central-1/x", None),
        (f"{REPLY}/+", "wildcard"),
        (f"{REPLY}/a/#", "wildcard"),
        (f"{REPLY}/a\0b", "NUL"),
        (f"{REPLY}/", "empty level"),
        (f"{REPLY}//a", "empty level"),
        (f"{REPLY}/" + "x" * 65_535, "bytes"),
        (f"{REPLY}/\ud800", "UTF-8"),
        (f"{REPLY}x", "outside"),
        ("edge/gw-02/reply", "outside"),
        ("", "non-empty"),
        (b"edge/gw-01/reply", "non-empty"),
    ],
)
def test_response_topics_must_be_concrete_topics_under_the_reply_topic(
    asked: object, problem: str | None
) -> None:
    found = response_topic_problem(asked, REPLY)
    assert found is None if problem is None else problem in (found or "")


async def test_command_sign_prints_an_envelope_the_gateway_admits(tmp_path: Path) -> None:
    """`edge-agent command sign`: what it prints runs on the gateway it names, and only there."""
    key = tmp_path / "central.pem"
    key.write_bytes(signing.private_key_pem(EXAMPLE_KEY))
    result = CliRunner().invoke(
        app,
        ["command", "sign", "--key", str(key), "--gateway", "gw-01", '{"id": "cli-1", "command": "status"}'],
    )
    assert result.exit_code == 0, result.output
    envelope = result.stdout.strip().encode()
    clock = datetime.now(UTC)
    admission = CommandAdmission(
        CommandsConfig(trusted_keys=[signing.public_key_text(EXAMPLE_KEY)]),
        tmp_path / "c.db",
        now=lambda: clock,
    )
    router = CommandRouter(FakeAgent(), admission=admission)
    assert (await router.handle_delivery(Delivery(envelope, TOPIC))).ok
    other = await router.handle_delivery(Delivery(envelope, "edge/gw-02/command"))
    refused(other, CommandErrorCode.BAD_SIGNATURE)
    missing = CliRunner().invoke(app, ["command", "sign", "--key", str(tmp_path / "none.pem"), "{}"])
    assert missing.exit_code == 2
    assert "none.pem" in missing.output
