"""A real mosquitto behind a loopback front that says "session taken over" as MQTT 5 brokers do.

mosquitto 2.0.11 (Debian 12's) closes the older of two connections with one client id without a word; MQTT 5
(3.1.4-3) asks for a DISCONNECT with reason code 0x8E first, which newer brokers send. The front relays every
connection byte for byte and, when a CONNECT names a client id that another MQTT 5 connection holds, sends
that one the DISCONNECT 0x8E and closes it, before mosquitto sees the new CONNECT.
"""

from __future__ import annotations

import asyncio
import contextlib

from tests.mqtt_proxy import Front, pipe, serving
from tests.support import LOOPBACK

SESSION_TAKEN_OVER = b"\xe0\x02\x8e\x00"  # DISCONNECT, reason 0x8E, no properties


def _varint(data: bytes, at: int) -> tuple[int, int]:
    """An MQTT variable byte integer at `at`: its value and where it ends."""
    value, shift = 0, 0
    while True:
        byte = data[at]
        value |= (byte & 0x7F) << shift
        at, shift = at + 1, shift + 7
        if not byte & 0x80:
            return value, at


def connect_client_id(body: bytes) -> tuple[str, int]:
    """The client id and protocol level of a CONNECT packet's body (after its fixed header)."""
    level = body[6]
    at = 10  # protocol name (2 + 4), level, flags, keepalive (2)
    if level == 5:
        properties, at = _varint(body, at)
        at += properties
    size = int.from_bytes(body[at : at + 2], "big")
    return body[at + 2 : at + 2 + size].decode(), level


class TakeoverFront(Front):
    def __init__(self, broker_port: int) -> None:
        super().__init__(broker_port)
        self.taken_over = 0  # DISCONNECT 0x8E sent
        self._holders: dict[str, asyncio.StreamWriter] = {}

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        client_id = None
        try:
            head = await reader.readexactly(2)
            while head[-1] & 0x80:
                head += await reader.readexactly(1)
            length, _ = _varint(head, 1)
            body = await reader.readexactly(length)
            client_id, level = connect_client_id(body)
            holder = self._holders.get(client_id)
            if holder is not None and level == 5 and not holder.is_closing():
                holder.write(SESSION_TAKEN_OVER)
                holder.close()
                self.taken_over += 1
            self._holders[client_id] = writer
            up_reader, up_writer = await asyncio.open_connection(LOOPBACK, self.broker_port)
            up_writer.write(head + body)
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
        finally:
            if client_id is not None and self._holders.get(client_id) is writer:
                del self._holders[client_id]


def takeover_front(broker_port: int) -> contextlib.AbstractAsyncContextManager[TakeoverFront]:
    return serving(TakeoverFront(broker_port))
