"""Scanning a BACnet/IP network from a technician's laptop: who answers a Who-Is, what each device is (its
device object's names, APDU size, segmentation, object list) and, when asked, each object's name, units and
present value.

Every request is bounded by the caller's `timeout_s` (bacpypes3 alone would wait about 12 s on a silent
device). Properties are read with ReadPropertyMultiple in batches sized for the device (bacnet_batches.py),
halved when the device refuses one as too big, and one at a time from a device without RPM. An object list
too long for one answer is read element by element. Values come back as plain Python data (`plain`).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from bacpypes3.basetypes import ErrorType
from bacpypes3.constructeddata import Choice
from bacpypes3.constructeddata import Sequence as BacnetSequence
from bacpypes3.pdu import Address
from bacpypes3.primitivedata import Atomic, Boolean, Enumerated, Null, ObjectIdentifier

from edge_agent.config import BacnetConfig
from edge_agent.errors import DeviceError, DeviceRejected, DeviceUnreachable
from edge_agent.protocols.bacnet.app import BacnetApplication, split_host_port
from edge_agent.protocols.bacnet.batches import (
    FALLBACK_MAX_APDU,
    LARGEST_MAX_APDU,
    DeviceLimits,
    Key,
    grouped,
)
from edge_agent.protocols.bacnet.client import BatchState, local_stack, read_adaptively
from edge_agent.protocols.bacnet.discovery import DiscoveredDevice, foreign_device_stack, who_is
from edge_agent.protocols.bacnet.errors import error_type, translate, translated

CLI_DEVICE_INSTANCE = 4194302  # the command line's own stack: not the daemon's (4194000 by default)
BBMD_TTL_S = 60  # a scan's foreign-device registration; deregistered when the scan ends
MAX_TARGETS = 256  # addresses one scan may send directed Who-Is to
MAX_OBJECTS = 5000  # object-list elements read one by one, at most
PARALLEL_DEVICES = 4  # devices described at once
OBJECT_PROPERTIES = ("object-name", "units", "present-value")


@dataclass(frozen=True, slots=True)
class ScannedObject:
    type: str
    instance: int
    name: str | None
    units: str | None
    """BACnet's engineering units ('degrees-celsius'), None for objects without units."""
    present_value: Any
    """Plain data: a number, 'active'/'inactive', a string, or None when the object has none."""

    @property
    def object_id(self) -> str:
        return f"{self.type},{self.instance}"


@dataclass(frozen=True, slots=True)
class ScannedDevice:
    instance: int
    address: str
    vendor_id: int
    max_apdu: int
    segmentation: str
    name: str | None
    vendor_name: str | None
    model_name: str | None
    object_ids: tuple[str, ...] | None
    """'analog-input,1', ... from the device's object list; None when it could not be read."""
    objects: tuple[ScannedObject, ...] | None
    """Each object's details (without the device object itself), when asked for."""
    errors: tuple[str, ...]
    """What could not be read, in the project's error wording."""


@dataclass(frozen=True, slots=True)
class ScanRequest:
    targets: tuple[str, ...]
    """HOST:PORT addresses: devices or directed broadcasts. Empty: one global broadcast."""
    local_address: str
    low: int | None = None
    high: int | None = None
    wait_s: float = 3.0
    timeout_s: float = 2.0
    bbmd: str | None = None
    objects: bool = False


def expand_targets(specs: Sequence[str]) -> tuple[str, ...]:
    """HOST[:PORT] and HOST:LOW-HIGH (a port range) as HOST:PORT addresses; ValueError names a bad one."""
    targets: list[str] = []
    for spec in specs:
        host, _, ports = spec.partition(":")
        low, _, high = (ports or "47808").partition("-")
        if not (low.isdigit() and (high.isdigit() or not high)) or not host:
            raise ValueError(f"{spec!r}: expected HOST[:PORT] or HOST:LOW-HIGH")
        first, last = int(low), int(high or low)
        if not 1 <= first <= last <= 65535:
            raise ValueError(f"{spec!r}: ports must be 1-65535, low before high")
        targets += [f"{host}:{port}" for port in range(first, last + 1)]
        if len(targets) > MAX_TARGETS:
            raise ValueError(f"at most {MAX_TARGETS} addresses in one scan")
    return tuple(dict.fromkeys(targets))


@contextlib.asynccontextmanager
async def command_line_stack(
    local_address: str, bbmd: str | None, timeout_s: float
) -> AsyncIterator[BacnetApplication]:
    """The command line's own BACnet stack (not the daemon's device instance), registered with `bbmd` as a
    foreign device when one is given. Raises StartupError when the address cannot be bound, DeviceUnreachable
    when the BBMD does not acknowledge the registration within `timeout_s`."""
    config = BacnetConfig(local_address=local_address, device_instance=CLI_DEVICE_INSTANCE)
    if bbmd is None:
        async with local_stack(config) as stack:
            yield stack
        return
    async with foreign_device_stack(config, bbmd, BBMD_TTL_S) as foreign:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await foreign.wait_registered()
        if not foreign.registered:
            message = f"no acknowledgement of the foreign-device registration within {timeout_s:g} s"
            raise DeviceUnreachable("BBMD", foreign.bbmd, message, "not registered")
        yield foreign


