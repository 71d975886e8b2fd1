"""Modbus TCP: PDUs in MBAP frames (transaction id, protocol 0, length, unit id) on one asyncio connection.

A request is one struct.pack and one future; its answer is matched by transaction id, so a late answer to
a request the caller gave up on is dropped instead of being taken for the next one. A frame that is not
Modbus TCP (another protocol, a length out of range) means the stream cannot be trusted: the connection is
closed and the request fails as garbage.

An answer must carry the request's unit id, and a frame must answer a transaction sent lately: anything
else fails the waiting request as garbage from the device. Frames nobody waits for are counted: past
UNSOLICITED_BYTES in a row the connection stops reading (TCP holds the device back) and is closed at the
next request, which fails naming the flood; a device that floods cannot hold the loop.
"""

from __future__ import annotations

import asyncio
import collections
import struct

from edge_agent.errors import MalformedAnswer
from edge_agent.protocols.modbus import pdu
from edge_agent.protocols.modbus.pdu import Table

_HEADER = struct.Struct(">HHHB")  # transaction, protocol (0), length (unit + PDU), unit
_MAX_LENGTH = 254  # a unit id and the longest PDU (253 bytes)
UNSOLICITED_BYTES = 4096
"""Bytes of frames nobody asked for, in a row, after which a connection is given up as flooding."""
_RECENT = 16  # transactions answered lately whose repeated answers are dropped quietly
_ABANDONED = 1024  # transactions given up on (timed out) whose late answers are dropped quietly: on a
# connection that units share, hundreds of others' requests may pass before a slow unit's late answer


class TcpWire:
    def __init__(self, host: str, port: int) -> None:
        self._host, self._port = host, port
        self._connection: _Connection | None = None
        self._transaction = 0

    @property
    def connected(self) -> bool:
        return self._connection is not None and self._connection.open

    async def connect(self) -> None:
        self.close()
        loop = asyncio.get_running_loop()
        try:
            _, self._connection = await loop.create_connection(_Connection, self._host, self._port)
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
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    async def _exchange(self, unit: int, request: bytes) -> bytes:
        connection = self._connection
        if connection is None or not connection.open:
            raise ConnectionError("not connected")
        self._transaction = transaction = (self._transaction + 1) & 0xFFFF
        return await connection.exchange(transaction, unit, request)


class _Connection(asyncio.Protocol):
    """One TCP connection's frames; a new connection gets a new one, so nothing late from an old
    connection (its close, its answers) reaches the new."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._received = bytearray()
        self._waiting: dict[int, tuple[int, asyncio.Future[bytes]]] = {}  # by transaction id: unit, answer
        self._recent: collections.deque[int] = collections.deque(maxlen=_RECENT)
        self._abandoned: collections.deque[int] = collections.deque(maxlen=_ABANDONED)
        self._unsolicited = 0  # bytes of frames nobody asked for, since the last answer
        self._flooded: MalformedAnswer | None = None
        self.open = False

    async def exchange(self, transaction: int, unit: int, request: bytes) -> bytes:
        assert self._transport is not None
        if self._flooded is not None:  # found while nobody waited: this request reports it
            self.close()
            raise self._flooded
        answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._waiting[transaction] = (unit, answer)
        self._transport.write(_HEADER.pack(transaction, 0, len(request) + 1, unit) + request)
        try:
            return await answer
        finally:
            del self._waiting[transaction]
            # a late or repeated answer to it is stale, not a stranger's
            answered = answer.done() and not answer.cancelled()
            (self._recent if answered else self._abandoned).append(transaction)

    def close(self) -> None:
        self.open = False
        if self._transport is not None:
            self._transport.close()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport, self.open = transport, True

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        self._fail(ConnectionError("the device closed the connection" if exc is None else str(exc)))

    def data_received(self, data: bytes) -> None:
        if not self.open:  # closed: what was still in flight is not looked at
            return
        received = self._received
        received += data
        while len(received) >= _HEADER.size:
            transaction, protocol, length, unit = _HEADER.unpack_from(received)
            if protocol != 0 or not 2 <= length <= _MAX_LENGTH:
                self._fail(MalformedAnswer(f"not a Modbus TCP frame (protocol {protocol}, length {length})"))
                self.close()
                return
            end = 6 + length
            if len(received) < end:
                return
            waiting = self._waiting.get(transaction)
            if waiting is not None and not waiting[1].done():
                self._answer(waiting, unit, bytes(received[_HEADER.size : end]))
            else:
                self._unsolicited += end
                if transaction not in self._recent and transaction not in self._abandoned:
                    self._stranger(transaction)
                # (a late or repeated answer to a recent request: dropped)
            del received[:end]
            if self._unsolicited > UNSOLICITED_BYTES:
                self._flood()
                return

    def _answer(self, waiting: tuple[int, asyncio.Future[bytes]], unit: int, body: bytes) -> None:
        expected, answer = waiting
        self._unsolicited = 0
        if unit == expected:
            answer.set_result(body)
        else:
            answer.set_exception(MalformedAnswer(f"answered as unit {unit} to a request for unit {expected}"))

    def _stranger(self, transaction: int) -> None:
        """A frame for a transaction not sent on this connection lately: the waiting request fails."""
        sent = ", ".join(str(t) for t in self._waiting) or "none"
        self._fail(MalformedAnswer(f"answered transaction {transaction} (waiting for {sent})"))

    def _flood(self) -> None:
        self._flooded = MalformedAnswer(
            f"flooding: more than {UNSOLICITED_BYTES} bytes of frames nobody asked for; reconnecting"
        )
        self._received.clear()
        if self._waiting:
            self._fail(self._flooded)
            self.close()
        elif self._transport is not None:
            self._transport.pause_reading()  # the kernel's buffers fill and TCP holds the device back

    def _fail(self, error: Exception) -> None:
        for _, answer in self._waiting.values():
            if not answer.done():
                answer.set_exception(error)
