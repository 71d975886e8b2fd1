"""What the control loop is told to do: its mode and the demand target. The configuration gives the start
values (service/control_setup.py); central commands change them at run time (uplink/commands.py)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class ControlMode(StrEnum):
    OFF = "off"  # nothing computed, nothing written
    SHADOW = "shadow"  # decisions computed and logged, never written
    ACTIVE = "active"  # decisions written to the building's controllers


@dataclass(slots=True)
class ControlSettings:
    mode: ControlMode
    demand_target_kw: float | None
    demand_target_limits_kw: tuple[float, float]
