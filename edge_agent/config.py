"""The whole configuration file as one pydantic model, read from TOML.

`load_config` turns every mistake into a ConfigError whose problems name the offending field by its path
(`devices[1].port: ...`), so a technician can find it in the file.
"""

from __future__ import annotations

import functools
import os
import tomllib
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from edge_agent.codec import DataType, Encoding, Order
from edge_agent.errors import ConfigError
from edge_agent.profiles import expand

Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
"""Device and point names end up in MQTT topics and payloads: no '/', '+', '#' or spaces."""

BUILTIN_CONFIG = "builtin:default.toml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GatewayConfig(_Strict):
    id: Name = "edge-gateway"
    site: str = ""


class BufferConfig(_Strict):
    path: Path = Path("edge-agent-buffer.db")
    """Relative paths resolve against $STATE_DIRECTORY (systemd) or else the working directory."""

    def resolved_path(self) -> Path:
        if self.path.is_absolute():
            return self.path
        return Path(os.environ.get("STATE_DIRECTORY", ".")) / self.path


class MqttConfig(_Strict):
    url: str = "mqtt://127.0.0.1:1883"
    topic_prefix: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")] = "edge"
    batch_size: Annotated[int, Field(ge=1, le=5000)] = 500
    keepalive_s: Annotated[int, Field(ge=5, le=600)] = 15
    publish_timeout_s: Annotated[float, Field(gt=0, le=120)] = 10.0

    @field_validator("url")
    @classmethod
    def _mqtt_url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme != "mqtt" or not parts.hostname:
            raise ValueError("expected mqtt://HOST[:PORT]")
        try:
            _ = parts.port
        except ValueError as exc:
            raise ValueError(f"bad port in {url!r}") from exc
        return url

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or 1883


class BacnetConfig(_Strict):
    local_address: Annotated[str, Field(pattern=r"^\d{1,3}(\.\d{1,3}){3}(/\d{1,2})?(:\d{1,5})?$")] = (
        "0.0.0.0:47808"
    )
    """Where the agent's own BACnet/IP stack binds: HOST:PORT (HOST may carry a /prefix)."""
    device_instance: Annotated[int, Field(ge=0, le=4194302)] = 4194000
    """The agent's own device instance on the BACnet network."""
    bbmd: Annotated[str, Field(pattern=r"^\d{1,3}(\.\d{1,3}){3}(:\d{1,5})?$")] | None = None
    """A BBMD to register with as a foreign device, for a gateway on another subnet (HOST[:PORT])."""
    bbmd_ttl_s: Annotated[int, Field(ge=30, le=65535)] = 300


class LogConfig(_Strict):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["console", "json"] = "console"


# --- points -------------------------------------------------------------------------------------


