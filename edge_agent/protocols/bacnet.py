"""BACnet/IP through bacpypes3: one local stack for the whole agent, one client per remote device.

A read is one ReadPropertyMultiple for all requested points; a device that rejects RPM is read one
property at a time. bacpypes3's errors derive from BaseException (ErrorRejectAbortNack), so they are caught
by name here and translated into DeviceErrors.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

from bacpypes3.apdu import AbortPDU, ErrorPDU, ErrorRejectAbortNack, RejectPDU
from bacpypes3.basetypes import ErrorType
from bacpypes3.local.device import DeviceObject
from bacpypes3.pdu import Address
from bacpypes3.primitivedata import Null, ObjectIdentifier

from edge_agent.config import BacnetConfig, BacnetDevice, BacnetPoint
from edge_agent.errors import DeviceError, DeviceGarbage, DeviceRejected, DeviceUnreachable
from edge_agent.protocols.bacnet_app import BacnetApplication, split_host_port
from edge_agent.protocols.base import ClientContext, PointResult

# The stack's own confirmation timer; the caller's asyncio.timeout is the real bound. No stack retries:
# the device supervisor owns retrying.
APDU_TIMEOUT_MS = 3000


def local_stack(config: BacnetConfig) -> BacnetApplication:
    """The agent's own BACnet/IP stack, bound to config.local_address."""
    device = DeviceObject(
        objectIdentifier=("device", config.device_instance),
        objectName=f"edge-agent {config.device_instance}",
        vendorIdentifier=999,
        apduTimeout=APDU_TIMEOUT_MS,
        numberOfApduRetries=0,
    )
    return BacnetApplication(config.local_address, [device])


def _number(value: Any) -> float:
    """Real, Unsigned, Integer, Boolean and Enumerated (binary present values) all become floats."""
    if isinstance(value, bool | int | float):
        number = float(value)
        if math.isfinite(number):
            return number
        raise TypeError(f"not a finite number: {number}")
    raise TypeError(f"{type(value).__name__} is not a number")


@functools.lru_cache(maxsize=1024)
def _address(host: str) -> Address:
    """Parsed once per device: bacpypes3 may resolve a name, which blocks."""
    ip, port = split_host_port(host)
    return Address(f"{ip}:{port}")


class BacnetClient(ClientContext):
    def __init__(self, device: BacnetDevice, stack: BacnetApplication) -> None:
        self.device = device
        self._stack = stack
        self._address = _address(device.host)
        self._points = {p.name: p for p in device.points}
        self._rpm_supported = True

    def _error(
        self, cls: type[DeviceError], where: str, message: str, code: str | None = None
    ) -> DeviceError:
        return cls(self.device.name, f"{self.device.address} {where}".strip(), message, code)

    def _translate(self, where: str, exc: ErrorRejectAbortNack) -> DeviceError:
        if isinstance(exc, AbortPDU):
            reason = getattr(exc.apduAbortRejectReason, "attr", str(exc))
            if reason == "noResponse":
                return self._error(DeviceUnreachable, where, "no answer", "abort noResponse")
            return self._error(DeviceRejected, where, "aborted", f"abort {reason}")
        if isinstance(exc, RejectPDU):
            reason = getattr(exc.apduAbortRejectReason, "attr", str(exc))
            return self._error(DeviceRejected, where, "rejected", f"reject {reason}")
        if isinstance(exc, ErrorPDU):
            code = f"{exc.errorClass.attr}:{exc.errorCode.attr}"
            return self._error(DeviceRejected, where, "error", code)
        return self._error(DeviceRejected, where, str(exc), type(exc).__name__)

    async def open(self) -> None:
        """Check that the device answers by reading its object name."""
        device_id = ObjectIdentifier(("device", self.device.instance))
        try:
            await self._stack.app.read_property(self._address, device_id, "object-name")
        except ErrorRejectAbortNack as exc:
            error = self._translate("device object", exc)
            if isinstance(error, DeviceUnreachable):
                raise error from None
            # an answer, even an error, means the device is there

    async def close(self) -> None:
        """Nothing to release: the stack is shared and owned by the agent."""

    def read_budget_s(self, points: Sequence[str]) -> float:
        return self.device.timeout_s

    async def read(self, points: Sequence[str]) -> list[PointResult]:
        wanted = [self._points[name] for name in points]
        if self._rpm_supported:
            try:
                return await self._read_multiple(wanted)
            except DeviceRejected as error:
                if error.code is None or not error.code.startswith("reject"):
                    raise
                self._rpm_supported = False  # the device does not do RPM: one property at a time
        return [await self._read_one(point) for point in wanted]

    async def _read_multiple(self, points: list[BacnetPoint]) -> list[PointResult]:
        request: list[Any] = []
        for point in points:
            request += [ObjectIdentifier(point.object), [point.property]]
        try:
            rows = await self._stack.app.read_property_multiple(self._address, request)
        except ErrorRejectAbortNack as exc:
            raise self._translate("read-property-multiple", exc) from None
        if len(rows) != len(points):
            raise self._error(
                DeviceGarbage, "read-property-multiple", f"{len(rows)} answers to {len(points)}"
            )
        return [self._result(point, row[3]) for point, row in zip(points, rows, strict=True)]

    async def _read_one(self, point: BacnetPoint) -> PointResult:
        try:
            value = await self._stack.app.read_property(
                self._address, ObjectIdentifier(point.object), point.property
            )
        except ErrorRejectAbortNack as exc:
            error = self._translate(f"{point.object} {point.property}", exc)
            if isinstance(error, DeviceUnreachable):
                raise error from None
            return PointResult(point.name, None, error)
        return self._result(point, value)

    def _result(self, point: BacnetPoint, value: Any) -> PointResult:
        where = f"{point.object} {point.property}"
        if isinstance(value, ErrorType):
            code = f"{value.errorClass.attr}:{value.errorCode.attr}"
            return PointResult(point.name, None, self._error(DeviceRejected, where, "error", code))
        try:
            return PointResult(point.name, _number(value), None)
        except TypeError as exc:
            return PointResult(point.name, None, self._error(DeviceGarbage, where, str(exc)))

    async def write(self, point: str, value: float | None, priority: int | None = None) -> None:
        target = self._points[point]
        where = f"{target.object} {target.property}"
        try:
            await self._stack.app.write_property(
                self._address,
                ObjectIdentifier(target.object),
                target.property,
                Null(()) if value is None else value,
                priority=priority,
            )
        except ErrorRejectAbortNack as exc:
            raise self._translate(where, exc) from None
