"""The networked simulator: the site's physics on a clock, and every device served on loopback
(port plan in layout.py): main meters and a sub-meter gateway on Modbus TCP, the information centre's
sub-meters on an RS-485 bus (a socat pty pair), and a BACnet/IP device per controller.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from dataclasses import dataclass
from datetime import timedelta
from types import TracebackType
from typing import Self

from edge_agent.clock import Clock
from edge_sim.control import control_port, serve
from edge_sim.devices.bacnet.controllers import (
    AhuController,
    Controller,
    LightingController,
    PlantController,
    RoomController,
)
from edge_sim.devices.meters.base import MeterModel
from edge_sim.devices.modbus_servers import ModbusRtuMeterBus, ModbusTcpMeterServer
from edge_sim.faults import MODBUS_ONLY, Fault, FaultKind
from edge_sim.layout import BACNET_OFFSET, DEFAULT_BASE_PORT, DEFAULT_HOST, bacnet_instance, rs485_link
from edge_sim.physics.sun import KST
from edge_sim.site.site import Site
from edge_sim.site_meters import METERS, RS485, MeteredCircuit

TICK_S = 0.1  # wall-clock seconds between physics updates
WARM_UP = timedelta(days=1)
HOST_PORT_OFFSETS = {"main-library": 0, "main-info-centre": 1, "gateway": 2}


@dataclass(frozen=True, slots=True)
class Endpoint:
    """How a client reaches one simulated device."""

    name: str
    protocol: str
    address: str  # host:port, or a serial device path
    detail: str  # 'unit 1' or 'device 1001'

    def line(self) -> str:
        return f"{self.name:<30} {self.protocol:<11} {self.address:<22} {self.detail}"


class Simulator:
    def __init__(
        self,
        clock: Clock,
        base_port: int = DEFAULT_BASE_PORT,
        host: str = DEFAULT_HOST,
        *,
        seed: int = 0,
        serial_bus: bool = True,
        control: bool = True,
        rs485_line: tuple[int, str, int] = (9600, "N", 1),
        hangul_names: bool = False,
    ) -> None:
        """`rs485_line`: the RS-485 bus's baud rate, parity and stop bits (its meters answer only a client
        at that setting, as far as a pty tells: modbus_servers.py); `hangul_names`: the room controllers
        name themselves and their objects in Korean ("1층 열람실 온도")."""
        self.clock = clock
        self.host = host
        self.control_port = control_port(base_port) if control else None
        # Start a day early and run to the clock's time, so the building's thermal mass is not at its guess.
        self.site = Site(clock.now() - WARM_UP, seed=seed)
        self.site.advance_to(clock.now())
        self.circuits = [MeteredCircuit(p, self.site.building(p.building)) for p in METERS]
        if not serial_bus:
            self.circuits = [c for c in self.circuits if c.plan.host != RS485]
        self.hosts: dict[str, ModbusTcpMeterServer | ModbusRtuMeterBus] = {
            key: ModbusTcpMeterServer(host, base_port + offset, self._models(key))
            for key, offset in HOST_PORT_OFFSETS.items()
        }
        if serial_bus:
            baudrate, parity, stopbits = rs485_line
            self.hosts[RS485] = ModbusRtuMeterBus(
                self._models(RS485),
                baudrate=baudrate,
                parity=parity,
                stopbits=stopbits,
                client_link=rs485_link(base_port),
            )
        self._hangul_names = hangul_names
        self.controllers = self._controllers(base_port + BACNET_OFFSET)
        self._stack = contextlib.AsyncExitStack()
        self._stuck: set[str] = set()  # devices whose values stopped changing
        self._offline: set[str] = set()  # BACnet devices that stopped answering

    def _models(self, host: str) -> list[MeterModel]:
        return [c.plan.model for c in self.circuits if c.plan.host == host]

    def _controllers(self, first_port: int) -> list[Controller]:
        controllers: list[Controller] = []
        ports = itertools.count(first_port)

        def address() -> str:
            return f"{self.host}:{next(ports)}"

        for index, building in enumerate(self.site.buildings.values(), start=1):
            controllers.append(PlantController(building, bacnet_instance(index, "plant"), address()))
            controllers.append(AhuController(building, bacnet_instance(index, "ahu"), address()))
            controllers.append(LightingController(building, bacnet_instance(index, "lighting"), address()))
            for number, zone in enumerate(building.zones, start=1):
                instance = bacnet_instance(index, "room", number)
                room = RoomController(
                    zone, instance, address(), building.spec.name, hangul=self._hangul_names
                )
                controllers.append(room)
        return controllers

    def controller(self, name: str) -> Controller:
        for controller in self.controllers:
            if controller.info.name == name:
                return controller
        raise KeyError(name)

    def circuit(self, name: str) -> MeteredCircuit:
        for circuit in self.circuits:
            if circuit.plan.name == name:
                return circuit
        raise KeyError(name)

    async def inject(self, device: str, fault: Fault | None) -> None:
        """Inject a fault into a device by name (faults.py), or clear it with None."""
        if any(c.plan.name == device for c in self.circuits):
            plan = self.circuit(device).plan
            self.hosts[plan.host].set_fault(plan.model.unit_id, fault)
            self._stuck.discard(device)
            if fault is not None and fault.kind is FaultKind.STUCK:
                self._stuck.add(device)
            return
        controller = self.controller(device)
        if fault is not None and fault.kind in MODBUS_ONLY:
            raise ValueError(f"{device} is a BACnet device: {fault.kind} applies to Modbus devices only")
        if device in self._offline and (fault is None or fault.kind is not FaultKind.OFFLINE):
            await controller.stack.__aenter__()
            self._offline.discard(device)
        self._stuck.discard(device)
        if fault is not None and fault.kind is FaultKind.OFFLINE and device not in self._offline:
            await controller.stack.close()
            self._offline.add(device)
        elif fault is not None and fault.kind is FaultKind.STUCK:
            self._stuck.add(device)

    def faults(self) -> dict[str, str]:
        """The faults in force, by device name."""
        found = {name: str(FaultKind.STUCK) for name in self._stuck}
        found.update({name: str(FaultKind.OFFLINE) for name in self._offline})
        for circuit in self.circuits:
            fault = self.hosts[circuit.plan.host].faults.get(circuit.plan.model.unit_id)
            if fault is not None:
                found[circuit.plan.name] = str(fault.kind)
        return found

    def endpoints(self) -> list[Endpoint]:
        endpoints = []
        for circuit in self.circuits:
            plan = circuit.plan
            server = self.hosts[plan.host]
            if isinstance(server, ModbusRtuMeterBus):
                address, protocol = server.client_port, "modbus-rtu"
            else:
                address, protocol = f"{server.host}:{server.port}", "modbus-tcp"
            model = type(plan.model).__name__
            endpoints.append(Endpoint(plan.name, protocol, address, f"unit {plan.model.unit_id} ({model})"))
        for controller in self.controllers:
            info = controller.info
            endpoints.append(Endpoint(info.name, "bacnet-ip", info.address, f"device {info.instance}"))
        return endpoints

    async def __aenter__(self) -> Self:
        async with contextlib.AsyncExitStack() as stack:
            for server in self.hosts.values():
                await stack.enter_async_context(server)
            for controller in self.controllers:
                await stack.enter_async_context(controller.stack)
            if self.control_port is not None:
                control = await serve(self, self.host, self.control_port)
                stack.push_async_callback(_close_server, control)
            await self.step()
            task = asyncio.create_task(self._run(), name="edge-sim physics")
            stack.push_async_callback(_cancel, task)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._stack.aclose()

    async def step(self) -> None:
        """Advance the physics to the clock's now and show the new state on every device."""
        self.site.advance_to(self.clock.now())
        local = self.site.now.astimezone(KST)
        for controller in self.controllers:
            if controller.info.name not in self._stuck:
                controller.sync(local, self.site.outdoor)
        for circuit in self.circuits:
            reading = circuit.reading(self.site.now)
            if circuit.plan.name not in self._stuck:
                await self.hosts[circuit.plan.host].show(circuit.plan.model.unit_id, reading)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            await self.step()


async def _close_server(server: asyncio.Server) -> None:
    server.close()
    await server.wait_closed()


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
