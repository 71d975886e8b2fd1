"""Modbus TCP through pymodbus, with pymodbus' own retries and reconnects turned off.

Reads are planned: the device's points of one register type are merged into blocks (gaps of at most
MAX_GAP registers are read and thrown away, a block spans at most MAX_BLOCK registers), so a meter's
points usually cost one request.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from pymodbus import ExceptionResponse
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException

from edge_agent.config import ModbusPoint, ModbusTcpDevice
from edge_agent.errors import DeviceError, DeviceGarbage, DeviceRejected, DeviceUnreachable
from edge_agent.protocols.base import ClientContext, PointResult

MAX_GAP = 20
MAX_BLOCK = 120

EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "device failure",
    5: "acknowledge",
    6: "device busy",
    10: "gateway path unavailable",
    11: "gateway target failed to respond",
}

_DATATYPES = {
    "int16": AsyncModbusTcpClient.DATATYPE.INT16,
    "uint16": AsyncModbusTcpClient.DATATYPE.UINT16,
    "int32": AsyncModbusTcpClient.DATATYPE.INT32,
    "uint32": AsyncModbusTcpClient.DATATYPE.UINT32,
    "float32": AsyncModbusTcpClient.DATATYPE.FLOAT32,
    "int64": AsyncModbusTcpClient.DATATYPE.INT64,
    "uint64": AsyncModbusTcpClient.DATATYPE.UINT64,
    "float64": AsyncModbusTcpClient.DATATYPE.FLOAT64,
}


@dataclass(frozen=True, slots=True)
class ReadBlock:
    """One request: `count` registers of one type from `start`, covering `points`."""

    table: str
    start: int
    count: int
    points: tuple[ModbusPoint, ...]


def plan_reads(points: Sequence[ModbusPoint]) -> list[ReadBlock]:
    """Merge points into as few requests as MAX_GAP and MAX_BLOCK allow."""
    blocks: list[ReadBlock] = []
    for table in ("input", "holding"):
        current: list[ModbusPoint] = []
        for point in sorted((p for p in points if p.table == table), key=lambda p: p.address):
            if current:
                start = current[0].address
                end = max(p.address + p.count for p in current)
                fits = point.address - end <= MAX_GAP and point.address + point.count - start <= MAX_BLOCK
                if not fits:
                    blocks.append(_block(table, current))
                    current = []
            current.append(point)
        if current:
            blocks.append(_block(table, current))
    return blocks


def _block(table: str, points: list[ModbusPoint]) -> ReadBlock:
    start = points[0].address
    end = max(p.address + p.count for p in points)
    return ReadBlock(table, start, end - start, tuple(points))


def decode(point: ModbusPoint, registers: Sequence[int]) -> float:
    value = AsyncModbusTcpClient.convert_from_registers(
        list(registers), data_type=_DATATYPES[point.type], word_order=point.word_order
    )
    if not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"not a finite number: {value!r}")
    return float(value) * point.scale


class ModbusTcpClient(ClientContext):
    def __init__(self, device: ModbusTcpDevice) -> None:
        self.device = device
        self._points = {p.name: p for p in device.points}
        # pymodbus' own timer runs longer than the caller's asyncio.timeout, so the caller's bound decides.
        self._client = AsyncModbusTcpClient(
            device.host, port=device.port, timeout=device.timeout_s + 1, retries=0, reconnect_delay=0
        )

    def _error(
        self, cls: type[DeviceError], where: str, message: str, code: str | None = None
    ) -> DeviceError:
        return cls(self.device.name, f"{self.device.address} {where}", message, code)

    def _exception_answer(self, where: str, response: object) -> DeviceError:
        code = int(getattr(response, "exception_code", 0))
        name = EXCEPTION_NAMES.get(code, "unknown exception")
        return self._error(DeviceRejected, where, name, f"modbus exception {code}")

    async def open(self) -> None:
        if not await self._client.connect():
            raise self._error(DeviceUnreachable, "", "cannot connect")

    async def close(self) -> None:
        self._client.close()

    async def read(self, points: Sequence[str]) -> list[PointResult]:
        results: list[PointResult] = []
        for block in plan_reads([self._points[name] for name in points]):
            try:
                registers = await self._read_block(block)
            except (DeviceRejected, DeviceGarbage) as error:
                results.extend(PointResult(p.name, None, error) for p in block.points)
                continue
            for point in block.points:
                offset = point.address - block.start
                try:
                    value = decode(point, registers[offset : offset + point.count])
                except (ValueError, TypeError) as exc:
                    where = f"{point.table} register {point.address}"
                    garbage = self._error(DeviceGarbage, where, f"cannot decode {point.type}: {exc}")
                    results.append(PointResult(point.name, None, garbage))
                else:
                    results.append(PointResult(point.name, value, None))
        return results

    async def _read_block(self, block: ReadBlock) -> list[int]:
        where = f"{block.table} registers {block.start}+{block.count}"
        read = (
            self._client.read_input_registers
            if block.table == "input"
            else self._client.read_holding_registers
        )
        try:
            response = await read(block.start, count=block.count, device_id=self.device.unit_id)
        except (ConnectionException, ModbusIOException) as exc:
            raise self._error(DeviceUnreachable, where, "no answer", type(exc).__name__) from exc
        except ModbusException as exc:
            raise self._error(DeviceGarbage, where, str(exc), type(exc).__name__) from exc
        if isinstance(response, ExceptionResponse) or response.isError():
            raise self._exception_answer(where, response)
        registers = list(response.registers)
        if len(registers) != block.count:
            raise self._error(DeviceGarbage, where, f"answered {len(registers)} registers")
        return registers

    async def write(self, point: str, value: float | None, priority: int | None = None) -> None:
        target = self._points[point]
        where = f"{target.table} register {target.address}"
        if target.table != "holding" or value is None:
            raise self._error(DeviceRejected, where, "only holding registers take a value", "not writable")
        data_type = _DATATYPES[target.type]
        raw: float | int = value / target.scale
        if not target.type.startswith("float"):
            raw = round(raw)
        try:
            registers = AsyncModbusTcpClient.convert_to_registers(
                raw, data_type, word_order=target.word_order
            )
        except (OverflowError, ValueError, struct.error) as exc:
            raise self._error(
                DeviceRejected, where, f"{value} does not fit {target.type}", "out of range"
            ) from exc
        try:
            response = await self._client.write_registers(
                target.address, registers, device_id=self.device.unit_id
            )
        except (ConnectionException, ModbusIOException) as exc:
            raise self._error(DeviceUnreachable, where, "no answer", type(exc).__name__) from exc
        except ModbusException as exc:
            raise self._error(DeviceGarbage, where, str(exc), type(exc).__name__) from exc
        if response.isError():
            raise self._exception_answer(where, response)
