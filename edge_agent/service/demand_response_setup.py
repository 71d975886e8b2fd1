"""The `[openadr]` section wired to the agent: the VEN, its schedule, the meter it reads (control's main
demand point) and the month's peak it scales SIMPLE levels by (control's 15-minute demand)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from edge_agent.clock import Clock
from edge_agent.config import AgentConfig
from edge_agent.control.loop import ControlLoop
from edge_agent.control.settings import ControlSettings
from edge_agent.demand_response.schedule import DemandResponse
from edge_agent.demand_response.signals import Levels
from edge_agent.readings import Quality
from edge_agent.service.points import DevicePoints

if TYPE_CHECKING:
    from edge_agent.demand_response.ven import Ven


def demand_response_ven(
    config: AgentConfig,
    settings: ControlSettings,
    *,
    devices: DevicePoints,
    controller: ControlLoop | None,
    clock: Clock,
    send_event: Callable[[bytes], None],
) -> Ven | None:
    """None without an [openadr] section (openleadr is then not even imported)."""
    openadr = config.openadr
    if openadr is None:
        return None
    from edge_agent.demand_response.ven import Ven  # openleadr loads only for a site that uses it

    demand = config.control.demand
    unit = next((p.unit for d in config.devices for p in d.points if f"{d.name}/{p.name}" == demand), None)

    def meter() -> float | None:
        reading = None if demand is None else devices.latest(demand)
        if reading is None or reading.quality is not Quality.GOOD or reading.value is None:
            return None
        return reading.value / 1000 if unit == "W" else reading.value

    def month_peak() -> float | None:
        return (controller.state.demand.peak_kw or None) if controller is not None else None

    kind, targets = openadr.levels()
    response = DemandResponse(
        config.gateway.id,
        openadr.vtn_url,
        settings,
        Levels(kind, targets),
        meter=meter,
        month_peak=month_peak,
        control_configured=controller is not None,
        baseline_minutes=openadr.baseline_minutes,
        send_event=send_event,
    )
    return Ven(openadr, response, clock)
