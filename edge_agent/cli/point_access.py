"""Reading and writing points from a technician's laptop: configured points through the project's protocol
clients (the same requests and decoding as polling), raw registers and objects without a configuration, and
the rules a write must pass before anything is sent.

Write policy, checked before a connection is opened:
- only configured points with a `write_range`, and only values within it (as the daemon's commands);
- BACnet priorities: 1-7 (life safety, critical equipment, minimum on/off) are never written; 8, the manual
  operator's, only when asked for explicitly (`operator=True`); 9-15 as the daemon's commands
  (commands.COMMAND_PRIORITIES), by default the device's `write_priority`; 16, the lowest, is where a
  BMS's own programs often write, and is left to them;
- a relinquish (BACnet only) writes NULL at that same priority.
Every call to a device is bounded with asyncio.timeout; a silent device is a DeviceUnreachable naming it.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator, Awaitable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, get_args

from bacpypes3.basetypes import PropertyIdentifier
from bacpypes3.primitivedata import ObjectIdentifier
from pydantic import ValidationError

from edge_agent.acquisition.pipeline import Plausibility
from edge_agent.cli.agent_bus import agent_link, bus_of
from edge_agent.cli.bacnet_scan import PropertyReader, command_line_stack, host_port, plain
from edge_agent.config import (
    AgentConfig,
    BacnetConfig,
    BacnetDevice,
    ModbusDevice,
    ModbusPoint,
    ModbusTcpDevice,
)
from edge_agent.config.codec import DATA_TYPES, Order
from edge_agent.errors import DeviceRejected, DeviceUnreachable, Refused
from edge_agent.protocols.bacnet.client import BacnetClient
from edge_agent.protocols.base import PointResult, ProtocolClient
from edge_agent.protocols.modbus.client import ModbusClient
from edge_agent.readings import Quality, Reading, utc_now
from edge_agent.uplink.commands import COMMAND_PRIORITIES

T = TypeVar("T")
OPERATOR_PRIORITY = 8
TABLES = {"coil": "coil", "discrete": "discrete", "holding": "holding", "input": "input"}
TABLES.update({"1": "coil", "2": "discrete", "3": "holding", "4": "input"})  # by read function code
ORDERS: tuple[str, ...] = get_args(Order)
RAW_TYPES = tuple(t for t in DATA_TYPES if t not in ("bool", "string"))  # bool: coils; strings: no number


@dataclass(frozen=True, slots=True)
class PointValue:
    """One point read: the value as polling would publish it, or the error that kept it from us."""

    device: str
    point: str
    value: float | None
    unit: str
    quality: Quality
    error: str | None = None
    label: str | None = None  # the device's own name for the point ("1층 열람실 온도"), when configured


@dataclass(frozen=True, slots=True)
class WritePlan:
    """A write that passed every rule: `value` None relinquishes `priority` (BACnet)."""

    device: ModbusDevice | BacnetDevice
    point: str
    value: float | None
    priority: int | None

    def describe(self) -> str:
        at = "" if self.priority is None else f" at priority {self.priority}"
        return f"relinquish{at}" if self.value is None else f"write {self.value:g}{at}"


@dataclass(frozen=True, slots=True)
class WriteOutcome:
    plan: WritePlan
    readback: PointValue
    priority_array: list[float | None] | None
    """BACnet: the object's 16 slots after the write (index 0 is priority 1); None without one."""


# --- choosing what to read or write ------------------------------------------------------------------


def find_device(config: AgentConfig, name: str) -> ModbusDevice | BacnetDevice:
    device = next((d for d in config.devices if d.name == name), None)
    if device is None:
        known = ", ".join(d.name for d in config.devices) or "none"
        raise Refused(f"no device named {name!r} in the configuration (devices: {known})")
    return device


def point_names(device: ModbusDevice | BacnetDevice, names: Sequence[str]) -> list[str]:
    """The named points (all of the device's when none are named), checked to exist."""
    known = [p.name for p in device.points]
    for name in names:
        if name not in known:
            raise Refused(f"device {device.name!r} has no point {name!r} (points: {', '.join(known)})")
    return list(dict.fromkeys(names)) or known


