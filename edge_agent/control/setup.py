"""What one building's control is set up with: the points it reads and writes, its limits, its pace and
its model. Built from the configuration's `[control]` section by service/control_setup.py, so control
itself never reads the file format."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edge_agent.control.limits import Limits
from edge_agent.control.model_trust import ModelTrust


@dataclass(frozen=True, slots=True)
class ZonePoints:
    """One zone's points ('device/point'): what control reads, and what it writes (None: not wired)."""

    name: str
    temperature: str
    cooling_setpoint: str | None = None
    heating_setpoint: str | None = None
    co2: str | None = None
    illuminance: str | None = None
    dimming: str | None = None


@dataclass(frozen=True, slots=True)
class ControlPoints:
    demand: str | None  # the building's main meter power
    demand_in_watts: bool  # the meter's unit is W (kW otherwise)
    outdoor_temperature: str | None
    zones: tuple[ZonePoints, ...]
    plant_limit: str | None = None
    fan_limit: str | None = None
    ventilation_limit: str | None = None
    supply_air_setpoint: str | None = None
    write_ranges: dict[str, tuple[float, float]] = field(default_factory=dict)  # what control may write
    plant_power: str | None = None  # the plant's electric power (optional)
    plant_power_in_watts: bool = False


@dataclass(frozen=True, slots=True)
class ControlSetup:
    points: ControlPoints
    limits: Limits
    step_s: float  # building time between decisions
    write_priority: int  # BACnet priority of control's writes: an operator at 8 always wins
    lease_s: float  # wall-clock seconds a write stands without a renewing decision
    model: Path | None  # the ONNX policy; None or unusable: the rule-based limiter
    baseline: Path | None  # the savings baseline (docs/savings.md); None: no savings report
    model_trust: ModelTrust = field(default_factory=ModelTrust)  # default: only signed models, no key trusted
    building_model: Path | None = None  # the fitted building model (docs/building_model.md); None: none
    planner: bool = False  # the receding-horizon planner decides (control/planner/), the rules its fallback
    model_shadow_s: float = 86400.0  # building time a pushed model runs in shadow before it decides
