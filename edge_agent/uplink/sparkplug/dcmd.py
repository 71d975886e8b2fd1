"""A Sparkplug DCMD as the gateway's own commands: each metric of the DCMD becomes one write_point request,
which the command router then validates, limits and admits exactly as a command from central (commands.py,
admission.py). Sparkplug payloads carry no signature: where [commands] trusted_keys are configured the
admission refuses them as unsigned.

The request's id is derived from the DCMD's bytes (a redelivered DCMD is a replay, answered, not run twice)
and it expires DCMD_LIFETIME_S after the DCMD's own timestamp (the gateway's clock when it has none)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf.message import DecodeError

from edge_agent.errors import CommandRefused
from edge_agent.uplink.commands import MAX_COMMAND_BYTES, CommandErrorCode
from edge_agent.uplink.sparkplug.metrics import Catalog
from edge_agent.uplink.sparkplug.proto import Payload

DCMD_LIFETIME_S = 60.0
_VALUE_FIELDS = ("double_value", "float_value", "int_value", "long_value", "boolean_value")
_SIGNED_32 = {1, 2, 3}  # Int8, Int16, Int32: two's complement in the uint32 int_value
_SIGNED_64 = 4  # Int64: two's complement in the uint64 long_value


@dataclass(frozen=True, slots=True)
class WriteRequest:
    """One metric of a DCMD: a write_point request (JSON bytes) for the router, or why there is none."""

    metric: str  # the metric's name, or "alias N"
    request: bytes | None
    refusal: CommandRefused | None = None


def write_requests(
    topic: str, device: str, body: bytes, catalog: Catalog, now: datetime
) -> list[WriteRequest]:
    """The write_point requests a DCMD for `device` asks for, in the DCMD's order."""
    if len(body) > MAX_COMMAND_BYTES:
        message = f"{len(body)} bytes, over {MAX_COMMAND_BYTES}"
        return [WriteRequest("", None, CommandRefused(CommandErrorCode.TOO_LARGE, message))]
    try:
        payload = Payload.FromString(body)
    except DecodeError as exc:
        message = f"not a Sparkplug B payload: {exc}"
        return [WriteRequest("", None, CommandRefused(CommandErrorCode.MALFORMED, message))]
    sent = datetime.fromtimestamp(payload.timestamp / 1000, UTC) if payload.HasField("timestamp") else now
    expires = (sent + timedelta(seconds=DCMD_LIFETIME_S)).isoformat(timespec="milliseconds")
    digest = hashlib.sha256(topic.encode() + b"\n" + body).hexdigest()[:40]
    expires = expires.replace("+00:00", "Z")
    return [
        _request(metric, device, catalog, request_id=f"spb-{digest}-{index}", expires=expires)
        for index, metric in enumerate(payload.metrics)
    ]


def _request(metric: Any, device: str, catalog: Catalog, *, request_id: str, expires: str) -> WriteRequest:
    label = metric.name or f"alias {metric.alias}"
    point = metric.name
    if metric.HasField("alias"):
        info = catalog.by_alias(metric.alias)
        if info is None or info.device != device or (point and point != info.point):
            message = f"{device}: no metric with alias {metric.alias} (see its DBIRTH)"
            return WriteRequest(label, None, CommandRefused(CommandErrorCode.UNKNOWN_POINT, message, "alias"))
        point = info.point
    if not point:
        message = f"{device}: a metric has neither name nor alias"
        return WriteRequest(label, None, CommandRefused(CommandErrorCode.INVALID, message, "name"))
    value: float | None
    if metric.is_null:
        value = None  # relinquish (BACnet); the router refuses it elsewhere
    else:
        kind = metric.WhichOneof("value")
        if kind not in _VALUE_FIELDS:
            message = f"{device}/{point}: a write takes a number, not {kind}"
            return WriteRequest(label, None, CommandRefused(CommandErrorCode.INVALID, message, "value"))
        number = getattr(metric, kind)
        if kind == "int_value" and metric.datatype in _SIGNED_32 and number >= 2**31:
            number -= 2**32
        elif kind == "long_value" and metric.datatype == _SIGNED_64 and number >= 2**63:
            number -= 2**64
        value = float(number)
    request = {
        "id": request_id,
        "expires": expires,
        "command": "write_point",
        "args": {"device": device, "point": point, "value": value},
    }
    return WriteRequest(label, json.dumps(request, allow_nan=True).encode())
