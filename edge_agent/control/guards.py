"""Guards: from a policy's decision to what may be written, zone by zone, step by step.

- comfort, on the measured room temperature: a zone whose room reaches the top (bottom) of its comfort
  band, less a margin, has its setpoint taken back by what the room is past that edge (a room that runs
  above its setpoint gets a setpoint below the edge), not raised again until the room is back inside by a
  hysteresis; the all-day energy offset is raised only by half the room's headroom to the edge, so it
  never pushes a room past it (from opening on, before any room got there);
- offsets at most `max_offset_k`, raised by at most `max_step_k` a step; while open given back no faster
  than `release_k_per_min`, and only `release_zones_per_step` zones at a time (no rebound peak);
- the policies' energy level (ENERGY_OFFSET_K) stands for the site's `energy_offset_k`;
- plant limits are shares of where the plant runs (its highest draw over the last day, when its power is
  metered and its rating known; else of its rating), written no lower than `plant_floor_pct`;
- plant and fan limits held at least `hold_s` between changes (stage hold), and at most
  `warm_up_plant_pct` and `warm_up_fan_pct` while the zones start early (a warm-up spread over hours),
  unless a zone lags the straight line from where it began to its comfort edge at opening;
- futility: shedding (offsets beyond the energy level, or a plant limit that binds) that has not lowered
  the 15-minute demand and leaves it over the target after `futility_after_s` stops for `cooldown_s`
  (the energy offsets are kept, the rest given back at the release rate);
- CO2: outdoor air back to design as soon as a zone nears the limit;
- lighting: daylit zones dimmed in steps while their illuminance stays above the floor.
A target of None means: release, the controller's own sequence.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from edge_agent.control.decision import Decision
from edge_agent.control.features import Features
from edge_agent.control.limits import ENERGY_OFFSET_K, Limits
from edge_agent.control.observation import Observation, ZoneObservation

BASE_HOURS = 20  # hours of demand seen before the day's lowest stands for the base load
MIN_REFERENCE_PCT = 5.0
RECENT = timedelta(minutes=30)
COOLING_SEASON_C = 16.0  # outdoors; below it a warm-up heats (rules.py's COOLING_ABOVE_C)
WARM_UP_SLACK = 0.1  # share of its way a zone may lag the warm-up's straight line before the caps go


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
    projection_before_kw: float = 0.0  # the 15-minute projection when the shed started
    cooldown_until: datetime | None = None


@dataclass(slots=True)
class _PlantWatch:
    """Where the plant runs, as shares of its rated input (known only with its rating configured): its
    draw now, its mean over the last RECENT (what shedding limits are a share of) and its highest in each
    of the last 24 hours (what warm-up limits are a share of). Metered when its power is read; else
    estimated from the main meter as the demand above the day's lowest (an upper bound while the plant
    rests at night), and then whether a limit binds is not known."""

    load_pct: float | None = None
    metered: bool = False
    recent: deque[tuple[datetime, float]] = field(default_factory=deque)
    hourly: dict[datetime, float] = field(default_factory=dict)
    base_kw: dict[datetime, float] = field(default_factory=dict)  # the lowest demand, hour by hour

    def observe(self, observation: Observation, limits: Limits, cap_pct: float | None) -> None:
        now = observation.at
        hour = now.replace(minute=0, second=0, microsecond=0)
        demand = observation.demand_kw
        if demand is not None:
            self.base_kw[hour] = min(self.base_kw.get(hour, demand), demand)
        self.metered = observation.plant_kw is not None
        # Unmetered, the estimate needs a day's lowest demand (a night) to be an upper bound.
        whole_day = len(self.base_kw) >= BASE_HOURS
        if not limits.plant_rated_kw or (not self.metered and (demand is None or not whole_day)):
            self.load_pct = None
            return
        if observation.plant_kw is not None:
            kw = observation.plant_kw
        else:
            kw = (demand or 0.0) - min(self.base_kw.values())
        self.load_pct = max(0.0, 100 * kw / limits.plant_rated_kw)
        # Held down by a limit, the plant would draw at least where it ran before: no ratchet downwards.
        binding = self.binds(cap_pct, limits)
        self.recent.append((now, self.shed_reference_pct() if binding else self.load_pct))
        while now - self.recent[0][0] > RECENT:
            self.recent.popleft()
        seen = self.day_reference_pct() if binding else self.load_pct
        self.hourly[hour] = max(self.hourly.get(hour, 0.0), seen)
        for table in (self.hourly, self.base_kw):
            for old in [h for h in table if now - h >= timedelta(hours=24)]:
                del table[old]

    def shed_reference_pct(self) -> float:
        """What a shedding limit is a share of: the mean draw of late; the rating when not known."""
        if not self.recent:
            return 100.0
        mean = sum(pct for _, pct in self.recent) / len(self.recent)
        return min(100.0, mean) if mean >= MIN_REFERENCE_PCT else 100.0

    def day_reference_pct(self) -> float:
        """What a warm-up limit is a share of: the highest draw of the last day; the rating when unknown."""
        top = max(self.hourly.values(), default=0.0)
        return min(100.0, top) if top >= MIN_REFERENCE_PCT else 100.0

    def binds(self, cap_pct: float | None, limits: Limits) -> bool:
        """The limit in force holds the plant down (it draws at or near it); False when not metered."""
        if cap_pct is None or self.load_pct is None or not self.metered:
            return False
        return self.load_pct >= cap_pct - limits.plant_binds_within_pct

    def cap(self, share_pct: float, limits: Limits, *, warm_up: bool = False) -> float:
        """The limit written (share of rated input) for a decision's share of where the plant runs."""
        if share_pct >= 100 - 1e-6:
            return 100.0
        reference = self.day_reference_pct() if warm_up else self.shed_reference_pct()
        return min(100.0, max(limits.plant_floor_pct, reference * share_pct / 100))


