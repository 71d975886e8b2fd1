"""Control's audit events: every decision, write, release and fallback, sent upstream on `.../events`
(QoS 1) and logged. The central platform can replay what the gateway did to the building and why."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

EventKind = Literal[
    "decision",
    "write",
    "release",
    "fallback",
    "recovered",
    "operator",
    "mode",
    "error",
    "demand_response",
    "model",
]


class ControlEvent(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    gateway: str
    kind: EventKind
    at: datetime  # building time
    message: str
    policy: str | None = None  # "onnx" or "rules"
    mode: str | None = None
    decision: dict[str, float] | None = None
    guards: list[str] | None = None  # the guards that acted on the decision
    point: str | None = None  # 'device/point'
    value: float | None = None  # None with kind "release": relinquished
    priority: int | None = None
    reason: str | None = None
    model: str | None = None  # kind "model": the pushed model's file name (model_rollout.py)
    sha256: str | None = None  # ... of its bytes
    stage: str | None = None  # ... "shadow", "active" or "rolled_back"

    def to_json(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()
