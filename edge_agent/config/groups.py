"""Device groups: one `[[device_groups]]` entry stands for many alike Modbus devices.

A group gives a name pattern, the units (`"1-50"`, `"1-8,12"`) and one `host` or several `hosts`; every other
key is a device key (protocol, port, profile, only_points, poll_interval_s, ...) given to each device. It
expands, before validation, into one device entry per host and unit, named by the pattern's `{unit}`, `{host}`
and `{host_number}` (the host's 1-based place in `hosts`), e.g. "gw{host_number}-meter-{unit:02}".
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from edge_agent.config.base import valid_name

GROUP_KEYS = ("name", "units", "host", "hosts")
"""What a group has besides device keys."""
PATTERN_FIELDS = ("unit", "host", "host_number")
MAX_HOSTS = 256
MAX_DEVICES = 4096
"""The most devices a file's groups may stand for: a few lines must not make a resource bomb."""
T = TypeVar("T")


@dataclass(frozen=True)
class GroupProblem:
    """What is wrong with a group, at `key` of the group's table."""

    key: str
    message: str


@dataclass(frozen=True)
class Expanded:
    """One device entry a group made."""

    entry: dict[str, Any]
    group: int


_UNITS_SHAPE = 'expected units such as "1-50" or "1-8,12"'


def parse_units(value: object) -> list[int]:
    """'1-50', '1-8,12', 7 or [1, 2, 3] -> the unit ids, in order, each once; ValueError says why not."""
    if isinstance(value, int) and not isinstance(value, bool):
        parts: list[object] = [value]
    elif isinstance(value, list):
        parts = list(value)
    elif isinstance(value, str):
        parts = [part.strip() for part in value.split(",")]
    else:
        parts = [value]
    units: list[int] = []
    for part in parts:
        if isinstance(part, int) and not isinstance(part, bool):
            low = high = part
        elif isinstance(part, str) and (match := re.fullmatch(r"(\d{1,3})(?:\s*-\s*(\d{1,3}))?", part)):
            low = int(match[1])
            high = int(match[2]) if match[2] else low
        else:
            raise ValueError(f"{_UNITS_SHAPE}, not {part!r}")
        if not 0 <= low <= high <= 247:
            raise ValueError(f"{part!r}: unit ids are 0-247, the lower first")
        units += [unit for unit in range(low, high + 1) if unit not in units]
    if not units:
        raise ValueError(f"{_UNITS_SHAPE}: no units")
    return units


def _pattern_fields(pattern: object) -> set[str]:
    """The fields a name pattern uses; ValueError for anything else str.format would try to fill."""
    if not isinstance(pattern, str):
        raise ValueError('expected a name pattern such as "meter-{unit}"')  # noqa: TRY004 - reported as a problem
    try:
        parsed = list(string.Formatter().parse(pattern))
    except ValueError as exc:
        raise ValueError(
            f"{pattern!r} is not a name pattern ({exc}); write braces as {{{{ and }}}}"
        ) from None
    fields = {name for _text, name, _spec, _conversion in parsed if name is not None}
    if fields - set(PATTERN_FIELDS):
        raise ValueError(f"{pattern!r}: a pattern may use {{unit}}, {{host}} and {{host_number}} only")
    for _text, name, spec, conversion in parsed:  # a width, zero-padded or not: {unit:02}, {unit:3}
        if name is not None and (conversion or not re.fullmatch(r"0?[1-9]?d?", spec or "")):
            raise ValueError(
                f"{pattern!r}: {{{name}:{spec}}}: a field may only be zero-padded, e.g. {{{name}:02}}"
            )
    return fields


def _hosts(group: dict[str, Any]) -> list[str | None]:
    if "host" in group and "hosts" in group:
        raise ValueError("give host or hosts, not both")
    if "hosts" not in group:
        return [group.get("host")]  # None for RS-485: the serial_port is the address
    hosts = group["hosts"]
    if not isinstance(hosts, list) or not hosts or not all(isinstance(h, str) for h in hosts):
        raise ValueError("expected a list of host names or addresses")
    if len(hosts) > MAX_HOSTS:
        raise ValueError(f"{len(hosts)} hosts; a group has at most {MAX_HOSTS}")
    if len(set(hosts)) != len(hosts):
        raise ValueError("a host is listed twice")
    return list(hosts)


