"""The actuator: control's writes to the building, each held under a lease and always given back.

BACnet points are written at control's priority (default 10) and relinquished (NULL at that priority) when
no longer wanted, when the lease runs out without a renewing decision, on a fault, on stop and when control
is switched off. Before each write the point's priority array is read: when a higher priority (an operator
at 8, say) is active, control backs off that point and gives back its own slot. Modbus has no priorities:
the value read before the first write is written back on release.

Every write is written down in the journal (control/holds.py) before it is sent, and forgotten once the
device confirmed its release: after a crash the next start gives back what is still ours (recovery.py). A
write the journal cannot record is not sent.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import structlog

from edge_agent.control.holds import Hold, HoldJournal, MemoryJournal
from edge_agent.control.points import Points
from edge_agent.errors import DeviceError, JournalError
from edge_agent.readings import utc_now

log = structlog.get_logger("edge_agent.control")


Emit = Callable[..., None]  # emit(kind, message, **fields): an audit event


@dataclass(slots=True)
class _Held:
    value: float
    renewed: float  # monotonic seconds
    restore: float | None  # Modbus: the value before control's first write
    prioritised: bool  # BACnet: released by relinquishing our priority
    hold: Hold  # as journaled
    confirmed: bool = True  # False: the write failed, and may or may not have reached the device


class Actuator:
    def __init__(
        self,
        points: Points,
        emit: Emit,
        *,
        priority: int = 10,
        lease_s: float = 300.0,
        monotonic: Callable[[], float] = time.monotonic,
        journal: HoldJournal | None = None,
        wall: Callable[[], datetime] = utc_now,
    ) -> None:
        self._points = points
        self._emit = emit
        self.priority = priority
        self.lease_s = lease_s
        self._monotonic = monotonic
        self.journal: HoldJournal = journal or MemoryJournal()
        self._wall = wall
        self.held: dict[str, _Held] = {}  # 'device/point' -> what control holds there
        self.operator_held: set[str] = set()  # points a higher priority holds: control keeps off

    async def apply(self, wanted: dict[str, float | None]) -> None:
        """Write what is wanted (None: release); release what control holds and no longer wants."""
        for ref in [r for r in self.held if wanted.get(r) is None]:
            await self.release(ref, "no longer needed")
        for ref, value in wanted.items():
            if value is None:
                continue
            free, prioritised = await self._may_act(ref)
            if not free:
                continue
            held = self.held.get(ref)
            if held is not None and held.confirmed and abs(held.value - value) < 1e-6:
                await self._renew(held)
                continue
            await self._write(ref, value, held, prioritised=prioritised)

    async def _write(self, ref: str, value: float, held: _Held | None, *, prioritised: bool) -> None:
        now = self._wall()
        restore = self._current(ref) if held is None and not prioritised else None
        hold = Hold(
            ref,
            self.priority if prioritised else None,
            value,
            previous=None if held is None else held.value,  # ours until the device takes the new one
            restore=restore if held is None else held.restore,
            since=now if held is None else held.hold.since,
            lease_until=now + timedelta(seconds=self.lease_s),
        )
        try:
            await self.journal.record(hold)  # on the disk before the device sees the write
        except JournalError as error:
            log.error("control write not sent: the journal cannot record it", point=ref, error=str(error))  # noqa: TRY400
            self._emit("error", f"write of {ref} not sent", point=ref, value=value, reason=str(error))
            return
        try:
            await self._points.write(ref, value, self.priority)
        except DeviceError as error:
            log.warning("control write failed", point=ref, value=value, error=str(error))
            self._emit("error", f"write of {ref} failed", point=ref, value=value, reason=str(error))
            if held is None:  # it may have arrived all the same: released like any other, or rewritten
                self.held[ref] = _Held(value, self._monotonic(), restore, prioritised, hold, confirmed=False)
            return
        if held is None:
            held = _Held(value, self._monotonic(), restore, prioritised, hold)
            self.held[ref] = held
        held.value, held.renewed, held.hold, held.confirmed = value, self._monotonic(), hold, True
        self._emit("write", f"{ref} = {value:g}", point=ref, value=value, priority=self.priority)

    async def _renew(self, held: _Held) -> None:
        """The same value wanted again: the lease starts over (the journal's copy once half of it ran)."""
        held.renewed = self._monotonic()
        now, lease_until = self._wall(), held.hold.lease_until
        if lease_until is None or lease_until - now > timedelta(seconds=self.lease_s / 2):
            return
        hold = replace(held.hold, lease_until=now + timedelta(seconds=self.lease_s))
        try:
            await self.journal.record(hold)
        except JournalError as error:  # the write itself is recorded: only the lease shown is older
            log.warning("lease not renewed in the journal", point=hold.point, error=str(error))
            return
        held.hold = hold

    async def _may_act(self, ref: str) -> tuple[bool, bool]:
        """(control may write the point, the point has a priority array). Not when a priority above
        control's is active (control gives its own slot back) or the array cannot be read."""
        try:
            holder = await self._points.holder(ref)
        except DeviceError as error:
            log.warning("priority array unreadable", point=ref, error=str(error))
            return False, True  # unknown: do not act on it
        above = holder.priority if holder.priority is not None and holder.priority < self.priority else None
        if above is None:
            if ref in self.operator_held:
                self.operator_held.discard(ref)
                log.info("operator released a point: control may act on it again", point=ref)
                self._emit("operator", f"{ref} free again", point=ref)
            return True, holder.prioritised
        if ref not in self.operator_held:
            self.operator_held.add(ref)
            log.warning("operator holds a point: control backs off", point=ref, priority=above)
            self._emit(
                "operator", f"{ref} held at priority {above}: control backs off", point=ref, priority=above
            )
        if ref in self.held:
            await self.release(ref, f"priority {above} is active")
        return False, True

    async def release(self, ref: str, reason: str) -> bool:
        """Give a point back; False if the device did not take it (it stays held, to be retried)."""
        held = self.held.get(ref)
        if held is None:
            return True
        value = None if held.prioritised else held.restore
        try:
            if held.prioritised or value is not None:
                await self._points.write(ref, value, self.priority)
        except DeviceError as error:
            log.warning("control release failed", point=ref, error=str(error))
            self._emit("error", f"release of {ref} failed", point=ref, reason=str(error))
            return False
        del self.held[ref]
        await forget(self.journal, held.hold)
        self._emit("release", f"{ref} released: {reason}", point=ref, value=value, reason=reason)
        return True

    def _current(self, ref: str) -> float | None:
        reading = self._points.latest(ref)
        return None if reading is None else reading.value

    async def release_all(self, reason: str) -> bool:
        """Give every point back; True when the devices took all of them."""
        results = [await self.release(ref, reason) for ref in list(self.held)]
        return all(results)

    async def expire(self) -> None:
        """Release what no decision has renewed within the lease."""
        now = self._monotonic()
        for ref in [r for r, h in self.held.items() if now - h.renewed > self.lease_s]:
            await self.release(ref, "lease expired")


async def forget(journal: HoldJournal, hold: Hold) -> None:
    """Take a released hold out of the journal; if the disk refuses, the next start checks the device."""
    try:
        await journal.remove(hold)
    except JournalError as error:
        log.error("released hold not taken out of the journal", point=hold.point, error=str(error))  # noqa: TRY400
