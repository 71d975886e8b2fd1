"""The MQTT contract's payloads as pydantic models: the birth and death certificates the uplink publishes,
and the readings batch (built by SQLite on the fast path; this model documents and checks it).
docs/schemas/ holds their JSON Schemas (scripts/write_schemas.py), and tests keep the two in step."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from edge_agent.config import AgentConfig, BacnetDevice

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


class Death(_Payload):
    """The Last Will (and the clean-stop message) on {prefix}/{gateway}/status, retained."""

    online: Literal[False] = False
    gateway: str
    bdSeq: int  # noqa: N815


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
    }
    return {
        name: {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            **model.model_json_schema(mode="serialization"),
            "title": title,
        }
        for name, (model, title) in documents.items()
    }
