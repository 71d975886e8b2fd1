"""Modbus TCP: PDUs in MBAP frames (transaction id, protocol 0, length, unit id) on one asyncio connection.

A request is one struct.pack and one future; its answer is matched by transaction id, so a late answer to
a request the caller gave up on is dropped instead of being taken for the next one. A frame that is not
Modbus TCP (another protocol, a length out of range) means the stream cannot be trusted: the connection is
closed and the request fails as garbage.
"""

from __future__ import annotations

import asyncio
import struct

from edge_agent.protocols import modbus_pdu as pdu
from edge_agent.protocols.modbus_pdu import MalformedAnswer, Table

_HEADER = struct.Struct(">HHHB")  # transaction, protocol (0), length (unit + PDU), unit
_MAX_LENGTH = 254  # a unit id and the longest PDU (253 bytes)


class TcpWire(asyncio.Protocol):
    def __init__(self, host: str, port: int) -> None:
        self._host, self._port = host, port
        self._transport: asyncio.Transport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._received = bytearray()
        self._waiting: dict[int, asyncio.Future[bytes]] = {}  # by transaction id
        self._transaction = 0

    # --- the wire's side (modbus_wire.Wire) -------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    async def connect(self) -> None:
        self.close()
        loop = asyncio.get_running_loop()
        try:
            await loop.create_connection(lambda: self, self._host, self._port)
        except OSError as exc:
            raise ConnectionError(f"cannot connect to {self._host}:{self._port}: {exc}") from exc

    async def read(self, table: Table, unit: int, start: int, count: int) -> list[int] | list[bool]:
        request = pdu.read_request(table, start, count)
        answer = await self._exchange(unit, request)
        if table in ("coil", "discrete"):
            return pdu.bits(answer, request, count)
        return pdu.registers(answer, request)

    async def write_coil(self, unit: int, address: int, value: bool, *, multiple: bool) -> None:
        request = pdu.write_coil_request(address, value, multiple=multiple)
        pdu.check_write(await self._exchange(unit, request), request)

    async def write_registers(self, unit: int, address: int, words: list[int], *, multiple: bool) -> None:
        request = pdu.write_registers_request(address, words, multiple=multiple)
        pdu.check_write(await self._exchange(unit, request), request)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    async def _exchange(self, unit: int, request: bytes) -> bytes:
        transport, loop = self._transport, self._loop
        if transport is None or loop is None or transport.is_closing():
            raise ConnectionError("not connected")
        self._transaction = transaction = (self._transaction + 1) & 0xFFFF
        answer: asyncio.Future[bytes] = loop.create_future()
        self._waiting[transaction] = answer
        transport.write(_HEADER.pack(transaction, 0, len(request) + 1, unit) + request)
        try:
            return await answer
        finally:
            del self._waiting[transaction]

    # --- asyncio's side ---------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport, self._loop = transport, asyncio.get_running_loop()
        self._received.clear()

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._fail(ConnectionError("the device closed the connection" if exc is None else str(exc)))

    def data_received(self, data: bytes) -> None:
        received = self._received
        received += data
        while len(received) >= _HEADER.size:
            transaction, protocol, length, _unit = _HEADER.unpack_from(received)
            if protocol != 0 or not 2 <= length <= _MAX_LENGTH:
                self._fail(MalformedAnswer(f"not a Modbus TCP frame (protocol {protocol}, length {length})"))
                self.close()
                return
            end = 6 + length
            if len(received) < end:
                return
            answer = self._waiting.get(transaction)
            if answer is not None and not answer.done():
                answer.set_result(bytes(received[_HEADER.size : end]))
            del received[:end]  # (an answer nobody waits for any more is dropped)

    def _fail(self, error: Exception) -> None:
        for answer in self._waiting.values():
            if not answer.done():
                answer.set_exception(error)
