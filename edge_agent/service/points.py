"""The agent's `Points` (control/points.py): the latest values, and writes and priority arrays through each
device's poller and its live connection. Control and central commands reach devices only through this."""

from __future__ import annotations

import structlog

from edge_agent.acquisition.latest import LatestValues
from edge_agent.acquisition.poller import DevicePoller
from edge_agent.control.points import Holder
from edge_agent.errors import DeviceUnreachable
from edge_agent.protocols.bacnet.client import active_priority
from edge_agent.readings import Reading

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
        return Holder(False) if slots is None else Holder(True, active_priority(slots))

    def _poller(self, device: str) -> DevicePoller:
        poller = self._pollers.get(device)
        if poller is None:
            raise DeviceUnreachable(device, "", "not configured", "unknown device")
        return poller

    @staticmethod
    def _split(ref: str) -> tuple[str, str]:
        device, _, point = ref.partition("/")
        return device, point
