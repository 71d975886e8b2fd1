"""BACnet/IP through bacpypes3: one local stack for the whole agent, one client per remote device.

A read is split into ReadPropertyMultiple batches that fit what the device accepts: `open` reads the device
object's max-apdu-length-accepted and segmentation-supported once (480 bytes, no segmentation when they cannot
be read), and every batch's request and response are estimated conservatively against that. When the device
still refuses a batch as too big (abort segmentation-not-supported / buffer-overflow / apdu-too-long, a
reject, or an error that says so) the batch is halved and retried, and the smaller size is kept for the
client's lifetime. A device without RPM is read one property at a time.

bacpypes3's errors derive from BaseException (ErrorRejectAbortNack): every request runs inside `translated`
(errors.py), which raises DeviceErrors instead. No method takes a timeout: the caller bounds every call
(read_budget_s says how long a read may take); bacpypes3 itself gives up on a silent device after
APDU_TIMEOUT_MS.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Literal

from bacpypes3.apdu import ErrorRejectAbortNack
from bacpypes3.basetypes import ErrorType, PropertyIdentifier
from bacpypes3.local.device import DeviceObject
from bacpypes3.pdu import Address
from bacpypes3.primitivedata import Null, ObjectIdentifier

from edge_agent.config import BacnetConfig, BacnetDevice, BacnetPoint
from edge_agent.errors import DeviceError, DeviceGarbage, DeviceRejected
from edge_agent.protocols.bacnet.app import BacnetApplication, split_host_port
from edge_agent.protocols.bacnet.batches import (
    FALLBACK_MAX_APDU,
    LARGEST_MAX_APDU,
    DeviceLimits,
    Key,
    grouped,
    plan_batches,
)
from edge_agent.protocols.bacnet.errors import error_type, refusal_kind, translate, translated
from edge_agent.protocols.base import ClientContext, PointResult

# The stack's own confirmation timer; the caller's asyncio.timeout is the real bound. No stack retries:
# the device supervisor owns retrying.
APDU_TIMEOUT_MS = 3000

SegmentationName = Literal["segmentedBoth", "segmentedTransmit", "segmentedReceive", "noSegmentation"]


def local_stack(
    config: BacnetConfig, *, max_apdu: int | None = None, segmentation: SegmentationName | None = None
) -> BacnetApplication:
    """The agent's own BACnet/IP stack, bound to config.local_address. `max_apdu` and `segmentation` change
    what the stack says it accepts (bacpypes3's defaults: 1024 bytes, segmented both ways)."""
    return BacnetApplication(config.local_address, [local_device_object(config, max_apdu, segmentation)])


def local_device_object(
    config: BacnetConfig, max_apdu: int | None = None, segmentation: SegmentationName | None = None
) -> DeviceObject:
    extra: dict[str, Any] = {}
    if max_apdu is not None:
        extra["maxApduLengthAccepted"] = max_apdu
    if segmentation is not None:
        extra["segmentationSupported"] = segmentation
    return DeviceObject(
        objectIdentifier=("device", config.device_instance),
        objectName=f"edge-agent {config.device_instance}",
        vendorIdentifier=999,
        apduTimeout=APDU_TIMEOUT_MS,
        numberOfApduRetries=0,
        **extra,
    )


def number(value: Any) -> float:
    """Real, Unsigned, Integer, Boolean and Enumerated (binary present values) all become floats."""
    if isinstance(value, bool | int | float):
        number = float(value)
        if math.isfinite(number):
            return number
        raise TypeError(f"not a finite number: {number}")
    raise TypeError(f"{type(value).__name__} is not a number")


@functools.lru_cache(maxsize=1024)
def device_address(host: str) -> Address:
    """Parsed once per device: bacpypes3 may resolve a name, which blocks."""
    ip, port = split_host_port(host)
    return Address(f"{ip}:{port}")


@functools.lru_cache(maxsize=4096)
def _object_id(obj: str) -> ObjectIdentifier:
    """Parsed once: bacpypes3's identifiers are costly to build."""
    return ObjectIdentifier(obj)


@functools.lru_cache(maxsize=1024)
def _property_id(prop: str) -> PropertyIdentifier:
    return PropertyIdentifier(prop)


def active_priority(slots: Sequence[float | None]) -> int | None:
    """The priority (1-16) whose value the object shows, or None when every slot is relinquished."""
    return next((index for index, value in enumerate(slots, start=1) if value is not None), None)


def _name(value: Any) -> str:
    return str(getattr(value, "attr", value))


@dataclass(slots=True)
class BatchState:
    """What a device taught us about ReadPropertyMultiple: whether it has it, and the batch it takes."""

    rpm_supported: bool = True
    learned_batch: int | None = None  # halved from a refused batch's size

    def batch_limit(self, cap: int | None = None) -> int | None:
        """Properties per request: the smaller of `cap` and what was learned (None: no limit)."""
        limits = [n for n in (cap, self.learned_batch) if n is not None]
        return min(limits) if limits else None


async def read_adaptively(
    keys: Sequence[Key],
    limits: DeviceLimits,
    state: BatchState,
    *,
    cap: int | None,
    multiple: Callable[[list[Key]], Awaitable[dict[Key, Any]]],
    one: Callable[[Key], Awaitable[Any]],
    unreachable: Callable[[ErrorRejectAbortNack], Exception],
) -> dict[Key, Any]:
    """Values (or DeviceErrors, as `one` returns them) per (object, property), by ReadPropertyMultiple
    batches sized to `limits`. A refusal as too big halves the batch, one of RPM itself falls back to one
    property at a time, any other error reads that batch one by one: every pass makes progress, so it
    ends. `multiple` lets bacpypes3's refusals through; `unreachable` turns a silent device into the
    exception to raise."""
    values: dict[Key, Any] = {}
    pending = list(keys)
    while pending:
        if not state.rpm_supported:
            for key in pending:
                values[key] = await one(key)
            break
        batch = plan_batches(pending, limits, state.batch_limit(cap))[0]
        try:
            values.update(await multiple(batch))
        except ErrorRejectAbortNack as exc:
            kind = refusal_kind(exc)
            if kind == "unreachable":
                raise unreachable(exc) from None
            if kind == "unsupported":
                state.rpm_supported = False  # the device does not do RPM: one property at a time
                continue
            if kind == "too-big" and len(batch) > 1:
                state.learned_batch = len(batch) // 2
                continue
            for key in batch:  # one property too big, or an error for the whole request
                values[key] = await one(key)
        pending = pending[len(batch) :]
    return values


def _priority_value(slot: Any) -> float | None:
    if getattr(slot, "null", None) is not None:
        return None
    for choice in ("real", "enumerated", "unsigned", "boolean", "integer", "double"):
        value = getattr(slot, choice, None)
        if value is not None:
            return number(value)
    raise TypeError(f"priority value {slot!r} is not a number")


class BacnetClient(ClientContext):
    """One remote device. `max_apdu` overrides the device's max-apdu-length-accepted; `max_batch` caps the
    properties per ReadPropertyMultiple (None: only the size estimate limits a batch)."""

    def __init__(
        self,
        device: BacnetDevice,
        stack: BacnetApplication,
        *,
        max_apdu: int | None = None,
        max_batch: int | None = None,
    ) -> None:
        self.device = device
        self._stack = stack
        self._address = device_address(device.host)
        self._points = {p.name: p for p in device.points}
        self._max_apdu = max_apdu
        self._max_batch = max_batch
        self._batches = BatchState()
        self.limits = DeviceLimits()

    @property
    def stack(self) -> BacnetApplication:
        return self._stack

    @property
    def address(self) -> Address:
        """The device's address as bacpypes3 matches it against incoming packets."""
        return self._address

    @property
    def rpm_supported(self) -> bool:
        return self._batches.rpm_supported

    @property
    def batch_limit(self) -> int | None:
        """Properties per request: the configured cap, or the smaller size learned from a refusal."""
        return self._batches.batch_limit(self._max_batch)

    def _at(self, where: str) -> str:
        return f"{self.device.address} {where}".strip()

    def _error(
        self, cls: type[DeviceError], where: str, message: str, code: str | None = None
    ) -> DeviceError:
        return cls(self.device.name, self._at(where), message, code)

    def translated(self, where: str) -> AbstractContextManager[None]:
        """Around a request to this device: a refusal leaves as a DeviceError naming it and `where`."""
        return translated(self.device.name, self._at(where))

    async def _device_property(self, prop: str) -> Any:
        """A property of the device object, or None when the device answers with an error."""
        try:
            with self.translated(f"device object {prop}"):
                return await self._stack.app.read_property(
                    self._address, ObjectIdentifier(("device", self.device.instance)), prop
                )
        except DeviceRejected:
            return None  # an answer, even an error, means the device is there

    async def open(self) -> None:
        """Check that the device answers, and learn how big a request it takes (two ReadProperty)."""
        max_apdu = self._max_apdu
        answer = await self._device_property("max-apdu-length-accepted")
        if max_apdu is None:
            max_apdu = FALLBACK_MAX_APDU
            if isinstance(answer, int) and answer >= 50:
                max_apdu = min(int(answer), LARGEST_MAX_APDU)
        segmentation = await self._device_property("segmentation-supported")
        local = self._stack.app.device_object
        self.limits = DeviceLimits(
            max_apdu=max_apdu,
            segmentation=_name(segmentation) if segmentation is not None else "noSegmentation",
            local_max_apdu=int(getattr(local, "maxApduLengthAccepted", FALLBACK_MAX_APDU)),
            local_segmentation=_name(getattr(local, "segmentationSupported", "noSegmentation")),
            local_max_segments=int(getattr(local, "maxSegmentsAccepted", None) or 1),
        )

    async def close(self) -> None:
        """Nothing to release: the stack is shared and owned by the agent."""

    def _keys(self, points: Sequence[str]) -> list[Key]:
        return list(dict.fromkeys((self._points[n].object, self._points[n].property) for n in points))

    def read_budget_s(self, points: Sequence[str]) -> float:
        """One device timeout per request the read is planned to take."""
        keys = self._keys(points)
        requests = len(plan_batches(keys, self.limits, self.batch_limit)) if self.rpm_supported else len(keys)
        return self.device.timeout_s * max(requests, 1)

    async def read(self, points: Sequence[str]) -> list[PointResult]:
        wanted = [self._points[name] for name in points]
        values = await read_adaptively(
            self._keys(points),
            self.limits,
            self._batches,
            cap=self._max_batch,
            multiple=self._read_multiple,
            one=self._read_one,
            unreachable=lambda exc: translate(self.device.name, self._at("read-property-multiple"), exc),
        )
        return [self._result(point, values[(point.object, point.property)]) for point in wanted]

    async def _read_multiple(self, batch: list[Key]) -> dict[Key, Any]:
        request: list[Any] = []
        order: list[Key] = []
        for obj, props in grouped(batch):
            request += [_object_id(obj), props]
            order += [(obj, prop) for prop in props]
        rows = await self._stack.app.read_property_multiple(self._address, request)
        if not isinstance(rows, list) or len(rows) != len(order):
            count = len(rows) if isinstance(rows, list) else 0
            raise self._error(DeviceGarbage, "read-property-multiple", f"{count} answers to {len(order)}")
        values: dict[Key, Any] = {}
        for (obj, prop), row in zip(order, rows, strict=True):
            if row[0] != _object_id(obj) or row[1] != _property_id(prop):
                raise self._error(DeviceGarbage, "read-property-multiple", f"answer for {row[0]} {row[1]}")
            values[(obj, prop)] = row[3]
        return values

    async def _read_one(self, key: Key) -> Any:
        obj, prop = key
        try:
            with self.translated(f"{obj} {prop}"):
                return await self._stack.app.read_property(self._address, _object_id(obj), prop)
        except DeviceRejected as error:
            return error  # the others' values are still worth having: the device is there

    def _result(self, point: BacnetPoint, value: Any) -> PointResult:
        where = f"{point.object} {point.property}"
        if isinstance(value, DeviceError):
            return PointResult(point.name, None, value)
        if isinstance(value, ErrorType):
            return PointResult(point.name, None, error_type(self.device.name, self._at(where), value))
        try:
            return PointResult(point.name, number(value), None)
        except TypeError as exc:
            return PointResult(point.name, None, self._error(DeviceGarbage, where, str(exc)))

    async def read_priority_array(self, point: str) -> list[float | None]:
        """The point's object's 16 priority slots (index 0 is priority 1); None is a relinquished slot.
        Raises DeviceRejected for an object without a priority array."""
        target = self._points[point]
        where = f"{target.object} priority-array"
        with self.translated(where):
            array = await self._stack.app.read_property(
                self._address, ObjectIdentifier(target.object), "priority-array"
            )
        try:
            slots = [_priority_value(slot) for slot in array]
        except TypeError as exc:
            raise self._error(DeviceGarbage, where, str(exc)) from None
        if len(slots) != 16:
            raise self._error(DeviceGarbage, where, f"{len(slots)} slots")
        return slots

    async def read_active_priority(self, point: str) -> int | None:
        """The priority the object obeys now (1 highest), or None when it shows its relinquish default."""
        return active_priority(await self.read_priority_array(point))

    async def write(self, point: str, value: float | None, priority: int | None = None) -> None:
        target = self._points[point]
        where = f"{target.object} {target.property}"
        with self.translated(where):
            await self._stack.app.write_property(
                self._address,
                ObjectIdentifier(target.object),
                target.property,
                Null(()) if value is None else value,
                priority=priority,
            )
