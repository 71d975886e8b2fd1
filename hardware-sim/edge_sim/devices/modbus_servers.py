"""Simulated meters served over Modbus: TCP on loopback, or RTU on a virtual serial bus (a socat pty pair).

Both are async context managers to be entered inside a running event loop; `show(unit_id, reading)`
updates a meter's registers. Each RegisterWrite is applied without yielding to the event loop, so a
client never reads a half-updated block.

A pty carries bytes, not a line: a client at the wrong speed would be answered all the same. So the RTU
bus reads the line setting the client gave its end of the pty (termios) before it answers, and its meters
stay silent, as real ones would, when the speed or the stop bits differ from the bus's. Parity cannot be
simulated on a pty: Linux's pty driver drops the parity-enable flag (PARENB) a client sets, and the C
library (glibc's tcsetattr check) then fails the client's second setting of it with EINVAL, so a pymodbus
client cannot open a pty at 8E1 or 8O1 at all. A bus at 19200 8E1 therefore answers a client at 19200 8N1:
the speed and the stop bits are what it checks.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import shutil
import tempfile
import termios
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from pymodbus.constants import ExcCodes
from pymodbus.exceptions import NoSuchIdException
from pymodbus.framer import FramerType
from pymodbus.pdu import ExceptionResponse, ModbusPDU
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.server.base import ModbusBaseServer
from pymodbus.server.requesthandler import ServerRequestHandler
from pymodbus.simulator import SimDevice
from pymodbus.simulator.simcore import SimCore

from edge_sim.devices.meters.base import MeterModel, MeterReading
from edge_sim.faults import Fault, FaultKind, swap_words

# pymodbus logs frame hex dumps at ERROR for every client that goes away; they are not our errors.
logging.getLogger("pymodbus").setLevel(logging.CRITICAL)

SOCAT_START_TIMEOUT_S = 5.0
STOP_TIMEOUT_S = 5.0


class _KnownUnits(SimCore):
    """pymodbus answers a request for an unknown unit id with a datastore failure (a KeyError inside);
    this raises the error its servers handle: TCP answers exception 0x0B, RTU stays silent.
    It is also where injected faults (faults.py) change what a unit answers."""

    fault_of: Callable[[int], Fault | None] = staticmethod(lambda unit_id: None)
    line_matches: Callable[[], bool] = staticmethod(lambda: True)  # see ModbusRtuMeterBus.line_matches

    async def async_getValues(  # noqa: N802 (pymodbus name)
        self, device_id: int, func_code: int, address: int, count: int = 1
    ) -> list[int] | list[bool] | ExcCodes:
        self._check(device_id)
        if not self.line_matches():  # a request at another line setting arrives garbled: no meter answers
            raise NoSuchIdException(f"unit {device_id} hears another line setting")
        fault = self.fault_of(device_id)
        if fault is not None and fault.kind is FaultKind.OFFLINE:
            raise NoSuchIdException(f"unit {device_id} is offline")  # with ignore_missing_devices: silence
        if fault is not None and fault.kind is FaultKind.SLOW:
            await asyncio.sleep(fault.delay_s)
        if fault is not None and fault.kind is FaultKind.EXCEPTION:
            return ExcCodes(fault.code)
        values = await super().async_getValues(device_id, func_code, address, count)
        if fault is None or isinstance(values, ExcCodes) or func_code not in (3, 4):
            return values
        registers = [int(v) for v in values]
        if fault.kind is FaultKind.SWAP_WORDS:
            return swap_words(registers)
        if fault.kind is FaultKind.CORRUPT:
            return registers[:-1] or [0xFFFF, 0xFFFF]
        return registers

    async def async_setValues(  # noqa: N802 (pymodbus name)
        self, device_id: int, func_code: int, address: int, values: list[int] | list[bool]
    ) -> ExcCodes | None:
        self._check(device_id)
        return await super().async_setValues(device_id, func_code, address, values)

    def _check(self, device_id: int) -> None:
        if device_id not in self.devices:
            raise NoSuchIdException(f"no unit {device_id}")


class _AnswerEachRequest(ServerRequestHandler):
    """pymodbus' handler takes the ids of its answer from the connection's latest request, read after the
    datastore has answered: while a slow unit's request waits, the next request on the connection (another
    unit's, once the client gave up on the slow one) has become the latest, and the slow unit's registers
    went out under its transaction and unit id. A gateway answers each request under its own ids: this
    handler keeps each request (in arrival order) with the task that answers it."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)  # type: ignore[no-untyped-call]
        self._arrived: collections.deque[tuple[ModbusPDU, tuple[Any, ...] | None]] = collections.deque()
        self._answering: set[asyncio.Task[None]] = set()

    def callback_data(self, data: bytes, addr: tuple[Any, ...] | None = None) -> int:
        used = int(super().callback_data(data, addr))  # a request schedules one handle_later
        if self.last_pdu is not None:
            self._arrived.append((self.last_pdu, self.last_addr))
        return used

    def handle_later(self) -> None:
        request, addr = self._arrived.popleft()
        task = asyncio.get_running_loop().create_task(self._answer(request, addr))
        self._answering.add(task)
        task.add_done_callback(self._answering.discard)

    async def _answer(self, request: ModbusPDU, addr: tuple[Any, ...] | None) -> None:
        try:
            response = await request.datastore_update(self.server.context, request.dev_id)
        except NoSuchIdException:
            if self.server.ignore_missing_devices:
                return  # silent, as a unit that is not there
            response = ExceptionResponse(request.function_code, ExcCodes.GATEWAY_NO_RESPONSE)
        except Exception:  # the datastore failed: the device says so
            response = ExceptionResponse(request.function_code, ExcCodes.DEVICE_FAILURE)
        response.transaction_id, response.dev_id = request.transaction_id, request.dev_id
        self.server_send(response, addr)  # type: ignore[no-untyped-call]