class _Point(_Strict):
    name: Name
    unit: str = ""
    """The unit published with every reading: 'W', 'kWh', 'degC', ..."""
    plausible: tuple[float, float] | None = None
    """[low, high]: a value outside is published with quality 'bad' (the value kept, for diagnosis)."""
    deadband: Annotated[float, Field(ge=0)] | None = None
    """Publish only moves larger than this (in the point's unit), and at least every max_silence_s."""
    deadband_pct: Annotated[float, Field(ge=0, le=100)] | None = None
    max_silence_s: Annotated[float, Field(gt=0)] = 300.0

    @field_validator("plausible")
    @classmethod
    def _ordered_range(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        if value is not None and value[0] > value[1]:
            raise ValueError(f"low {value[0]} is above high {value[1]}")
        return value


class ModbusPoint(_Point):
    table: Literal["coil", "discrete", "input", "holding"]
    """Function codes 01, 02, 04 and 03 to read; coils take 05/15 and holding registers 06/16 to write."""
    address: Annotated[int, Field(ge=0, le=0xFFFF)]
    """The address on the wire (0-based), not the datasheet's 3xxxx/4xxxx register number."""
    type: DataType = "float32"
    order: Order = "ABCD"
    """Byte and word order: ABCD (big-endian), CDAB (words swapped), BADC (bytes swapped), DCBA."""
    scale: float = 1.0
    offset: float = 0.0
    count: Annotated[int, Field(ge=1, le=125)] | None = None
    """Registers of a string (required) or of a bitfield (1 or 2)."""
    bit: Annotated[int, Field(ge=0, le=31)] | None = None
    mask: Annotated[int, Field(ge=1, le=0xFFFFFFFF)] | None = None
    not_available: Literal["auto"] | list[int] | None = None
    """Raw values meaning 'not available' (a quality flag, never a number); 'auto': ABB's all-ones."""

    @model_validator(mode="after")
    def _encodable(self) -> ModbusPoint:
        bits = self.table in ("coil", "discrete")
        if bits != (self.type == "bool"):
            raise ValueError(
                f"{self.table} points are type 'bool' and only they are"
                if bits
                else f"type 'bool' belongs to coil or discrete points, not {self.table}"
            )
        self.encoding()  # every other mistake: the codec names it
        return self

    @functools.cached_property
    def codec(self) -> Encoding:
        """The point's Encoding, built once."""
        return self.encoding()

    def encoding(self) -> Encoding:
        sentinels: tuple[float, ...] | Literal["auto"] = (
            "auto" if self.not_available == "auto" else tuple(self.not_available or ())
        )
        return Encoding(
            self.type,
            self.order,
            self.scale,
            self.offset,
            count=self.count,
            bit=self.bit,
            mask=self.mask,
            not_available=sentinels,
        )

    @property
    def registers(self) -> int:
        """Registers (or bits) the point occupies."""
        return self.codec.registers


BACNET_OBJECT_TYPES = (
    "analog-input", "analog-output", "analog-value", "binary-input", "binary-output", "binary-value",
    "multi-state-input", "multi-state-output", "multi-state-value", "accumulator", "pulse-converter",
    "large-analog-value", "integer-value", "positive-integer-value", "loop", "device",
)  # fmt: skip


class BacnetPoint(_Point):
    object: str
    """'object-type,instance', for example 'analog-input,1'."""
    property: Annotated[str, Field(pattern=r"^[a-z]+(-[a-z]+)*$")] = "present-value"
    cov: bool = False
    """Subscribe to changes of value instead of polling, where the device allows it (polled otherwise)."""

    @field_validator("object")
    @classmethod
    def _object_id(cls, value: str) -> str:
        kind, _, instance = value.partition(",")
        if kind not in BACNET_OBJECT_TYPES:
            raise ValueError(
                f"unknown object type {kind!r} (expected one of {', '.join(BACNET_OBJECT_TYPES)})"
            )
        if not instance.isdigit() or int(instance) > 4194302:
            raise ValueError(f"instance must be 0-4194302 in {value!r}")
        return value


# --- devices ------------------------------------------------------------------------------------


class _Device(_Strict):
    name: Name
    timeout_s: Annotated[float, Field(gt=0, le=60)] = 2.0
    """Upper bound on one request to the device, connection included."""


class RegisterRange(_Strict):
    """Registers a device must never be asked for (some meters lock up or reset on them), inclusive."""

    table: Literal["coil", "discrete", "input", "holding"]
    start: Annotated[int, Field(ge=0, le=0xFFFF)]
    end: Annotated[int, Field(ge=0, le=0xFFFF)]

    @model_validator(mode="after")
    def _ordered(self) -> RegisterRange:
        if self.end < self.start:
            raise ValueError(f"end {self.end} is before start {self.start}")
        return self


class _ModbusDevice(_Device):
    unit_id: Annotated[int, Field(ge=0, le=247)] = 1
    points: list[ModbusPoint] = Field(min_length=1)
    max_registers: Annotated[int, Field(ge=1, le=125)] = 125
    """Most registers the device answers in one request (the SDM630 takes 80: 40 parameters)."""
    max_gap: Annotated[int, Field(ge=0, le=124)] = 20
    """Unused registers worth reading to merge two points into one request."""
    forbidden: list[RegisterRange] = Field(default_factory=list)

    @model_validator(mode="after")
    def _points_clear_of_forbidden(self) -> _ModbusDevice:
        for point in self.points:
            for r in self.forbidden:
                if (
                    point.table == r.table
                    and point.address <= r.end
                    and r.start < point.address + point.registers
                ):
                    raise ValueError(
                        f"point {point.name!r} ({point.table} {point.address}) lies in a forbidden range "
                        f"{r.start}-{r.end}"
                    )
        return self

    @property
    def link(self) -> str:
        """What the device shares its wire with: devices with the same link take turns."""
        raise NotImplementedError


class ModbusTcpDevice(_ModbusDevice):
    protocol: Literal["modbus-tcp"]
    host: str
    port: Annotated[int, Field(ge=1, le=65535)] = 502

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port} unit {self.unit_id}"

    @property
    def link(self) -> str:
        return f"tcp:{self.host}:{self.port}:{self.unit_id}"  # a connection of its own


