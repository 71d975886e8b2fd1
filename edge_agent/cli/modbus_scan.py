"""Finding Modbus units on a wire and telling which known meter each is.

A scan asks each unit id in turn for the registers that characterise each modbus profile in drivers/ (its
voltages, frequency and power factor), through the same client the agent polls with (protocols/modbus.py),
and judges the answers against plausibility ranges (decode_table.py): a unit whose registers read 220 V,
60 Hz and 0.95 where a profile says they are is that model. A unit that does not answer the first request
within the timeout (or for which a gateway answers "no such unit") is silent; nothing more is asked of it,
so a scan of 247 units costs about one timeout per silent unit.

A serial sweep (`sweep`) tries line settings one after another, the fastest first, until a unit answers,
and scans the remaining units at that setting: meters ship at 9600 8N1, 19200 8E1 (Schneider), 38400 ...

Also here: reading raw registers for `decode`, and a configuration snippet for what a scan found.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import math
import os
import re
import termios
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from edge_agent.cli.agent_bus import agent_link, holder
from edge_agent.cli.decode_table import FREQUENCY, LINE_VOLTAGE, PHASE_VOLTAGE, POWER_FACTOR, Quantity
from edge_agent.config import (
    ModbusDevice,
    ModbusPoint,
    ModbusRtuDevice,
    ModbusRtuTcpDevice,
    ModbusTcpDevice,
    profiles,
)
from edge_agent.errors import DeviceError, DeviceRejected, DeviceUnreachable
from edge_agent.protocols.modbus.client import ModbusClient
from edge_agent.protocols.modbus.errors import EXCEPTION_NAMES
from edge_agent.protocols.modbus.link import RESYNC_S, Link, link_for
from edge_agent.protocols.modbus.wire import Wire

GATEWAY_NO_UNIT = ("modbus exception 10", "modbus exception 11")  # a gateway's "no such unit"
SWEEP_BAUDRATES = (38400, 19200, 9600)  # fastest first: a silent unit costs the same timeout at any speed
SWEEP_PARITIES = ("E", "N", "O")  # even first: the Modbus serial line's default (8E1)
SETTING_REFUSED = "setting refused"  # DeviceUnreachable's code: the port would not take a line setting
Kind = Literal["tcp", "rtu-tcp", "rtu"]
Verdict = Literal["plausible", "implausible", "zero", "unavailable", "refused"]


@dataclass(frozen=True, slots=True)
class Transport:
    """Where the units are: Modbus TCP, RTU frames over TCP (a serial gateway), or a serial port."""

    kind: Kind
    host: str = ""
    port: int = 502
    serial_port: str = ""
    baudrate: int = 9600
    parity: str = "N"
    stopbits: int = 1

    def line(self) -> str:
        """A serial line setting as meters' manuals write it: '19200 8E1'."""
        return f"{self.baudrate} 8{self.parity}{self.stopbits}"

    def describe(self) -> str:
        if self.kind == "rtu":
            return f"{self.serial_port} ({self.line()})"
        return f"{self.host}:{self.port}" + (" (RTU over TCP)" if self.kind == "rtu-tcp" else "")

    def fields(self) -> dict[str, Any]:
        """The address fields of a configuration's device entry."""
        if self.kind == "rtu":
            return {
                "protocol": "modbus-rtu",
                "serial_port": self.serial_port,
                "baudrate": self.baudrate,
                "parity": self.parity,
                "stopbits": self.stopbits,
            }
        protocol = "modbus-tcp" if self.kind == "tcp" else "modbus-rtu-tcp"
        return {"protocol": protocol, "host": self.host, "port": self.port}

    def device(self, entry: dict[str, Any]) -> ModbusDevice:
        """A device entry on this transport, validated as the configuration validates it."""
        data = {**entry, **self.fields()}
        if self.kind == "rtu":
            return ModbusRtuDevice.model_validate(data)
        if self.kind == "rtu-tcp":
            return ModbusRtuTcpDevice.model_validate(data)
        return ModbusTcpDevice.model_validate(data)


