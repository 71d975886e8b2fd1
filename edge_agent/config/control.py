"""The `[control]` section: load shaving's mode and target, the points it reads and writes, its limits.

Point references are 'device/point' names of configured devices; AgentConfig checks that they exist and
that every point control writes has a `write_range`.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from edge_agent.config.base import Name, PointRef, Strict
from edge_agent.control.calendar import OpeningHours
from edge_agent.control.limits import DEFAULT_LIMITS, KNOBS, MAX_OFFSET_K
from edge_agent.signing import load_public_key

DEFAULT_HOURS = OpeningHours()

KNOB_NEEDS: dict[str, str] = {
    "cooling_offset": "zones[].cooling_setpoint",
    "heating_offset": "zones[].heating_setpoint",
    "plant_limit": "plant_limit",
    "fan_limit": "fan_limit",
    "ventilation_limit": "ventilation_limit and a zones[].co2",  # without CO2: outdoor air at design
    "lighting_floor": "zones[].dimming with zones[].illuminance",
    "precondition": "zones[].cooling_setpoint or zones[].heating_setpoint",
}
"""What wires each knob of control.limits.KNOBS: the points control acts through."""
assert list(KNOB_NEEDS) == list(KNOBS)


def _public_key(text: str) -> str:
    load_public_key(text)  # ValueError says what is wrong with it
    return text


PublicKey = Annotated[str, AfterValidator(_public_key)]
"""'ed25519:<base64>', as `edge-agent keys new` prints it."""


class ZoneControl(Strict):
    """One zone: what control reads (temperature, CO2, illuminance) and writes (setpoints, dimming)."""

    name: Name
    temperature: PointRef
    cooling_setpoint: PointRef | None = None
    heating_setpoint: PointRef | None = None
    co2: PointRef | None = None
    illuminance: PointRef | None = None
    dimming: PointRef | None = None


class ControlConfig(Strict):
    """Load shaving: the mode and demand target it starts with (commands may change both at run time)."""

    mode: Literal["off", "shadow", "active"] = "off"
    """off: nothing computed; shadow: decisions computed and logged, never written; active: written."""
    demand_target_kw: Annotated[float, Field(gt=0)] | None = None
    """The building demand (15-minute average) to stay under; None: this month's peak so far."""
    demand_target_limits_kw: tuple[float, float] = (1.0, 100_000.0)
    """A demand target set by command must lie within [low, high]."""
    step_s: Annotated[float, Field(ge=1, le=3600)] = 60.0
    """Building time between decisions."""
    model: Path | None = None
    """The ONNX policy; None or unusable: the rule-based demand limiter."""
    planner: bool = False
    """The receding-horizon planner decides (docs/control.md): it learns the building from its own readings
    (two days at least), plans the day against the billed peak, pre-cools; the rules decide meanwhile."""
    precool_floor_c: Annotated[float, Field(ge=16, le=30)] = DEFAULT_LIMITS.precool_floor_c
    """The lowest cooling setpoint the planner's pre-cooling writes."""
    precool_lead_h: Annotated[float, Field(ge=0, le=12)] = DEFAULT_LIMITS.precool_lead_h
    """The planner pre-cools at most this long before opening."""
    model_keys: list[PublicKey] = Field(default_factory=list)
    """Keys a model must be signed by (`<model>.sig`, written by `edge-agent model sign`)."""
    allow_unsigned_model: bool = False
    """Use a model that has no signature file (status shows it); a signature that fails is refused anyway."""
    model_shadow_s: Annotated[float, Field(ge=0, le=30 * 86400)] = 86400.0
    """A model pushed by the apply_model command runs this long in shadow (building time, and at least 3
    decisions) before it decides; it is rolled back if it fails meanwhile."""
    baseline: Path | None = None
    """The building's baseline (a TOWT model file, docs/savings.md); None: no daily savings report."""
    building_model: Path | None = None
    """The fitted building model (`edge-agent model fit`, docs/building_model.md); None: none."""
    write_priority: Annotated[int, Field(ge=9, le=15)] = 10
    """BACnet priority of control's writes: an operator at 8 always wins."""
    lease_s: Annotated[float, Field(ge=10, le=86400)] = 300.0
    """Wall-clock seconds a write stands without being renewed by a decision; then it is released."""
    demand: PointRef | None = None
    """The building's main meter power (W or kW, by the point's unit)."""
    outdoor_temperature: PointRef | None = None
    zones: list[ZoneControl] = Field(default_factory=list)
    plant_limit: PointRef | None = None
    fan_limit: PointRef | None = None
    ventilation_limit: PointRef | None = None
    supply_air_setpoint: PointRef | None = None
    """The air handler's supply-air temperature setpoint: raised to the heating setpoint in warm-ups."""
    open_hour: Annotated[int, Field(ge=0, le=23)] = DEFAULT_HOURS.open_hour
    close_hour: Annotated[int, Field(ge=1, le=24)] = DEFAULT_HOURS.close_hour
    open_days: list[Annotated[int, Field(ge=0, le=6)]] = Field(
        default_factory=lambda: sorted(DEFAULT_HOURS.days)
    )
    """Monday is 0."""
    holidays: list[date] = Field(default_factory=list)
    """The site's own closed days (ISO dates), besides the Korean public holidays of every year."""
    open_on_holidays: bool = False
    cooling_setpoint_c: float = DEFAULT_LIMITS.cooling_base_c
    """Occupied cooling setpoint that offsets start from (Korean public buildings: at least 26)."""
    heating_setpoint_c: float = DEFAULT_LIMITS.heating_base_c
    """Occupied heating setpoint that offsets start from (Korean public buildings: at most 20)."""
    comfort_band_c: tuple[float, float] = (DEFAULT_LIMITS.comfort_low_c, DEFAULT_LIMITS.comfort_high_c)
    max_offset_k: Annotated[float, Field(ge=0, le=MAX_OFFSET_K)] = MAX_OFFSET_K
    """The furthest control moves a zone setpoint (at most Guideline 36's level 3)."""
    energy_offset_k: Annotated[float, Field(ge=0, le=MAX_OFFSET_K)] = DEFAULT_LIMITS.energy_offset_k
    """Setpoint offset kept all day while open, an energy measure (never past the comfort edge)."""
    comfort_margin_k: Annotated[float, Field(ge=0, le=3)] = DEFAULT_LIMITS.comfort_margin_k
    """Rooms are held this far inside the comfort band (measured room temperature)."""
    comfort_hysteresis_k: Annotated[float, Field(ge=0, le=3)] = DEFAULT_LIMITS.comfort_hysteresis_k
    """A room held at the comfort edge is shed again only once this far back inside."""
    release_k_per_min: Annotated[float, Field(gt=0, le=5)] = DEFAULT_LIMITS.release_k_per_min
    """While open, setpoint offsets are given back no faster than this (no rebound peak)."""
    plant_limit_floor_pct: Annotated[float, Field(ge=0, le=100)] = DEFAULT_LIMITS.plant_floor_pct
    """The lowest plant demand limit control writes, % of rated input."""
    plant_power: PointRef | None = None
    """The plant's electric power (W or kW, by the point's unit): with plant_rated_kw, limits are set
    relative to where the plant runs and counted as shedding only while they bind."""
    plant_rated_kw: Annotated[float, Field(gt=0)] | None = DEFAULT_LIMITS.plant_rated_kw
    """The plant's rated electric input, kW (what its demand limit is a share of)."""
    illuminance_floor_lux: Annotated[float, Field(ge=0)] = DEFAULT_LIMITS.illuminance_floor_lux
    co2_limit_ppm: Annotated[float, Field(ge=400)] = DEFAULT_LIMITS.co2_limit_ppm

    @model_validator(mode="after")
    def _consistent(self) -> ControlConfig:
        low, high = self.demand_target_limits_kw
        if not 0 < low <= high:
            raise ValueError(f"demand_target_limits_kw [{low}, {high}] must be positive and ordered")
        if self.demand_target_kw is not None and not low <= self.demand_target_kw <= high:
            raise ValueError(f"demand_target_kw {self.demand_target_kw} is outside [{low}, {high}]")
        if self.open_hour >= self.close_hour:
            raise ValueError(f"open_hour {self.open_hour} must come before close_hour {self.close_hour}")
        if self.comfort_band_c[0] >= self.comfort_band_c[1]:
            raise ValueError(f"comfort_band_c {list(self.comfort_band_c)} must be ordered")
        if self.planner and self.model is not None:
            raise ValueError("planner = true and a model: one policy decides; remove model or planner")
        if self.heating_setpoint_c > self.cooling_setpoint_c - 0.56:
            raise ValueError("heating_setpoint_c must be at least 0.56 K below cooling_setpoint_c")
        return self

    @property
    def configured(self) -> bool:
        """True when control has what it needs to decide: a demand meter and at least one zone."""
        return self.demand is not None and bool(self.zones)

    def knobs(self) -> dict[str, list[str]]:
        """Each knob (KNOB_NEEDS' order) with the 'device/point's it acts through; empty: the site lacks it"""
        zones = self.zones
        cooling = [z.cooling_setpoint for z in zones if z.cooling_setpoint]
        heating = [z.heating_setpoint for z in zones if z.heating_setpoint]
        co2 = any(z.co2 for z in zones)
        return {
            "cooling_offset": cooling,
            "heating_offset": heating,
            "plant_limit": [self.plant_limit] if self.plant_limit else [],
            "fan_limit": [self.fan_limit] if self.fan_limit else [],
            "ventilation_limit": [self.ventilation_limit] if self.ventilation_limit and co2 else [],
            "lighting_floor": [z.dimming for z in zones if z.dimming and z.illuminance],
            "precondition": cooling + heating,
        }

    def cannot_act(self) -> list[str]:
        """Why control in mode shadow or active could never decide or never write, each naming its field
        (none while off; switched on by a command, `status` shows what it lacks)."""
        if self.mode == "off":
            return []
        mode = f"mode {self.mode!r}"
        problems = []
        if self.demand is None:
            problems.append(f"control.demand: {mode} needs the building's main meter power point")
        if self.outdoor_temperature is None:
            problems.append(f"control.outdoor_temperature: {mode} needs an outdoor temperature point")
        if not self.zones:
            problems.append(f"control.zones: {mode} needs at least one zone with its temperature point")
        if not any(self.knobs().values()):
            needs = ", ".join(v for k, v in KNOB_NEEDS.items() if k != "precondition")
            problems.append(f"control.zones: {mode} has no knob to act through: wire one of {needs}")
        return problems

    def references(self) -> Iterator[tuple[str, str, bool]]:
        """(field path, 'device/point', written by control) for every point reference."""
        for field in ("demand", "outdoor_temperature", "plant_power"):
            ref = getattr(self, field)
            if ref is not None:
                yield f"control.{field}", ref, False
        for field in ("plant_limit", "fan_limit", "ventilation_limit", "supply_air_setpoint"):
            ref = getattr(self, field)
            if ref is not None:
                yield f"control.{field}", ref, True
        for i, zone in enumerate(self.zones):
            for field in ("temperature", "co2", "illuminance"):
                ref = getattr(zone, field)
                if ref is not None:
                    yield f"control.zones[{i}].{field}", ref, False
            for field in ("cooling_setpoint", "heating_setpoint", "dimming"):
                ref = getattr(zone, field)
                if ref is not None:
                    yield f"control.zones[{i}].{field}", ref, True
