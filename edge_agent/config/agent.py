"""The whole configuration file as one pydantic model, read from TOML.

Validated as a whole, it refuses a mistake by its path (`devices[1].port: ...`); a file is read and checked by
load.py, which finds every mistake at once and names each by device and line (diagnose.py).
"""

from __future__ import annotations

import os
import ssl
import unicodedata
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from edge_agent.config.base import HostPort, LocalAddress, Name, Strict
from edge_agent.config.control import ControlConfig
from edge_agent.config.devices import Device
from edge_agent.config.groups import expand_all
from edge_agent.config.openadr import OpenAdrConfig
from edge_agent.config.profiles import expand
from edge_agent.config.references import (
    DEFAULT_INTERVAL_S,
    Finding,
    control_findings,
    device_findings,
    dotted,
    poller_findings,
    polling_findings,
)
from edge_agent.config.remote import RemoteConfig
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
    """The most disk the buffer may take, in MiB; beyond it the oldest readings are dropped and counted."""
    durability: Literal["full", "normal"] = "full"
    """'full': a committed batch survives power loss. 'normal': faster, may lose the last commits."""

    def resolved_path(self) -> Path:
        if self.path.is_absolute():
            return self.path
        return Path(os.environ.get("STATE_DIRECTORY", ".")) / self.path


def _mqtt_url(url: str) -> str:
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


MqttUrl = Annotated[str, AfterValidator(_mqtt_url)]


@dataclass(frozen=True, slots=True)
class MqttBroker:
    """One broker of [mqtt] url or urls, its default port filled in."""

    url: str
    host: str
    port: int
    tls: bool

    @classmethod
    def of(cls, url: str) -> MqttBroker:
        parts = urlsplit(url)
        tls = parts.scheme == "mqtts"
        return cls(url, (parts.hostname or "127.0.0.1").lower(), parts.port or (8883 if tls else 1883), tls)

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


class MqttConfig(Strict):
    url: MqttUrl = "mqtt://127.0.0.1:1883"
    """mqtt://HOST[:PORT] (1883), or mqtts://HOST[:PORT] (8883) for TLS: the one broker."""
    urls: Annotated[list[MqttUrl], Field(min_length=1, max_length=64)] | None = None
    """Instead of url: the brokers (nodes of one cluster) tried in turn, the next on each loss or refusal."""
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
    format: Literal["json", "compact", "sparkplug"] = "compact"
    """What the uplink publishes: 'compact' (names by alias, time deltas), 'json' (the older batch, deprecated: kept for one release) or 'sparkplug' (Sparkplug B 3.0)."""
    group_id: Name = "edge-agent"
    """Sparkplug: the group id of spBv1.0/<group_id>/...; the gateway id is the edge node id."""
    primary_host_id: Name | None = None
    """Sparkplug: the primary host application whose STATE (spBv1.0/STATE/<id>) gates publishing."""
    backlog_messages_per_s: Annotated[float, Field(gt=0, le=10_000)] = 20.0
    """The backlog (readings buffered while the link was down) drains behind live data at most this fast,"""
    backlog_bytes_per_s: Annotated[int, Field(ge=1024)] = 1_000_000
    """and within this many payload bytes per second: the platform's rate limits are not tripped."""

    @field_validator("urls")
    @classmethod
    def _distinct(cls, urls: list[str] | None) -> list[str] | None:
        seen: dict[tuple[str, int], int] = {}
        for i, url in enumerate(urls or []):
            broker = MqttBroker.of(url)
            where = (broker.host, broker.port)
            if where in seen:
                raise ValueError(f"urls[{i}] {url!r} is urls[{seen[where]}] again: list each broker once")
            seen[where] = i
        return urls

    @property
    def brokers(self) -> list[MqttBroker]:
        """The brokers in the order they are tried: urls, or the one url."""
        return [MqttBroker.of(url) for url in self.urls or [self.url]]

    @property
    def host(self) -> str:
        return self.brokers[0].host

    @property
    def tls(self) -> bool:
        """Any broker is mqtts:// (the TLS settings apply to those)."""
        return any(broker.tls for broker in self.brokers)

    @property
    def port(self) -> int:
        return self.brokers[0].port

    @model_validator(mode="after")
    def _tls_pieces(self) -> MqttConfig:
        if self.urls is not None and "url" in self.model_fields_set:
            raise ValueError("give url (one broker) or urls (several), not both")
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

    device: Name
    interval_s: Annotated[float, Field(ge=0.1, le=86400)] = 5.0
    points: Annotated[list[Name], Field(min_length=1)] | None = None
    """Point names of the device; None (left out) reads all of them."""