class _TcpServer(ModbusTcpServer):
    def callback_new_connection(self) -> _AnswerEachRequest:
        return _AnswerEachRequest(self, self.trace_packet, self.trace_pdu, self.trace_connect)


class _MeterHost:
    def __init__(self, meters: Sequence[MeterModel]) -> None:
        self._meters: dict[int, MeterModel] = {}
        for meter in meters:
            if meter.unit_id in self._meters:
                raise ValueError(f"unit id {meter.unit_id} used twice")
            self._meters[meter.unit_id] = meter
        self._server: ModbusBaseServer | None = None
        self._always_silent = False  # TCP: an unknown unit gets exception 0x0B, as from a gateway
        self.faults: dict[int, Fault] = {}  # by unit id: see set_fault

    def _devices(self) -> list[SimDevice]:
        return [meter.sim_device() for meter in self._meters.values()]

    def _install(self, server: ModbusBaseServer, devices: list[SimDevice]) -> None:
        context = _KnownUnits(devices)
        context.fault_of = self._fault_of
        server.context = context
        self._units = context
        self._server = server

    def _fault_of(self, unit_id: int) -> Fault | None:
        return self.faults.get(unit_id)

    def set_fault(self, unit_id: int, fault: Fault | None) -> None:
        """Inject a fault into one unit's answers, or clear it with None."""
        if unit_id not in self._meters:
            raise KeyError(f"no meter with unit id {unit_id}")
        if fault is None:
            self.faults.pop(unit_id, None)
        else:
            self.faults[unit_id] = fault
        if self._server is not None:  # offline units stay silent: see _KnownUnits
            offline = any(f.kind is FaultKind.OFFLINE for f in self.faults.values())
            self._server.ignore_missing_devices = self._always_silent or offline

    async def show(self, unit_id: int, reading: MeterReading) -> None:
        """Make the meter with this unit id show `reading`."""
        if self._server is None:
            raise RuntimeError("meter server is not running")
        if unit_id not in self._meters:
            raise KeyError(f"no meter with unit id {unit_id}")
        for write in self._meters[unit_id].register_writes(reading):
            await self._server.async_setValues(unit_id, write.function_code, write.address, write.registers)

    async def _stop_server(self) -> None:
        if self._server is not None:
            await self._server.shutdown()  # type: ignore[no-untyped-call]
            self._server = None


class ModbusTcpMeterServer(_MeterHost):
    """Meters on one Modbus TCP server, one unit id each. Port 0 picks a free port; `port` then tells it.
    `framer=FramerType.RTU` makes it a serial gateway that passes RTU frames through over TCP."""

    def __init__(
        self, host: str, port: int, meters: Sequence[MeterModel], framer: FramerType = FramerType.SOCKET
    ) -> None:
        super().__init__(meters)
        self.host = host
        self.port = port
        self.framer = framer

    async def __aenter__(self) -> Self:
        devices = self._devices()
        server = _TcpServer(devices, address=(self.host, self.port), framer=self.framer)
        self._install(server, devices)
        try:
            await server.serve_forever(background=True)
        except RuntimeError as exc:  # pymodbus' way of saying the port is taken
            await self._stop_server()
            raise OSError(f"Modbus TCP {self.host}:{self.port}: cannot listen (in use?)") from exc
        except BaseException:
            await self._stop_server()
            raise
        listener = server.transport
        if isinstance(listener, asyncio.Server):
            self.port = int(listener.sockets[0].getsockname()[1])
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._stop_server()