@dataclass(slots=True)
class _WarmUpWatch:
    """Whether a warm-up (cool-down) is on course: each zone should close its gap to the occupied comfort
    edge (less the margin) at least in proportion to the time gone since the warm-up began. A zone behind
    that line lifts the warm-up's plant and fan caps until opening: a building still cold (hot) at opening
    is a discomfort the building's own start would not have made, and a peak at opening besides."""

    started: datetime | None = None
    hours: float = 0.0
    gaps: dict[str, float] = field(default_factory=dict)  # each zone's gap to the edge at the start, K

    def on_course(self, observation: Observation, features: Features, limits: Limits, early: bool) -> bool:
        if not early:
            self.started = None
            return True
        cooling = features.outdoor_temperature >= COOLING_SEASON_C
        gaps = {z.name: _gap_k(z, cooling, limits) for z in observation.zones if z.temperature_c is not None}
        if self.started is None:
            self.started, self.hours, self.gaps = observation.at, max(features.hours_to_open, 0.1), gaps
            return True
        gone = (observation.at - self.started).total_seconds() / 3600 / self.hours
        return not any(
            start_gap > 0 and name in gaps and 1 - gaps[name] / start_gap < gone - WARM_UP_SLACK
            for name, start_gap in self.gaps.items()
        )


def _gap_k(zone: ZoneObservation, cooling: bool, limits: Limits) -> float:
    """Kelvin the room still has to go to the occupied comfort edge less the margin (<= 0: there)."""
    t = zone.temperature_c or 0.0
    if cooling:
        return t - (limits.comfort_high_c - limits.comfort_margin_k)
    return limits.comfort_low_c + limits.comfort_margin_k - t


