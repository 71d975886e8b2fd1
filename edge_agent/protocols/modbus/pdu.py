"""Modbus PDUs (the function code and its data, the same on every transport) for the functions the agent
uses: reads 01-04, writes 05, 06, 15 and 16. A request is bytes; an answer is checked against its request
and decoded, or raises ExceptionAnswer (the device refused) or MalformedAnswer (it answered garbage).
"""

from __future__ import annotations

import struct
from typing import Literal

from edge_agent.errors import ExceptionAnswer, MalformedAnswer

Table = Literal["coil", "discrete", "input", "holding"]
READ_FUNCTION: dict[Table, int] = {"coil": 1, "discrete": 2, "holding": 3, "input": 4}

_ADDRESS_COUNT = struct.Struct(">BHH")
_MULTIPLE = struct.Struct(">BHHB")


def read_request(table: Table, start: int, count: int) -> bytes:
    return _ADDRESS_COUNT.pack(READ_FUNCTION[table], start, count)


def _data(answer: bytes, function: int) -> bytes:
    """The answer's data after its function code; raises for an exception answer or another function."""
    if not answer:
        raise MalformedAnswer("an empty answer")
    if answer[0] == function | 0x80 and len(answer) >= 2:
        raise ExceptionAnswer(answer[1])
    if answer[0] != function:
        raise MalformedAnswer(f"answered function {answer[0]} to function {function}")
    return answer[1:]


def _counted(answer: bytes, function: int) -> bytes:
    data = _data(answer, function)
    if not data or data[0] != len(data) - 1:
        raise MalformedAnswer(f"byte count {data[0] if data else None} with {len(data) - 1} bytes of data")
    return data[1:]


def registers(answer: bytes, request: bytes) -> list[int]:
    """The registers of a read answer (function 03 or 04)."""
    values = _counted(answer, request[0])
    if len(values) % 2:
        raise MalformedAnswer(f"{len(values)} bytes of registers")
    return list(struct.unpack(f">{len(values) // 2}H", values))


def bits(answer: bytes, request: bytes, count: int) -> list[bool]:
    """The first `count` bits of a read answer (function 01 or 02), least significant bit first."""
    packed = _counted(answer, request[0])
    if len(packed) * 8 < count:
        raise MalformedAnswer(f"{len(packed)} bytes for {count} bits")
    return [bool(packed[i >> 3] >> (i & 7) & 1) for i in range(count)]


def write_coil_request(address: int, value: bool, *, multiple: bool) -> bytes:
    if multiple:  # function 15, one coil
        return _MULTIPLE.pack(15, address, 1, 1) + bytes([int(value)])
    return _ADDRESS_COUNT.pack(5, address, 0xFF00 if value else 0)


def write_registers_request(address: int, words: list[int], *, multiple: bool) -> bytes:
    if len(words) == 1 and not multiple:  # function 06
        return _ADDRESS_COUNT.pack(6, address, words[0])
    return _MULTIPLE.pack(16, address, len(words), 2 * len(words)) + struct.pack(f">{len(words)}H", *words)


def check_write(answer: bytes, request: bytes) -> None:
    """A write answer echoes the request (05, 06) or its address and count (15, 16)."""
    _data(answer, request[0])
    expected = request if request[0] in (5, 6) else request[:5]
    if answer != expected:
        raise MalformedAnswer(f"the answer {answer.hex()} does not echo the write {expected.hex()}")
