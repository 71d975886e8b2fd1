"""What a Modbus link sends its requests through: a wire, framed for its transport.

Modbus TCP goes through the agent's own MBAP framing (modbus_tcp.py): it costs about a third of pymodbus'
client per request, and on a gateway polling a building's meters that is most of the CPU. RTU frames, on
an RS-485 bus or through a serial gateway, go through pymodbus (PymodbusWire), whose serial timing and
CRC handling are worth having; those wires are bound by the baud rate, not the CPU.

Every wire raises the same errors: ExceptionAnswer (the device refused), MalformedAnswer (garbage), and
ConnectionError (no connection, or it broke); pymodbus' own become these in errors.py. No wire bounds its own
calls: the link does.
"""

from __future__ import annotations

from typing import Protocol

from pymodbus.client.base import ModbusBaseClient

from edge_agent.protocols.modbus.errors import answer
from edge_agent.protocols.modbus.pdu import Table


class Wire(Protocol):
    @property
    def connected(self) -> bool: ...

    async def connect(self) -> None:
        """Open the connection; ConnectionError saying why it cannot."""
        ...

    async def read(self, table: Table, unit: int, start: int, count: int) -> list[int] | list[bool]:
        """`count` registers (input, holding) or bits (coil, discrete) from `start`."""
        ...

    async def write_coil(self, unit: int, address: int, value: bool, *, multiple: bool) -> None:
        """Function 05, or 15 for a device that only takes multiple writes."""
        ...

    async def write_registers(self, unit: int, address: int, words: list[int], *, multiple: bool) -> None:
        """Function 06 for one register unless `multiple`, else 16."""
        ...

    def close(self) -> None: ...


class PymodbusWire:
    """A pymodbus client (serial RTU, or RTU frames over TCP) as a wire."""

    def __init__(self, client: ModbusBaseClient) -> None:
        self._client = client

    @property
    def connected(self) -> bool:
        return bool(self._client.connected)

    async def connect(self) -> None:
        if not await self._client.connect():
            raise ConnectionError("cannot connect")

    async def read(self, table: Table, unit: int, start: int, count: int) -> list[int] | list[bool]:
        client = self._client
        read = {
            "coil": client.read_coils,
            "discrete": client.read_discrete_inputs,
            "input": client.read_input_registers,
            "holding": client.read_holding_registers,
        }[table]
        response = await answer(read(start, count=count, device_id=unit))
        return list(response.bits if table in ("coil", "discrete") else response.registers)

    async def write_coil(self, unit: int, address: int, value: bool, *, multiple: bool) -> None:
        if multiple:
            await answer(self._client.write_coils(address, [value], device_id=unit))
        else:
            await answer(self._client.write_coil(address, value, device_id=unit))

    async def write_registers(self, unit: int, address: int, words: list[int], *, multiple: bool) -> None:
        if len(words) == 1 and not multiple:
            await answer(self._client.write_register(address, words[0], device_id=unit))
        else:
            await answer(self._client.write_registers(address, words, device_id=unit))

    def close(self) -> None:
        self._client.close()