def _parts(group: dict[str, Any]) -> tuple[set[str], list[int], list[str | None], list[GroupProblem]]:
    """The pattern's fields, the units and the hosts of a group, and what is wrong with them."""
    problems: list[GroupProblem] = []

    def attempt(key: str, read: Callable[[], T], empty: T) -> T:
        try:
            return read()
        except ValueError as exc:
            problems.append(GroupProblem(key, str(exc)))
            return empty

    no_units: list[int] = []
    no_hosts: list[str | None] = []
    fields = attempt("name", lambda: _pattern_fields(group.get("name")), set[str]())
    units = attempt("units", lambda: parse_units(group["units"]) if "units" in group else no_units, no_units)
    hosts = attempt("hosts" if "hosts" in group else "host", lambda: _hosts(group), no_hosts)
    if "units" not in group:
        problems.append(GroupProblem("units", 'missing: the unit ids, e.g. "1-50"'))
    if "unit_id" in group:
        problems.append(GroupProblem("unit_id", "a group gives each device its unit_id from units"))
    if group.get("protocol") == "bacnet-ip":
        problems.append(
            GroupProblem("protocol", "groups stand for Modbus units; list BACnet devices one by one")
        )
    if not problems and len(units) > 1 and "unit" not in fields:
        problems.append(GroupProblem("name", "it gives every unit the same name: put {unit} in it"))
    if not problems and len(hosts) > 1 and not fields & {"host", "host_number"}:
        problems.append(GroupProblem("name", "it gives every host the same name: put {host_number} in it"))
    return fields, units, hosts, problems


def expand_group(group: dict[str, Any], index: int) -> tuple[list[Expanded], list[GroupProblem]]:
    """The devices one group stands for, or what keeps it from standing for any."""
    _fields, units, hosts, problems = _parts(group)
    if problems:
        return [], problems
    if len(hosts) * len(units) > MAX_DEVICES:
        message = f"{len(hosts)} hosts x {len(units)} units: more than {MAX_DEVICES} devices for one gateway"
        return [], [GroupProblem("units", message)]
    pattern = str(group["name"])
    base = {key: value for key, value in group.items() if key not in GROUP_KEYS}
    expanded: list[Expanded] = []
    for number, host in enumerate(hosts, start=1):
        for unit in units:
            try:
                name = valid_name(pattern.format(unit=unit, host=host, host_number=number))
            except (ValueError, TypeError) as exc:  # a spec that does not fit ({host:03}), a space in it
                return [], [GroupProblem("name", f"{pattern!r}: {exc}")]
            entry = {"name": name, **base, "unit_id": unit}
            if host is not None:
                entry["host"] = host
            expanded.append(Expanded(entry, index))
    return expanded, []


def group_tables(data: dict[str, Any]) -> list[object]:
    """The file's [[device_groups]] (a list; anything else is reported by the caller)."""
    groups = data.get("device_groups", [])
    return groups if isinstance(groups, list) else []


def expand_all(data: dict[str, Any]) -> tuple[list[Expanded], list[tuple[int, GroupProblem]]]:
    """Every group's devices, and every group's problems with the group's index."""
    devices: list[Expanded] = []
    problems: list[tuple[int, GroupProblem]] = []
    for index, group in enumerate(group_tables(data)):
        if not isinstance(group, dict):
            problems.append((index, GroupProblem("", "expected a table")))
            continue
        made, wrong = expand_group(group, index)
        if len(devices) + len(made) > MAX_DEVICES:
            message = f"the groups stand for more than {MAX_DEVICES} devices, too many for one gateway"
            problems.append((index, GroupProblem("units", message)))
            continue
        devices += made
        problems += [(index, problem) for problem in wrong]
    return devices, problems
