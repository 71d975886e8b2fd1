"""The agent's own Modbus TCP framing: PDUs byte for byte as pymodbus (an independent implementation) makes
them, and a wire that keeps its answers straight when a device answers late, out of turn or not Modbus."""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterator, Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pymodbus.pdu import ModbusPDU
from pymodbus.pdu.bit_message import (
    ReadCoilsResponse,
    WriteMultipleCoilsRequest,
    WriteSingleCoilRequest,
)
from pymodbus.pdu.register_message import (
    ReadHoldingRegistersRequest,
    ReadInputRegistersResponse,
    WriteMultipleRegistersRequest,
    WriteSingleRegisterRequest,
)

from edge_agent.config import ModbusPoint, ModbusTcpDevice
from edge_agent.errors import DeviceGarbage, ExceptionAnswer, MalformedAnswer
from edge_agent.protocols.modbus import pdu
from edge_agent.protocols.modbus.client import ModbusClient
from edge_agent.protocols.modbus.planner import MAX_BITS, MAX_REGISTERS
from tests.support import LOOPBACK

words = st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=MAX_REGISTERS)
addresses = st.integers(0, 0xFFFF)


def framed(message: ModbusPDU) -> bytes:
    """pymodbus' PDU for a message: its function code, then its data."""
    return bytes([message.function_code]) + bytes(message.encode())


@given(addresses, st.integers(1, MAX_REGISTERS))
def test_a_read_request_is_what_pymodbus_sends(address: int, count: int) -> None:
    expected = framed(ReadHoldingRegistersRequest(address=address, count=count))
    assert pdu.read_request("holding", address, count) == expected


@given(words)
def test_registers_decode_as_pymodbus_encodes_them(registers: list[int]) -> None:
    answer = framed(ReadInputRegistersResponse(registers=registers))
    assert pdu.registers(answer, pdu.read_request("input", 0, len(registers))) == registers


@given(st.lists(st.booleans(), min_size=1, max_size=MAX_BITS))
def test_bits_decode_as_pymodbus_encodes_them(bits: list[bool]) -> None:
    answer = framed(ReadCoilsResponse(bits=bits))
    assert pdu.bits(answer, pdu.read_request("coil", 0, len(bits)), len(bits)) == bits


@given(addresses, words, st.booleans())
def test_register_writes_are_what_pymodbus_sends(address: int, registers: list[int], multiple: bool) -> None:
    request = pdu.write_registers_request(address, registers, multiple=multiple)
    if len(registers) == 1 and not multiple:
        assert request == framed(WriteSingleRegisterRequest(address=address, registers=registers))
    else:
        assert request == framed(WriteMultipleRegistersRequest(address=address, registers=registers))


@given(addresses, st.booleans(), st.booleans())
def test_coil_writes_are_what_pymodbus_sends(address: int, value: bool, multiple: bool) -> None:
    request = pdu.write_coil_request(address, value, multiple=multiple)
    reference = WriteMultipleCoilsRequest if multiple else WriteSingleCoilRequest
    assert request == framed(reference(address=address, bits=[value]))


def test_answers_that_do_not_fit_their_request() -> None:
    request = pdu.read_request("input", 0x34, 2)
    with pytest.raises(ExceptionAnswer) as refused:
        pdu.registers(bytes([0x84, 0x02]), request)
    assert refused.value.code == 2
    for answer, says in [
        (b"", "empty"),
        (bytes([0x03, 4, 0, 1, 0, 2]), "answered function 3 to function 4"),
        (bytes([0x04, 6, 0, 1, 0, 2]), "byte count 6 with 4 bytes"),
        (bytes([0x04, 3, 0, 1, 0]), "3 bytes of registers"),
    ]:
        with pytest.raises(MalformedAnswer, match=says):
            pdu.registers(answer, request)
    write = pdu.write_registers_request(10, [1, 2], multiple=True)
    with pytest.raises(MalformedAnswer, match="does not echo"):
        pdu.check_write(bytes([16, 0, 10, 0, 3]), write)


# --- the wire against devices that misbehave -------------------------------------------------------

Answerer = Callable[[int, bytes], list[bytes]]  # (transaction, request PDU) -> raw frames to send back


def mbap(transaction: int, body: bytes, unit: int = 1) -> bytes:
    return struct.pack(">HHHB", transaction, 0, len(body) + 1, unit) + body


@contextlib.asynccontextmanager
async def device(answer: Answerer) -> AsyncIterator[int]:
    """A loopback TCP server answering each request's frames with `answer`; yields its port."""

    writers: list[asyncio.StreamWriter] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                transaction, _protocol, length = struct.unpack(">HHH", await reader.readexactly(6))
                request = (await reader.readexactly(length))[1:]
                for frame in answer(transaction, request):
                    writer.write(frame)
                    await writer.drain()

    server = await asyncio.start_server(serve, LOOPBACK, 0)
    async with server:
        yield server.sockets[0].getsockname()[1]
        for writer in writers:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


def registers_answer(values: list[int]) -> bytes:
    return bytes([4, 2 * len(values)]) + struct.pack(f">{len(values)}H", *values)


def power_meter(port: int) -> ModbusTcpDevice:
    point = ModbusPoint(name="power", table="input", address=0x34, type="uint16")
    return ModbusTcpDevice(
        name="meter", protocol="modbus-tcp", host=LOOPBACK, port=port, points=[point], timeout_s=0.5
    )


@pytest.mark.integration
async def test_a_stray_answer_is_not_taken_for_the_one_awaited() -> None:
    """A gateway that sends a stale answer (an older transaction) before the right one."""

    def answer(transaction: int, _request: bytes) -> list[bytes]:
        stale = mbap((transaction - 1) & 0xFFFF, registers_answer([666]))
        return [stale, mbap(transaction, registers_answer([transaction]))]

    async with device(answer) as port, ModbusClient(power_meter(port)) as client:
        values = [(await client.read(["power"]))[0].value for _ in range(3)]
    assert values == [1.0, 2.0, 3.0]


@pytest.mark.integration
async def test_an_answer_split_across_segments_and_two_in_one_segment() -> None:
    def answer(transaction: int, _request: bytes) -> list[bytes]:
        frame = mbap(transaction, registers_answer([230]))
        return [frame[:3], frame[3:9], frame[9:]]

    async with device(answer) as port, ModbusClient(power_meter(port)) as client:
        results = [await client.read(["power"]) for _ in range(3)]
    assert [r[0].value for r in results] == [230.0] * 3


@pytest.mark.integration
async def test_a_device_that_is_not_modbus_is_garbage_and_the_next_read_reconnects() -> None:
    answers = iter([[b"HTTP/1.1 400 Bad Request\r\n\r\n"]])

    def answer(transaction: int, _request: bytes) -> list[bytes]:
        return next(answers, [mbap(transaction, registers_answer([42]))])

    async with device(answer) as port, ModbusClient(power_meter(port)) as client:
        [first] = await client.read(["power"])
        [second] = await client.read(["power"])
    assert isinstance(first.error, DeviceGarbage)
    assert "input registers 52+1" in str(first.error)
    assert "not a Modbus TCP frame" in str(first.error)
    assert second.value == 42.0
