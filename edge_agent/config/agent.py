"""The whole configuration file as one pydantic model, read from TOML.

`load_config` turns every mistake into a ConfigError whose problems name the offending field by its path
(`devices[1].port: ...`), so a technician can find it in the file.
"""

from __future__ import annotations

import os
import ssl
import tomllib
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, ValidationError, field_validator, model_validator

from edge_agent.config.base import HostPort, LocalAddress, Name, Strict
from edge_agent.config.control import ControlConfig
from edge_agent.config.devices import (
    BacnetDevice,
    Device,
    ModbusDevice,
    ModbusRtuDevice,
)
from edge_agent.config.openadr import OpenAdrConfig
from edge_agent.config.profiles import expand
from edge_agent.errors import ConfigError
from edge_agent.signing import load_public_key

BUILTIN_CONFIG = "builtin:default.toml"


def _file_name(path: Path) -> Path:
    if path.name in ("", ".", ".."):
        raise ValueError(f"{str(path)!r} names no file")
    return path


class GatewayConfig(Strict):
    id: Name = "edge-gateway"
    site: Annotated[str, Field(max_length=256)] = ""
    socket: Annotated[Path, AfterValidator(_file_name)] = Path("edge-agent.sock")
    """The local UNIX socket `edge-agent status` and `control` talk to. Relative paths resolve against
    $RUNTIME_DIRECTORY (systemd: /run/edge-agent) or else the buffer file's directory."""


class BufferConfig(Strict):
    path: Annotated[Path, AfterValidator(_file_name)] = Path("edge-agent-buffer.db")
    """Relative paths resolve against $STATE_DIRECTORY (systemd) or else the working directory."""
    cap_mb: Annotated[float, Field(ge=1, le=1_000_000)] = 1024.0
    """The most disk the buffer may take; beyond it the oldest readings are dropped and counted."""
    durability: Literal["full", "normal"] = "full"
    """'full': a committed batch survives power loss. 'normal': faster, may lose the last commits."""

    def resolved_path(self) -> Path:
        if self.path.is_absolute():
            return self.path
        return Path(os.environ.get("STATE_DIRECTORY", ".")) / self.path


