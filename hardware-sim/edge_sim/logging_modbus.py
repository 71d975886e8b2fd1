"""A hand-written Modbus TCP server that logs every write it receives: the device-side witness of the fault
bench (bench/faults). It also misbehaves on request, as some field devices do.

It serves one unit: input registers 0-199 hold float32 values (ABCD) that change on every read, so a poller
publishes something new each time; holding registers 0-199 hold what was last written (float32 0.0 at
start). Every write (function 06 or 16) is appended to the log as one JSON line
`{"t": unix time, "fc": 16, "unit": 1, "address": 100, "words": [...], "value": 12.5}` (`value`: the first two
words as a float32), and every second with reads a line `{"t": ..., "reads": N, "points": P}` (P: float32
values read, two registers each).

| mode       | behaviour                                                               |
|------------|-------------------------------------------------------------------------|
| normal     | answers as a Modbus device does                                         |
| garbage    | answers every request with random bytes                                 |
| wrong-unit | answers correctly, but from another unit id                             |
| flood      | answers correctly, and sends a stream of unsolicited frames besides     |

Run: python -m edge_sim.logging_modbus --port PORT --log FILE [--mode MODE] [--unit 1]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import struct
import time
from pathlib import Path
from typing import IO

REGISTERS = 200
FLOOD_FRAMES_PER_S = 2000  # bounded: the flood must not starve the machine the bench runs on
MODES = ("normal", "garbage", "wrong-unit", "flood")


class LoggingModbusServer:
    def __init__(self, log: IO[str], mode: str = "normal", unit: int = 1) -> None:
        if mode not in MODES:
            raise ValueError(f"mode {mode!r}: expected one of {', '.join(MODES)}")
        self.log, self.mode, self.unit = log, mode, unit
        self.holding = [0] * REGISTERS
        self.reads = 0
        self.points = 0  # float32 values read (two registers each)
        self.tick = 0
        self._rng = random.Random(17)

    def _input_registers(self, start: int, count: int) -> list[int]:
        self.tick += 1
        words: list[int] = []
        for register in range(start, start + count):
            pair = register // 2
            high, low = struct.unpack(">HH", struct.pack(">f", pair * 10.0 + (self.tick % 1000) / 100))
            words.append(high if register % 2 == 0 else low)
        return words

    def _write_log(self, record: dict[str, object]) -> None:
        self.log.write(json.dumps(record) + "\n")
        self.log.flush()

    def answer(self, unit: int, pdu: bytes) -> bytes:
        """The response PDU to one request PDU."""
        function = pdu[0]
        if function in (3, 4) and len(pdu) == 5:
            start, count = struct.unpack(">HH", pdu[1:5])
            if not 1 <= count <= 125 or start + count > REGISTERS:
                return bytes([function | 0x80, 2])
            self.reads += 1
            self.points += count // 2
            words = (
                self.holding[start : start + count] if function == 3 else self._input_registers(start, count)
            )
            return bytes([function, 2 * count]) + struct.pack(f">{count}H", *words)
        if function == 6 and len(pdu) == 5:
            address, word = struct.unpack(">HH", pdu[1:5])
            return self._write(unit, function, address, [word], pdu[:5])
        if function == 16 and len(pdu) >= 6:
            address, count, size = *struct.unpack(">HH", pdu[1:5]), pdu[5]
            if size != 2 * count or len(pdu) != 6 + size:
                return bytes([function | 0x80, 3])
            return self._write(unit, function, address, list(struct.unpack(f">{count}H", pdu[6:])), pdu[:5])
        return bytes([function | 0x80, 1])

    def _write(self, unit: int, function: int, address: int, words: list[int], echo: bytes) -> bytes:
        if address + len(words) > REGISTERS:
            return bytes([function | 0x80, 2])
        self.holding[address : address + len(words)] = words
        value = struct.unpack(">f", struct.pack(">HH", *words[:2]))[0] if len(words) >= 2 else None
        record = {"t": time.time(), "fc": function, "unit": unit, "address": address, "words": words}
        self._write_log({**record, "value": value})
        return echo

    async def serve_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        flood = asyncio.create_task(self._flood(writer)) if self.mode == "flood" else None
        try:
            while True:
                header = await reader.readexactly(7)
                transaction, protocol, length, unit = struct.unpack(">HHHB", header)
                pdu = await reader.readexactly(length - 1) if length > 1 else b""
                if not pdu:
                    continue
                if self.mode == "garbage":
                    writer.write(self._rng.randbytes(self._rng.randint(1, 300)))
                else:
                    response = self.answer(unit, pdu)
                    answered_unit = (unit + 1) % 248 if self.mode == "wrong-unit" else unit
                    writer.write(
                        struct.pack(">HHHB", transaction, protocol, len(response) + 1, answered_unit)
                    )
                    writer.write(response)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            if flood is not None:
                flood.cancel()
            writer.close()

    async def _flood(self, writer: asyncio.StreamWriter) -> None:
        """Unsolicited, well-formed responses with transaction ids nobody asked for."""
        frame_pdu = bytes([4, 4]) + struct.pack(">HH", 0x4048, 0xF5C3)
        while True:
            for _ in range(FLOOD_FRAMES_PER_S // 100):
                transaction = self._rng.randint(0, 0xFFFF)
                writer.write(struct.pack(">HHHB", transaction, 0, len(frame_pdu) + 1, self.unit) + frame_pdu)
            await writer.drain()
            await asyncio.sleep(0.01)

    async def count_reads(self) -> None:
        while True:
            await asyncio.sleep(1)
            if self.reads:
                self._write_log({"t": time.time(), "reads": self.reads, "points": self.points})
                self.reads = self.points = 0


async def serve(port: int, log_path: Path, mode: str, unit: int) -> None:
    with log_path.open("a") as log:
        device = LoggingModbusServer(log, mode, unit)
        server = await asyncio.start_server(device.serve_client, "127.0.0.1", port)
        print(f"listening on 127.0.0.1:{port} ({mode})", flush=True)
        async with server:
            await device.count_reads()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--mode", choices=MODES, default="normal")
    parser.add_argument("--unit", type=int, default=1)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.port, args.log, args.mode, args.unit))


if __name__ == "__main__":
    main()