async def _connected(_wire: Wire) -> None:
    """A turn on the link that only connects it."""


@contextlib.asynccontextmanager
async def open_link(transport: Transport, timeout_s: float, connect_timeout_s: float) -> AsyncIterator[Link]:
    """One connection for the whole scan (every unit takes turns on it); DeviceUnreachable naming the
    host or serial port when it cannot be opened within `connect_timeout_s`. A serial bus the running
    agent owns is reached through the agent (its line settings, its turns)."""
    if transport.kind == "rtu":
        _check_serial_port(transport)
        through_agent = await agent_link({"serial_port": transport.serial_port})
        if through_agent is not None:
            yield through_agent
            return
    probe = ModbusPoint(name="probe", table="holding", address=0, type="uint16")
    link = link_for(transport.device({"name": "scan", "timeout_s": timeout_s, "points": [probe]}))
    try:
        refused = ""
        try:
            async with asyncio.timeout(connect_timeout_s + 1):
                await link.call(_connected, timeout_s=connect_timeout_s)
        except TimeoutError as exc:
            message = f"cannot connect within {connect_timeout_s:g} s"
            raise DeviceUnreachable("scan", transport.describe(), message) from exc
        except termios.error as exc:  # the port (a pty, some USB adapters) cannot be set to this line
            refused = str(exc.args[1] if len(exc.args) > 1 else exc)
        except (ConnectionError, OSError) as exc:
            message = _serial_refusal(transport) if transport.kind == "rtu" else "cannot connect (refused?)"
            raise DeviceUnreachable("scan", transport.describe(), message) from exc
        if refused:
            # pymodbus drops the port it opened without closing it, holding its lock: collected here,
            # once the exception's frames are gone, so that the next setting can open the port
            gc.collect()
            message = f"the port cannot be set to {transport.line()} ({refused})"
            raise DeviceUnreachable("scan", transport.describe(), message, SETTING_REFUSED)
        yield link
    finally:
        link.close()


def _serial_refusal(transport: Transport) -> str:
    """Why the serial port would not open, naming who holds it when someone does."""
    held_by = holder(transport.serial_port)
    return "cannot open the serial port" + (f": held by {held_by}" if held_by else "")


def _check_serial_port(transport: Transport) -> None:
    """The two commonest serial mistakes, named before pymodbus hides them in a log line."""
    path = Path(transport.serial_port)
    if not path.exists():
        raise DeviceUnreachable("scan", transport.describe(), "no such serial port")
    if not os.access(path, os.R_OK | os.W_OK):
        message = "permission denied (is the user in the dialout group?)"
        raise DeviceUnreachable("scan", transport.describe(), message)


# --- what a profile's registers should read ------------------------------------------------------


def quantity_of(point: ModbusPoint) -> Quantity | None:
    """The plausibility range a profile point's reading should fall in, when it is one a scan judges."""
    if point.unit == "Hz":
        return FREQUENCY
    if point.unit == "V":
        between_lines = re.search(r"l\d_l\d|_ll", point.name)
        return LINE_VOLTAGE if between_lines else PHASE_VOLTAGE
    if point.name.startswith("power_factor"):
        return POWER_FACTOR
    return None


@dataclass(frozen=True, slots=True)
class ProfilePlan:
    """A profile's characteristic points, as a device entry to copy for each unit."""

    name: str
    model: str  # "Schneider Electric iEM3255"
    device: ModbusDevice
    quantities: dict[str, Quantity]  # point name -> its range

    def for_unit(self, unit: int) -> ModbusDevice:
        return self.device.model_copy(update={"unit_id": unit, "name": f"unit-{unit}"})

    def budget_s(self, timeout_s: float) -> float:
        """The longest reading its points may take: every point alone after a refused block."""
        return (len(self.quantities) + 1) * (timeout_s + RESYNC_S) + 1


