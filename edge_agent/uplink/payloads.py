"""The MQTT contract's payloads as pydantic models: the birth and death certificates the uplink publishes,
and the readings batch (built by SQLite on the fast path; this model documents and checks it).
docs/schemas/ holds their JSON Schemas (scripts/write_schemas.py), and tests keep the two in step."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from edge_agent.config import AgentConfig, BacnetDevice, ModbusPoint

CONTRACT_VERSION = 2


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_serialization_defaults_required=True)


class PointInfo(_Payload):
    name: str
    label: str | None = Field(
        default=None, description="the device's own name for the point, any script; null: none configured"
    )
    unit: str
    write_range: tuple[float, float] | None = Field(
        description="[low, high] a write_point command may set; null: read-only to commands"
    )


class DeviceInfo(_Payload):
    name: str
    protocol: str
    address: str
    points: list[PointInfo]


class BuildingModelInfo(_Payload):
    file: str = Field(description="the building model file's name ([control] building_model)")
    sha256: str
    fitted_at: str = Field(description="when `edge-agent model fit` fitted it, ISO 8601")


class ControlModelInfo(_Payload):
    file: str = Field(
        description="the control model's file name (a pushed one: as the apply_model command named it)"
    )
    sha256: str
    stage: Literal["shadow", "active"] = Field(
        description="shadow: a pushed model decides beside the one in use, never written; active: it decides"
    )


class ConfigInfo(_Payload):
    sha256: str = Field(description="hex SHA-256 of the running configuration file's bytes")
    version: str | None = Field(
        description="the version the apply_config command that wrote the file named; null: not pushed"
    )


class TakeoverInfo(_Payload):
    count: int = Field(
        description="times since the agent started that another client with this gateway id took its session"
    )
    last_at: datetime = Field(description="when the last of them was noticed")


class Birth(_Payload):
    """Retained on {prefix}/{gateway}/status when a session starts (and again on a rebirth command)."""

    online: Literal[True] = True
    gateway: str
    bdSeq: int = Field(  # noqa: N815 - the name Sparkplug gave it
        description="the session number; the death certificate of this session carries it too"
    )
    contract: int = CONTRACT_VERSION
    version: str = Field(description="the agent's software version")
    mqtt: Literal["5", "3.1.1"]
    connected_at: datetime
    backlog_last: int = Field(description="readings up to this seq were buffered before the session began")
    dropped: int
    last_dropped_seq: int
    devices: list[DeviceInfo]
    building_model: BuildingModelInfo | None = Field(
        default=None, description="the fitted building model the agent loaded; null: none, or refused"
    )
    control_model: ControlModelInfo | None = Field(
        default=None, description="the model in shadow, else the model that decides; null: the rules decide"
    )
    config: ConfigInfo | None = Field(
        default=None, description="the running configuration file; null: the built-in default"
    )
    takeover: TakeoverInfo | None = Field(
        default=None,
        description="another client with this gateway id takes its session: two gateways share the id",
    )


class Death(_Payload):
    """The Last Will (and the clean-stop message) on {prefix}/{gateway}/status, retained."""

    online: Literal[False] = False
    gateway: str
    bdSeq: int  # noqa: N815
    takeover: TakeoverInfo | None = Field(default=None, description="as in the birth, when the session began")


class ReadingOut(_Payload):
    seq: int
    device: str
    point: str
    value: float | None
    unit: str
    quality: Literal["good", "bad", "stale", "unavailable", "uncertain-time"]
    ts: datetime


class ReadingsBatch(_Payload):
    """One message on {prefix}/{gateway}/readings."""

    gateway: str
    seq_first: int
    seq_last: int
    historical: bool = Field(description="true: from the backlog buffered while the link was down")
    backlog_last: int = Field(description="older readings up to this seq may still arrive, historical")
    sent_at: datetime
    dropped: int
    last_dropped_seq: int
    readings: list[ReadingOut]


# --- the compact format ([mqtt] format = "compact") ----------------------------------------------------

CompactPoint = tuple[str, str, bool] | tuple[str, str, bool, float, float]
"""[name, unit, float32] or [name, unit, float32, write low, write high]; float32: its values are sent with 9
significant digits, the float32 nearest the number is the exact value read."""


class CompactDevice(_Payload):
    name: str
    protocol: str
    address: str
    alias: int = Field(description="the alias of its first point; each further point's is one more")
    points: int = Field(description="its points: an index into point_lists")


class CompactBirth(_Payload):
    """The birth certificate in the compact format: every point once, each with its alias."""

    online: Literal[True] = True
    gateway: str
    bdSeq: int = Field(  # noqa: N815
        description="the session number; batches carry it: their aliases are this birth's"
    )
    contract: int = CONTRACT_VERSION
    format: Literal["compact"] = "compact"
    version: str
    mqtt: Literal["5", "3.1.1"]
    connected_at: datetime
    backlog_last: int
    dropped: int
    last_dropped_seq: int
    point_lists: list[list[CompactPoint]] = Field(
        description="the devices' point lists, each once (identical devices share one)"
    )
    devices: list[CompactDevice]
    labels: dict[str, dict[str, str]] = Field(
        description="the points' labels (the device's own names for them, any script), by device and point "
        "name; only points that have one"
    )
    building_model: BuildingModelInfo | None = None
    control_model: ControlModelInfo | None = None
    config: ConfigInfo | None = None
    takeover: TakeoverInfo | None = None


CompactName = tuple[str, str, str]
"""[device, point, unit]: a reading of a point the birth does not list (buffered under another
configuration)."""
CompactEntry = (
    tuple[int | CompactName, int, float | None]
    | tuple[int | CompactName, int, float | None, Literal["bad", "stale", "unavailable", "uncertain-time"]]
)
"""[alias, its time in ms after `t`, value] and, unless it is good, the quality."""


class CompactBatch(_Payload):
    """One message on {prefix}/{gateway}/readings in the compact format."""

    bdSeq: int = Field(description="the session: resolve aliases with its birth")  # noqa: N815
    seq: int = Field(description="the first reading's seq; the others follow one by one (unless seqs)")
    last: int = Field(description="the last reading's seq")
    seqs: list[int] | None = Field(description="every reading's seq, when they are not consecutive")
    hist: bool = Field(description="true: from the backlog buffered while the link was down")
    backlog: int = Field(description="backlog_last: older readings up to this seq may still arrive")
    dropped: int
    last_dropped: int = Field(description="last_dropped_seq")
    sent: int = Field(description="when the batch left the gateway, ms since 1970-01-01 UTC")
    t: int = Field(description="the first reading's time, ms since 1970-01-01 UTC")
    r: list[CompactEntry]


def float32_points(config: AgentConfig) -> frozenset[tuple[str, str]]:
    """(device, point) of every point whose values are float32 as read (no scale or offset)."""
    return frozenset(
        (device.name, point.name)
        for device in config.devices
        for point in device.points
        if isinstance(point, ModbusPoint)
        and point.type == "float32"
        and point.scale == 1
        and point.offset == 0
    )


def compact_points(
    devices: list[DeviceInfo], float32: frozenset[tuple[str, str]]
) -> tuple[list[list[CompactPoint]], list[CompactDevice], list[tuple[str, str, int, bool]]]:
    """The compact birth's point lists and devices, and every point's (device, point, alias, float32)."""
    lists: dict[tuple[CompactPoint, ...], int] = {}
    compact: list[CompactDevice] = []
    aliases: list[tuple[str, str, int, bool]] = []
    for device in devices:
        points = tuple(_compact_point(p, (device.name, p.name) in float32) for p in device.points)
        index = lists.setdefault(points, len(lists))
        compact.append(CompactDevice(name=device.name, protocol=device.protocol, address=device.address,
                                     alias=len(aliases), points=index))  # fmt: skip
        aliases += [(device.name, p[0], len(aliases) + i, p[2]) for i, p in enumerate(points)]
    return [list(points) for points in lists], compact, aliases


def compact_labels(devices: list[DeviceInfo]) -> dict[str, dict[str, str]]:
    """The compact birth's labels: device -> point -> label, for the points that have one."""
    labels = {d.name: {p.name: p.label for p in d.points if p.label is not None} for d in devices}
    return {device: points for device, points in labels.items() if points}


