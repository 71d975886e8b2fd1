"""The agent's `Points` (control/points.py): the latest values, and writes and priority arrays through each
device's poller and its live connection. Control and central commands reach devices only through this.
Central's writes go through `CentralWrites`, which journals them (control/holds.py) before they are sent;
control's actuator journals its own."""

from __future__ import annotations

import struct

import structlog

from edge_agent.acquisition.latest import LatestValues
from edge_agent.acquisition.poller import DevicePoller
from edge_agent.config import BacnetDevice, ModbusPoint
from edge_agent.control.holds import Hold, HoldJournal
from edge_agent.control.points import Holder, Points
from edge_agent.errors import DeviceUnreachable, JournalError
from edge_agent.protocols.bacnet.client import active_priority
from edge_agent.readings import Reading, utc_now

log = structlog.get_logger("edge_agent.service")


class DevicePoints:
    def __init__(self, latest: LatestValues, pollers: list[DevicePoller]) -> None:
        self._latest = latest
        self._pollers = {p.device.name: p for p in pollers}

    def latest(self, ref: str) -> Reading | None:
        return self._latest.get(ref)

    async def write(self, ref: str, value: float | None, priority: int | None) -> None:
        """Through the device's poller; the caller (router, actuator) has checked the limits."""
        device, point = self._split(ref)
        await self._poller(device).write(point, value, priority)
        log.info("point written", device=device, point=point, value=value, priority=priority)

    async def holder(self, ref: str) -> Holder:
        device, point = self._split(ref)
        slots = await self._poller(device).priority_array(point)
        return Holder(False) if slots is None else Holder(True, active_priority(slots), tuple(slots))

    def stored(self, ref: str, value: float) -> float:
        """What the device keeps of `value` once written: a BACnet REAL's precision, a register's scale."""
        device, name = self._split(ref)
        poller = self._pollers.get(device)
        point = None if poller is None else next((p for p in poller.device.points if p.name == name), None)
        if poller is None or point is None:
            return value
        if isinstance(poller.device, BacnetDevice):
            return float(struct.unpack("<f", struct.pack("<f", value))[0])
        if not isinstance(point, ModbusPoint):
            return value
        try:
            kept = point.codec.decode(point.codec.encode(value)).value
        except (ValueError, TypeError):
            return value
        return float(kept) if isinstance(kept, float | int) else value

    def _poller(self, device: str) -> DevicePoller:
        poller = self._pollers.get(device)
        if poller is None:
            raise DeviceUnreachable(device, "", "not configured", "unknown device")
        return poller

    @staticmethod
    def _split(ref: str) -> tuple[str, str]:
        device, _, point = ref.partition("/")
        return device, point


class CentralWrites:
    """The `Points` central's commands write through: each write_point is journaled as central's hold
    before it is sent (a BACnet relinquish takes it out once done). The agent never releases these on
    its own; `status` lists them. A write the journal cannot record is refused, not sent."""

    def __init__(self, points: Points, journal: HoldJournal) -> None:
        self._points = points
        self._journal = journal

    def latest(self, ref: str) -> Reading | None:
        return self._points.latest(ref)

    async def holder(self, ref: str) -> Holder:
        return await self._points.holder(ref)

    async def write(self, ref: str, value: float | None, priority: int | None) -> None:
        held = next((h for h in self._journal.holds() if h.key == (ref, priority or 0, "central")), None)
        if value is None:
            await self._points.write(ref, value, priority)
            if held is not None:
                await self._forget(held)
            return
        current = self._points.latest(ref)
        hold = Hold(
            ref,
            priority,
            value,
            previous=None if held is None else held.value,
            restore=None if priority is not None or current is None else current.value,
            since=utc_now() if held is None else held.since,
            lease_until=None,
            owner="central",
        )
        try:
            await self._journal.record(hold)
        except JournalError as error:
            device, _, point = ref.partition("/")
            raise DeviceUnreachable(device, point, f"not sent: {error}", "journal") from error
        await self._points.write(ref, value, priority)

    async def _forget(self, hold: Hold) -> None:
        try:
            await self._journal.remove(hold)
        except JournalError as error:
            log.error("relinquished hold not taken out of the journal", point=hold.point, error=str(error))  # noqa: TRY400