async def scan(request: ScanRequest) -> list[ScannedDevice]:
    """Who-Is as `request` says, then every device that answered described. ValueError: a broadcast the
    local address cannot send (who_is says why)."""
    async with command_line_stack(request.local_address, request.bbmd, request.timeout_s) as stack:
        found = await discover(stack, request)
        gate = asyncio.Semaphore(PARALLEL_DEVICES)

        async def one(device: DiscoveredDevice) -> ScannedDevice:
            async with gate:
                return await describe(stack, device, objects=request.objects, timeout_s=request.timeout_s)

        async with asyncio.TaskGroup() as tasks:
            described = [tasks.create_task(one(device)) for device in found]
    return [task.result() for task in described]


async def discover(stack: BacnetApplication, request: ScanRequest) -> list[DiscoveredDevice]:
    """One Who-Is per target (all at once), or one global broadcast; every answer once, by instance."""
    low, high, wait_s = request.low, request.high, request.wait_s
    if not request.targets:
        return await who_is(stack, None, low=low, high=high, wait_s=wait_s)  # ValueError: cannot broadcast
    async with asyncio.TaskGroup() as tasks:
        answers = [
            tasks.create_task(who_is(stack, target, low=low, high=high, wait_s=wait_s))
            for target in request.targets
        ]
    found = {(d.instance, d.address): d for task in answers for d in task.result()}
    return sorted(found.values(), key=lambda d: (d.instance, d.address))


async def describe(
    stack: BacnetApplication, device: DiscoveredDevice, *, objects: bool, timeout_s: float
) -> ScannedDevice:
    """The device object's names and object list, and each object's details when `objects`. What cannot be
    read is left None and said in `errors`; a device that stops answering ends the description there."""
    reader = PropertyReader(
        stack,
        device.address,
        f"device {device.instance}",
        timeout_s,
        max_apdu=device.max_apdu,
        segmentation=device.segmentation,
    )
    me = f"device,{device.instance}"
    keys = [(me, "object-name"), (me, "vendor-name"), (me, "model-name"), (me, "object-list")]
    errors: list[str] = []
    names: dict[Key, Any] = {}
    object_ids: tuple[str, ...] | None = None
    details: tuple[ScannedObject, ...] | None = None
    try:
        names = await reader.read_many(keys)
        listed = names[(me, "object-list")]
        if isinstance(listed, DeviceError):  # too long for one answer: element by element
            listed = await reader.read_list(me, "object-list")
        object_ids = tuple(str(plain(item)) for item in listed)
        if objects:
            details = await _objects(reader, [o for o in object_ids if not o.startswith("device,")])
    except DeviceError as error:
        errors.append(str(error))
    errors += [str(v) for k, v in names.items() if isinstance(v, DeviceError) and k[1] != "object-list"]

    def text(prop: str) -> str | None:
        value = names.get((me, prop))
        return None if value is None or isinstance(value, DeviceError) else str(plain(value))

    return ScannedDevice(
        device.instance,
        device.address,
        device.vendor_id,
        device.max_apdu,
        device.segmentation,
        text("object-name"),
        text("vendor-name"),
        text("model-name"),
        object_ids,
        details,
        tuple(errors),
    )


async def _objects(reader: PropertyReader, object_ids: Sequence[str]) -> tuple[ScannedObject, ...]:
    values = await reader.read_many([(o, p) for o in object_ids for p in OBJECT_PROPERTIES])

    def value(obj: str, prop: str) -> Any:
        found = values[(obj, prop)]
        return None if isinstance(found, DeviceError) else plain(found)

    scanned = []
    for obj in object_ids:
        kind, _, instance = obj.partition(",")
        name, units = value(obj, "object-name"), value(obj, "units")
        scanned.append(
            ScannedObject(
                kind,
                int(instance),
                None if name is None else str(name),
                None if units is None else str(units),
                value(obj, "present-value"),
            )
        )
    return tuple(scanned)


