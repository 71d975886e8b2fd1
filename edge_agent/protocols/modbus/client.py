"""Modbus devices (TCP, RTU on RS-485, RTU over TCP) through pymodbus, behind the protocol interface.

Reads are planned (planner.py): a meter's points usually cost one or two requests. Values are decoded by
codec.py in the point's byte and word order, a whole block of registers at once; a "not available" sentinel
is a quality flag, not a number.
Requests go through the device's link (modbus_link.py), which units on one bus share, and its wire
(modbus_wire.py), framed for TCP or RTU; what fails there leaves as a DeviceError (errors.py).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from edge_agent.config import ModbusDevice, ModbusPoint
from edge_agent.config.codec import BlockDecoder, Encoding
from edge_agent.errors import DeviceError, DeviceGarbage, DeviceRejected
from edge_agent.protocols.base import ClientContext, PointResult
from edge_agent.protocols.modbus.errors import ILLEGAL_ADDRESS, Translated, translated
from edge_agent.protocols.modbus.link import Link, link_for
from edge_agent.protocols.modbus.planner import PlanLimits, ReadBlock, plan_reads
from edge_agent.protocols.modbus.wire import Wire

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class _Request:
    """A planned block and what reading it takes, prepared once with the plan."""

    block: ReadBlock
    where: str  # for errors: "input registers 0+80"
    names: tuple[str, ...]  # the block's points, in order
    decoder: BlockDecoder | None  # None for coils and discrete inputs: their bits are decoded one by one
    errors: Translated  # failures on the wire as DeviceErrors at `where`

    @classmethod
    def of(cls, device: ModbusDevice, block: ReadBlock) -> _Request:
        bits = block.table in ("coil", "discrete")
        where = f"{block.table} {'bits' if bits else 'registers'} {block.start}+{block.count}"
        decoder = None
        if not bits:
            decoder = BlockDecoder(block.count, [(p.address - block.start, p.codec) for p in block.points])
        names = tuple(p.name for p in block.points)
        return cls(block, where, names, decoder, translated(device, where))


class ModbusClient(ClientContext):
    """One unit. Its link is its own (`link=None`) or shared: with the other units on a bus, or on a Modbus
    TCP endpoint (endpoint.py)."""

    def __init__(self, device: ModbusDevice, link: Link | None = None) -> None:
        self.device = device
        self._owns_link = link is None
        self._link = link or link_for(device)
        self._link.join(device.name)
        self._points = {p.name: p for p in device.points}
        self._encodings: dict[str, Encoding] = {p.name: p.codec for p in device.points}
        self._plans: dict[tuple[str, ...], list[_Request]] = {}  # emptied when `read_alone` grows
        self._limits = PlanLimits(device.max_registers, device.max_gap, tuple(device.forbidden))
        self.read_alone: set[str] = set()  # points in blocks the device refused: read one by one
        self.requests = 0

    def _error(
        self, cls: type[DeviceError], where: str, message: str, code: str | None = None
    ) -> DeviceError:
        return cls(self.device.name, f"{self.device.address} {where}", message, code)

    def _plan(self, points: Sequence[str]) -> list[_Request]:
        """The requests for these points, planned once (again when a refused block changes the plan)."""
        key = tuple(points)
        plan = self._plans.get(key)
        if plan is None:
            blocks = plan_reads([self._points[name] for name in points], self._limits, self.read_alone)
            plan = self._plans[key] = [_Request.of(self.device, block) for block in blocks]
        return plan

    def read_budget_s(self, points: Sequence[str]) -> float:
        """The longest a read may take, waiting for turns included: each request may wait for the other
        units on the link to use their full time budgets."""
        return len(self._plan(points)) * self.device.timeout_s * self._link.rounds

    async def open(self) -> None:
        """Connect the link if it is not (a shared link stays up for the other units)."""
        with translated(self.device, "", connecting=True):
            await self._link.connect(timeout_s=self.device.timeout_s * self._link.rounds)

    async def close(self) -> None:
        if self._owns_link:
            self._link.close()

    async def read(self, points: Sequence[str]) -> list[PointResult]:
        results: list[PointResult] = []
        for request in self._plan(points):
            results.extend(await self._read_planned(request))
        return results

    async def _read_planned(self, request: _Request) -> list[PointResult]:
        block = request.block
        try:
            words = await self._read_block(request)
        except DeviceRejected as error:
            if error.code != ILLEGAL_ADDRESS or len(block.points) == 1:
                return [PointResult(p.name, None, error) for p in block.points]
            # The device refused an address somewhere in the merged block: from now on read these points
            # one by one, so a bad register costs only its own value.
            self.read_alone.update(p.name for p in block.points)
            self._plans.clear()
            results: list[PointResult] = []
            for point in block.points:
                alone = ReadBlock(block.table, point.address, point.registers, (point,))
                results.extend(await self._read_planned(_Request.of(self.device, alone)))
            return results
        except DeviceGarbage as error:
            return [PointResult(p.name, None, error) for p in block.points]
        if request.decoder is not None:
            try:
                values = request.decoder.decode(words)
            except (ValueError, TypeError):
                pass  # a point cannot be decoded: point by point below, each with its own error
            else:
                return self._results(request, values)
        return [self._decode(point, block, words) for point in block.points]

    def _results(self, request: _Request, values: list[float | str | None]) -> list[PointResult]:
        """A block's decoded values as results (this runs for every point of every poll): as `_decode`
        makes them."""
        results: list[PointResult] = []
        append, isfinite = results.append, math.isfinite
        for name, value in zip(request.names, values, strict=True):
            if isinstance(value, float) and isfinite(value):
                append(PointResult(name, value))
            elif value is None:
                append(PointResult(name, None, unavailable=True))
            else:
                point = self._points[name]
                where = f"{point.table} {point.address}"
                message = f"not a finite number: {value!r}"
                append(PointResult(name, None, self._error(DeviceGarbage, where, message)))
        return results

    def _decode(self, point: ModbusPoint, block: ReadBlock, words: list[int] | list[bool]) -> PointResult:
        """One point's value from its block's registers or bits, the reference for `_results`."""
        encoding = self._encodings[point.name]
        offset = point.address - block.start
        try:
            if point.type == "bool":
                decoded = encoding.decode(bool(words[offset]))
            else:
                decoded = encoding.decode(words[offset : offset + encoding.registers])
        except (ValueError, TypeError) as exc:
            where = f"{point.table} {point.address}"
            return PointResult(point.name, None, self._error(DeviceGarbage, where, f"cannot decode: {exc}"))
        value = decoded.value
        if isinstance(value, float) and math.isfinite(value):
            return PointResult(point.name, value)
        if decoded.not_available:
            return PointResult(point.name, None, unavailable=True)
        where = f"{point.table} {point.address}"
        return PointResult(
            point.name, None, self._error(DeviceGarbage, where, f"not a finite number: {value!r}")
        )

    async def _read_block(self, request: _Request) -> list[int] | list[bool]:
        self.requests += 1
        block, where, unit = request.block, request.where, self.device.unit_id
        words = await self._call(
            request.errors, lambda wire: wire.read(block.table, unit, block.start, block.count)
        )
        if request.decoder is None:  # bits come in whole bytes
            if len(words) < block.count:
                raise self._error(DeviceGarbage, where, f"answered {len(words)} bits")
            return words[: block.count]
        if len(words) != block.count:
            raise self._error(DeviceGarbage, where, f"answered {len(words)} registers")
        return words

    async def _call(
        self,
        errors: Translated,
        operation: Callable[[Wire], Awaitable[T]],
        write: bool = False,
    ) -> T:
        """One request through the link; `errors` (a `translated`) turns every failure into a DeviceError."""
        with errors:
            return await self._link.call(operation, timeout_s=self.device.timeout_s, write=write)

    async def write(self, point: str, value: float | None, priority: int | None = None) -> None:
        target = self._points[point]
        where = f"{target.table} {target.address}"
        if target.table in ("input", "discrete") or value is None or target.type in ("bitfield", "string"):
            raise self._error(DeviceRejected, where, "not writable as a number", "not writable")
        unit, multiple = self.device.unit_id, self.device.multiple_writes
        if target.table == "coil":  # function 05, or 15
            on = bool(value)
            await self._call(
                translated(self.device, where),
                lambda w: w.write_coil(unit, target.address, on, multiple=multiple),
                True,
            )
            return
        try:
            words = self._encodings[point].encode(value)
        except ValueError as exc:
            raise self._error(DeviceRejected, where, str(exc), "out of range") from exc
        await self._call(  # function 06, or 16
            translated(self.device, where),
            lambda w: w.write_registers(unit, target.address, words, multiple=multiple),
            True,
        )
