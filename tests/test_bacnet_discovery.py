"""Who-Is discovery and foreign-device registration, against simulated controllers (and a bacpypes3 BBMD)
on loopback. Controllers that should hear broadcasts bind 127.0.0.X/8:PORT, which gives bacpypes3 a
listener on 127.255.255.255:PORT."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import pytest
from bacpypes3.app import Application
from bacpypes3.basetypes import BDTEntry
from bacpypes3.local.device import DeviceObject
from bacpypes3.local.networkport import NetworkPortObject

from edge_agent.config import BacnetConfig, BacnetDevice, BacnetPoint
from edge_agent.protocols.bacnet.app import BacnetApplication
from edge_agent.protocols.bacnet.client import BacnetClient, local_stack
from edge_agent.protocols.bacnet.discovery import DiscoveredDevice, foreign_device_stack, who_is
from edge_sim.devices.bacnet.controllers import RoomController
from edge_sim.physics.climate import SCENARIOS
from edge_sim.physics.sun import KST
from edge_sim.site.site import Site
from tests.support import LOOPBACK, free_port

pytestmark = pytest.mark.integration

OPEN_HOURS = SCENARIOS["summer"].start + timedelta(hours=14)


@pytest.fixture
async def stack() -> AsyncIterator[BacnetApplication]:
    async with local_stack(BacnetConfig(local_address=f"{LOOPBACK}:0")) as running:
        yield running


@contextlib.asynccontextmanager
async def rooms(*addresses: str) -> AsyncIterator[list[RoomController]]:
    """Room controllers 1301, 1302, ... of the library, served at `addresses`."""
    site = Site(OPEN_HOURS, seed=1)
    zones = site.building("library").zones
    controllers = [
        RoomController(zone, 1301 + i, address, "library")
        for i, (zone, address) in enumerate(zip(zones, addresses, strict=False))
    ]
    async with contextlib.AsyncExitStack() as stack:
        for controller in controllers:
            await stack.enter_async_context(controller.stack)
            controller.sync(site.now.astimezone(KST), site.outdoor)
        yield controllers


async def test_directed_who_is_finds_the_controller_at_once(stack: BacnetApplication) -> None:
    address = f"{LOOPBACK}:{free_port()}"
    async with rooms(address):
        loop = asyncio.get_running_loop()
        started = loop.time()
        found = await who_is(stack, address, wait_s=3)
        assert loop.time() - started < 1  # a directed Who-Is ends with the one answer
    assert found == [DiscoveredDevice(1301, address, 999, 1024, "segmentedBoth")]


async def test_instance_range_is_asked_and_honoured(stack: BacnetApplication) -> None:
    address = f"{LOOPBACK}:{free_port()}"
    async with rooms(address):
        assert [d.instance for d in await who_is(stack, address, low=1300, high=1399, wait_s=1)] == [1301]
        assert await who_is(stack, address, low=2000, high=2999, wait_s=0.2) == []
    with pytest.raises(ValueError, match="both"):
        await who_is(stack, address, low=1)


async def test_directed_broadcast_finds_every_listening_controller(stack: BacnetApplication) -> None:
    port = free_port()
    listening = [f"127.0.0.2/8:{port}", f"127.0.0.3/8:{port}"]
    async with rooms(*listening, f"127.0.0.4:{port}"):  # the last has no prefix: deaf to broadcasts
        found = await who_is(stack, f"127.255.255.255:{port}", wait_s=0.5)
    assert [(d.instance, d.address) for d in found] == [
        (1301, f"127.0.0.2:{port}"),
        (1302, f"127.0.0.3:{port}"),
    ]


async def test_global_broadcast_without_a_broadcast_address_says_so(stack: BacnetApplication) -> None:
    with pytest.raises(ValueError, match="no broadcast address"):
        await who_is(stack, wait_s=0.1)


@contextlib.contextmanager
def bbmd_application(address: str) -> Iterator[Any]:
    """A bacpypes3 BBMD (device 1000) whose broadcast table holds itself, so it forwards what foreign devices
    distribute to its own subnet."""
    host_port = address.replace("/8", "")
    port = NetworkPortObject(
        address,
        objectIdentifier=("network-port", 1),
        objectName="NetworkPort-1",
        bacnetIPMode="bbmd",
        bbmdBroadcastDistributionTable=[BDTEntry(host_port)],
        bbmdAcceptFDRegistrations=True,
    )
    device = DeviceObject(objectIdentifier=("device", 1000), objectName="bbmd", vendorIdentifier=999)
    app = Application.from_object_list([device, port])
    try:
        yield app
    finally:
        for link in app.link_layers.values():
            link._fdt_clock_handle.cancel()
        app.close()


async def test_foreign_device_discovers_and_reads_through_a_bbmd() -> None:
    port = free_port()
    with bbmd_application(f"127.0.0.1/8:{port}") as bbmd:
        (bbmd_link,) = bbmd.link_layers.values()
        async with rooms(f"127.0.0.2/8:{port}", f"127.0.0.3/8:{port}"):
            config = BacnetConfig(local_address=f"{LOOPBACK}:0")
            async with foreign_device_stack(config, f"{LOOPBACK}:{port}", ttl_s=60) as stack:
                async with asyncio.timeout(2):
                    await stack.wait_registered()
                assert stack.registered
                assert len(bbmd_link.bbmdFDT) == 1
                found = await who_is(stack, wait_s=0.5)  # a global broadcast, distributed by the BBMD
                assert [(d.instance, d.address) for d in found] == [
                    (1000, f"127.0.0.1:{port}"),
                    (1301, f"127.0.0.2:{port}"),
                    (1302, f"127.0.0.3:{port}"),
                ]
                point = BacnetPoint(name="zone_temperature", object="analog-input,1", unit="degC")
                device = BacnetDevice(
                    name="room", protocol="bacnet-ip", host=found[1].address, instance=1301, points=[point]
                )
                async with asyncio.timeout(5), BacnetClient(device, stack) as client:
                    (result,) = await client.read(["zone_temperature"])
                assert result.error is None
                assert result.value is not None
            assert bbmd_link.bbmdFDT == []  # deregistered on close
