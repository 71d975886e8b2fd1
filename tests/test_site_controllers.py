"""The site's simulated BACnet controllers obey the highest active priority and fall back to their own
sequence once everything is relinquished (over real BACnet/IP on loopback)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from bacpypes3.primitivedata import Null

from edge_agent.config import BacnetConfig
from edge_agent.protocols.bacnet.app import BacnetApplication
from edge_agent.protocols.bacnet.client import local_stack
from edge_sim.devices.bacnet.controllers import LightingController, PlantController, RoomController
from edge_sim.physics.climate import SCENARIOS
from edge_sim.physics.sun import KST
from edge_sim.site.site import Site
from tests.support import LOOPBACK, free_port

pytestmark = pytest.mark.integration

OPEN_HOURS = SCENARIOS["summer"].start + timedelta(hours=14)  # Monday 14:00, library open


@pytest.fixture
async def client() -> AsyncIterator[BacnetApplication]:
    async with local_stack(BacnetConfig(local_address=f"{LOOPBACK}:0")) as stack:
        yield stack


async def read(client: BacnetApplication, port: int, obj: str, prop: str = "present-value") -> Any:
    async with asyncio.timeout(5):
        return await client.app.read_property(f"{LOOPBACK}:{port}", obj, prop)


async def write(client: BacnetApplication, port: int, obj: str, value: object, priority: int) -> None:
    async with asyncio.timeout(5):
        await client.app.write_property(f"{LOOPBACK}:{port}", obj, "present-value", value, priority=priority)


async def test_room_setpoint_priorities_and_fallback(client: BacnetApplication) -> None:
    site = Site(OPEN_HOURS, seed=1)
    site.advance(600)
    zone = site.building("library").zone("reading-1")
    port = free_port()
    controller = RoomController(zone, 1301, f"{LOOPBACK}:{port}", "library")
    local = site.now.astimezone(KST)
    async with controller.stack:
        controller.sync(local, site.outdoor)
        assert float(await read(client, port, "analog-value,1")) == 26.0  # the sequence's occupied setpoint
        assert float(await read(client, port, "analog-input,1")) == pytest.approx(
            zone.thermal.t_air, abs=1e-3
        )

        await write(client, port, "analog-value,1", 27.5, priority=10)  # the agent
        controller.sync(local, site.outdoor)
        assert zone.overrides.cooling_sp == 27.5
        await write(client, port, "analog-value,1", 25.0, priority=8)  # an operator wins
        controller.sync(local, site.outdoor)
        assert zone.overrides.cooling_sp == 25.0
        await write(client, port, "analog-value,1", Null(()), priority=8)
        controller.sync(local, site.outdoor)
        assert zone.overrides.cooling_sp == 27.5  # back to the agent's priority 10
        await write(client, port, "analog-value,1", Null(()), priority=10)
        controller.sync(local, site.outdoor)
        assert zone.overrides.cooling_sp is None  # the controller's own sequence again

        night = (site.now + timedelta(hours=10)).astimezone(KST)
        controller.sync(night, site.outdoor)
        assert float(await read(client, port, "analog-value,1")) == 30.0  # its own setback, shown


async def test_plant_demand_limit_caps_the_plant(client: BacnetApplication) -> None:
    hot_morning = SCENARIOS["summer"].start + timedelta(days=3, hours=8)
    limited, free = Site(hot_morning, seed=1), Site(hot_morning, seed=1)
    port = free_port()
    controller = PlantController(limited.building("library"), 1100, f"{LOOPBACK}:{port}")
    async with controller.stack:
        await write(client, port, "analog-value,1", 25.0, priority=10)
        for _ in range(7 * 60):  # to the afternoon peak
            controller.sync(limited.now.astimezone(KST), limited.outdoor)
            limited.advance(60)
            free.advance(60)
        controller.sync(limited.now.astimezone(KST), limited.outdoor)
        shown_kw = float(await read(client, port, "analog-input,1"))
    plant, twin = limited.building("library"), free.building("library")
    assert plant.demand_limit_pct == 25.0
    assert plant.cooling.delivered_w <= 0.25 * plant.cooling.capacity_w + 1e-6
    assert plant.power.cooling < 0.9 * twin.power.cooling
    assert shown_kw == pytest.approx((plant.power.cooling + plant.power.heating) / 1000, rel=1e-4)


async def test_lighting_dimming_and_illuminance(client: BacnetApplication) -> None:
    site = Site(OPEN_HOURS, seed=1)
    site.advance(120)
    library = site.building("library")
    port = free_port()
    controller = LightingController(library, 1400, f"{LOOPBACK}:{port}")
    async with controller.stack:
        controller.sync(site.now.astimezone(KST), site.outdoor)
        assert float(await read(client, port, "analog-output,1")) == 100.0  # baseline: full during open hours
        bright = float(await read(client, port, "analog-input,1"))
        await write(client, port, "analog-output,1", 40.0, priority=10)
        controller.sync(site.now.astimezone(KST), site.outdoor)
        site.advance(60)
        controller.sync(site.now.astimezone(KST), site.outdoor)
        dimmed = float(await read(client, port, "analog-input,1"))
        zone = library.zones[0]
        assert zone.dimming_pct == 40.0
        assert dimmed == pytest.approx(bright - 0.6 * zone.spec.design_lux, rel=0.1)
        name = await read(client, port, "analog-output,1", "object-name")
        assert str(name) == "reading-1 Dimming Level"