class ModbusRtuTcpDevice(_ModbusDevice):
    """RTU frames over TCP: a serial gateway that passes frames through; its units share the line."""

    protocol: Literal["modbus-rtu-tcp"]
    host: str
    port: Annotated[int, Field(ge=1, le=65535)] = 4001
    frame_gap_ms: Annotated[float, Field(ge=0, le=1000)] = 5.0

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port} (RTU) unit {self.unit_id}"

    @property
    def link(self) -> str:
        return f"rtu-tcp:{self.host}:{self.port}"


class ModbusRtuDevice(_ModbusDevice):
    """A unit on an RS-485 bus: every device on the same serial port takes turns on it."""

    protocol: Literal["modbus-rtu"]
    serial_port: str
    baudrate: Literal[1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200] = 9600
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    frame_gap_ms: Annotated[float, Field(ge=0, le=1000)] | None = None
    """Silence between frames; default 3.5 character times (at least 1.75 ms above 19200 baud)."""

    @property
    def address(self) -> str:
        return f"{self.serial_port} unit {self.unit_id}"

    @property
    def link(self) -> str:
        return f"rtu:{self.serial_port}"

    @property
    def line(self) -> tuple[int, str, int]:
        return self.baudrate, self.parity, self.stopbits

    @property
    def gap_s(self) -> float:
        if self.frame_gap_ms is not None:
            return self.frame_gap_ms / 1000
        char_s = 11 / self.baudrate  # start, 8 data, parity or stop, stop
        return max(3.5 * char_s, 0.00175)


ModbusDevice = ModbusTcpDevice | ModbusRtuTcpDevice | ModbusRtuDevice


HostPort = Annotated[str, Field(pattern=r"^\d{1,3}(\.\d{1,3}){3}(:\d{1,5})?$")]
"""An IPv4 address, optionally with a port: BACnet/IP addresses are numeric."""


class BacnetDevice(_Device):
    protocol: Literal["bacnet-ip"]
    host: HostPort
    """The device's BACnet/IP address, HOST:PORT (47808 when the port is left out)."""
    instance: Annotated[int, Field(ge=0, le=4194302)]
    points: list[BacnetPoint] = Field(min_length=1)
    max_apdu: Annotated[int, Field(ge=50, le=1476)] | None = None
    """Overrides what the device says it accepts (read from it at connect; 480 when unreadable)."""
    max_batch: Annotated[int, Field(ge=1, le=1000)] | None = None
    """At most this many properties in one ReadPropertyMultiple."""
    cov_lifetime_s: Annotated[int, Field(ge=60, le=86400)] = 300
    """COV subscriptions last this long and are renewed at three quarters of it."""
    cov_confirmed: bool = False

    @property
    def address(self) -> str:
        return f"{self.host} device {self.instance}"


Device = Annotated[
    ModbusTcpDevice | ModbusRtuTcpDevice | ModbusRtuDevice | BacnetDevice, Field(discriminator="protocol")
]


class PollerConfig(_Strict):
    """A group of one device's points read together on one interval."""

    device: str
    interval_s: Annotated[float, Field(ge=0.1, le=86400)] = 5.0
    points: list[str] | None = None
    """Point names of the device; None reads all of them."""


