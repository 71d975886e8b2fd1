"""Every mistake of a configuration file in one pass, each worded for the person who wrote it.

Validating the whole file at once stops at the first stage that fails (a misspelled protocol hides the rest of
its device, a bad device hides every reference to it). So each section, each device and each poller is
validated on its own, then the references between the valid ones are checked. Every problem names the
device or poller by name (`device 'main-meter', unit_id`), carries its line in the file, and suggests the
closest known name for a misspelled key, protocol, profile, device or point.
"""

from __future__ import annotations

import re
import types
from dataclasses import asdict, dataclass, field
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from edge_agent.config.agent import AgentConfig, PollerConfig
from edge_agent.config.control import ControlConfig
from edge_agent.config.devices import BacnetDevice, ModbusRtuDevice, ModbusRtuTcpDevice, ModbusTcpDevice
from edge_agent.config.groups import expand_all, group_tables
from edge_agent.config.lines import key_lines, line_of
from edge_agent.config.profiles import merge_profile
from edge_agent.config.references import (
    AnyDevice,
    Finding,
    Path,
    control_findings,
    device_findings,
    dotted,
    parse_path,
    poller_findings,
    suggest,
)

DEVICE_CLASSES: dict[str, type[AnyDevice]] = {
    get_args(cls.model_fields["protocol"].annotation)[0]: cls
    for cls in (ModbusTcpDevice, ModbusRtuTcpDevice, ModbusRtuDevice, BacnetDevice)
}
PROFILE_KEYS = ("profile", "only_points")
SECTIONS = ("gateway", "buffer", "mqtt", "bacnet", "control", "commands", "openadr", "remote", "log")
JSON_FORMAT_DEPRECATED = (
    '"json" is deprecated: this release is the last to offer it. The default, "compact", carries the same '
    "readings in about an eighth of the bytes (docs/mqtt.md, The compact format): remove the line once "
    "central reads it"
)


@dataclass(frozen=True)
class Problem:
    """One mistake (or, as a warning, one thing that works but is likely not meant)."""

    where: str
    """'device 'main-meter', unit_id', 'poller for 'attic', device', 'mqtt.url'; empty for the whole file."""
    message: str
    line: int | None = None
    suggestion: str | None = None
    device: str | None = None

    def text(self) -> str:
        hint = f"; did you mean {self.suggestion!r}?" if self.suggestion else ""
        at = f" (line {self.line})" if self.line else ""
        return f"{self.where}: {self.message}{hint}{at}" if self.where else f"{self.message}{hint}{at}"

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass
class _Entry:
    """One device entry: from [[devices]] or made by a group."""

    raw: object
    origin: Path  # ('devices', i) or ('device_groups', g)
    pattern: str | None = None  # the group's name pattern
    merged: dict[str, Any] | None = None  # with its profile's points
    device: AnyDevice | None = None  # when valid

    @property
    def profiled(self) -> bool:
        return isinstance(self.raw, dict) and "profile" in self.raw

    @property
    def name(self) -> str | None:
        name = self.raw.get("name") if isinstance(self.raw, dict) else None
        return name if isinstance(name, str) else None

    def point_name(self, index: int) -> str | None:
        source = self.merged if self.merged is not None else self.raw
        points = source.get("points") if isinstance(source, dict) else None
        point = points[index] if isinstance(points, list) and index < len(points) else None
        name = point.get("name") if isinstance(point, dict) else None
        return name if isinstance(name, str) else None

    def raw_point_index(self, name: str) -> int | None:
        points = self.raw.get("points") if isinstance(self.raw, dict) else None
        if not isinstance(points, list):
            return None
        return next((i for i, p in enumerate(points) if isinstance(p, dict) and p.get("name") == name), None)


