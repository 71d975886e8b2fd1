"""The agent's BACnet client against the simulator's room controller served by a real bacpypes3 stack."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from bacpypes3.apdu import AbortPDU, Error, ErrorRejectAbortNack, RejectPDU
from bacpypes3.errors import ExecutionError, PropertyError, RejectBufferOverflow
from bacpypes3.primitivedata import ObjectIdentifier

from edge_agent.clock import ManualClock
from edge_agent.config import BacnetConfig, BacnetDevice, BacnetPoint
from edge_agent.errors import DeviceError, DeviceRejected, DeviceUnreachable
from edge_agent.protocols.bacnet.app import BacnetApplication
from edge_agent.protocols.bacnet.batches import DeviceLimits, plan_batches
from edge_agent.protocols.bacnet.client import BacnetClient, active_priority, local_stack
from edge_agent.protocols.bacnet.errors import refusal_kind
from edge_agent.protocols.base import PointResult
from edge_sim.devices.bacnet.controllers import RoomController
from edge_sim.physics.climate import SCENARIOS
from edge_sim.physics.sun import KST
from edge_sim.simulator import Simulator
from edge_sim.site.site import Site
from tests.support import LOOPBACK, free_port

pytestmark = pytest.mark.integration

POINTS = [
    BacnetPoint(name="zone_temperature", object="analog-input,1", unit="degC"),
    BacnetPoint(name="cooling_setpoint", object="analog-value,1", unit="degC"),
    BacnetPoint(name="missing", object="analog-input,99", unit="degC"),
]


def room(address: str, instance: int = 1301) -> BacnetDevice:
    return BacnetDevice(name="room-101", protocol="bacnet-ip", host=address, instance=instance, points=POINTS)


@pytest.fixture
async def stack() -> AsyncIterator[BacnetApplication]:
    async with local_stack(BacnetConfig(local_address=f"{LOOPBACK}:0")) as running:
        yield running


READING_ROOM = "library-reading-1-vav"


def reading_room(sim: Simulator) -> BacnetDevice:
    return room(sim.controller(READING_ROOM).info.address)


async def test_reads_zone_temperature_and_setpoint(
    sim: Simulator, clock: ManualClock, stack: BacnetApplication
) -> None:
    clock.advance(900)
    await sim.step()
    client = BacnetClient(reading_room(sim), stack)
    async with asyncio.timeout(5), client:
        results = {r.point: r for r in await client.read(["zone_temperature", "cooling_setpoint"])}
    zone = sim.site.building("library").zone("reading-1")
    assert results["zone_temperature"].value == pytest.approx(zone.thermal.t_air, abs=1e-4)
    assert results["cooling_setpoint"].value == 26.0


async def test_unknown_object_is_a_per_point_error(sim: Simulator, stack: BacnetApplication) -> None:
    client = BacnetClient(reading_room(sim), stack)
    async with asyncio.timeout(5), client:
        results = {r.point: r for r in await client.read(["zone_temperature", "missing"])}
    assert results["zone_temperature"].error is None
    error = results["missing"].error
    assert isinstance(error, DeviceRejected)
    assert error.code == "object:unknownObject"
    assert "analog-input,99" in str(error)


async def test_write_at_priority_then_relinquish(sim: Simulator, stack: BacnetApplication) -> None:
    client = BacnetClient(reading_room(sim), stack)
    async with asyncio.timeout(5), client:
        zone = sim.site.building("library").zone("reading-1")
        await client.write("cooling_setpoint", 27.5, priority=10)
        await sim.step()
        assert zone.overrides.cooling_sp == 27.5  # the simulated controller obeys it
        await client.write("cooling_setpoint", None, priority=10)
        await sim.step()
        assert zone.overrides.cooling_sp is None  # back to its own sequence
        assert (await client.read(["cooling_setpoint"]))[0].value == 26.0


async def test_sensor_refuses_a_write(sim: Simulator, stack: BacnetApplication) -> None:
    client = BacnetClient(reading_room(sim), stack)
    async with asyncio.timeout(5), client:
        with pytest.raises(DeviceRejected) as caught:
            await client.write("zone_temperature", 10.0)
    assert caught.value.code == "property:writeAccessDenied"


async def test_silent_device_is_bounded_by_the_caller(stack: BacnetApplication) -> None:
    client = BacnetClient(room(f"{LOOPBACK}:{free_port()}"), stack)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.5):
            await client.open()


async def test_silent_device_becomes_unreachable_when_the_stack_gives_up(stack: BacnetApplication) -> None:
    client = BacnetClient(room(f"{LOOPBACK}:{free_port()}"), stack)
    with pytest.raises(DeviceUnreachable) as caught:
        async with asyncio.timeout(10):
            await client.open()
    assert caught.value.code == "abort noResponse"
    assert "room-101" in str(caught.value)


# --- batching, refusals, priority arrays: against one simulated room controller ------------------------

OPEN_HOURS = SCENARIOS["summer"].start + timedelta(hours=14)
ATTRIBUTES = {
    "present-value": "presentValue",
    "units": "units",
    "out-of-service": "outOfService",
    "event-state": "eventState",
    "cov-increment": "covIncrement",
    "relinquish-default": "relinquishDefault",
}
SENSOR_PROPERTIES = ["present-value", "units", "out-of-service", "event-state", "cov-increment"]
SETPOINT_PROPERTIES = ["present-value", "relinquish-default", "cov-increment", "units"]
OBJECTS = [
    *[(f"analog-input,{i}", p) for i in range(1, 5) for p in SENSOR_PROPERTIES],
    *[(f"analog-value,{i}", p) for i in (1, 2) for p in SETPOINT_PROPERTIES],
    ("binary-input,1", "present-value"),
]
MANY = [BacnetPoint(name=f"{o.replace(',', '.')}.{p}", object=o, property=p) for o, p in OBJECTS]


@dataclass
class Served:
    controller: RoomController
    address: str

    @property
    def app(self) -> Any:
        return self.controller.stack.app

    def device(self, points: list[BacnetPoint] = MANY, timeout_s: float = 2.0) -> BacnetDevice:
        return BacnetDevice(
            name="room-101", protocol="bacnet-ip", host=self.address, instance=1301, points=points,
            timeout_s=timeout_s,
        )  # fmt: skip

    def expected(self, point: BacnetPoint) -> float:
        obj = self.app.get_object_id(ObjectIdentifier(point.object))
        return float(getattr(obj, ATTRIBUTES[point.property]))

    def count(self, service: str, refuse: Callable[[Any], None] | None = None) -> list[int]:
        """Wrap the device's handler of `service`: the list gets each request's property count; `refuse`
        may raise to refuse a request."""
        seen: list[int] = []
        original = getattr(self.app, f"do_{service}")

        async def handler(apdu: Any) -> None:
            specs = getattr(apdu, "listOfReadAccessSpecs", None)
            seen.append(sum(len(s.listOfPropertyReferences) for s in specs) if specs else 1)
            if refuse is not None:
                refuse(apdu)
            await original(apdu)

        setattr(self.app, f"do_{service}", handler)
        return seen


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    site = Site(OPEN_HOURS, seed=1)
    address = f"{LOOPBACK}:{free_port()}"
    controller = RoomController(site.building("library").zone("reading-1"), 1301, address, "library")
    async with controller.stack:
        controller.sync(site.now.astimezone(KST), site.outdoor)
        yield Served(controller, address)


def assert_all_right(served: Served, results: list[PointResult]) -> None:
    assert [r.point for r in results] == [p.name for p in MANY]
    for point, result in zip(MANY, results, strict=True):
        assert result.error is None, result.error
        assert result.value == pytest.approx(served.expected(point)), point.name


async def test_many_points_read_in_small_batches(served: Served, stack: BacnetApplication) -> None:
    requests = served.count("ReadPropertyMultipleRequest")
    client = BacnetClient(served.device(), stack, max_batch=4)
    async with asyncio.timeout(5), client:
        assert client.read_budget_s([p.name for p in MANY]) == 2.0 * 8
        results = await client.read([p.name for p in MANY])
    assert_all_right(served, results)
    assert requests == [4, 4, 4, 4, 4, 4, 4, 1]


async def test_batches_fit_a_small_apdu_without_refusal(served: Served) -> None:
    """The local stack accepts 206-byte APDUs and no segmentation: the device aborts any response that does
    not fit, so the size estimate must be right (conservative) for the read to go through unrefused."""
    config = BacnetConfig(local_address=f"{LOOPBACK}:0")
    requests = served.count("ReadPropertyMultipleRequest")
    async with local_stack(config, max_apdu=206, segmentation="noSegmentation") as small:
        client = BacnetClient(served.device(), small)
        async with asyncio.timeout(5), client:
            assert client.limits.request_bytes == client.limits.response_bytes == 206
            results = await client.read([p.name for p in MANY])
        assert_all_right(served, results)
        assert client.batch_limit is None  # nothing was refused
        assert len(requests) >= 3
        assert sum(requests) == len(MANY)


def refuse_big(error: BaseException, limit: int = 6) -> Callable[[Any], None]:
    def refuse(apdu: Any) -> None:
        if sum(len(s.listOfPropertyReferences) for s in apdu.listOfReadAccessSpecs) > limit:
            raise error

    return refuse


@pytest.mark.parametrize(
    "error", [RejectBufferOverflow(), ExecutionError("services", "abortApduTooLong")], ids=["reject", "error"]
)
async def test_refused_batches_are_halved_and_the_size_kept(
    served: Served, stack: BacnetApplication, error: BaseException
) -> None:
    requests = served.count("ReadPropertyMultipleRequest", refuse_big(error))
    client = BacnetClient(served.device(), stack)
    async with asyncio.timeout(5), client:
        results = await client.read([p.name for p in MANY])
        assert_all_right(served, results)
        assert requests[:4] == [29, 14, 7, 3]  # refused, refused, refused, read
        assert client.batch_limit == 3
        requests.clear()
        assert_all_right(served, await client.read([p.name for p in MANY]))
    assert requests == [3] * 9 + [2]  # no more refusals


async def test_device_aborting_a_too_big_answer_gets_smaller_batches(served: Served) -> None:
    """The device's own segmentation machine aborts (segmentation-not-supported) an answer bigger than the
    206 bytes the local stack accepts: the client, told the link takes 1476 bytes, learns otherwise."""
    requests = served.count("ReadPropertyMultipleRequest")
    config = BacnetConfig(local_address=f"{LOOPBACK}:0")
    async with local_stack(config, max_apdu=206, segmentation="noSegmentation") as small:
        client = BacnetClient(served.device(), small)
        async with asyncio.timeout(5), client:
            client.limits = DeviceLimits(max_apdu=1476, local_max_apdu=1476)  # a wrong belief
            assert_all_right(served, await client.read([p.name for p in MANY]))
            assert requests[0] == len(MANY)  # refused
            learned = client.batch_limit
            assert learned is not None
            assert learned < len(MANY)
            requests.clear()
            assert_all_right(served, await client.read([p.name for p in MANY]))
            assert client.batch_limit == learned  # no refusal the second time
            assert len(requests) == len(plan_batches(OBJECTS, client.limits, learned))


async def test_device_without_rpm_is_read_property_by_property(
    served: Served, stack: BacnetApplication
) -> None:
    served.app.do_ReadPropertyMultipleRequest = None  # bacpypes3 rejects: unrecognized service
    single = served.count("ReadPropertyRequest")
    client = BacnetClient(served.device(), stack)
    async with asyncio.timeout(5), client:
        single.clear()  # open's two reads
        results = await client.read([p.name for p in MANY])
        assert not client.rpm_supported
        assert client.read_budget_s([p.name for p in MANY]) == 2.0 * len(MANY)
    assert_all_right(served, results)
    assert len(single) == len(MANY)


async def test_a_batch_of_unknown_objects_becomes_per_point_errors(
    served: Served, stack: BacnetApplication
) -> None:
    client = BacnetClient(served.device(POINTS), stack, max_batch=1)
    async with asyncio.timeout(5), client:
        results = {r.point: r for r in await client.read(["zone_temperature", "missing"])}
    assert results["zone_temperature"].value == pytest.approx(served.controller.zone.thermal.t_air)
    error = results["missing"].error
    assert isinstance(error, DeviceRejected)
    assert error.code == "object:unknownObject"


async def test_open_reads_the_device_limits_or_falls_back(served: Served, stack: BacnetApplication) -> None:
    client = BacnetClient(served.device(), stack)
    async with asyncio.timeout(5), client:
        assert (client.limits.max_apdu, client.limits.segmentation) == (1024, "segmentedBoth")

    def unknown(apdu: Any) -> None:
        if apdu.propertyIdentifier.attr in ("maxApduLengthAccepted", "segmentationSupported"):
            raise PropertyError("unknownProperty")

    served.count("ReadPropertyRequest", unknown)
    client = BacnetClient(served.device(), stack)
    async with asyncio.timeout(5), client:
        assert (client.limits.max_apdu, client.limits.segmentation) == (480, "noSegmentation")
        assert_all_right(served, await client.read([p.name for p in MANY]))
    client = BacnetClient(served.device(), stack, max_apdu=206)
    async with asyncio.timeout(5), client:
        assert client.limits.max_apdu == 206


async def test_priority_array_after_writes_at_8_and_10(served: Served, stack: BacnetApplication) -> None:
    client = BacnetClient(served.device(POINTS), stack)
    async with asyncio.timeout(5), client:
        assert await client.read_priority_array("cooling_setpoint") == [None] * 16
        assert await client.read_active_priority("cooling_setpoint") is None
        await client.write("cooling_setpoint", 27.5, priority=10)  # the agent
        await client.write("cooling_setpoint", 25.0, priority=8)  # an operator
        slots = await client.read_priority_array("cooling_setpoint")
        assert slots[7] == 25.0
        assert slots[9] == 27.5
        assert [s for i, s in enumerate(slots) if i not in (7, 9)] == [None] * 14
        assert active_priority(slots) == 8
        await client.write("cooling_setpoint", None, priority=8)
        assert await client.read_active_priority("cooling_setpoint") == 10
        with pytest.raises(DeviceRejected) as caught:
            await client.read_priority_array("zone_temperature")  # a sensor has none
    assert caught.value.code == "property:unknownProperty"


def test_plan_batches_share_object_overhead_and_never_starve() -> None:
    limits = DeviceLimits(max_apdu=50, local_max_apdu=1024)
    same = [("analog-input,1", p) for p in SENSOR_PROPERTIES]
    spread = [(f"analog-input,{i}", "present-value") for i in range(1, 6)]
    assert len(plan_batches(same, limits, None)) < len(plan_batches(spread, limits, None))
    assert plan_batches([("analog-value,1", "priority-array")] * 1, DeviceLimits(max_apdu=50), None) == [
        [("analog-value,1", "priority-array")]
    ]
    assert [len(b) for b in plan_batches(spread, DeviceLimits(max_apdu=1476), 2)] == [2, 2, 1]


@pytest.mark.parametrize(
    ("refusal", "kind", "code"),
    [
        (AbortPDU(reason="noResponse"), "unreachable", "abort noResponse"),
        (AbortPDU(reason="segmentationNotSupported"), "too-big", "abort segmentationNotSupported"),
        (AbortPDU(reason="other"), "error", "abort other"),
        (RejectPDU(reason="unrecognizedService"), "unsupported", "reject unrecognizedService"),
        (RejectPDU(reason="bufferOverflow"), "too-big", "reject bufferOverflow"),
        (Error(service_choice=12, errorClass="services", errorCode="abortBufferOverflow"), "too-big", None),
        (
            Error(service_choice=14, errorClass="object", errorCode="unknownObject"),
            "error",
            "object:unknownObject",
        ),
    ],
)
def test_every_refusal_is_classified_and_translated(
    refusal: ErrorRejectAbortNack, kind: str, code: str | None, stack: BacnetApplication
) -> None:
    assert refusal_kind(refusal) == kind
    with (
        pytest.raises(DeviceError) as caught,
        BacnetClient(room(f"{LOOPBACK}:47808"), stack).translated("analog-input,1"),
    ):
        raise refusal
    error = caught.value
    assert isinstance(error, DeviceUnreachable if kind == "unreachable" else DeviceRejected)
    assert error.device == "room-101"
    assert "analog-input,1" in error.address
    assert error.code == (code or "services:abortBufferOverflow")