def plans(transport: Transport, timeout_s: float, names: Sequence[str] | None = None) -> list[ProfilePlan]:
    """A plan for each modbus profile in drivers/ (or those named) with points a scan can judge."""
    result: list[ProfilePlan] = []
    for name in names if names is not None else profiles.available():
        profile = profiles.load(name)
        if profile.profile.protocol != "modbus":
            continue
        points = [ModbusPoint.model_validate(p) for p in profile.points]
        quantities = {p.name: q for p in points if (q := quantity_of(p)) is not None}
        if not quantities:
            continue
        entry = {"name": "unit-1", "profile": name, "only_points": list(quantities), "timeout_s": timeout_s}
        entry["max_gap"] = 124  # one request for the profile's few points, where the device allows
        device = transport.device(profiles.expand(entry, f"profile {name}"))
        model = f"{profile.profile.manufacturer} {profile.profile.model}"
        result.append(ProfilePlan(name, model, device, quantities))
    return result


# --- what a unit answered -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Evidence:
    point: str
    unit: str
    value: float | None
    verdict: Verdict
    quantity: Quantity

    def describe(self) -> str:
        if self.value is None:
            return f"{self.point} {self.verdict}"
        unit = f" {self.unit}" if self.unit else ""
        return f"{self.point} {self.value:.4g}{unit}"


@dataclass(frozen=True, slots=True)
class Judgement:
    """How well a unit's answers fit one profile."""

    profile: str
    model: str
    evidence: tuple[Evidence, ...]
    note: str = ""  # why there is no evidence: "no answer", "refused (modbus exception 2)"

    def count(self, verdict: Verdict) -> int:
        return sum(1 for e in self.evidence if e.verdict == verdict)

    @property
    def confidence(self) -> Literal["high", "medium", "low"] | None:
        """high: three or more plausible readings and none implausible; medium: two or more, at least
        three times as many plausible as implausible; low: more plausible than implausible. Zeros count
        neither way."""
        good, bad = self.count("plausible"), self.count("implausible")
        if good >= 3 and bad == 0:
            return "high"
        if good >= 2 and good >= 3 * bad:
            return "medium"
        if good >= 1 and good > bad:
            return "low"
        return None

    def why(self) -> str:
        """The evidence in one line: a plausible reading of each kind, then what disagreed or read zero."""
        if self.note:
            return self.note
        shown: dict[str, Evidence] = {}
        for e in self.evidence:
            if e.verdict == "plausible":
                shown.setdefault(e.quantity.name, e)
        parts = [f"{self.count('plausible')} plausible"]
        if shown:
            parts[0] += " (" + ", ".join(e.describe() for e in shown.values()) + ")"
        bad = [e.describe() for e in self.evidence if e.verdict == "implausible"]
        if bad:
            parts.append(
                f"{len(bad)} implausible (" + ", ".join(bad[:2]) + (", ..." if len(bad) > 2 else "") + ")"
            )
        for verdict in ("zero", "unavailable", "refused"):
            if self.count(verdict):
                parts.append(f"{self.count(verdict)} {verdict}")
        return "; ".join(parts)


@dataclass(frozen=True, slots=True)
class UnitResult:
    unit: int
    answered: bool
    note: str = ""  # why it counts as silent
    judgements: tuple[Judgement, ...] = ()

    @property
    def best(self) -> Judgement | None:
        """The profile the answers fit best, if any fits at all."""
        fitting = [j for j in self.judgements if j.confidence is not None]
        if not fitting:
            return None
        return max(
            fitting, key=lambda j: (j.count("plausible") - j.count("implausible"), j.count("plausible"))
        )


def _judge(plan: ProfilePlan, results: Sequence[Any]) -> Judgement:
    evidence: list[Evidence] = []
    refused: list[DeviceError] = []
    points = {p.name: p for p in plan.device.points}
    for result in results:
        quantity = plan.quantities[result.point]
        unit = points[result.point].unit
        verdict: Verdict
        if result.error is not None:
            refused.append(result.error)
            verdict = "refused"
        elif result.unavailable or result.value is None:
            verdict = "unavailable"
        elif result.value == 0:
            verdict = "zero"
        else:
            verdict = "plausible" if quantity.admits(result.value) else "implausible"
        evidence.append(Evidence(result.point, unit, result.value, verdict, quantity))
    note = ""
    if refused and len(refused) == len(evidence):
        note = f"refused its registers ({refused[0].code or refused[0]})"
    return Judgement(plan.name, plan.model, tuple(evidence), note)