@dataclass(slots=True)
class Guards:
    _cooling: dict[str, float] = field(default_factory=dict)  # offsets in force, per zone
    _heating: dict[str, float] = field(default_factory=dict)
    _plant: _Held = field(default_factory=_Held)
    _fan: _Held = field(default_factory=_Held)
    _shed: _ShedWatch = field(default_factory=_ShedWatch)
    _plant_watch: _PlantWatch = field(default_factory=_PlantWatch)
    _warm_up: _WarmUpWatch = field(default_factory=_WarmUpWatch)
    _last_at: datetime | None = None

    def apply(
        self, decision: Decision, observation: Observation, features: Features, limits: Limits
    ) -> Targets:
        notes: list[str] = []
        now = observation.at
        minutes = 1.0 if self._last_at is None else (now - self._last_at).total_seconds() / 60
        self._last_at = now
        self._plant_watch.observe(observation, limits, self._plant.value)
        plant_binds = self._plant_watch.binds(self._plant.value, limits)
        decision = self._futility(decision, features, now, notes, limits, plant_binds=plant_binds)
        active = features.open >= 0.5
        early = not active and decision.precondition >= 0.5
        cooling_wanted = min(_site_offset(decision.cooling_offset, limits), limits.max_offset_k)
        heating_wanted = min(_site_offset(decision.heating_offset, limits), limits.max_offset_k)
        # Given back at a bounded rate while open (no rebound peak); at once when closed (setback follows).
        release_k = limits.release_k_per_min * min(15.0, max(0.0, minutes)) if active else limits.max_offset_k
        for kind, current, wanted in (
            ("c", self._cooling, cooling_wanted),
            ("h", self._heating, heating_wanted),
        ):
            self._offsets(
                current,
                observation.zones,
                wanted if active else 0.0,
                notes,
                kind,
                limits=limits,
                release_k=release_k,
                energy=active and wanted <= limits.energy_offset_k + 1e-9,
            )
        cooling, heating = self._cooling, self._heating
        zones: dict[str, ZoneTargets] = {}
        for zone in observation.zones:
            target = ZoneTargets(dimming_pct=_dimming(zone, decision, active, limits))
            if early:  # pre-cooling starts below the occupied setpoint (the planner's), never under the floor
                precool = _cooling_setpoint(min(0.0, decision.cooling_offset), limits)
                target = replace(target, cooling_setpoint_c=precool)
                target = replace(target, heating_setpoint_c=limits.heating_base_c)
            if cooling.get(zone.name, 0.0) != 0:
                target = replace(target, cooling_setpoint_c=_cooling_setpoint(cooling[zone.name], limits))
            if heating.get(zone.name, 0.0) > 0:
                target = replace(target, heating_setpoint_c=limits.heating_base_c - heating[zone.name])
            zones[zone.name] = target
        plant_cap = self._plant_watch.cap(decision.plant_limit, limits)
        fan = decision.fan_limit
        # A warm-up (cool-down, pre-cooling) spread over hours at a limited plant and fan, not a peak. Only
        # where control starts the zones early: where the season's setpoints are not wired the building starts
        # on its own schedule, and a cap would only delay its start into the opening (a new peak).
        wired = _season_setpoints_wired(observation, features)
        on_course = self._warm_up.on_course(observation, features, limits, early and wired)
        if early and wired and not on_course:
            notes.append("warm-up behind: plant and fan caps lifted")
        elif early and wired:
            warm_up = self._plant_watch.cap(limits.warm_up_plant_pct, limits, warm_up=True)
            plant_cap, fan = min(plant_cap, warm_up), min(fan, limits.warm_up_fan_pct)
        if not active and not wired:
            plant_cap = 100.0  # closed, and no way to start earlier: a limit would only push the start late
        if active and plant_cap < 100 and _past_comfort(observation, limits):
            plant_cap = 100.0  # comfort first: a plant held down while a room is past the band is let go
            notes.append("comfort: plant limit lifted")
        return Targets(
            zones,
            plant_limit_pct=self._plant_limit(_unless(plant_cap, 100.0), now, minutes, limits),
            fan_limit_pct=self._fan.update(_unless(fan, 100.0), now, limits.hold_s),
            ventilation_limit_pct=_ventilation(decision, observation, notes, limits),
            supply_air_c=_warm_up_supply_air(observation, limits) if early else None,
            notes=tuple(notes),
        )

    def _plant_limit(
        self, wanted: float | None, now: datetime, minutes: float, limits: Limits
    ) -> float | None:
        """Lowered after the stage hold; raised at a bounded rate (a plant let go at once catches up at
        full power: a new peak), and let go once above where the plant ran over the last day."""
        held = self._plant
        if held.value is None or (wanted is not None and wanted <= held.value):
            return held.update(wanted, now, limits.hold_s)
        raised = held.value + limits.plant_release_pct_per_min * max(0.0, minutes)
        top = self._plant_watch.day_reference_pct() + limits.plant_binds_within_pct
        if wanted is not None:
            raised = min(raised, wanted)
        held.value = None if (raised >= min(100.0, top) and wanted is None) or raised >= 100 else raised
        return held.value

    def _futility(
        self,
        decision: Decision,
        features: Features,
        now: datetime,
        notes: list[str],
        limits: Limits,
        *,
        plant_binds: bool,
    ) -> Decision:
        shed = self._shed
        if shed.cooldown_until is not None and now < shed.cooldown_until:
            notes.append("futile: shedding paused")
            return _without_shedding(decision)
        # Offsets up to the energy level save energy all day long: only what goes beyond is shedding; a
        # plant limit is shedding only while it binds (a limit above the plant's draw does nothing).
        demand_shed = (
            decision.cooling_offset > ENERGY_OFFSET_K + 1e-9
            or decision.heating_offset > ENERGY_OFFSET_K + 1e-9
            or (decision.plant_limit < 100 and plant_binds)
        )
        # A warm-up (cool-down) before opening raises the demand by design: its plant limit spreads that
        # rise and is not judged by whether the demand falls.
        if not demand_shed or decision.precondition >= 0.5:
            shed.started = None
            return decision
        if shed.started is None:
            shed.started, shed.projection_before_kw = now, features.interval_projection
            return decision
        if (now - shed.started).total_seconds() >= limits.futility_after_s:
            # Judged on the billed quantity: futile only when the 15-minute demand is still over the
            # target and no lower than when the shed began (a shed that holds it under the target works).
            over_target = features.interval_projection > features.demand_target
            floor_kw = shed.projection_before_kw * (1 - limits.futility_min_drop)
            lowered = features.interval_projection <= floor_kw
            if over_target and not lowered:
                shed.cooldown_until = now + timedelta(seconds=limits.cooldown_s)
                shed.started = None
                notes.append("futile: demand not lowered, shedding paused")
                return _without_shedding(decision)
            shed.started, shed.projection_before_kw = now, features.interval_projection
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
        release_k: float,
        energy: bool,
    ) -> None:
        """Each zone's offset towards `wanted`, guarded on its measured room temperature."""
        releases = 0
        # Staggered release: the zones closest to their comfort limit are released first.
        order = sorted(
            zones, key=lambda z: -(z.temperature_c or 0.0) if kind == "c" else z.temperature_c or 0.0
        )
        # The comfort edge (less the margin), and the offset that holds a setpoint on it.
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
            if inside <= 0:
                # The room is at or past the edge: its setpoint goes back by what the room is past it
                # (a room that runs above its setpoint needs a setpoint below the edge), never to the base
                # at once: that would start a burst of cooling (heating), then a cycle.
                held = max(0.0, min(now_offset, edge_offset) + inside)
                if now_offset > held:
                    notes.append(f"comfort: {zone.name}")
                    current[zone.name] = held
                    continue
                goal = min(goal, now_offset)
            elif energy or inside < limits.comfort_hysteresis_k:
                # An all-day offset, or a room near the edge: raised only by half the room's headroom (the
                # room follows its setpoint), so it never overshoots the edge, from opening on.
                goal = min(goal, max(now_offset, min(edge_offset, now_offset + inside / 2)))
            if goal > now_offset:
                current[zone.name] = min(goal, now_offset + limits.max_step_k)
            elif goal < now_offset and releases < limits.release_zones_per_step:
                releases += 1
                current[zone.name] = max(goal, now_offset - release_k)