class MqttConfig(Strict):
    url: str = "mqtt://127.0.0.1:1883"
    """mqtt://HOST[:PORT] (1883), or mqtts://HOST[:PORT] (8883) for TLS."""
    ca_file: Path | None = None
    """TLS: the CA that signed the broker's certificate (default: the system's CAs)."""
    cert_file: Path | None = None
    """TLS client certificate, with key_file, for brokers that authenticate clients by certificate."""
    key_file: Path | None = None
    username: str | None = None
    password_file: Path | None = None
    """A file holding the password; relative paths resolve under $CREDENTIALS_DIRECTORY (systemd)."""
    topic_prefix: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")] = "edge"
    batch_size: Annotated[int, Field(ge=1, le=5000)] = 500
    keepalive_s: Annotated[int, Field(ge=5, le=600)] = 15
    publish_timeout_s: Annotated[float, Field(gt=0, le=120)] = 10.0
    in_flight: Annotated[int, Field(ge=1, le=64)] = 4
    """Batches published and awaiting their PUBACK at once; a restart may send these again."""
    protocol: Literal["auto", "5", "3.1.1"] = "auto"
    """MQTT version; 'auto' tries 5 and falls back to 3.1.1 when the broker refuses it."""
    format: Literal["json", "compact", "sparkplug"] = "json"
    """What the uplink publishes: 'json' (the batch of docs/mqtt.md), 'compact' (names by alias, time deltas) or 'sparkplug' (Sparkplug B 3.0)."""
    backlog_messages_per_s: Annotated[float, Field(gt=0, le=10_000)] = 20.0
    """The backlog (readings buffered while the link was down) drains behind live data at most this fast,"""
    backlog_bytes_per_s: Annotated[int, Field(ge=1024)] = 1_000_000
    """and within this many payload bytes per second: the platform's rate limits are not tripped."""

    @field_validator("url")
    @classmethod
    def _mqtt_url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError("expected mqtt://HOST[:PORT] or mqtts://HOST[:PORT]")
        if parts.username is not None or parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError(
                "expected mqtt://HOST[:PORT] or mqtts://HOST[:PORT], without a user, path or query "
                "(credentials go in username and password_file)"
            )
        try:
            port = parts.port
        except ValueError as exc:
            raise ValueError(f"bad port in {url!r}") from exc
        if port == 0:
            raise ValueError(f"bad port in {url!r}: 1-65535")
        return url

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or "127.0.0.1"

    @property
    def tls(self) -> bool:
        return urlsplit(self.url).scheme == "mqtts"

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or (8883 if self.tls else 1883)

    @model_validator(mode="after")
    def _tls_pieces(self) -> MqttConfig:
        if (self.ca_file or self.cert_file) and not self.tls:
            raise ValueError("ca_file and cert_file need an mqtts:// url")
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        if self.password_file is not None and self.username is None:
            raise ValueError("password_file needs a username")
        return self

    def password(self) -> str | None:
        """Read the password file now (credentials may be rotated between connections)."""
        if self.password_file is None:
            return None
        path = self.password_file
        if not path.is_absolute():
            path = Path(os.environ.get("CREDENTIALS_DIRECTORY", ".")) / path
        return path.read_text(encoding="utf-8").strip()

    def tls_context(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        context = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        if self.cert_file is not None and self.key_file is not None:
            context.load_cert_chain(str(self.cert_file), str(self.key_file))
        return context


class BacnetConfig(Strict):
    local_address: LocalAddress = "0.0.0.0:47808"
    """Where the agent's own BACnet/IP stack binds: HOST:PORT (HOST may carry a /prefix)."""
    device_instance: Annotated[int, Field(ge=0, le=4194302)] = 4194000
    """The agent's own device instance on the BACnet network."""
    bbmd: HostPort | None = None
    """A BBMD to register with as a foreign device, for a gateway on another subnet (HOST[:PORT])."""
    bbmd_ttl_s: Annotated[int, Field(ge=30, le=65535)] = 300


class CommandsConfig(Strict):
    """What a command over MQTT must carry besides its id (docs/mqtt.md, "Commands")."""

    trusted_keys: list[str] = Field(default_factory=list)
    """Public keys (`ed25519:<base64>`, from `edge-agent keys new`); when any is set, a command over MQTT
    must carry a valid signature by one of them. Empty: unsigned commands, the broker's ACL the only check."""
    max_expiry_s: Annotated[float, Field(ge=10, le=7 * 86400)] = 3600.0
    """A command's `expires` may lie at most this far ahead; its id is remembered until then."""
    clock_skew_s: Annotated[float, Field(ge=0, le=600)] = 30.0
    """Tolerance between central's clock and the gateway's, on both ends of the window."""

    @field_validator("trusted_keys")
    @classmethod
    def _keys(cls, keys: list[str]) -> list[str]:
        problems = []
        for i, text in enumerate(keys):
            try:
                load_public_key(text)
            except ValueError as exc:
                problems.append(f"trusted_keys[{i}]: {exc}")
        if problems:
            raise ValueError("; ".join(problems))
        return keys


class LogConfig(Strict):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["console", "json"] = "console"


# --- points -------------------------------------------------------------------------------------


class PollerConfig(Strict):
    """A group of one device's points read together on one interval."""

    device: str
    interval_s: Annotated[float, Field(ge=0.1, le=86400)] = 5.0
    points: Annotated[list[str], Field(min_length=1)] | None = None
    """Point names of the device; None (left out) reads all of them."""


class AgentConfig(Strict):
    gateway: GatewayConfig = GatewayConfig()
    buffer: BufferConfig = BufferConfig()
    mqtt: MqttConfig = MqttConfig()
    bacnet: BacnetConfig = BacnetConfig()
    control: ControlConfig = ControlConfig()
    commands: CommandsConfig = CommandsConfig()
    openadr: OpenAdrConfig | None = None  # demand response from a utility's VTN
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
        problems += _same_addresses(self.devices)
        problems += _control_references(self.control, by_name)
        problems += self.control.cannot_act()
        if problems:
            raise ValueError("\n".join(problems))
        return self


def _same_addresses(devices: list[Device]) -> list[str]:
    """Two entries for one device (one Modbus unit on one link, one BACnet instance) poll it twice and
    publish its readings under two names: a copy-paste mistake."""
    problems: list[str] = []
    first: dict[str, int] = {}
    for i, device in enumerate(devices):
        if isinstance(device, BacnetDevice):
            key, what = f"bacnet:{device.instance}", f"BACnet device instance {device.instance}"
        else:
            key, what = f"{device.link}:{device.unit_id}", device.address
        if key in first:
            field = "instance" if isinstance(device, BacnetDevice) else "unit_id"
            problems.append(f"devices[{i}].{field}: {what} is already devices[{first[key]}]")
        first.setdefault(key, i)
    return problems


def _control_references(control: ControlConfig, devices: dict[str, ModbusDevice | BacnetDevice]) -> list[str]:
    problems = []
    zones: dict[str, int] = {}
    for i, zone in enumerate(control.zones):
        if zones.setdefault(zone.name, i) != i:
            problems.append(f"control.zones[{i}].name: zone {zone.name!r} is defined twice")
    for path, ref, written in control.references():
        device_name, point_name = ref.split("/")
        device = devices.get(device_name)
        point = next((p for p in device.points if p.name == point_name), None) if device else None
        if device is None:
            problems.append(f"{path}: no device named {device_name!r}")
        elif point is None:
            problems.append(f"{path}: device {device_name!r} has no point {point_name!r}")
        elif written and point.write_range is None:
            problems.append(f"{path}: {ref} has no write_range, so control may not write it")
    return problems


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
            message = item["msg"].removeprefix("Value error, ")
            problems.append(f"{path}: {message}" if path else message)
    return problems


MAX_FILE_BYTES = 4 * 1024 * 1024
"""A configuration file is text a person wrote: larger than this, it is the wrong file."""
MAX_DEPTH = 16
"""The deepest a configuration nests (devices[0].points[0].write_range[0] is 5 levels)."""


def _unusable_values(value: object, path: str = "", depth: int = 0) -> list[str]:
    """Values no field accepts but that would reach validation: NUL characters (which paths, serial
    ports and hosts would carry to the operating system) and nesting bombs."""
    if depth > MAX_DEPTH:
        return [f"{path or 'file'}: nested more than {MAX_DEPTH} levels deep"]
    if isinstance(value, str):
        return [f"{path}: contains a NUL character"] if "\x00" in value else []
    if isinstance(value, dict):
        items: list[tuple[str, object]] = [(f"{path}.{k}" if path else str(k), v) for k, v in value.items()]
    elif isinstance(value, list):
        items = [(f"{path}[{i}]", v) for i, v in enumerate(value)]
    else:
        return []
    return [problem for key, item in items for problem in _unusable_values(item, key, depth + 1)]


def parse_config(text: str, source: str) -> AgentConfig:
    """Parse and validate TOML text; `source` names it in errors."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, [f"not valid TOML: {exc}"]) from exc
    except RecursionError:  # tomllib parses arrays and inline tables recursively
        raise ConfigError(source, [f"not valid TOML: nested more than {MAX_DEPTH} levels deep"]) from None
    problems = _unusable_values(data)
    if problems:
        raise ConfigError(source, problems)
    try:
        return AgentConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, _problems(exc)) from exc


def builtin_config_text() -> str:
    """The embedded default: the agent pointed at `edge-sim run` on its default ports."""
    return resources.files("edge_agent.config").joinpath("default.toml").read_text(encoding="utf-8")


def load_config(path: Path | None) -> AgentConfig:
    """Read a configuration file, or the built-in default when path is None."""
    if path is None:
        return parse_config(builtin_config_text(), BUILTIN_CONFIG)
    try:
        with path.open("rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)  # bounded: a device file such as /dev/zero never ends
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read: {exc.strerror or exc}"]) from exc
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(
            str(path), [f"larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB: not a configuration file"]
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(str(path), [f"not UTF-8 text: {exc}"]) from exc
    return parse_config(text, str(path))
