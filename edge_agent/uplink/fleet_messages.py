"""The MQTT contract read from the receiving side (docs/mqtt.md): one message on a topic under the prefix, or
Sparkplug B's, becomes what `edge-agent fleet` needs of it. Tolerant: unknown fields are skipped, a field of
the wrong type reads as absent, and what cannot be read at all comes back as Ignored, with the reason.

    {prefix}/{gateway}/status     birth (json or compact) or death; empty: its retained message was cleared
    {prefix}/{gateway}/readings   a batch, json or compact
    {prefix}/{gateway}/savings    a day's savings report
    {prefix}/{gateway}/events     a control event
    spBv1.0/{group}/NBIRTH|NDEATH/{gateway}, DDATA/{gateway}/{device}, NDATA/{gateway}
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from google.protobuf.message import DecodeError

from edge_agent.uplink.sparkplug.proto import Payload
from edge_agent.uplink.sparkplug.topics import NAMESPACE

Json = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Status:
    """A birth (online) or a death (offline) certificate."""

    gateway: str
    online: bool
    bd_seq: int | None
    format: str  # json, compact or sparkplug
    version: str | None = None
    connected_at: str | None = None
    backlog_last: int | None = None
    dropped: int | None = None
    config: Json | None = None
    control_model: Json | None = None
    takeover: Json | None = None


@dataclass(frozen=True, slots=True)
class Cleared:
    """An empty message on the status topic: someone cleared the retained certificate (a gateway retired)."""

    gateway: str


@dataclass(frozen=True, slots=True)
class Batch:
    """A readings batch: what it says of the backlog, and its newest reading's time."""

    gateway: str
    format: str
    historical: bool
    seq_last: int | None = None
    backlog_last: int | None = None
    dropped: int | None = None
    newest: datetime | None = None


@dataclass(frozen=True, slots=True)
class Savings:
    gateway: str
    day: str
    avoided_kwh: float | None
    avoided_peak_kw: float | None
    within_noise: bool | None


@dataclass(frozen=True, slots=True)
class Event:
    gateway: str
    kind: str
    at: str | None
    message: str | None


@dataclass(frozen=True, slots=True)
class Ignored:
    """A message that could not be read; `gateway` when its topic names one."""

    gateway: str | None
    reason: str


Message = Status | Cleared | Batch | Savings | Event | Ignored


def read_message(prefix: str, topic: str, payload: bytes) -> Message | None:
    """What the message on `topic` says; None for a topic the fleet does not follow (replies, commands)."""
    if topic.startswith(f"{NAMESPACE}/"):
        return _sparkplug(topic, payload)
    rest = topic.removeprefix(f"{prefix}/")
    gateway, _, kind = rest.partition("/")
    if rest == topic or not gateway or kind not in _READERS:
        return None
    if not payload:
        return Cleared(gateway) if kind == "status" else Ignored(gateway, f"{kind}: empty message")
    try:
        body = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return Ignored(gateway, f"{kind}: not JSON")
    if not isinstance(body, dict):
        return Ignored(gateway, f"{kind}: not a JSON object")
    return _READERS[kind](gateway, body)


def _status(gateway: str, body: Json) -> Message:
    online = body.get("online")
    if not isinstance(online, bool):
        return Ignored(gateway, "status: no boolean 'online'")
    return Status(
        gateway,
        online,
        _int(body, "bdSeq"),
        "compact" if body.get("format") == "compact" else "json",
        version=_str(body, "version"),
        connected_at=_str(body, "connected_at"),
        backlog_last=_int(body, "backlog_last"),
        dropped=_int(body, "dropped"),
        config=_object(body, "config"),
        control_model=_object(body, "control_model"),
        takeover=_object(body, "takeover"),
    )