async def probe_unit(link: Link, plan_list: Sequence[ProfilePlan], unit: int, timeout_s: float) -> UnitResult:
    """Ask one unit for each profile's characteristic registers; silent when the first request gets no
    answer (or a gateway's "no such unit")."""
    judgements: list[Judgement] = []
    for plan in plan_list:
        client = ModbusClient(plan.for_unit(unit), link)
        names = list(plan.quantities)
        try:
            async with asyncio.timeout(plan.budget_s(timeout_s)):
                results = await client.read(names)
        except (DeviceUnreachable, TimeoutError):
            if not judgements:
                return UnitResult(unit, False, f"no answer within {timeout_s:g} s")
            judgements.append(Judgement(plan.name, plan.model, (), "no answer to its registers"))
            continue
        codes = {r.error.code for r in results if isinstance(r.error, DeviceRejected)}
        gateway = sorted(code for code in codes if code in GATEWAY_NO_UNIT)
        if not judgements and gateway:
            number = int(gateway[0].rsplit(" ", 1)[1])
            note = f"no such unit (exception {number}: {EXCEPTION_NAMES[number]})"
            return UnitResult(unit, False, note)
        judgements.append(_judge(plan, results))
    return UnitResult(unit, True, "", tuple(judgements))


async def scan(
    link: Link,
    plan_list: Sequence[ProfilePlan],
    units: Sequence[int],
    timeout_s: float,
    on_result: Callable[[UnitResult], None],
) -> None:
    """Probe the units one after another (one request at a time is a serial bus's rule), reporting each."""
    for unit in units:
        on_result(await probe_unit(link, plan_list, unit, timeout_s))


def sweep_settings(transport: Transport) -> list[Transport]:
    """The serial line settings a sweep tries, in order: each baud rate (fastest first) with 8E1, 8N1, 8O1
    (the stop bits as given)."""
    return [
        replace(transport, baudrate=baudrate, parity=parity)
        for baudrate in SWEEP_BAUDRATES
        for parity in SWEEP_PARITIES
    ]


async def sweep(
    settings: Sequence[Transport],
    plan_list: Sequence[ProfilePlan],
    units: Sequence[int],
    timeouts: tuple[float, float],
    *,
    on_setting: Callable[[Transport], None],
    on_result: Callable[[UnitResult], None],
    on_refused: Callable[[DeviceUnreachable], None],
) -> Transport | None:
    """Try each line setting in turn: probe the units until one answers, then scan the rest of them at that
    setting and return it; None when no unit answered at any setting. `on_result` hears every unit probed
    at the setting `on_setting` last announced; `on_refused` each setting the port would not take (the
    sweep goes on). Raises DeviceUnreachable when the port cannot be opened at all."""
    timeout_s, connect_timeout_s = timeouts
    if settings and await agent_link({"serial_port": settings[0].serial_port}) is not None:
        message = "the running agent owns this bus at its configured line: scan it without --sweep"
        raise DeviceUnreachable("scan", settings[0].serial_port, message)
    for setting in settings:
        on_setting(setting)
        try:
            async with open_link(setting, timeout_s, connect_timeout_s) as link:
                for index, unit in enumerate(units):
                    result = await probe_unit(link, plan_list, unit, timeout_s)
                    on_result(result)
                    if result.answered:
                        await scan(link, plan_list, units[index + 1 :], timeout_s, on_result)
                        return setting
        except DeviceUnreachable as error:
            if error.code != SETTING_REFUSED:
                raise
            on_refused(error)
    return None


# --- unit ranges, raw registers, snippets -------------------------------------------------------


