"""COV subscriptions against a simulated room controller served by a real bacpypes3 stack on loopback."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from bacpypes3.apdu import SubscribeCOVRequest
from bacpypes3.errors import ServicesError
from bacpypes3.pdu import Address
from bacpypes3.primitivedata import ObjectIdentifier

from edge_agent.config import BacnetConfig, BacnetDevice, BacnetPoint
from edge_agent.errors import DeviceRejected, DeviceUnreachable
from edge_agent.protocols.bacnet.app import BacnetApplication
from edge_agent.protocols.bacnet.client import BacnetClient, local_stack
from edge_agent.protocols.bacnet.cov import CovSubscriber
from edge_agent.protocols.base import PointResult
from edge_sim.devices.bacnet.controllers import RoomController
from edge_sim.physics.climate import SCENARIOS
from edge_sim.physics.sun import KST
from edge_sim.site.site import Site
from tests.support import LOOPBACK, async_wait_until, free_port

pytestmark = pytest.mark.integration

OPEN_HOURS = SCENARIOS["summer"].start + timedelta(hours=14)
POINTS = [
    BacnetPoint(name="zone_temperature", object="analog-input,1", unit="degC"),
    BacnetPoint(name="zone_co2", object="analog-input,2", unit="ppm"),
    BacnetPoint(name="cooling_setpoint", object="analog-value,1", unit="degC"),
    BacnetPoint(name="cooling_default", object="analog-value,1", property="relinquish-default", unit="degC"),
    BacnetPoint(name="device_status", object="device,1301", unit=""),  # a device object has no COV
]


@dataclass
class Room:
    controller: RoomController
    site: Site
    address: str

    @property
    def app(self) -> Any:
        return self.controller.stack.app

    def device(self, timeout_s: float = 2.0, address: str | None = None) -> BacnetDevice:
        return BacnetDevice(
            name="room-101", protocol="bacnet-ip", host=address or self.address, instance=1301,
            points=POINTS, timeout_s=timeout_s,
        )  # fmt: skip

    def warm_by(self, kelvin: float) -> None:
        self.controller.zone.thermal.t_air += kelvin
        self.controller.sync(self.site.now.astimezone(KST), self.site.outdoor)

    def subscriptions(self) -> int:
        """Active COV subscriptions on the simulated device."""
        return sum(len(d.cov_subscriptions) for d in self.app._cov_detections.values())


@pytest.fixture
async def room() -> AsyncIterator[Room]:
    site = Site(OPEN_HOURS, seed=1)
    address = f"{LOOPBACK}:{free_port()}"
    controller = RoomController(site.building("library").zone("reading-1"), 1301, address, "library")
    async with controller.stack:
        controller.sync(site.now.astimezone(KST), site.outdoor)
        yield Room(controller, site, address)


@pytest.fixture
async def stack() -> AsyncIterator[BacnetApplication]:
    async with local_stack(BacnetConfig(local_address=f"{LOOPBACK}:0")) as running:
        yield running


async def next_result(cov: CovSubscriber, timeout_s: float = 2.0) -> PointResult:
    async with asyncio.timeout(timeout_s):
        return await anext(cov)


def drain(cov: CovSubscriber) -> list[PointResult]:
    results: list[PointResult] = []
    with contextlib.suppress(asyncio.QueueEmpty):
        for _ in range(1000):
            results.append(cov.get_nowait())
    return results


@pytest.mark.parametrize("confirmed", [False, True], ids=["unconfirmed", "confirmed"])
async def test_notifications_follow_the_zone_by_cov_increment(
    room: Room, stack: BacnetApplication, confirmed: bool
) -> None:
    client = BacnetClient(room.device(), stack)
    cov = CovSubscriber(client, ["zone_temperature", "zone_co2"], confirmed=confirmed)
    async with cov:
        assert cov.cov_points == ("zone_temperature", "zone_co2")  # two at once, from one application
        initial = [await next_result(cov), await next_result(cov)]  # each subscription's initial value
        assert {r.point for r in initial} == {"zone_temperature", "zone_co2"}
        assert all(r.value is not None and r.error is None for r in initial)
        before = room.controller.zone.thermal.t_air
        room.warm_by(0.05)  # less than covIncrement (0.1): no notification
        room.warm_by(0.5)
        result = await next_result(cov)
        assert result.point == "zone_temperature"
        assert result.value == pytest.approx(before + 0.55, abs=1e-4)
        room.controller.zone.thermal.co2_ppm += 100
        room.controller.sync(room.site.now.astimezone(KST), room.site.outdoor)
        result = await next_result(cov)
        assert result.point == "zone_co2"
        assert result.value == pytest.approx(room.controller.zone.thermal.co2_ppm)
        with pytest.raises(asyncio.QueueEmpty):
            cov.get_nowait()
        assert room.subscriptions() == 2
        assert cov.statistics().notifications == 4
    assert room.subscriptions() == 0  # cancelled on close: nothing left dangling on the device
    assert stack.app._cov_contexts == {}


async def test_refused_and_unsuitable_points_are_polled(room: Room, stack: BacnetApplication) -> None:
    original = room.app.do_SubscribeCOVRequest

    async def deny_co2(apdu: Any) -> None:
        if apdu.monitoredObjectIdentifier == ObjectIdentifier("analog-input,2"):
            raise ServicesError("serviceRequestDenied")
        await original(apdu)

    room.app.do_SubscribeCOVRequest = deny_co2
    async with asyncio.timeout(5), CovSubscriber(BacnetClient(room.device(), stack)) as cov:
        assert cov.cov_points == ("zone_temperature", "cooling_setpoint")
        assert set(cov.polled_points) == {"zone_co2", "cooling_default", "device_status"}
        codes = {name: error.code for name, error in cov.refusals.items()}
        assert codes == {
            "zone_co2": "services:serviceRequestDenied",
            "device_status": "services:covSubscriptionFailed",
        }
        assert all(isinstance(e, DeviceRejected) and e.device == "room-101" for e in cov.refusals.values())
        assert room.subscriptions() == 2
    assert room.subscriptions() == 0


async def test_device_without_cov_is_asked_once_and_polled(room: Room, stack: BacnetApplication) -> None:
    room.app.do_SubscribeCOVRequest = None  # bacpypes3 rejects: unrecognized service
    async with asyncio.timeout(5), CovSubscriber(BacnetClient(room.device(), stack)) as cov:
        assert cov.cov_points == ()
        assert len(cov.polled_points) == len(POINTS)
        refusals = list(cov.refusals.values())
        assert len(refusals) == 4  # every present-value point; relinquish-default was never a candidate
        assert all(error is refusals[0] for error in refusals)  # asked once, the answer reused
        assert refusals[0].code == "reject unrecognizedService"


async def test_subscriptions_are_renewed_before_the_lifetime_ends(
    room: Room, stack: BacnetApplication
) -> None:
    """Lifetime 2 s, renewed at 1.5 s: after 2.6 s a change still arrives; a subscription made without
    renewal (by hand, same lifetime) has expired on the device by then."""
    address = Address(room.address)
    request = SubscribeCOVRequest(
        subscriberProcessIdentifier=4000,
        monitoredObjectIdentifier=ObjectIdentifier("analog-input,2"),
        issueConfirmedNotifications=False,
        lifetime=2,
        destination=address,
    )
    async with asyncio.timeout(5):
        await stack.app.request(request)
    assert room.subscriptions() == 1
    cov = CovSubscriber(BacnetClient(room.device(), stack), ["zone_temperature"], lifetime_s=2)
    async with cov:
        await next_result(cov)  # the initial value
        await asyncio.sleep(2.6)
        assert cov.statistics().renewals >= 1
        assert room.subscriptions() == 1  # ours, renewed; the other one expired
        unchanged = drain(cov)  # the device answers each renewal with the current value
        assert all(r.value == pytest.approx(room.controller.zone.thermal.t_air) for r in unchanged)
        room.warm_by(0.5)
        result = await next_result(cov)
        assert result.value == pytest.approx(room.controller.zone.thermal.t_air, abs=1e-4)
    assert room.subscriptions() == 0


async def test_a_renewal_confirms_a_value_the_device_does_not_send_again(
    room: Room, stack: BacnetApplication
) -> None:
    """A device that notifies only on change (not on renewal): each acknowledged renewal confirms the last
    value, so the point stays fresh while it does not change."""
    cov = CovSubscriber(BacnetClient(room.device(), stack), ["zone_temperature"], lifetime_s=2)
    async with cov:
        initial = await next_result(cov)
        for detection in room.app._cov_detections.values():  # from now on: silence, renewals acknowledged
            detection.send_cov_notifications = lambda subscription=None: None
        confirmed = await next_result(cov, timeout_s=4.0)  # renewed at 1.5 s
        assert confirmed == PointResult("zone_temperature", initial.value)
        assert cov.statistics().renewals >= 1
        assert cov.statistics().notifications == 1


async def test_silent_device_fails_open_within_its_timeout(stack: BacnetApplication) -> None:
    device = BacnetDevice(
        name="room-101", protocol="bacnet-ip", host=f"{LOOPBACK}:{free_port()}", instance=1301, points=POINTS,
        timeout_s=0.3,
    )  # fmt: skip
    cov = CovSubscriber(BacnetClient(device, stack))
    with pytest.raises(DeviceUnreachable) as caught:
        async with asyncio.timeout(2):
            await cov.__aenter__()
    assert caught.value.code == "timeout"
    assert stack.app._cov_contexts == {}
    await async_wait_until(lambda: not stack.app._requests, 1, "abandoned requests to clear")