class PropertyReader:
    """Reads properties of the device at `address`, each request bounded by `timeout_s`; errors become
    DeviceErrors naming `label` and the address. Batches fit `max_apdu` and `segmentation` (the I-Am's)."""

    def __init__(
        self,
        stack: BacnetApplication,
        address: str,
        label: str,
        timeout_s: float,
        *,
        max_apdu: int = FALLBACK_MAX_APDU,
        segmentation: str = "noSegmentation",
    ) -> None:
        self._app = stack.app
        self._where = address
        self._address = Address(address)
        self._label = label
        self._timeout_s = timeout_s
        self._batches = BatchState()
        local = self._app.device_object
        self.limits = DeviceLimits(
            max_apdu=min(max_apdu, LARGEST_MAX_APDU) if max_apdu >= 50 else FALLBACK_MAX_APDU,
            segmentation=segmentation,
            local_max_apdu=int(getattr(local, "maxApduLengthAccepted", FALLBACK_MAX_APDU)),
            local_segmentation=_name(getattr(local, "segmentationSupported", "noSegmentation")),
            local_max_segments=int(getattr(local, "maxSegmentsAccepted", None) or 1),
        )

    async def _bounded(self, where: str, call: Any) -> Any:
        try:
            async with asyncio.timeout(self._timeout_s):
                with translated(self._label, f"{self._where} {where}"):
                    return await call
        except TimeoutError:
            message = f"no answer within {self._timeout_s:g} s"
            raise DeviceUnreachable(self._label, f"{self._where} {where}", message, "timeout") from None

    async def read(self, obj: str, prop: str, index: int | None = None) -> Any:
        """One property (or one array element); raises DeviceError."""
        where = f"{obj} {prop}" + ("" if index is None else f"[{index}]")
        call = self._app.read_property(self._address, ObjectIdentifier(obj), prop, array_index=index)
        value = await self._bounded(where, call)
        if isinstance(value, ErrorType):
            raise error_type(self._label, f"{self._where} {where}", value)
        return value

    async def read_list(self, obj: str, prop: str) -> list[Any]:
        """An array property element by element: its length (index 0), then each element."""
        length = int(await self.read(obj, prop, 0))
        return [await self.read(obj, prop, i) for i in range(1, min(length, MAX_OBJECTS) + 1)]

    async def read_many(self, keys: Sequence[Key]) -> dict[Key, Any]:
        """Values, or the DeviceError that kept each from us. Each pass reads a batch, halves the batch,
        or gives up on RPM, so the loop ends. A device that stops answering raises DeviceUnreachable."""
        return await read_adaptively(
            keys,
            self.limits,
            self._batches,
            cap=None,
            multiple=self._multiple,
            one=self._one,
            unreachable=lambda exc: translate(self._label, f"{self._where} read-property-multiple", exc),
        )

    async def _one(self, key: Key) -> Any:
        try:
            return await self.read(*key)
        except DeviceUnreachable:
            raise
        except DeviceError as error:
            return error

    async def _multiple(self, batch: list[Key]) -> dict[Key, Any]:
        """One RPM; bacpypes3's refusals pass through for read_many to judge."""
        request: list[Any] = []
        for obj, props in grouped(batch):
            request += [ObjectIdentifier(obj), props]
        where = f"{self._where} read-property-multiple"
        try:
            async with asyncio.timeout(self._timeout_s):
                rows = await self._app.read_property_multiple(self._address, request)
        except TimeoutError:
            message = f"no answer within {self._timeout_s:g} s"
            raise DeviceUnreachable(self._label, where, message, "timeout") from None
        values: dict[Key, Any] = {}
        for obj, prop, _index, value in rows or []:
            key = (str(obj), str(prop))
            at = f"{self._where} {key[0]} {key[1]}"
            values[key] = error_type(self._label, at, value) if isinstance(value, ErrorType) else value
        for key in batch:
            if key not in values:
                at = f"{self._where} {key[0]} {key[1]}"
                values[key] = DeviceRejected(self._label, at, "missing from the answer")
        return values


def _name(value: Any) -> str:
    return str(getattr(value, "attr", value))


def plain(value: Any) -> Any:
    """A bacpypes3 value as plain data: numbers, strings ('analog-input,1', 'active', 'degrees-celsius'),
    None for Null, lists, and dicts for sequences; a choice (a priority-array slot) as its chosen value."""
    if value is None:
        return None
    if isinstance(value, Atomic | bool | int | float | str):
        return _atomic(value)
    if isinstance(value, Choice):
        chosen = getattr(value, "_choice", None)
        return plain(getattr(value, chosen)) if chosen else None
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    if isinstance(value, BacnetSequence):
        fields = {name: getattr(value, name, None) for name in value._elements}
        return {name: plain(item) for name, item in fields.items() if item is not None}
    return str(value)


def _atomic(value: Any) -> bool | int | float | str | None:
    if isinstance(value, Null):
        return None
    if isinstance(value, Boolean | bool):
        return bool(value)
    if isinstance(value, float):
        number = float(value)
        return number if math.isfinite(number) else str(number)
    if isinstance(value, int) and not isinstance(value, Enumerated):
        return int(value)
    return str(value)  # names of enumerations, object identifiers, strings, dates, times, bit strings


def host_port(address: str) -> str:
    """HOST:PORT with the port spelt out (47808 when left out)."""
    host, port = split_host_port(address)
    return f"{host}:{port}"