@dataclass
class _Diagnosis:
    data: dict[str, Any]
    lines: dict[Path, int]
    entries: list[_Entry] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    seen: set[Problem] = field(default_factory=set)

    def add(self, problem: Problem) -> None:
        if problem not in self.seen:  # a group's devices share their mistakes: reported once
            self.seen.add(problem)
            self.problems.append(problem)

    # --- where a path is, in words and lines ----------------------------------------------------

    def at(
        self, path: Path, message: str, suggestion: str | None = None, *, by_device: bool = False
    ) -> Problem:
        """A problem at `path` of the data (devices by their index in self.entries). A group's devices are
        named by their group, unless `by_device` (a problem of that one device)."""
        if (
            len(path) >= 2
            and path[0] == "devices"
            and isinstance(path[1], int)
            and path[1] < len(self.entries)
        ):
            return self._device(self.entries[path[1]], path[2:], message, suggestion, by_device)
        line = line_of(self.lines, path)
        if len(path) >= 2 and path[0] == "pollers" and isinstance(path[1], int):
            raw = self.data["pollers"][path[1]]
            device = raw.get("device") if isinstance(raw, dict) else None
            head = f"poller for {device!r}" if isinstance(device, str) else dotted(path[:2])
            return Problem(_join(head, dotted(path[2:])), message, line, suggestion)
        if len(path) >= 2 and path[0] == "device_groups" and isinstance(path[1], int):
            group = group_tables(self.data)[path[1]]
            pattern = group.get("name") if isinstance(group, dict) else None
            head = f"device group {pattern!r}" if isinstance(pattern, str) else dotted(path[:2])
            return Problem(_join(head, dotted(path[2:])), message, line, suggestion)
        return Problem(dotted(path), message, line, suggestion)

    def _device(
        self, entry: _Entry, rest: Path, message: str, suggestion: str | None, by_device: bool
    ) -> Problem:
        words, raw_rest = dotted(rest), rest
        if len(rest) >= 2 and rest[0] == "points" and isinstance(rest[1], int):
            point = entry.point_name(rest[1])
            if point is not None:
                words = _join(f"point {point!r}", dotted(rest[2:]))
                if entry.profiled:  # its line: the override naming it, or the profile's
                    index = entry.raw_point_index(point)
                    raw_rest = ("profile",) if index is None else ("points", index, *rest[2:])
        name = entry.name
        if entry.pattern is not None and not by_device:
            head = f"device group {entry.pattern!r}"
        else:
            head = f"device {name!r}" if name else dotted(entry.origin)
            if entry.pattern is not None:
                head += f" (device group {entry.pattern!r})"
        line = line_of(self.lines, entry.origin + raw_rest)
        device = name if entry.pattern is None or by_device else None
        return Problem(_join(head, words), message, line, suggestion, device)

    # --- the passes -------------------------------------------------------------------------------

    def top_level(self) -> None:
        known = [*AgentConfig.model_fields, "device_groups"]
        for key in self.data:
            if key not in known:
                self.add(self.at((key,), "unknown key", suggest(key, known)))
        for section in SECTIONS:
            if section in self.data:
                model = _model_in(AgentConfig.model_fields[section].annotation)
                assert model is not None
                self.validate(model, self.data[section], (section,))

    def validate(
        self,
        model: type[BaseModel],
        value: object,
        path: Path,
        extra_keys: tuple[str, ...] = (),
        *,
        whole: bool = True,
    ) -> BaseModel | None:
        """`value` as `model`, or None with its problems added. `extra_keys`: more keys the table may have;
        not `whole`: its points are left out (a profile that could not be merged, reported instead)."""
        try:
            return model.model_validate(value)
        except ValidationError as error:
            for where, message, close in _pydantic_problems(error, model, extra_keys):
                if whole or where != ("points",):
                    self.add(self.at((*path, *where), message, close))
            return None

    def collect_devices(self) -> None:
        devices = self.data.get("devices", [])
        if not isinstance(devices, list):
            self.add(self.at(("devices",), "expected a list of tables ([[devices]])"))
            devices = []
        self.entries = [_Entry(raw, ("devices", i)) for i, raw in enumerate(devices)]
        if "device_groups" in self.data and not isinstance(self.data["device_groups"], list):
            self.add(self.at(("device_groups",), "expected a list of tables ([[device_groups]])"))
        made, problems = expand_all(self.data)
        for index, problem in problems:
            key = parse_path(problem.key) if problem.key else ()
            self.add(self.at(("device_groups", index, *key), problem.message))
        for expanded in made:
            group = group_tables(self.data)[expanded.group]
            assert isinstance(group, dict)
            self.entries.append(_Entry(expanded.entry, ("device_groups", expanded.group), group.get("name")))
        for index, entry in enumerate(self.entries):
            self.check_device(index, entry)

    def check_device(self, index: int, entry: _Entry) -> None:
        """One device entry's problems. A misspelled protocol or profile does not hide the others: the
        entry is still checked, as the protocol it most likely means and without the profile's points."""
        path: Path = ("devices", index)
        if not isinstance(entry.raw, dict):
            self.add(self.at(path, "expected a table ([[devices]])"))
            return
        raw, usable = entry.raw, True
        protocol = raw.get("protocol")
        if protocol not in DEVICE_CLASSES:
            choices = ", ".join(DEVICE_CLASSES)
            close = suggest(protocol, DEVICE_CLASSES)
            message = (
                f"missing: one of {choices}" if protocol is None else f"{protocol!r} is not one of {choices}"
            )
            self.add(self.at((*path, "protocol"), message, close))
            if close is None:
                return
            raw, protocol, usable = {**raw, "protocol": close}, close, False
        try:
            entry.merged = merge_profile(raw)
        except ValueError as exc:
            key, message, close = exc.args
            self.add(self.at((*path, *parse_path(key)), message, close))
            entry.merged, usable = {k: v for k, v in raw.items() if k not in (*PROFILE_KEYS, "points")}, False
        valid = self.validate(DEVICE_CLASSES[protocol], entry.merged, path, PROFILE_KEYS, whole=usable)
        if usable and isinstance(
            valid, ModbusTcpDevice | ModbusRtuTcpDevice | ModbusRtuDevice | BacnetDevice
        ):
            entry.device = valid

    def check_pollers(self) -> list[tuple[Path, str, list[str] | None]]:
        pollers = self.data.get("pollers", [])
        if not isinstance(pollers, list):
            self.add(self.at(("pollers",), "expected a list of tables ([[pollers]])"))
            return []
        valid: list[tuple[Path, str, list[str] | None]] = []
        for i, raw in enumerate(pollers):
            poller = self.validate(PollerConfig, raw, ("pollers", i))
            if isinstance(poller, PollerConfig):
                valid.append((("pollers", i), poller.device, poller.points))
        return valid

    def cross_references(self, pollers: list[tuple[Path, str, list[str] | None]]) -> None:
        names = {entry.name for entry in self.entries if entry.name is not None}
        devices = [(("devices", i), e.device) for i, e in enumerate(self.entries) if e.device is not None]
        by_name = {device.name: device for _, device in devices}
        findings: list[Finding] = device_findings(devices)
        findings += poller_findings(pollers, by_name, names)
        control = _valid_part(ControlConfig, self.data.get("control", {}))
        if control is not None:
            findings += control_findings(control, by_name, names)
        for path, message, close in findings:
            self.add(self.at(path, message, close, by_device=True))


