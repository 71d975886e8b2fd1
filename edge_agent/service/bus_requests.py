"""A technician's Modbus request on a bus the agent owns, taken from the local socket (`modbus_request`).

The request takes a turn on the agent's own link like any poll (writes ahead of queued reads, the frame gap
kept), so `read`, `write`, `scan modbus --serial` and `decode --serial` work while the agent runs. Local
socket only: it is not one of central's commands (docs/mqtt.md).

args: serial_port (or link), unit, function (1-4 read, 5/15 write a coil, 6/16 write registers), address,
count (reads) or values (writes). Without a function the request only asks whether the agent owns the bus.
A write must land on a configured point with a write_range, the decoded value within it: the same rule as
`edge-agent write` and central's write_point.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import structlog

from edge_agent.config import AgentConfig, BacnetDevice, ModbusDevice, ModbusRtuDevice
from edge_agent.errors import BusRequestFailed, ExceptionAnswer, MalformedAnswer
from edge_agent.protocols.modbus.link import Link
from edge_agent.protocols.modbus.pdu import Table
from edge_agent.protocols.modbus.wire import Wire

log = structlog.get_logger("edge_agent.bus_requests")

COMMAND = "modbus_request"
READS: dict[int, Table] = {1: "coil", 2: "discrete", 3: "holding", 4: "input"}
WRITES: dict[int, Table] = {5: "coil", 15: "coil", 6: "holding", 16: "holding"}
MAX_COUNT = 125  # registers in one read (Modbus' own limit)


def _same_port(a: str, b: str) -> bool:
    return a == b or os.path.realpath(a) == os.path.realpath(b)


def _int(args: Mapping[str, Any], name: str, low: int, high: int) -> int:
    value = args.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise BusRequestFailed("invalid", f"{name}: expected an integer {low}-{high}, not {value!r}")
    return value


class BusRequests:
    """Carries out `modbus_request`s on the agent's links (by link key: the devices' `link`)."""

    def __init__(self, config: AgentConfig, links: Mapping[str, Link]) -> None:
        self._devices = [d for d in config.devices if not isinstance(d, BacnetDevice)]
        self._links = links

    def _devices_on(self, args: Mapping[str, Any]) -> list[ModbusDevice]:
        port, key = args.get("serial_port"), args.get("link")
        if not isinstance(port, str) and not isinstance(key, str):
            raise BusRequestFailed("invalid", "give serial_port (an RS-485 bus) or link")
        found: list[ModbusDevice] = []
        for device in self._devices:
            if (isinstance(key, str) and device.link == key) or (
                isinstance(port, str)
                and isinstance(device, ModbusRtuDevice)
                and _same_port(device.serial_port, port)
            ):
                found.append(device)
        if not found or found[0].link not in self._links:
            raise BusRequestFailed("unknown-link", f"the agent does not own {port or key}")
        return found

    async def answer(self, payload: bytes) -> bytes | None:
        """The reply to a `modbus_request` line; None for any other request (the router's)."""
        try:
            data = json.loads(payload)
        except ValueError:
            return None
        if not isinstance(data, dict) or data.get("command") != COMMAND:
            return None
        args = data.get("args")
        try:
            result = await self.handle(args if isinstance(args, dict) else {"args": args})
        except BusRequestFailed as error:
            return json.dumps(reply(data.get("id"), None, error)).encode()
        return json.dumps(reply(data.get("id"), result, None)).encode()

    async def handle(self, args: Mapping[str, Any]) -> dict[str, Any]:
        devices = self._devices_on(args)
        link = self._links[devices[0].link]
        owned = {"link": devices[0].link, "units": sorted({d.unit_id for d in devices})}
        if args.get("function") is None:
            return owned
        function = _int(args, "function", 1, 16)
        unit = _int(args, "unit", 0, 247)
        address = _int(args, "address", 0, 0xFFFF)
        timeout_s = max(d.timeout_s for d in devices)
        operation: Callable[[Wire], Awaitable[Any]]
        if function in READS:
            count = _int(args, "count", 1, MAX_COUNT)
            table = READS[function]
            operation = lambda wire: wire.read(table, unit, address, count)  # noqa: E731
        elif function in WRITES:
            values = self._checked_write(devices, unit, WRITES[function], address, args.get("values"))
            multiple = function in (15, 16)
            if function in (5, 15):
                operation = lambda wire: wire.write_coil(unit, address, bool(values[0]), multiple=multiple)  # noqa: E731
            else:
                operation = lambda wire: wire.write_registers(unit, address, values, multiple=multiple)  # noqa: E731
        else:
            raise BusRequestFailed("invalid", f"function {function}: expected 1-6, 15 or 16")
        if function in WRITES:  # a technician's write, beside central's journaled ones: logged
            log.info("local write", link=owned["link"], unit=unit, function=function, address=address)
        result = await _on_link(link, operation, timeout_s, write=function in WRITES)
        return owned | {"values": [int(v) for v in result] if function in READS else []}

    def _checked_write(
        self, devices: Sequence[ModbusDevice], unit: int, table: Table, address: int, values: Any
    ) -> list[int]:
        """The words to write, once they land on a configured point with a write_range, within it."""
        if not isinstance(values, list) or not values or not all(isinstance(v, int) for v in values):
            raise BusRequestFailed("invalid", "values: expected a list of register values")
        where = f"unit {unit} {table} {address}"
        for device in devices:
            if device.unit_id != unit:
                continue
            for point in device.points:
                if point.table != table or point.address != address:
                    continue
                key = f"{device.name}/{point.name}"
                if point.write_range is None:
                    raise BusRequestFailed("not-writable", f"{key} is read-only: it has no write_range")
                if point.registers != len(values) and table != "coil":
                    raise BusRequestFailed("invalid", f"{key} takes {point.registers} registers")
                try:
                    value = point.codec.decode(values if table != "coil" else bool(values[0])).value
                except (TypeError, ValueError) as exc:
                    raise BusRequestFailed("invalid", f"{key}: {exc}") from None
                low, high = point.write_range
                if not isinstance(value, float | int) or not low <= value <= high:
                    message = f"{key}: {value} is outside its write range [{low:g}, {high:g}]"
                    raise BusRequestFailed("out-of-limits", message)
                return [int(v) for v in values]
        raise BusRequestFailed(
            "not-writable", f"{where} is not a configured point: the agent writes only those"
        )


async def _on_link(
    link: Link, operation: Callable[[Wire], Awaitable[Any]], timeout_s: float, *, write: bool
) -> Any:
    """One turn on the link (waiting for it bounded by the units' turns), failures as BusRequestFailed."""
    try:
        async with asyncio.timeout(timeout_s * (link.rounds + 1)):
            return await link.call(operation, timeout_s=timeout_s, write=write)
    except TimeoutError:
        raise BusRequestFailed("timeout", f"no answer within {timeout_s:g} s") from None
    except ExceptionAnswer as exc:
        raise BusRequestFailed("modbus-exception", str(exc), exc.code) from None
    except MalformedAnswer as exc:
        raise BusRequestFailed("malformed", str(exc)) from None
    except ConnectionError as exc:
        raise BusRequestFailed("unreachable", str(exc) or "no answer") from None


def reply(request_id: Any, result: dict[str, Any] | None, error: BusRequestFailed | None) -> dict[str, Any]:
    """The socket's reply line, shaped as the router's (ok, result | error)."""
    if error is None:
        return {"id": request_id, "ok": True, "result": result}
    body: dict[str, Any] = {"code": error.code, "message": str(error)}
    if error.exception is not None:
        body["exception"] = error.exception
    return {"id": request_id, "ok": False, "error": body}
