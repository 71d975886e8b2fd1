"""Modbus TCP through pymodbus, with pymodbus' own retries and reconnects turned off.

Reads are planned (planner.py): a meter's points usually cost one request.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence

from pymodbus import ExceptionResponse
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException

from edge_agent.config import ModbusPoint, ModbusTcpDevice
from edge_agent.errors import DeviceError, DeviceGarbage, DeviceRejected, DeviceUnreachable
from edge_agent.planner import PlanLimits, ReadBlock, plan_reads
from edge_agent.protocols.base import ClientContext, PointResult

ILLEGAL_ADDRESS = "modbus exception 2"
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
        self._limits = PlanLimits(device.max_registers, device.max_gap, tuple(device.forbidden))
        self.read_alone: set[str] = set()  # points in blocks the device refused: read one by one
        self.requests = 0
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
        wanted = [self._points[name] for name in points]
        for block in plan_reads(wanted, self._limits, self.read_alone):
            results.extend(await self._read_planned(block))
        return results

    async def _read_planned(self, block: ReadBlock) -> list[PointResult]:
        try:
            registers = await self._read_block(block)
        except DeviceRejected as error:
            if error.code != ILLEGAL_ADDRESS or len(block.points) == 1:
                return [PointResult(p.name, None, error) for p in block.points]
            # The device refused an address somewhere in the merged block: from now on read these points
            # one by one, so a bad register costs only its own value.
            self.read_alone.update(p.name for p in block.points)
            results: list[PointResult] = []
            for point in block.points:
                results.extend(
                    await self._read_planned(ReadBlock(block.table, point.address, point.count, (point,)))
                )
            return results
        except DeviceGarbage as error:
            return [PointResult(p.name, None, error) for p in block.points]
        return [self._decode(point, block, registers) for point in block.points]

    def _decode(self, point: ModbusPoint, block: ReadBlock, registers: list[int]) -> PointResult:
        offset = point.address - block.start
        try:
            value = decode(point, registers[offset : offset + point.count])
        except (ValueError, TypeError) as exc:
            where = f"{point.table} register {point.address}"
            return PointResult(
                point.name, None, self._error(DeviceGarbage, where, f"cannot decode {point.type}: {exc}")
            )
        return PointResult(point.name, value, None)

    async def _read_block(self, block: ReadBlock) -> list[int]:
        self.requests += 1
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
