"""The Modbus read planner: a device's points into as few requests as the device allows.

Points of one register table are merged into one request when the gap between them is at most `max_gap`
registers (read and thrown away), as long as the request stays within `max_registers` and covers no
forbidden range. Addresses a device has refused ("illegal data address") are kept out of merged requests:
each is read alone, so one bad register costs one failed request, not its neighbours' values.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

from edge_agent.config import ModbusPoint, RegisterRange
from edge_agent.protocols.modbus.pdu import Table

TABLES: tuple[Table, ...] = ("coil", "discrete", "input", "holding")
MAX_REGISTERS = 125  # per request, function codes 03 and 04 (Modbus application protocol 1.1b3)
MAX_BITS = 2000  # per request, function codes 01 and 02


@dataclass(frozen=True, slots=True)
class ReadBlock:
    """One request: `count` registers (or bits) of one table from `start`, covering `points`."""

    table: Table
    start: int
    count: int
    points: tuple[ModbusPoint, ...]

    @property
    def end(self) -> int:
        """One past the last address read."""
        return self.start + self.count

    def describe(self) -> str:
        names = ", ".join(p.name for p in self.points)
        return f"{self.table:<8} {self.start:>5}..{self.end - 1:<5} {self.count:>3} registers: {names}"


@dataclass(frozen=True, slots=True)
class PlanLimits:
    max_registers: int = MAX_REGISTERS
    max_gap: int = 20
    forbidden: tuple[RegisterRange, ...] = ()

    def crosses_forbidden(self, table: str, start: int, end: int) -> bool:
        """Does reading [start, end) touch a forbidden range?"""
        return any(r.table == table and r.start < end and start <= r.end for r in self.forbidden)


def plan_reads(
    points: Iterable[ModbusPoint], limits: PlanLimits = PlanLimits(), alone: Collection[str] = ()
) -> list[ReadBlock]:
    """Requests for `points`, in table then address order; points named in `alone` get one each."""
    blocks: list[ReadBlock] = []
    for table in TABLES:
        current: list[ModbusPoint] = []
        for point in sorted((p for p in points if p.table == table), key=lambda p: p.address):
            if point.name in alone:
                blocks.append(_block(table, [point]))
                continue
            if current and not _fits(current, point, limits):
                blocks.append(_block(table, current))
                current = []
            current.append(point)
        if current:
            blocks.append(_block(table, current))
    return blocks


def _fits(current: Sequence[ModbusPoint], point: ModbusPoint, limits: PlanLimits) -> bool:
    start = current[0].address
    end = max(p.address + p.registers for p in current)
    new_end = max(end, point.address + point.registers)
    maximum = MAX_BITS if point.table in ("coil", "discrete") else limits.max_registers
    return (
        point.address - end <= limits.max_gap
        and new_end - start <= maximum
        and not limits.crosses_forbidden(point.table, start, new_end)
    )


def _block(table: Table, points: Sequence[ModbusPoint]) -> ReadBlock:
    start = points[0].address
    end = max(p.address + p.registers for p in points)
    return ReadBlock(table, start, end - start, tuple(points))
