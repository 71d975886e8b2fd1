"""A broker that speaks only MQTT 3.1.1, made from a real mosquitto: a loopback front that answers an
MQTT 5 CONNECT as a 3.1.1 broker must (CONNACK, return code 1: unacceptable protocol version, then close)
and relays every other connection to mosquitto byte for byte."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TypeVar

from tests.support import LOOPBACK

REFUSE_PROTOCOL = b"\x20\x02\x00\x01"


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


class Front:
    """A loopback front of a real broker: each connection handled by `_client`, in a task of its own."""

    def __init__(self, broker_port: int) -> None:
        self.broker_port = broker_port
        self.port = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError

    def _spawn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.create_task(self._client(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


F = TypeVar("F", bound=Front)


@contextlib.asynccontextmanager
async def serving(front: F) -> AsyncIterator[F]:
    """The front listening on a loopback port of its own (`front.port`) until the block ends."""
    server = await asyncio.start_server(front._spawn, LOOPBACK, 0)
    front.port = server.sockets[0].getsockname()[1]
    try:
        yield front
    finally:
        server.close()
        for task in list(front._tasks):
            task.cancel()
        await asyncio.gather(*front._tasks, return_exceptions=True)
        await server.wait_closed()


class Mqtt311Front(Front):
    def __init__(self, broker_port: int) -> None:
        super().__init__(broker_port)
        self.refused_v5 = 0
        self.relayed = 0

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            # Fixed header (1 byte + up to 4 length bytes), then protocol name 'MQTT' and its level.
            head = await reader.readexactly(2)
            while head[-1] & 0x80:
                head += await reader.readexactly(1)
            variable = await reader.readexactly(7)
            if variable[6] == 5:
                self.refused_v5 += 1
                writer.write(REFUSE_PROTOCOL)
                await writer.drain()
                writer.close()
                return
            up_reader, up_writer = await asyncio.open_connection(LOOPBACK, self.broker_port)
            self.relayed += 1
            up_writer.write(head + variable)
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()


def mqtt311_front(broker_port: int) -> contextlib.AbstractAsyncContextManager[Mqtt311Front]:
    return serving(Mqtt311Front(broker_port))