def parse_units(text: str, lowest: int = 1, highest: int = 247) -> list[int]:
    """'1-247', '1,3,5-9' or '3' to sorted unit ids; ValueError saying what is wrong."""
    units: set[int] = set()
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if match is None:
            raise ValueError(f"{text!r} is not a unit range (e.g. 1-247, or 1,3,5-9)")
        first = int(match[1])
        last = int(match[2]) if match[2] is not None else first
        if first > last:
            raise ValueError(f"{part.strip()!r} runs backwards (write {last}-{first})")
        if first < lowest or last > highest:
            raise ValueError(f"{part.strip()!r} is outside the unit ids {lowest}-{highest}")
        units.update(range(first, last + 1))
    return sorted(units)


def compress(units: Sequence[int]) -> str:
    """[1, 2, 3, 7] to '1-3, 7'."""
    runs: list[list[int]] = []
    for unit in sorted(units):
        if runs and unit == runs[-1][1] + 1:
            runs[-1][1] = unit
        else:
            runs.append([unit, unit])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


async def read_registers(
    link: Link,
    transport: Transport,
    unit: int,
    *,
    table: Literal["holding", "input"],
    start: int,
    count: int,
    timeout_s: float,
) -> tuple[list[int | None], list[DeviceError]]:
    """`count` registers from `start`: one request, or one per register where the device refuses the block
    (None for each register it refuses, with the errors). Raises DeviceUnreachable when the unit is silent."""
    names = [f"r{address}" for address in range(start, start + count)]
    points = [
        {"name": name, "table": table, "address": start + index, "type": "uint16"}
        for index, name in enumerate(names)
    ]
    device = transport.device(
        {"name": f"unit-{unit}", "unit_id": unit, "timeout_s": timeout_s, "points": points}
    )
    client = ModbusClient(device, link)
    async with asyncio.timeout((count + 1) * (timeout_s + RESYNC_S) + 1):
        results = await client.read(names)
    values = [None if r.value is None else int(r.value) for r in results]
    errors = [r.error for r in results if r.error is not None]
    return values, errors


def snippet(transport: Transport, found: Sequence[UnitResult], interval_s: float = 5.0) -> str:
    """[[devices]] and [[pollers]] entries for the units a scan identified, ready for a site file (or ''
    when none was)."""
    lines: list[str] = []
    for result in found:
        best = result.best
        if best is None:
            continue
        name = f"unit-{result.unit}-{best.profile}"
        lines += ["[[devices]]", f"name = {json.dumps(name)}", f"profile = {json.dumps(best.profile)}"]
        lines += [f"{key} = {json.dumps(value)}" for key, value in transport.fields().items()]
        lines += [f"unit_id = {result.unit}", ""]
        lines += ["[[pollers]]", f"device = {json.dumps(name)}", f"interval_s = {interval_s:g}", ""]
    return "\n".join(lines)


def scan_json(
    transport: Transport,
    units: Sequence[int],
    timeout_s: float,
    results: Sequence[UnitResult],
    *,
    complete: bool,
) -> dict[str, object]:
    """A scan as JSON data: where, which units, and every unit's result."""
    return {
        "transport": {"kind": transport.kind, **transport.fields()},
        "units": compress(units),
        "timeout_s": timeout_s,
        "complete": complete,
        "answered": [r.unit for r in results if r.answered],
        "results": [unit_json(r) for r in results],
    }


def unit_json(result: UnitResult) -> dict[str, object]:
    """A unit's result as JSON data: its best guess, and every profile's evidence."""
    best = result.best

    def number(value: float | None) -> float | str | None:
        return value if value is None or math.isfinite(value) else str(value)

    return {
        "unit": result.unit,
        "answered": result.answered,
        "note": result.note,
        "profile": best.profile if best else None,
        "model": best.model if best else None,
        "confidence": best.confidence if best else None,
        "why": best.why() if best else None,
        "profiles": [
            {
                "profile": j.profile,
                "confidence": j.confidence,
                "note": j.note,
                "evidence": [
                    {
                        "point": e.point,
                        "value": number(e.value),
                        "unit": e.unit,
                        "verdict": e.verdict,
                        "range": e.quantity.describe(),
                    }
                    for e in j.evidence
                ],
            }
            for j in result.judgements
        ],
    }