def _compact_point(point: PointInfo, f32: bool) -> CompactPoint:
    if point.write_range is None:
        return (point.name, point.unit, f32)
    return (point.name, point.unit, f32, *point.write_range)


def device_infos(config: AgentConfig) -> list[DeviceInfo]:
    """What the birth certificate says about every configured device and point."""
    return [
        DeviceInfo(
            name=device.name,
            protocol="bacnet-ip" if isinstance(device, BacnetDevice) else device.protocol,
            address=device.address,
            points=[
                PointInfo(name=p.name, label=p.label, unit=p.unit, write_range=p.write_range)
                for p in device.points
            ],
        )
        for device in config.devices
    ]


def payload_schemas() -> dict[str, dict[str, Any]]:
    """docs/schemas/ file name -> JSON Schema (draft 2020-12) of each message the gateway publishes."""
    documents: dict[str, tuple[type[BaseModel], str]] = {
        "readings.json": (ReadingsBatch, "edge-agent readings batch"),
        "birth.json": (Birth, "edge-agent birth certificate"),
        "death.json": (Death, "edge-agent death certificate"),
        "compact_readings.json": (CompactBatch, "edge-agent readings batch, compact format"),
        "compact_birth.json": (CompactBirth, "edge-agent birth certificate, compact format"),
    }
    return {
        name: {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            **model.model_json_schema(mode="serialization"),
            "title": title,
        }
        for name, (model, title) in documents.items()
    }