def _readings(gateway: str, body: Json) -> Message:
    if isinstance(body.get("readings"), list):  # the json batch
        texts = (r.get("ts") for r in body["readings"] if isinstance(r, dict))
        times = [at for at in (_time(t) for t in texts if isinstance(t, str)) if at is not None]
        return Batch(
            gateway,
            "json",
            body.get("historical") is True,
            _int(body, "seq_last"),
            _int(body, "backlog_last"),
            _int(body, "dropped"),
            max(times, default=None),
        )
    if isinstance(body.get("r"), list):  # compact: times in ms, each entry's after `t`
        t = _int(body, "t")
        offsets = [e[1] for e in body["r"] if isinstance(e, list) and len(e) > 1 and _is_int(e[1])]
        newest = None if t is None or not offsets else _millis(t + max(offsets))
        return Batch(
            gateway,
            "compact",
            body.get("hist") is True,
            _int(body, "last"),
            _int(body, "backlog"),
            _int(body, "dropped"),
            newest,
        )
    return Ignored(gateway, "readings: neither a json nor a compact batch")


def _savings(gateway: str, body: Json) -> Message:
    day = _str(body, "day")
    if day is None:
        return Ignored(gateway, "savings: no 'day'")
    avoided = _object(body, "avoided") or {}
    uncertainty = _object(body, "uncertainty") or {}
    noise = uncertainty.get("within_noise")
    return Savings(
        gateway,
        day,
        _float(avoided, "energy_kwh"),
        _float(avoided, "peak_kw"),
        noise if isinstance(noise, bool) else None,
    )


def _event(gateway: str, body: Json) -> Message:
    kind = _str(body, "kind")
    if kind is None:
        return Ignored(gateway, "events: no 'kind'")
    return Event(gateway, kind, _str(body, "at"), _str(body, "message"))


_READERS = {"status": _status, "readings": _readings, "savings": _savings, "events": _event}


# --- Sparkplug B ------------------------------------------------------------------------------------------

_BIRTH_GROUPS = {"config", "control_model", "takeover"}


def _sparkplug(topic: str, payload: bytes) -> Message | None:
    parts = topic.split("/")
    if len(parts) not in (4, 5) or parts[2] not in ("NBIRTH", "NDEATH", "DDATA", "NDATA"):
        return None  # STATE, commands, device births and deaths
    kind, gateway = parts[2], parts[3]
    try:
        metrics = Payload.FromString(payload).metrics
    except DecodeError:
        return Ignored(gateway, f"{kind}: not a Sparkplug B payload")
    if kind in ("DDATA", "NDATA"):
        stamps = [m.timestamp for m in metrics if m.HasField("timestamp")]
        historical = any(m.is_historical for m in metrics)
        return Batch(gateway, "sparkplug", historical, newest=_millis(max(stamps)) if stamps else None)
    fields: Json = {}
    groups: dict[str, Json] = {}
    for metric in metrics:
        path = [re.sub(r"[^a-z0-9]+", "_", part.strip().lower()) for part in metric.name.split("/")]
        value = getattr(metric, metric.WhichOneof("value") or "is_null", None)
        if path[-2:] == ["node_info", "takeovers"]:  # the NBIRTH's count of sessions taken over
            groups["takeover"] = {"count": value}
        elif len(path) >= 2 and path[-2] in _BIRTH_GROUPS:  # e.g. "config/sha256": the birth's fields
            groups.setdefault(path[-2], {})[path[-1]] = value
        else:
            fields[path[-1]] = value
    bd_seq = fields.get("bdseq")
    version = fields.get("version")
    return Status(
        gateway,
        kind == "NBIRTH",
        bd_seq if _is_int(bd_seq) else None,
        "sparkplug",
        version=version if isinstance(version, str) else None,
        config=groups.get("config"),
        control_model=groups.get("control_model"),
        takeover=groups.get("takeover"),
    )


# --- tolerant field access ----------------------------------------------------------------------------------


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int(body: Json, key: str) -> int | None:
    value = body.get(key)
    return value if _is_int(value) else None


def _float(body: Json, key: str) -> float | None:
    value = body.get(key)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _str(body: Json, key: str) -> str | None:
    value = body.get(key)
    return value if isinstance(value, str) else None


def _object(body: Json, key: str) -> Json | None:
    value = body.get(key)
    return value if isinstance(value, dict) else None


def _time(text: str) -> datetime | None:
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        return None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def _millis(ms: int) -> datetime | None:
    try:
        return datetime.fromtimestamp(ms / 1000, UTC)
    except (OverflowError, OSError, ValueError):
        return None