def _valid_part(model: type[ControlConfig], value: object) -> ControlConfig | None:
    """The section as valid, or without the keys that are not (reported with it), so that its references
    are checked all the same; None when even that fails."""
    try:
        return model.model_validate(value)
    except ValidationError as error:
        wrong = {item["loc"][0] for item in error.errors() if item["loc"]}
        if not isinstance(value, dict) or not wrong:
            return None
    try:
        return model.model_validate({k: v for k, v in value.items() if k not in wrong})
    except ValidationError:
        return None


def _join(head: str, rest: str) -> str:
    return f"{head}, {rest}" if head and rest else head or rest


def _model_in(annotation: object) -> type[BaseModel] | None:
    """The model a field holds (through Optional, list and Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) in (Union, types.UnionType, list, tuple) or get_args(annotation):
        for arg in get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None


def _keys_at(model: type[BaseModel], path: Path) -> list[str]:
    """The keys the table at `path` (inside `model`) may have."""
    current: type[BaseModel] | None = model
    for part in path:
        if isinstance(part, int):
            continue
        info = current.model_fields.get(part) if current is not None else None
        current = _model_in(info.annotation) if info is not None else None
    return list(current.model_fields) if current is not None else []


def _clean_location(loc: tuple[int | str, ...]) -> Path:
    """pydantic's location without its type tags ('list[int]', 'function-after[...]', 'literal['auto']')."""
    return tuple(part for part in loc if isinstance(part, int) or not re.search(r"[\[\](),']", part))


def _pydantic_problems(
    error: ValidationError, model: type[BaseModel], extra_keys: tuple[str, ...]
) -> list[Finding]:
    found: list[Finding] = []
    seen: set[Path] = set()
    for item in error.errors(include_url=False):
        path = _clean_location(item["loc"])
        if path in seen:  # one field of several types fails once per type: its first reason is enough
            continue
        seen.add(path)
        kind, close = item["type"], None
        if kind == "extra_forbidden":
            message = "unknown key"
            close = suggest(path[-1], [*_keys_at(model, path[:-1]), *(extra_keys if len(path) == 1 else ())])
        elif kind == "missing":
            message = "missing"
        elif kind in ("model_type", "dict_type", "model_attributes_type"):
            message = "expected a table"
        elif kind == "value_error":
            message = str(item.get("ctx", {}).get("error", item["msg"]))
        else:
            message = item["msg"]
            if kind in ("literal_error", "enum"):
                close = suggest(
                    str(item["input"]), re.findall(r"'([^']*)'", str(item.get("ctx", {}).get("expected")))
                )
        found.append((path, message, close))
    return found


class Diagnosis:
    """A file's data checked in parts: its problems, and (once it is valid) its warnings."""

    def __init__(self, data: dict[str, Any], text: str) -> None:
        self._state = _Diagnosis(data, key_lines(text))
        self._state.top_level()
        self._state.collect_devices()
        self._state.cross_references(self._state.check_pollers())

    @property
    def problems(self) -> list[Problem]:
        """Every problem, in the order of the file."""
        found = self._state.problems
        order = {id(p): i for i, p in enumerate(found)}
        return sorted(found, key=lambda p: (p.line is None, p.line or 0, order[id(p)]))

    def warnings(self, config: AgentConfig) -> list[Problem]:
        """What the valid file likely does not mean: devices left to the default poller, points never read;
        and what it should change soon: the deprecated json uplink format."""
        found: list[Problem] = []
        if config.mqtt.format == "json":  # only a file that asks for it: the default is compact
            found.append(self._state.at(("mqtt", "format"), JSON_FORMAT_DEPRECATED))
        for path, message, close in config.polling_warnings():
            problem = self._state.at(path, message, close)
            if problem not in found:
                found.append(problem)
        return found
