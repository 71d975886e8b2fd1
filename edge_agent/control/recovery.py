"""Holds a previous run left on the devices (it was killed, or lost power, before it could release them),
given back before control's first step.

Each of control's holds in the journal is checked on the device: a BACnet slot that still has our value
at our priority is relinquished (NULL at that priority); a Modbus register that still reads our value gets
the value from before our first write back. A slot someone else has changed since is theirs: left alone,
logged and reported. A hold whose device cannot be asked yet stays pending, retried, listed by `status`,
and control keeps off its point until it is resolved. Central's holds (write_point commands) are not ours
to give back: they stay in the journal and are listed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from typing import Literal

import structlog

from edge_agent.control.actuator import forget
from edge_agent.control.holds import Hold, HoldJournal
from edge_agent.control.points import Points
from edge_agent.errors import DeviceError
from edge_agent.readings import Quality

log = structlog.get_logger("edge_agent.control")

RETRY_S = 0.5  # between tries while a device has not answered since start

Outcome = Literal["released", "free", "changed"]
Stored = Callable[[str, float], float]  # what a device keeps of a value written ('device/point', value)


class Recovery:
    def __init__(
        self,
        journal: HoldJournal,
        points: Points,
        emit: Callable[..., None],
        stored: Stored | None = None,
    ) -> None:
        self._journal = journal
        self._points = points
        self._emit = emit
        self._stored: Stored = stored or (lambda _ref, value: value)
        self.pending = [h for h in journal.holds() if h.owner == "control"]
        self._warned: set[str] = set()  # points whose device could not be asked, logged once
        if self.pending:
            log.warning(
                "holds left by the previous run: giving them back",
                points=[h.point for h in self.pending],
            )

    def points(self) -> set[str]:
        """The points control keeps off until their recovered hold is resolved."""
        return {h.point for h in self.pending}

    async def attempt(self) -> None:
        """One try at each pending hold; those whose device cannot be asked now stay pending."""
        for hold in list(self.pending):
            try:
                outcome = await self._give_back(hold)
            except DeviceError as error:
                if hold.point not in self._warned:
                    self._warned.add(hold.point)
                    log.warning("recovered hold not released yet", point=hold.point, error=str(error))
                continue
            if outcome is None:
                continue
            await forget(self._journal, hold)
            self.pending.remove(hold)

    async def settle(self, within_s: float | None = None) -> None:
        """Try until every pending hold is resolved, or `within_s` (wall-clock seconds) has passed."""
        loop = asyncio.get_running_loop()
        deadline = None if within_s is None else loop.time() + within_s
        await self.attempt()
        while self.pending and (deadline is None or loop.time() < deadline):
            await asyncio.sleep(RETRY_S)
            await self.attempt()

    async def _give_back(self, hold: Hold) -> Outcome | None:
        """What became of the hold; None when its device has no fresh value to judge by yet."""
        if hold.priority is not None:
            return await self._relinquish(hold, hold.priority)
        return await self._restore(hold)

    async def _relinquish(self, hold: Hold, priority: int) -> Outcome:
        """BACnet: NULL at our priority, when its slot still has our value."""
        slots = (await self._points.holder(hold.point)).slots
        if slots is None:
            return self._changed(hold, None, "the point has no priority array now")
        found = slots[priority - 1]
        if found is None:
            log.info("recovered hold already free", point=hold.point, priority=priority)
            return "free"
        if not hold.ours(found, self._stored):
            return self._changed(hold, found, f"priority {priority} holds {found:g} now")
        await self._points.write(hold.point, None, priority)
        self._released(hold, None)
        return "released"

    async def _restore(self, hold: Hold) -> Outcome | None:
        """Modbus: the value from before our first write, when the register still reads our value."""
        reading = self._points.latest(hold.point)
        if reading is None or reading.value is None or reading.quality is not Quality.GOOD:
            return None  # not read since start: wait for the first poll
        found = reading.value
        if hold.ours(found, self._stored):
            if hold.restore is None:
                return self._changed(hold, found, "no value from before our write to restore")
            await self._points.write(hold.point, hold.restore, None)
            self._released(hold, hold.restore)
            return "released"
        before = None if hold.restore is None else replace(hold, value=hold.restore, previous=None)
        if before is not None and before.ours(found, self._stored):
            log.info("recovered hold already restored", point=hold.point, value=found)
            return "free"
        return self._changed(hold, found, f"the register reads {found:g} now")

    def _released(self, hold: Hold, value: float | None) -> None:
        log.info("recovered hold released", point=hold.point, priority=hold.priority, value=value)
        self._emit(
            "release",
            f"{hold.point} released: held by the previous run",
            point=hold.point,
            value=value,
            priority=hold.priority,
            reason="recovered after a restart",
        )

    def _changed(self, hold: Hold, found: float | None, why: str) -> Outcome:
        log.warning(
            "recovered hold left alone: someone else changed the point",
            point=hold.point,
            ours=hold.value,
            found=found,
            reason=why,
        )
        self._emit(
            "operator",
            f"{hold.point} left alone: changed since the previous run wrote {hold.value:g}",
            point=hold.point,
            priority=hold.priority,
            reason=why,
        )
        return "changed"