def plan_write(
    device: ModbusDevice | BacnetDevice,
    point: str,
    value: float | None,
    *,
    priority: int | None = None,
    operator: bool = False,
) -> WritePlan:
    """The write, once the point, value and priority have passed the policy (module docstring); Refused
    names the device, point and the rule otherwise."""
    (name,) = point_names(device, [point])
    target = next(p for p in device.points if p.name == name)
    key = f"{device.name}/{name}"
    if target.write_range is None:
        raise Refused(f"{key} is read-only: it has no write_range in the configuration")
    if value is not None and not math.isfinite(value):
        raise Refused(f"{key}: {value} is not a finite number")
    low, high = target.write_range
    if value is not None and not low <= value <= high:
        raise Refused(f"{key}: {value:g} is outside its write range [{low:g}, {high:g}]")
    if not isinstance(device, BacnetDevice):
        if priority is not None or operator:
            raise Refused(f"{key}: Modbus has no priorities")
        if value is None:
            raise Refused(f"{key}: only BACnet points can be relinquished")
        return WritePlan(device, name, value, None)
    return WritePlan(device, name, value, checked_priority(key, device, priority, operator))


def checked_priority(key: str, device: BacnetDevice, priority: int | None, operator: bool) -> int:
    if operator:
        if priority not in (None, OPERATOR_PRIORITY):
            raise Refused(f"{key}: --operator writes at priority {OPERATOR_PRIORITY}, not {priority}")
        return OPERATOR_PRIORITY
    chosen = device.write_priority if priority is None else priority
    lowest, highest = COMMAND_PRIORITIES
    if not 1 <= chosen <= 16:
        raise Refused(f"{key}: BACnet priorities are 1-16, not {chosen}")
    if chosen < OPERATOR_PRIORITY:
        raise Refused(
            f"{key}: priority {chosen} is for life safety and critical equipment (1-7): edge-agent never "
            "writes it"
        )
    if chosen == OPERATOR_PRIORITY:
        raise Refused(f"{key}: priority 8 is the manual operator's: add --operator to write it deliberately")
    if chosen > highest:
        raise Refused(
            f"{key}: priority {chosen} is left to the building's own programs; use {lowest}-{highest}"
        )
    return chosen


def local_address_for(config: AgentConfig, override: str | None) -> str:
    """The command line's BACnet address: `override`, or the configured host on an ephemeral port, so it
    never collides with the running daemon's port."""
    address = override or f"{config.bacnet.local_address.rsplit(':', 1)[0]}:0"
    try:
        BacnetConfig(local_address=address)
    except ValidationError:
        raise Refused(f"--local-address {address!r}: expected IP[/prefix][:port]") from None
    return address


def raw_modbus_device(
    address: str,
    unit: int,
    register: str,
    data_type: str,
    order: str,
    *,
    count: int | None = None,
    scale: float = 1.0,
    timeout_s: float = 2.0,
) -> ModbusTcpDevice:
    """A one-point device for `read --modbus`: REGISTER is TABLE:ADDRESS (table coil, discrete, holding,
    input, or the read function code 1-4; the 0-based wire address, decimal or 0x hex)."""
    table_name, _, number = register.partition(":")
    table = TABLES.get(table_name.lower())
    try:
        wire = int(number, 0)
    except ValueError:
        wire = -1
    if table is None or not 0 <= wire <= 0xFFFF:
        raise Refused(f"--register {register!r}: expected TABLE:ADDRESS, e.g. holding:100 or 3:0x64")
    if data_type not in RAW_TYPES:
        raise Refused(f"--type {data_type!r}: expected one of {', '.join(RAW_TYPES)}")
    if order not in ORDERS:
        raise Refused(f"--order {order!r}: expected one of {', '.join(ORDERS)}")
    host, _, port = address.partition(":")
    bits = table in ("coil", "discrete")
    try:
        point = ModbusPoint(
            name=f"{table}_{wire}",
            table=table,  # type: ignore[arg-type]  # checked above
            address=wire,
            type="bool" if bits else data_type,
            order=order,  # type: ignore[arg-type]
            count=count,
            scale=scale,
        )
        return ModbusTcpDevice(
            name="modbus",
            protocol="modbus-tcp",
            host=host,
            port=int(port) if port.isdigit() else 502,
            unit_id=unit,
            points=[point],
            timeout_s=timeout_s,
        )
    except ValidationError as exc:
        problem = exc.errors()[0]
        raise Refused(f"--modbus {address} --register {register}: {problem['msg']}") from None


# --- talking to the device ---------------------------------------------------------------------------


