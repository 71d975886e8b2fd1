"""Guards: from a policy's decision to what may be written, zone by zone, step by step.

- comfort: a zone at the top (bottom) of its comfort band, less a margin, is held there: its setpoint
  goes no further than that edge until the zone is back inside by a hysteresis;
- offsets at most `max_offset_k`, raised by at most `max_step_k` a step; released no faster either, and
  only `release_zones_per_step` zones at a time (staggered release: no rebound peak);
- plant and fan limits held at least `hold_s` between changes (stage hold), and at most
  `warm_up_plant_pct` and `warm_up_fan_pct` while the zones start early (a warm-up spread over hours);
- futility: shedding that has not lowered the demand after `futility_after_s` stops for `cooldown_s`
  (offsets up to `energy_offset_k`, an energy measure, are kept);
- CO2: outdoor air back to design as soon as a zone nears the limit;
- lighting: daylit zones dimmed in steps while their illuminance stays above the floor.
A target of None means: release, the controller's own sequence.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from edge_agent.control.decision import Decision
from edge_agent.control.features import Features
from edge_agent.control.limits import Limits
from edge_agent.control.observation import Observation, ZoneObservation


@dataclass(frozen=True, slots=True)
class ZoneTargets:
    cooling_setpoint_c: float | None = None
    heating_setpoint_c: float | None = None
    dimming_pct: float | None = None


@dataclass(frozen=True, slots=True)
class Targets:
    zones: dict[str, ZoneTargets]
    plant_limit_pct: float | None = None
    fan_limit_pct: float | None = None
    ventilation_limit_pct: float | None = None
    supply_air_c: float | None = None  # the air handler's supply-air temperature setpoint
    notes: tuple[str, ...] = ()  # which guards acted this step

    @classmethod
    def release(cls) -> Targets:
        return cls({})


@dataclass(slots=True)
class _Held:
    value: float | None = None
    since: datetime | None = None

    def update(self, wanted: float | None, now: datetime, hold_s: float) -> float | None:
        if wanted != self.value and (self.since is None or (now - self.since).total_seconds() >= hold_s):
            self.value, self.since = wanted, now
        return self.value


@dataclass(slots=True)
class _ShedWatch:
    started: datetime | None = None
    demand_before_kw: float = 0.0
    cooldown_until: datetime | None = None


@dataclass(slots=True)
class Guards:
    _cooling: dict[str, float] = field(default_factory=dict)  # offsets in force, per zone
    _heating: dict[str, float] = field(default_factory=dict)
    _plant: _Held = field(default_factory=_Held)
    _fan: _Held = field(default_factory=_Held)
    _shed: _ShedWatch = field(default_factory=_ShedWatch)

    def apply(
        self, decision: Decision, observation: Observation, features: Features, limits: Limits
    ) -> Targets:
        notes: list[str] = []
        now = observation.at
        decision = self._futility(decision, features, now, notes, limits)
        active = features.open >= 0.5
        early = not active and decision.precondition >= 0.5
        cooling_wanted = min(decision.cooling_offset, limits.max_offset_k)
        heating_wanted = min(decision.heating_offset, limits.max_offset_k)
        cooling = self._offsets(
            self._cooling, observation.zones, cooling_wanted if active else 0.0, notes, "c", limits=limits
        )
        heating = self._offsets(
            self._heating, observation.zones, heating_wanted if active else 0.0, notes, "h", limits=limits
        )
        zones: dict[str, ZoneTargets] = {}
        for zone in observation.zones:
            target = ZoneTargets(dimming_pct=_dimming(zone, decision, active, limits))
            if early:
                target = replace(target, cooling_setpoint_c=limits.cooling_base_c)
                target = replace(target, heating_setpoint_c=limits.heating_base_c)
            if cooling.get(zone.name, 0.0) > 0:
                target = replace(target, cooling_setpoint_c=limits.cooling_base_c + cooling[zone.name])
            if heating.get(zone.name, 0.0) > 0:
                target = replace(target, heating_setpoint_c=limits.heating_base_c - heating[zone.name])
            zones[zone.name] = target
        plant, fan = decision.plant_limit, decision.fan_limit
        if early:  # a warm-up (cool-down) spread over hours at a limited plant and fan, not a peak
            plant, fan = min(plant, limits.warm_up_plant_pct), min(fan, limits.warm_up_fan_pct)
        return Targets(
            zones,
            plant_limit_pct=self._plant.update(_unless(plant, 100.0), now, limits.hold_s),
            fan_limit_pct=self._fan.update(_unless(fan, 100.0), now, limits.hold_s),
            ventilation_limit_pct=_ventilation(decision, observation, notes, limits),
            supply_air_c=_warm_up_supply_air(observation, limits) if early else None,
            notes=tuple(notes),
        )

    def _futility(
        self, decision: Decision, features: Features, now: datetime, notes: list[str], limits: Limits
    ) -> Decision:
        shed = self._shed
        if shed.cooldown_until is not None and now < shed.cooldown_until:
            notes.append("futile: shedding paused")
            return _without_shedding(decision, limits.energy_offset_k)
        # Offsets up to the energy level save energy all day long: only what goes beyond is shedding.
        demand_shed = (
            decision.cooling_offset > limits.energy_offset_k
            or decision.heating_offset > limits.energy_offset_k
            or decision.plant_limit < 100
            or decision.fan_limit < 100
        )
        # A warm-up (cool-down) before opening raises the demand by design: its plant limit spreads that
        # rise and is not judged by whether the demand falls.
        if not demand_shed or decision.precondition >= 0.5:
            shed.started = None
            return decision
        if shed.started is None:
            shed.started, shed.demand_before_kw = now, features.demand
            return decision
        if (now - shed.started).total_seconds() >= limits.futility_after_s:
            if features.interval_average > shed.demand_before_kw * (1 - limits.futility_min_drop):
                shed.cooldown_until = now + timedelta(seconds=limits.cooldown_s)
                shed.started = None
                notes.append("futile: demand not lowered, shedding paused")
                return _without_shedding(decision, limits.energy_offset_k)
            shed.started, shed.demand_before_kw = now, features.interval_average
        return decision

    def _offsets(
        self,
        current: dict[str, float],
        zones: tuple[ZoneObservation, ...],
        wanted: float,
        notes: list[str],
        kind: str,
        *,
        limits: Limits,
    ) -> dict[str, float]:
        releases = 0
        # Staggered release: the zones closest to their comfort limit are released first.
        order = sorted(
            zones, key=lambda z: -(z.temperature_c or 0.0) if kind == "c" else z.temperature_c or 0.0
        )
        # The comfort edge (less the margin), and the offset that holds a zone's setpoint on it.
        if kind == "c":
            edge_c = limits.comfort_high_c - limits.comfort_margin_k
            edge_offset = max(0.0, edge_c - limits.cooling_base_c)
        else:
            edge_c = limits.comfort_low_c + limits.comfort_margin_k
            edge_offset = max(0.0, limits.heating_base_c - edge_c)
        for zone in order:
            now_offset = current.get(zone.name, 0.0)
            goal = wanted
            t = zone.temperature_c
            if t is None:  # no reading: the controller's own setpoint
                current[zone.name] = 0.0
                continue
            inside = edge_c - t if kind == "c" else t - edge_c  # kelvin inside the edge (negative: past it)
            if inside <= 0 and now_offset > edge_offset:
                # Hold the setpoint on the edge: dropping it to the base would start a burst of
                # cooling (heating), then the offset would ramp up again, a cycle every few steps.
                notes.append(f"comfort: {zone.name}")
                current[zone.name] = edge_offset
                continue
            if inside < limits.comfort_hysteresis_k:
                goal = min(goal, max(now_offset, edge_offset))  # raised again only well inside
            if goal > now_offset:
                current[zone.name] = min(goal, now_offset + limits.max_step_k)
            elif goal < now_offset and releases < limits.release_zones_per_step:
                releases += 1
                current[zone.name] = max(goal, now_offset - limits.max_step_k)
        return current


def _warm_up_supply_air(observation: Observation, limits: Limits) -> float | None:
    """During a warm-up, supply air at the heating setpoint: the air handler would otherwise cool the
    recirculated air to its own setpoint for the boxes to reheat (Guideline 36 raises it too)."""
    temperatures = [z.temperature_c for z in observation.zones if z.temperature_c is not None]
    if not temperatures or sum(temperatures) / len(temperatures) >= limits.heating_base_c:
        return None
    return limits.heating_base_c


def _ventilation(
    decision: Decision, observation: Observation, notes: list[str], limits: Limits
) -> float | None:
    co2 = max((z.co2_ppm for z in observation.zones if z.co2_ppm is not None), default=None)
    if co2 is None or co2 >= limits.co2_limit_ppm - limits.co2_margin_ppm:
        if decision.ventilation_limit < 100:
            notes.append("co2: outdoor air at design")
        return None
    return _unless(decision.ventilation_limit, 100.0)


def _dimming(zone: ZoneObservation, decision: Decision, active: bool, limits: Limits) -> float | None:
    if not active or zone.illuminance_lux is None or decision.lighting_floor >= 100:
        return None
    level = zone.dimming_pct if zone.dimming_pct is not None else 100.0
    if zone.illuminance_lux > limits.illuminance_floor_lux * 1.15:
        level -= limits.dimming_step_pct
    elif zone.illuminance_lux < limits.illuminance_floor_lux:
        level += limits.dimming_step_pct
    level = min(100.0, max(decision.lighting_floor, level))
    return None if level >= 100 else level


def _unless(value: float, neutral: float) -> float | None:
    return None if abs(value - neutral) < 1e-6 else value


def _without_shedding(decision: Decision, energy_offset_k: float) -> Decision:
    return replace(
        decision,
        cooling_offset=min(decision.cooling_offset, energy_offset_k),
        heating_offset=min(decision.heating_offset, energy_offset_k),
        plant_limit=100.0,
        fan_limit=100.0,
    )
