"""The agent's control core (edge_agent.control.core.decide, the one its ControlLoop calls) closed around
the simulated site, in-process.

Each building gets its own controller, as each gets its own gateway and its own electricity bill: an
observation from the building's state, one `decide` step, and the targets applied as the building's
controllers would take them from the network (None: the controller's own sequence).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from edge_agent.control.calendar import OpeningHours
from edge_agent.control.core import ControlState, Step, decide
from edge_agent.control.guards import Targets
from edge_agent.control.limits import Limits
from edge_agent.control.observation import Observation, ZoneObservation
from edge_agent.control.policy import Policy
from edge_sim.site.building import Building
from edge_sim.site.schedules import AROUND_THE_CLOCK
from edge_sim.site.site import Site
from edge_sim.site.specs import BUILDINGS, BuildingSpec
from edge_sim.study import StudyResult, run_scenario

TARGET_SHARE = 0.8  # the operator sets 80% of last year's peak
TARGET_SEED_OFFSET = 1000  # "last year": the same scenario under other weather


def opening_hours(building: Building) -> OpeningHours:
    """The building's public opening hours: its largest zone's schedule that is not around the clock."""
    zones = [z for z in building.zones if z.spec.schedule is not AROUND_THE_CLOCK]
    schedule = max(zones, key=lambda z: z.spec.params.floor_area_m2).spec.schedule
    days = frozenset(range(5) if schedule.weekdays_only else range(7))
    return OpeningHours(schedule.open_hour, schedule.close_hour, days, holidays=frozenset())


def observe(site: Site, building: Building) -> Observation:
    zones = tuple(
        ZoneObservation(
            z.name,
            z.thermal.t_air,
            z.cooling_sp,
            z.heating_sp,
            co2_ppm=z.thermal.co2_ppm,
            illuminance_lux=z.illuminance_lux,
            dimming_pct=z.dimming_pct,
        )
        for z in building.zones
    )
    return Observation(site.now, site.outdoor.temperature_c, building.power.total / 1000, zones)


def apply(building: Building, targets: Targets) -> None:
    for zone in building.zones:
        wanted = targets.zones.get(zone.name)
        zone.overrides.cooling_sp = wanted.cooling_setpoint_c if wanted else None
        zone.overrides.heating_sp = wanted.heating_setpoint_c if wanted else None
        zone.overrides.dimming_pct = wanted.dimming_pct if wanted else None
    building.demand_limit_pct = targets.plant_limit_pct
    building.ahu.fan_speed_cap_pct = targets.fan_limit_pct
    building.ahu.ventilation_limit_pct = targets.ventilation_limit_pct
    building.ahu.sat_override_c = targets.supply_air_c


@dataclass
class BuildingLoop:
    building: str
    policy: Policy
    target_kw: float | None
    limits: Limits | None = None  # None: the defaults, with the building's own opening hours
    state: ControlState = field(init=False)
    decision_s: list[float] = field(default_factory=list)  # one decide() step each

    def __post_init__(self) -> None:
        self.state = ControlState(self.policy, self.target_kw)

    def step(self, site: Site) -> Step:
        building = site.building(self.building)
        if self.limits is None:
            self.limits = Limits(hours=opening_hours(building))
        observation = observe(site, building)
        started = time.perf_counter()
        step = decide(observation, self.state, self.limits)
        self.decision_s.append(time.perf_counter() - started)
        apply(building, step.targets)
        return step


def closed_loop(loops: list[BuildingLoop]) -> Callable[[Site], None]:
    """A `before_step` hook for edge_sim.study.run_scenario."""

    def hook(site: Site) -> None:
        for loop in loops:
            loop.step(site)

    return hook


def demand_targets(
    scenario: str, seed: int, specs: tuple[BuildingSpec, ...] = BUILDINGS, share: float = TARGET_SHARE
) -> dict[str, float]:
    """Per building, `share` of its baseline peak in the same scenario under weather seed + 1000."""
    last_year = run_scenario(scenario, seed=seed + TARGET_SEED_OFFSET, specs=specs)
    return {spec.name: share * last_year.kpis[spec.name].peak_15min_kw for spec in specs}


def run_controlled(
    scenario: str,
    policy: Callable[[], Policy],
    targets: dict[str, float],
    *,
    seed: int,
    days: int | None = None,
    specs: tuple[BuildingSpec, ...] = BUILDINGS,
) -> tuple[StudyResult, list[BuildingLoop]]:
    """The scenario with one loop per building, each with its own policy from `policy()` and target."""
    loops = [BuildingLoop(spec.name, policy(), targets[spec.name]) for spec in specs]
    result = run_scenario(scenario, seed=seed, days=days, before_step=closed_loop(loops), specs=specs)
    return result, loops