async def bounded(device: ModbusDevice | BacnetDevice, what: str, budget_s: float, call: Awaitable[T]) -> T:
    """`call` within `budget_s`, or DeviceUnreachable naming the device, its address and `what`."""
    try:
        async with asyncio.timeout(budget_s):
            return await call
    except TimeoutError:
        raise DeviceUnreachable(
            device.name, device.address, f"{what}: no answer within {budget_s:g} s", "timeout"
        ) from None


@contextlib.asynccontextmanager
async def connected(
    device: ModbusDevice | BacnetDevice, local_address: str, config: AgentConfig | None = None
) -> AsyncIterator[ProtocolClient]:
    """The device's protocol client, opened (bounded); BACnet on a stack of the command line's own. A
    Modbus link the running agent owns (an RS-485 bus above all) is used through the agent, in its turns."""
    async with contextlib.AsyncExitStack() as resources:
        client: BacnetClient | ModbusClient
        if isinstance(device, BacnetDevice):
            stack = await resources.enter_async_context(
                command_line_stack(local_address, None, device.timeout_s)
            )
            client = BacnetClient(device, stack, max_apdu=device.max_apdu, max_batch=device.max_batch)
        elif through_agent := await agent_link(bus_of(device), config):
            client = ModbusClient(device, through_agent)
        else:
            client = ModbusClient(device)  # a link of its own, closed with the client
        resources.push_async_callback(client.close)
        await bounded(device, "connect", device.timeout_s * 2, client.open())
        yield client


async def read_points(
    client: ProtocolClient, device: ModbusDevice | BacnetDevice, names: Sequence[str]
) -> list[PointValue]:
    """The points as one poll would read them: the same requests, decoding and plausibility check."""
    results = await bounded(device, "read", client.read_budget_s(names), client.read(names))
    order = {name: i for i, name in enumerate(names)}  # as asked, not as the requests were planned
    return [_point_value(device, r) for r in sorted(results, key=lambda r: order[r.point])]


def _point_value(device: ModbusDevice | BacnetDevice, result: PointResult) -> PointValue:
    point = next(p for p in device.points if p.name == result.point)
    if result.error is not None:
        return PointValue(
            device.name, point.name, None, point.unit, Quality.BAD, str(result.error), point.label
        )
    quality = Quality.UNAVAILABLE if result.unavailable else Quality.GOOD
    reading = Reading(device.name, point.name, result.value, point.unit, quality, utc_now())
    checked = Plausibility(*point.plausible)(reading) if point.plausible else reading
    shown = checked or reading  # plausibility marks a reading, never drops it
    return PointValue(device.name, point.name, shown.value, point.unit, shown.quality, label=point.label)


async def priority_array(
    client: ProtocolClient, device: ModbusDevice | BacnetDevice, point: str
) -> list[float | None] | None:
    """A BACnet point's 16 priority slots; None for Modbus, or an object without a priority array."""
    if not isinstance(client, BacnetClient) or not isinstance(device, BacnetDevice):
        return None
    target = next(p for p in device.points if p.name == point)
    if target.property != "present-value":  # the priority array commands the present value only
        return None
    try:
        return await bounded(
            device, f"{point} priority-array", device.timeout_s * 2, client.read_priority_array(point)
        )
    except DeviceRejected:
        return None


async def write(client: ProtocolClient, plan: WritePlan) -> WriteOutcome:
    """Carry out a planned write, then read the point (and its priority array) back."""
    device = plan.device
    call = client.write(plan.point, plan.value, plan.priority)
    await bounded(device, f"write of {plan.point}", device.timeout_s * 2, call)
    (readback,) = await read_points(client, device, [plan.point])
    return WriteOutcome(plan, readback, await priority_array(client, device, plan.point))


async def read_bacnet_property(
    address: str, obj: str, prop: str, *, index: int | None, local_address: str, timeout_s: float
) -> Any:
    """One property of one object at a BACnet/IP address, without a configuration, as plain data."""
    try:
        obj, prop = str(ObjectIdentifier(obj)), str(PropertyIdentifier(prop))
    except ValueError as exc:
        raise Refused(f"--object {obj!r} --property {prop!r}: not understood ({exc})") from None
    async with command_line_stack(local_address, None, timeout_s) as stack:
        reader = PropertyReader(stack, host_port(address), "bacnet", timeout_s)
        return plain(await reader.read(obj, prop, index))
