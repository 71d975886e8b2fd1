"""Device and point models: Modbus (TCP, RTU, RTU over TCP) and BACnet/IP. A device entry in the
configuration and a device profile in drivers/ are validated by these same models."""

from __future__ import annotations

import functools
import math
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from edge_agent.config.base import Host, HostPort, Name, Strict
from edge_agent.config.codec import DataType, Encoding, Order


class _Point(Strict):
    name: Name
    label: Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$")] | None = None
    """The device's own name for the point, in any script ("1층 열람실 온도"): shown and published beside
    `name`, which stays the point's key."""
    unit: Annotated[str, Field(max_length=32)] = ""
    """The unit published with every reading: 'W', 'kWh', 'degC', ..."""
    plausible: tuple[float, float] | None = None
    """[low, high]: a value outside is published with quality 'bad' (the value kept, for diagnosis)."""
    deadband: Annotated[float, Field(ge=0)] | None = None
    """Publish only moves larger than this (in the point's unit), and at least every max_silence_s."""
    deadband_pct: Annotated[float, Field(ge=0, le=100)] | None = None
    max_silence_s: Annotated[float, Field(gt=0)] = 300.0
    write_range: tuple[float, float] | None = None
    """[low, high]: a command may write this point within the range; without it the point is read-only."""

    @field_validator("plausible", "write_range")
    @classmethod
    def _ordered_range(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        if value is not None and not all(math.isfinite(v) for v in value):
            raise ValueError(f"[{value[0]}, {value[1]}] must be finite numbers")
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
        if self.address + self.registers > 0x10000:
            raise ValueError(
                f"{self.type} at address {self.address} needs {self.registers} registers and runs past 65535"
            )
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


class _Device(Strict):
    name: Name
    timeout_s: Annotated[float, Field(gt=0, le=60)] = 2.0
    """Upper bound on one request to the device, connection included."""
    poll_interval_s: Annotated[float, Field(ge=0.1, le=86400)] | None = None
    """Poll all the device's points this often, besides any [[pollers]] naming it. Neither: every 5 s."""


class RegisterRange(Strict):
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
    multiple_writes: bool = False
    """Write with functions 15 and 16 even for one coil or register (devices without 05 and 06)."""

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
    host: Host
    port: Annotated[int, Field(ge=1, le=65535)] = 502
    max_connections: Annotated[int, Field(ge=1, le=32)] = 1
    """Most TCP connections to host:port, shared by every device there (they must agree: checked)."""
    in_flight: Annotated[int, Field(ge=1, le=32)] = 1
    """Most requests outstanding at once on one of those connections (serial gateways: one)."""

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port} unit {self.unit_id}"

    @property
    def link(self) -> str:
        return f"tcp:{self.host}:{self.port}"  # the devices at one host:port share its connections

    @property
    def sharing(self) -> tuple[int, int]:
        """What the devices on one host:port must agree on: max_connections, in_flight."""
        return self.max_connections, self.in_flight


class ModbusRtuTcpDevice(_ModbusDevice):
    """RTU frames over TCP: a serial gateway that passes frames through; its units share the line."""

    protocol: Literal["modbus-rtu-tcp"]
    host: Host
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
    serial_port: Annotated[str, Field(pattern=r"^[^\x00-\x1f]{1,255}$")]
    """The bus's device file, for example /dev/ttyUSB0."""
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
    write_priority: Annotated[int, Field(ge=9, le=15)] = 10
    """The priority the agent writes and relinquishes at: below an operator's 8, above the defaults."""

    @property
    def address(self) -> str:
        return f"{self.host} device {self.instance}"


Device = Annotated[
    ModbusTcpDevice | ModbusRtuTcpDevice | ModbusRtuDevice | BacnetDevice, Field(discriminator="protocol")
]
