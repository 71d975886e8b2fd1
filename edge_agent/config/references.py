"""What no single entry shows: names used twice, one device configured twice, pollers and control naming
devices and points that do not exist, devices or points no poller reads.

Each finding is `(path, message, suggestion)`: the path into the file's data (`("pollers", 2, "device")`),
and a close name when a name was misspelled. AgentConfig raises them; `config check` (check.py) words them
with device names and file lines.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Iterable, Mapping, Sequence

from edge_agent.config.control import ControlConfig
from edge_agent.config.devices import (
    BacnetDevice,
    BacnetPoint,
    ModbusDevice,
    ModbusRtuDevice,
    ModbusTcpDevice,
)

Path = tuple[str | int, ...]
Finding = tuple[Path, str, str | None]
AnyDevice = ModbusDevice | BacnetDevice
DEFAULT_INTERVAL_S = 5.0
"""How often a device that neither a poller nor its poll_interval_s times is polled."""


def suggest(word: object, choices: Iterable[str]) -> str | None:
    """The choice `word` most likely misspells, if any is close."""
    if not isinstance(word, str):
        return None
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return close[0] if close else None


def parse_path(text: str) -> Path:
    """'control.zones[0].temperature' -> ('control', 'zones', 0, 'temperature')."""
    return tuple(int(i) if i else key for key, i in re.findall(r"([^.\[\]]+)|\[(\d+)\]", text))


def dotted(path: Path) -> str:
    """('devices', 3, 'port') -> 'devices[3].port'."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def device_findings(devices: Sequence[tuple[Path, AnyDevice]]) -> list[Finding]:
    """Names used twice, one device configured twice, one RS-485 bus at two line settings, one Modbus TCP
    endpoint with two connection settings."""
    findings: list[Finding] = []
    names: set[str] = set()
    lines: dict[str, tuple[str, tuple[int, str, int]]] = {}
    endpoints: dict[str, tuple[str, tuple[int, int]]] = {}
    addresses: dict[str, str] = {}
    for path, device in devices:
        if device.name in names:
            findings.append(((*path, "name"), f"device {device.name!r} is defined twice", None))
        names.add(device.name)
        if isinstance(device, ModbusRtuDevice):
            first = lines.setdefault(device.serial_port, (device.name, device.line))
            if first[1] != device.line:
                message = (
                    f"{device.serial_port} is set to {device.line} here but {first[1]} for device "
                    f"{first[0]!r}: devices on one bus share its line settings"
                )
                findings.append(((*path, "baudrate"), message, None))
        if isinstance(device, ModbusTcpDevice):  # the devices at one host:port share its connections
            first_tcp = endpoints.setdefault(device.link, (device.name, device.sharing))
            for field, mine, theirs in zip(
                ("max_connections", "in_flight"), device.sharing, first_tcp[1], strict=True
            ):
                if mine != theirs:
                    message = (
                        f"{mine} here but {theirs} for device {first_tcp[0]!r}: the devices at "
                        f"{device.host}:{device.port} share its connections, so they set {field} alike"
                    )
                    findings.append(((*path, field), message, None))
        seen: set[str] = set()
        for j, point in enumerate(device.points):
            if point.name in seen:
                findings.append(
                    ((*path, "points", j, "name"), f"point {point.name!r} is defined twice", None)
                )
            seen.add(point.name)
        # Two entries for one device poll it twice and publish its readings under two names: a copy-paste
        # mistake.
        if isinstance(device, BacnetDevice):
            key, what, field = (
                f"bacnet:{device.instance}",
                f"BACnet device instance {device.instance}",
                "instance",
            )
        else:
            key, what, field = f"{device.link}:{device.unit_id}", device.address, "unit_id"
        if key in addresses and addresses[key] != device.name:
            findings.append(((*path, field), f"{what} is already device {addresses[key]!r}", None))
        addresses.setdefault(key, device.name)
    return findings


def poller_findings(
    pollers: Sequence[tuple[Path, str, Sequence[str] | None]],
    devices: Mapping[str, AnyDevice],
    names: Collection[str],
) -> list[Finding]:
    """Pollers (path, device, points) naming a device or point that does not exist. `names` holds every
    device name in the file, `devices` those whose entries are valid (the others are reported already)."""
    findings: list[Finding] = []
    for path, device_name, points in pollers:
        if device_name not in names:
            message = f"no device named {device_name!r}"
            findings.append(((*path, "device"), message, suggest(device_name, names)))
            continue
        target = devices.get(device_name)
        if target is None:
            continue
        known = [p.name for p in target.points]
        for j, point in enumerate(points or []):
            if point not in known:
                message = f"device {device_name!r} has no point {point!r}"
                findings.append(((*path, "points", j), message, suggest(point, known)))
    return findings


def control_findings(
    control: ControlConfig, devices: Mapping[str, AnyDevice], names: Collection[str]
) -> list[Finding]:
    """Zones named twice, references to missing devices or points, written points without a write_range,
    and a control that cannot act in its mode."""
    findings: list[Finding] = []
    zones: set[str] = set()
    for i, zone in enumerate(control.zones):
        if zone.name in zones:
            findings.append((("control", "zones", i, "name"), f"zone {zone.name!r} is defined twice", None))
        zones.add(zone.name)
    for where, ref, written in control.references():
        path = parse_path(where)
        device_name, point_name = ref.split("/")
        device = devices.get(device_name)
        if device_name not in names:
            findings.append(
                (path, f"no device named {device_name!r}", _ref(suggest(device_name, names), point_name))
            )
            continue
        if device is None:
            continue
        point = next((p for p in device.points if p.name == point_name), None)
        if point is None:
            close = suggest(point_name, [p.name for p in device.points])
            findings.append(
                (path, f"device {device_name!r} has no point {point_name!r}", _ref(device_name, close))
            )
        elif written and point.write_range is None:
            findings.append((path, f"{ref} has no write_range, so control may not write it", None))
    for problem in control.cannot_act():
        where, _, message = problem.partition(": ")
        findings.append((parse_path(where), message, None))
    return findings


def _ref(device: str | None, point: str | None) -> str | None:
    return f"{device}/{point}" if device and point else None


def polling_findings(
    devices: Sequence[tuple[Path, AnyDevice]], polled: Mapping[str, Collection[str]]
) -> list[Finding]:
    """Warnings: a device left to the default poller, points of a device that no poller reads. `polled`
    maps each device its [[pollers]] entries name to the points they read."""
    findings: list[Finding] = []
    for path, device in devices:
        if device.poll_interval_s is not None:
            continue
        read = polled.get(device.name)
        if read is None:
            message = (
                f"no [[pollers]] entry names it and it has no poll_interval_s: all its points are polled "
                f"every {DEFAULT_INTERVAL_S:g} s"
            )
            findings.append((path, message, None))
            continue
        cov = {p.name for p in device.points if isinstance(p, BacnetPoint) and p.cov}
        unread = [p.name for p in device.points if p.name not in read and p.name not in cov]
        if unread:
            shown = ", ".join(unread[:5]) + (f" and {len(unread) - 5} more" if len(unread) > 5 else "")
            message = (
                f"{len(unread)} of its points are in no poller and never read: {shown} "
                "(poll_interval_s reads them all; only_points leaves a profile's out)"
            )
            findings.append((path, message, None))
    return findings
