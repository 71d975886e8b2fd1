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

from edge_agent.acquisition.poller import DevicePoller, Health
from edge_agent.config import ModbusPoint, ModbusTcpDevice, PollerConfig
from edge_agent.errors import DeviceGarbage, ExceptionAnswer, MalformedAnswer
from edge_agent.protocols.modbus import pdu
from edge_agent.protocols.modbus.client import ModbusClient
from edge_agent.protocols.modbus.planner import MAX_BITS, MAX_REGISTERS
from edge_agent.readings import Reading
from tests.support import LOOPBACK, async_wait_until

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
    """A gateway that sends a stale answer (to the transaction before, sent on this connection) before the
    right one. (An answer to a transaction never sent is garbage: see below.)"""

    def answer(transaction: int, _request: bytes) -> list[bytes]:
        stale = [mbap(transaction - 1, registers_answer([666]))] if transaction > 1 else []
        return [*stale, mbap(transaction, registers_answer([transaction]))]

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


@pytest.mark.integration
async def test_an_answer_from_another_unit_is_garbage() -> None:
    """A gateway that answers for unit 2 when unit 1 was asked: not unit 1's value."""
    answers = iter([2, 0, 1])

    def answer(transaction: int, _request: bytes) -> list[bytes]:
        return [mbap(transaction, registers_answer([230]), unit=next(answers))]

    async with device(answer) as port, ModbusClient(power_meter(port)) as client:
        results = [(await client.read(["power"]))[0] for _ in range(3)]
    assert [r.value for r in results] == [None, None, 230.0]
    assert isinstance(results[0].error, DeviceGarbage)
    assert "answered as unit 2 to a request for unit 1" in str(results[0].error)
    assert "answered as unit 0 to a request for unit 1" in str(results[1].error)


@pytest.mark.integration
async def test_an_answer_to_a_transaction_never_sent_is_garbage() -> None:
    offsets = iter([1000])  # the first answer names another transaction, the rest their own

    def answer(transaction: int, _request: bytes) -> list[bytes]:
        return [mbap((transaction + next(offsets, 0)) & 0xFFFF, registers_answer([230]))]

    async with device(answer) as port, ModbusClient(power_meter(port)) as client:
        results = [(await client.read(["power"]))[0] for _ in range(2)]
    assert isinstance(results[0].error, DeviceGarbage)
    assert "answered transaction 1001 (waiting for 1)" in str(results[0].error)
    assert results[1].value == 230.0


FLOOD_PER_CONNECTION = 2 * 1024 * 1024  # bytes the flooding device sends at most on one connection


@contextlib.asynccontextmanager
async def flooding_device() -> AsyncIterator[tuple[int, list[int]]]:
    """A device that answers every request correctly and, meanwhile, streams frames nobody asked for
    (bounded per connection). Yields its port and the bytes it flooded on each connection."""
    flooded: list[int] = []
    junk = b"".join(mbap(40000 + i, registers_answer([i])) for i in range(100))

    async def flood(writer: asyncio.StreamWriter, index: int) -> None:
        with contextlib.suppress(ConnectionError):
            while flooded[index] < FLOOD_PER_CONNECTION:
                writer.write(junk)
                flooded[index] += len(junk)
                await writer.drain()  # blocks while the agent reads nothing

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        flooded.append(0)
        flooder = asyncio.create_task(flood(writer, len(flooded) - 1))
        try:
            with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
                while True:
                    transaction, _protocol, length = struct.unpack(">HHH", await reader.readexactly(6))
                    await reader.readexactly(length)
                    writer.write(mbap(transaction, registers_answer([230])))
        finally:
            flooder.cancel()
            writer.close()

    server = await asyncio.start_server(serve, LOOPBACK, 0)
    async with server:
        yield server.sockets[0].getsockname()[1], flooded


@pytest.mark.integration
async def test_a_flooding_device_is_dropped_and_reported_while_the_others_are_polled() -> None:
    polls = {"meter": 0, "flooder": 0}

    def poller(meter: ModbusTcpDevice) -> DevicePoller:
        async def sink(readings: list[Reading]) -> None:
            polls[meter.name] += all(r.value is not None for r in readings)

        config = [PollerConfig(device=meter.name, interval_s=0.2)]
        return DevicePoller(meter, config, lambda: ModbusClient(meter), sink)

    def good(transaction: int, _request: bytes) -> list[bytes]:
        return [mbap(transaction, registers_answer([230]))]

    async with device(good) as good_port, flooding_device() as (flood_port, flooded):
        meter = power_meter(good_port)
        flooder = power_meter(flood_port).model_copy(update={"name": "flooder"})
        pollers = [poller(meter), poller(flooder)]
        tasks = [asyncio.create_task(p.run()) for p in pollers]
        try:
            # The flooding connection is given up (and made again) rather than read without end.
            await async_wait_until(lambda: len(flooded) >= 3, 30, "the flooding device reconnected twice")
            reported = polls["meter"]
            await async_wait_until(lambda: polls["meter"] >= reported + 10, 30, "ten more polls of the meter")
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    statistics = pollers[1].statistics()
    assert statistics.health in (Health.DEGRADED, Health.DOWN)
    assert statistics.last_error is not None
    assert "flooding" in statistics.last_error or "answered transaction 4" in statistics.last_error
    assert pollers[0].statistics().health is Health.UP
