"""Big-endian register encoders (high word first, high byte first) and helpers to lay out register blocks."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from pymodbus.simulator import DataType, SimData, SimDevice

from edge_sim.devices.meters.base import MeterReading, RegisterWrite

HOLDING = 3  # function code 03, read holding registers
INPUT = 4  # function code 04, read input registers

# What a meter shows before the simulator feeds it: an idle circuit at nominal voltage.
IDLE = MeterReading(power_w=0.0, import_kwh=0.0, export_kwh=0.0, demand_w=0.0, max_demand_w=0.0)


def _words(fmt: str, value: float) -> list[int]:
    try:
        packed = struct.pack(">" + fmt, value)
    except struct.error as exc:
        raise ValueError(f"{value!r} does not fit a register value of format {fmt!r}") from exc
    return list(struct.unpack(f">{len(packed) // 2}H", packed))


def float32(value: float) -> list[int]:
    return _words("f", value)


def int16(value: int) -> list[int]:
    return _words("h", value)


def uint16(value: int) -> list[int]:
    return _words("H", value)


def int32(value: int) -> list[int]:
    return _words("i", value)


def uint32(value: int) -> list[int]:
    return _words("I", value)


def int64(value: int) -> list[int]:
    return _words("q", value)


def uint64(value: int) -> list[int]:
    return _words("Q", value)


def counts(value: float, resolution: float) -> int:
    """A physical value as the integer count of a register with the given resolution (0.01 kWh, 0.1 V...)."""
    return round(value / resolution)


def unsigned_not_available(words: int) -> list[int]:
    """The "not available" value of an unsigned integer register: all bits set."""
    return [0xFFFF] * words


def signed_not_available(words: int) -> list[int]:
    """The "not available" value of a signed integer register: the largest positive value, 0x7FFF..."""
    return [0x7FFF] + [0xFFFF] * (words - 1)


@dataclass(slots=True)
class RegisterBlock:
    """A contiguous run of registers of one table, filled value by value, written as one RegisterWrite."""

    function_code: int
    start: int
    registers: list[int]

    @classmethod
    def zeros(cls, function_code: int, start: int, count: int) -> RegisterBlock:
        return cls(function_code, start, [0] * count)

    def put(self, address: int, words: Sequence[int]) -> None:
        """Place `words` at wire address `address`; refuses anything outside the block."""
        offset = address - self.start
        if offset < 0 or offset + len(words) > len(self.registers):
            raise IndexError(
                f"registers {address}+{len(words)} outside block {self.start}+{len(self.registers)}"
            )
        self.registers[offset : offset + len(words)] = words

    def write(self) -> RegisterWrite:
        return RegisterWrite(self.function_code, self.start, list(self.registers))


def sim_device(unit_id: int, blocks: Sequence[RegisterWrite]) -> SimDevice:
    """A pymodbus datastore in which exactly the given blocks are readable; every other address answers
    exception 2 (illegal data address). Coils and discrete inputs hold one placeholder bit: pymodbus needs
    a non-empty block per table."""
    holding = [_sim_data(b) for b in blocks if b.function_code == HOLDING]
    inputs = [_sim_data(b) for b in blocks if b.function_code == INPUT]
    return SimDevice(
        id=unit_id,
        simdata=(
            [SimData(0, values=False, datatype=DataType.BITS)],
            [SimData(0, values=False, datatype=DataType.BITS)],
            holding or [SimData(0, datatype=DataType.INVALID)],
            inputs or [SimData(0, datatype=DataType.INVALID)],
        ),
    )


def _sim_data(block: RegisterWrite) -> SimData:
    return SimData(block.address, values=list(block.registers), datatype=DataType.REGISTERS)
