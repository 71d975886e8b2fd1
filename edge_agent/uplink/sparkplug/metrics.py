"""The gateway's metrics in Sparkplug B payloads: births with every metric's alias, type, unit and write
range; data by alias; the death certificate. A Catalog numbers the configured points once per birth."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from edge_agent.readings import Reading
from edge_agent.uplink.payloads import DeviceInfo
from edge_agent.uplink.sparkplug.proto import DataType, Payload

BD_SEQ = "bdSeq"
REBIRTH = "Node Control/Rebirth"
TAKEOVERS = "Node Info/Takeovers"  # another client with this edge node's id took its session (takeover.py)
SEQ_MODULUS = 256  # seq and bdSeq run 0-255 and wrap
QUALITY = "Quality"  # property of a data metric whose reading is not good; absent: good
QUALITY_CODES = {"bad": 0, "unavailable": 0, "stale": 64, "uncertain-time": 64}  # OPC: 192 good, 64 uncertain


@dataclass(frozen=True, slots=True)
class MetricInfo:
    device: str
    point: str
    alias: int
    unit: str
    write_range: tuple[float, float] | None


class Catalog:
    """Every configured point as a Sparkplug metric: aliases 1.. in configuration order, unique across the
    edge node (Sparkplug wants them unique for the node and all its devices)."""

    def __init__(self, devices: list[DeviceInfo]) -> None:
        self.devices = devices
        infos = (
            (device.name, point.name, point.unit, point.write_range)
            for device in devices
            for point in device.points
        )
        self._metrics = [MetricInfo(d, p, alias, u, w) for alias, (d, p, u, w) in enumerate(infos, start=1)]
        self._by_key = {(m.device, m.point): m for m in self._metrics}
        self._by_alias = {m.alias: m for m in self._metrics}

    def of(self, device: str, point: str) -> MetricInfo | None:
        return self._by_key.get((device, point))

    def by_alias(self, alias: int) -> MetricInfo | None:
        return self._by_alias.get(alias)

    def device_metrics(self, device: str) -> list[MetricInfo]:
        return [m for m in self._metrics if m.device == device]


def millis(ts: datetime) -> int:
    return round(ts.timestamp() * 1000)


def node_birth(bd_seq: int, now_ms: int, takeovers: int = 0) -> Any:
    """NBIRTH (its seq, 0, is set by the sender): bdSeq and the rebirth control; the takeovers, if any."""
    payload = Payload(timestamp=now_ms)
    payload.metrics.add(
        name=BD_SEQ, timestamp=now_ms, datatype=DataType.INT64, long_value=bd_seq % SEQ_MODULUS
    )
    payload.metrics.add(name=REBIRTH, timestamp=now_ms, datatype=DataType.BOOLEAN, boolean_value=False)
    if takeovers:
        payload.metrics.add(name=TAKEOVERS, timestamp=now_ms, datatype=DataType.INT64, long_value=takeovers)
    return payload


def node_death(bd_seq: int, now_ms: int) -> bytes:
    """NDEATH: the MQTT will (and the clean stop's last word); no seq, the birth's bdSeq."""
    payload = Payload(timestamp=now_ms)
    payload.metrics.add(
        name=BD_SEQ, timestamp=now_ms, datatype=DataType.INT64, long_value=bd_seq % SEQ_MODULUS
    )
    return bytes(payload.SerializeToString())


Latest = Callable[[str], Reading | None]
"""The newest reading of 'device/point' (acquisition/latest.py), for the births' values."""


def device_birth(device: DeviceInfo, catalog: Catalog, now_ms: int, latest: Latest | None = None) -> Any:
    """DBIRTH: every point of the device by name and alias, a Double with its latest value (null before the
    first reading), with its unit and write range as properties."""
    payload = Payload(timestamp=now_ms)
    for info in catalog.device_metrics(device.name):
        metric = payload.metrics.add(name=info.point, alias=info.alias, datatype=DataType.DOUBLE)
        reading = None if latest is None else latest(f"{info.device}/{info.point}")
        if reading is None:
            metric.timestamp, metric.is_null = now_ms, True
        else:
            _value(metric, reading.value, reading.quality.value)
            metric.timestamp = millis(reading.ts)
        _property(metric.properties, "engUnit", DataType.STRING, info.unit)
        _property(metric.properties, "readOnly", DataType.BOOLEAN, info.write_range is None)
        if info.write_range is not None:
            _property(metric.properties, "writeLow", DataType.DOUBLE, info.write_range[0])
            _property(metric.properties, "writeHigh", DataType.DOUBLE, info.write_range[1])
    payload.metrics.add(
        name="Device Info/Protocol", timestamp=now_ms, datatype=DataType.STRING, string_value=device.protocol
    )
    payload.metrics.add(
        name="Device Info/Address", timestamp=now_ms, datatype=DataType.STRING, string_value=device.address
    )
    return payload


def _property(properties: Any, key: str, datatype: DataType, value: str | bool | float) -> None:
    properties.keys.append(key)
    field = {DataType.STRING: "string_value", DataType.BOOLEAN: "boolean_value"}.get(datatype, "double_value")
    properties.values.add(type=datatype, **{field: value})


@dataclass(slots=True)
class DataMessages:
    """A readings batch as Sparkplug data: one DDATA per device, and an NDATA for readings of points the
    birth does not name (buffered under an earlier configuration), by name."""

    devices: dict[str, Any]
    node: Any | None


def data_messages(readings: list[dict[str, Any]], catalog: Catalog, *, historical: bool) -> DataMessages:
    """`readings`: the buffer's encoded readings (docs/mqtt.md's readings[]), oldest first."""
    devices: dict[str, Any] = {}
    node: Any | None = None
    times: dict[str, int] = {}  # the readings of one poll share their timestamp: parsed once
    for reading in readings:
        ts = reading["ts"]
        at = times.get(ts)
        if at is None:
            at = times[ts] = millis(datetime.fromisoformat(ts))
        value = reading["value"]
        fields: dict[str, Any] = {"timestamp": at, "datatype": DataType.DOUBLE}
        if value is None:
            fields["is_null"] = True
        else:
            fields["double_value"] = value
        if historical:
            fields["is_historical"] = True
        info = catalog.of(reading["device"], reading["point"])
        if info is None:
            node = node or Payload()
            metric = node.metrics.add(name=f"{reading['device']}/{reading['point']}", **fields)
            _property(metric.properties, "engUnit", DataType.STRING, reading["unit"])
        else:
            payload = devices.get(info.device)
            if payload is None:
                payload = devices[info.device] = Payload()
            metric = payload.metrics.add(alias=info.alias, **fields)
        if reading["quality"] != "good":
            _quality(metric, reading["quality"])
    return DataMessages(devices, node)


def _value(metric: Any, value: float | None, quality: str) -> None:
    """A reading's value (or is_null) and, when it is not good, its Quality property."""
    if value is None:
        metric.is_null = True
    else:
        metric.double_value = value
    _quality(metric, quality)


def _quality(metric: Any, quality: str) -> None:
    code = QUALITY_CODES.get(quality)
    if code is not None:
        metric.properties.keys.append(QUALITY)
        metric.properties.values.add(type=DataType.INT32, int_value=code)