class ModbusRtuMeterBus(_MeterHost):
    """Meters on one RS-485 bus, simulated by a socat pty pair in a temporary directory this object owns:
    the server opens `<dir>/bus-server`, a client opens `client_port` (`<dir>/bus-client`, or `client_link`
    when given: a fixed path that a configuration can name)."""

    def __init__(
        self,
        meters: Sequence[MeterModel],
        *,
        baudrate: int = 9600,
        parity: str = "N",
        stopbits: int = 1,
        bytesize: int = 8,
        client_link: str | None = None,
    ) -> None:
        super().__init__(meters)
        self._always_silent = True  # on RS-485 a unit that is not there stays silent
        self._client_link = client_link
        self.baudrate = baudrate
        self.parity = parity
        self.stopbits = stopbits
        self.bytesize = bytesize
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._socat: asyncio.subprocess.Process | None = None
        self._line_watch: int | None = None  # a descriptor of the client's end, for its termios
        self.client_port = ""

    @property
    def socat_pid(self) -> int | None:
        return self._socat.pid if self._socat else None

    async def __aenter__(self) -> Self:
        try:
            server_port = await self._start_socat()
            devices = self._devices()
            server = ModbusSerialServer(
                devices,
                framer=FramerType.RTU,
                port=server_port,
                baudrate=self.baudrate,
                parity="N",  # the server's own pty end: a pty carries no parity (see line_matches)
                stopbits=self.stopbits,
                bytesize=self.bytesize,
                ignore_missing_devices=True,  # on RS-485 a unit that is not there stays silent
                reconnect_delay=0,
            )
            self._install(server, devices)
            self._units.line_matches = self.line_matches
            await server.serve_forever(background=True)
            await asyncio.sleep(0)  # let the serial transport register its reader before anything else
        except BaseException:
            await self._stop()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._stop()

    def line_matches(self) -> bool:
        """Whether the client's end of the pty is set to the bus's speed and stop bits, as its termios say
        (read through a descriptor opened before any client: pymodbus opens the port exclusively)."""
        if self._line_watch is None:
            return True
        _iflag, _oflag, cflag, _lflag, _ispeed, ospeed, _cc = termios.tcgetattr(self._line_watch)
        two_stop_bits = bool(cflag & termios.CSTOPB)
        return ospeed == getattr(termios, f"B{self.baudrate}", None) and two_stop_bits == (self.stopbits == 2)

    async def _start_socat(self) -> str:
        socat = shutil.which("socat")
        if socat is None:
            raise RuntimeError("socat is not installed")
        self._dir = tempfile.TemporaryDirectory(prefix="edge-sim-rtu-")
        directory = Path(self._dir.name)
        server_port, client_port = directory / "bus-server", directory / "bus-client"
        if self._client_link is not None:  # a fixed path a configuration can name
            client_port = Path(self._client_link)
            if client_port.is_symlink():  # left behind by a run that was killed
                client_port.unlink()
        self._socat = await asyncio.create_subprocess_exec(
            socat,
            "-d",
            "-d",
            f"pty,raw,echo=0,link={server_port}",
            f"pty,raw,echo=0,link={client_port}",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        log = await self._socat_ready(self._socat)
        if not (server_port.exists() and client_port.exists()):
            raise RuntimeError(f"socat did not create the pty links: {log}")
        self.client_port = str(client_port)
        self._line_watch = os.open(client_port, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        return str(server_port)

    @staticmethod
    async def _socat_ready(socat: asyncio.subprocess.Process) -> str:
        """Read socat's notices until it starts transferring (both ptys are open); return what it said."""
        if socat.stderr is None:
            raise RuntimeError("socat's stderr is not a pipe")
        lines: list[str] = []
        try:
            async with asyncio.timeout(SOCAT_START_TIMEOUT_S):
                while True:
                    line = (await socat.stderr.readline()).decode(errors="replace")
                    if not line:
                        raise RuntimeError(f"socat exited: {''.join(lines)}")
                    lines.append(line)
                    if "starting data transfer loop" in line:
                        return "".join(lines)
        except TimeoutError:
            raise RuntimeError(
                f"socat did not start within {SOCAT_START_TIMEOUT_S} s: {''.join(lines)}"
            ) from None

    async def _stop(self) -> None:
        """Server first (it holds one pty), then socat, then the directory; each step runs whatever failed."""
        try:
            await self._stop_server()
        finally:
            if self._line_watch is not None:
                os.close(self._line_watch)
                self._line_watch = None
            try:
                await self._stop_socat()
            finally:
                if self._dir is not None:
                    self._dir.cleanup()
                    self._dir = None

    async def _stop_socat(self) -> None:
        socat, self._socat = self._socat, None
        if socat is None:
            return
        if socat.returncode is None:
            with contextlib.suppress(ProcessLookupError):  # it exited on its own, not reaped yet
                socat.terminate()
        try:
            await asyncio.wait_for(socat.communicate(), STOP_TIMEOUT_S)
        except TimeoutError:
            socat.kill()
            await asyncio.wait_for(socat.communicate(), STOP_TIMEOUT_S)