class AgentConfig(_Strict):
    gateway: GatewayConfig = GatewayConfig()
    buffer: BufferConfig = BufferConfig()
    mqtt: MqttConfig = MqttConfig()
    bacnet: BacnetConfig = BacnetConfig()
    log: LogConfig = LogConfig()
    devices: list[Device] = Field(default_factory=list)
    pollers: list[PollerConfig] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _profiles(cls, data: Any) -> Any:
        """Devices that name a profile get its settings and points (profiles.py) before validation."""
        if not isinstance(data, dict) or not isinstance(data.get("devices"), list):
            return data
        devices = [
            expand(entry, f"devices[{i}]") if isinstance(entry, dict) else entry
            for i, entry in enumerate(data["devices"])
        ]
        return {**data, "devices": devices}

    @model_validator(mode="after")
    def _cross_references(self) -> AgentConfig:
        problems: list[str] = []
        by_name: dict[str, ModbusDevice | BacnetDevice] = {}
        lines: dict[str, tuple[int, tuple[int, str, int]]] = {}
        for i, device in enumerate(self.devices):
            if device.name in by_name:
                problems.append(f"devices[{i}].name: device {device.name!r} is defined twice")
            by_name[device.name] = device
            if isinstance(device, ModbusRtuDevice):
                first = lines.setdefault(device.serial_port, (i, device.line))
                if first[1] != device.line:
                    problems.append(
                        f"devices[{i}].baudrate: {device.serial_port} is set to {device.line} here but "
                        f"{first[1]} in devices[{first[0]}]: devices on one bus share its line settings"
                    )
            seen: set[str] = set()
            for j, point in enumerate(device.points):
                if point.name in seen:
                    problems.append(f"devices[{i}].points[{j}].name: point {point.name!r} is defined twice")
                seen.add(point.name)
        for i, poller in enumerate(self.pollers):
            target = by_name.get(poller.device)
            if target is None:
                known = ", ".join(sorted(by_name)) or "none"
                problems.append(f"pollers[{i}].device: no device named {poller.device!r} (defined: {known})")
                continue
            names = {p.name for p in target.points}
            for j, point_name in enumerate(poller.points or []):
                if point_name not in names:
                    problems.append(
                        f"pollers[{i}].points[{j}]: device {poller.device!r} has no point {point_name!r}"
                    )
        if problems:
            raise ValueError("\n".join(problems))
        return self


def _location(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part in ("modbus-tcp", "modbus-rtu-tcp", "modbus-rtu", "bacnet-ip"):  # the union's tag: noise
            continue
        else:
            path += f".{part}" if path else part
    return path


def _problems(error: ValidationError) -> list[str]:
    problems: list[str] = []
    for item in error.errors(include_url=False):
        path = _location(item["loc"])
        if item["type"] == "value_error" and not path:  # cross-reference problems carry their own paths
            problems.extend(str(item["ctx"]["error"]).splitlines())
        elif item["type"] == "extra_forbidden":
            problems.append(f"{path}: unknown key")
        else:
            problems.append(f"{path}: {item['msg']}" if path else item["msg"])
    return problems


def parse_config(text: str, source: str) -> AgentConfig:
    """Parse and validate TOML text; `source` names it in errors."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, [f"not valid TOML: {exc}"]) from exc
    try:
        return AgentConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, _problems(exc)) from exc


def builtin_config_text() -> str:
    """The embedded default: the agent pointed at `edge-sim run` on its default ports."""
    return resources.files("edge_agent").joinpath("default.toml").read_text(encoding="utf-8")


def load_config(path: Path | None) -> AgentConfig:
    """Read a configuration file, or the built-in default when path is None."""
    if path is None:
        return parse_config(builtin_config_text(), BUILTIN_CONFIG)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read: {exc.strerror}"]) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(str(path), [f"not UTF-8 text: {exc}"]) from exc
    return parse_config(text, str(path))