class AgentConfig(Strict):
    gateway: GatewayConfig = GatewayConfig()
    buffer: BufferConfig = BufferConfig()
    mqtt: MqttConfig = MqttConfig()
    bacnet: BacnetConfig = BacnetConfig()
    control: ControlConfig = ControlConfig()
    commands: CommandsConfig = CommandsConfig()
    openadr: OpenAdrConfig | None = None  # demand response from a utility's VTN
    remote: RemoteConfig = RemoteConfig()  # the trial of a configuration pushed over MQTT
    log: LogConfig = LogConfig()
    devices: list[Device] = Field(default_factory=list)
    pollers: list[PollerConfig] = Field(default_factory=list)
    """The file's [[pollers]], then one for each device with a poll_interval_s, and one (every 5 s) for each
    device that has neither (added at validation)."""
    _configured_pollers: int | None = PrivateAttr(default=None)

    @classmethod
    def _profiles(cls, data: dict[str, Any]) -> dict[str, Any]:
        """[[device_groups]] become devices (groups.py), and devices that name a profile get its settings
        and points (profiles.py), before validation."""
        data = _with_groups_expanded(data)
        if not isinstance(data.get("devices"), list):
            return data
        devices = [
            expand(entry, f"devices[{i}]") if isinstance(entry, dict) else entry
            for i, entry in enumerate(data["devices"])
        ]
        return {**data, "devices": devices}

    @model_validator(mode="after")
    def _cross_references(self) -> AgentConfig:
        devices = [(("devices", i), device) for i, device in enumerate(self.devices)]
        by_name = {device.name: device for device in self.devices}
        pollers = [(("pollers", i), p.device, p.points) for i, p in enumerate(self.pollers)]
        findings = device_findings(devices)
        findings += poller_findings(pollers, by_name, by_name)
        findings += control_findings(self.control, by_name, by_name)
        if findings:
            raise ValueError(
                "\n".join(
                    f"{dotted(path)}: {message}" + (f" (did you mean {close!r}?)" if close else "")
                    for path, message, close in findings
                )
            )
        return self

    @model_validator(mode="wrap")
    @classmethod
    def _default_pollers(cls, data: Any, handler: ModelWrapValidatorHandler[AgentConfig]) -> AgentConfig:
        """Every device is polled: at its poll_interval_s, and every 5 s when no [[pollers]] entry names it
        either (a device without a poller used to be silently never polled)."""
        if not isinstance(data, dict):
            return handler(data)
        data = cls._profiles(data)
        configured = data.get("pollers", [])
        if isinstance(configured, list) and isinstance(data.get("devices"), list):
            data = {**data, "pollers": [*configured, *_default_pollers(data["devices"], configured)]}
        config = handler(data)
        config._configured_pollers = len(configured) if isinstance(configured, list) else 0
        return config

    def polling_warnings(self) -> list[Finding]:
        """Devices left to the 5 s default, and points no poller reads (never read)."""
        by_name = {d.name: d for d in self.devices}
        polled: dict[str, set[str]] = {}
        for poller in self.pollers[: self._configured_pollers]:
            device = by_name[poller.device]
            polled.setdefault(poller.device, set()).update(poller.points or [p.name for p in device.points])
        return polling_findings([(("devices", i), d) for i, d in enumerate(self.devices)], polled)


def _field(entry: object, name: str) -> object:
    """A field of a device or poller given as a table or as a model."""
    return entry.get(name) if isinstance(entry, dict) else getattr(entry, name, None)


def _nfc(name: object) -> str:
    """A name as Name keeps it."""
    return unicodedata.normalize("NFC", str(name))


def _default_pollers(devices: list[object], configured: list[object]) -> list[dict[str, object]]:
    """A poller of all points for each device with a poll_interval_s, and for each device that no configured
    poller names (every 5 s). Pollers already there are not added twice (a configuration read back)."""
    named = {_nfc(_field(p, "device")) for p in configured}
    present = {
        (_nfc(_field(p, "device")), _field(p, "interval_s")) for p in configured if not _field(p, "points")
    }
    added: list[dict[str, object]] = []
    for device in devices:
        name, interval = _field(device, "name"), _field(device, "poll_interval_s")
        if not isinstance(name, str):
            continue
        name = _nfc(name)
        if interval is None and name in named:
            continue
        interval = DEFAULT_INTERVAL_S if interval is None else interval
        if (name, interval) not in present:
            added.append({"device": name, "interval_s": interval})
    return added


def _with_groups_expanded(data: dict[str, Any]) -> dict[str, Any]:
    if "device_groups" not in data:
        return data
    if not isinstance(data["device_groups"], list):
        raise ValueError("device_groups: expected a list of tables ([[device_groups]])")  # noqa: TRY004 - pydantic reports only ValueErrors
    expanded, problems = expand_all(data)
    if problems:
        lines = [
            f"{dotted(('device_groups', g, *([p.key] if p.key else [])))}: {p.message}" for g, p in problems
        ]
        raise ValueError("\n".join(lines))
    data = {key: value for key, value in data.items() if key != "device_groups"}
    if expanded:
        devices = data.get("devices", [])
        data["devices"] = [
            *(devices if isinstance(devices, list) else [devices]),
            *(e.entry for e in expanded),
        ]
    return data


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


def problems_of(error: ValidationError) -> list[str]:
    """A validation error as 'path: message' lines."""
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


def builtin_config_text() -> str:
    """The embedded default: the agent pointed at `edge-sim run` on its default ports."""
    return resources.files("edge_agent.config").joinpath("default.toml").read_text(encoding="utf-8")