def _season_setpoints_wired(observation: Observation, features: Features) -> bool:
    """Whether control can start the zones early in this season: heating setpoints below 16 C outdoors,
    cooling setpoints above."""
    cooling = features.outdoor_temperature >= COOLING_SEASON_C
    return any(
        (z.cooling_setpoint_c if cooling else z.heating_setpoint_c) is not None for z in observation.zones
    )


def _past_comfort(observation: Observation, limits: Limits) -> bool:
    """A room beyond its comfort band less half the margin (the margin is where control holds rooms)."""
    high = limits.comfort_high_c - limits.comfort_margin_k / 2
    low = limits.comfort_low_c + limits.comfort_margin_k / 2
    return any(z.temperature_c is not None and not low <= z.temperature_c <= high for z in observation.zones)


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


def _cooling_setpoint(offset: float, limits: Limits) -> float:
    """The cooling setpoint of an offset; pre-cooling (below 0) no lower than `precool_floor_c`."""
    return max(min(limits.precool_floor_c, limits.cooling_base_c), limits.cooling_base_c + offset)


def _site_offset(offset: float, limits: Limits) -> float:
    """A policy's offset on the site's scale: offsets up to the policies' energy level (ENERGY_OFFSET_K) are
    the all-day energy measure and scale to the site's `energy_offset_k`; shedding beyond keeps its value;
    pre-cooling (below 0) keeps its value."""
    if offset <= 0:
        return offset
    if offset <= ENERGY_OFFSET_K:
        return offset * limits.energy_offset_k / ENERGY_OFFSET_K
    return max(offset, limits.energy_offset_k)


def _without_shedding(decision: Decision) -> Decision:
    return replace(
        decision,
        cooling_offset=min(decision.cooling_offset, ENERGY_OFFSET_K),
        heating_offset=min(decision.heating_offset, ENERGY_OFFSET_K),
        plant_limit=100.0,
        fan_limit=100.0,
    )
