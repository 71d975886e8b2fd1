"""The zoo study: each building through a scenario week under its own sequences (the baseline), and under
the shipped control core (`edge_agent.control.core.decide`) with the rule-based limiter or the ONNX policy.

The demand target is the stock study's (control_study.py): 80% of the building's baseline peak in the same
scenario under other weather ("last year"). A building sees and commands only the points it has: a
limited-knob building shows zone temperatures, cooling setpoints and its main meter, and takes only cooling
setpoints and a plant limit (what decide() asks of the other knobs is not written); a VRF building has no
air handler, so no fan-speed or supply-air knob.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from edge_agent.control.core import ControlState, decide
from edge_agent.control.demand import IntervalDemand
from edge_agent.control.guards import Targets, ZoneTargets
from edge_agent.control.limits import Limits
from edge_agent.control.model_trust import ModelTrust
from edge_agent.control.observation import Observation, ZoneObservation
from edge_agent.control.onnx_policy import load_policy
from edge_agent.control.planner.policy import Planner
from edge_agent.control.policy import ModelOrRules, Policy
from edge_agent.control.rules import RuleBasedPolicy
from edge_agent.control.savings.kpi import Kpis
from edge_sim.control_study import TARGET_SEED_OFFSET, TARGET_SHARE, apply, observe, opening_hours
from edge_sim.physics.climate import SCENARIOS
from edge_sim.site.site import Site
from edge_sim.study import run_scenario
from edge_sim.zoo.generate import ZooSpec
from edge_sim.zoo.seeds import weather_seed
from edge_sim.zoo.site import ZooSite

ALL_POINTS = frozenset(
    {
        "outdoor_temperature", "main_meter", "zone_temperature", "cooling_setpoint", "heating_setpoint",
        "co2", "illuminance", "dimming", "plant_limit", "fan_limit", "ventilation_limit", "supply_air",
    }
)  # fmt: skip
LIMITED_POINTS = frozenset(
    {"outdoor_temperature", "main_meter", "zone_temperature", "cooling_setpoint", "plant_limit"}
)
NO_AIR_HANDLER = frozenset({"fan_limit", "supply_air"})
CONTROLLERS = ("planner", "rules", "onnx")
COMMISSIONING_SEED_OFFSET = 2000  # the commissioning weeks' weather (other than the week's and "last year's")
COMMISSIONING_SHIFT = timedelta(days=14)  # they end a week before the controlled week begins
BENCH_TRUST = ModelTrust(allow_unsigned=True)  # measures a model, in no building


def points_of(zoo: ZooSpec) -> frozenset[str]:
    if zoo.limited:
        return LIMITED_POINTS
    return ALL_POINTS - NO_AIR_HANDLER if zoo.hvac == "vrf" else ALL_POINTS


def visible(observation: Observation, points: frozenset[str]) -> Observation:
    """The observation as a gateway with only `points` would build it."""

    def zone(z: ZoneObservation) -> ZoneObservation:
        return ZoneObservation(
            z.name,
            z.temperature_c if "zone_temperature" in points else None,
            z.cooling_setpoint_c if "cooling_setpoint" in points else None,
            z.heating_setpoint_c if "heating_setpoint" in points else None,
            co2_ppm=z.co2_ppm if "co2" in points else None,
            illuminance_lux=z.illuminance_lux if "illuminance" in points else None,
            dimming_pct=z.dimming_pct if "dimming" in points else None,
        )

    return replace(observation, zones=tuple(zone(z) for z in observation.zones))


def writable(targets: Targets, points: frozenset[str]) -> Targets:
    """The targets a gateway with only `points` can write (None: the building's own sequence)."""
    zones = {
        name: ZoneTargets(
            t.cooling_setpoint_c if "cooling_setpoint" in points else None,
            t.heating_setpoint_c if "heating_setpoint" in points else None,
            t.dimming_pct if "dimming" in points else None,
        )
        for name, t in targets.zones.items()
    }
    return replace(
        targets,
        zones=zones,
        plant_limit_pct=targets.plant_limit_pct if "plant_limit" in points else None,
        fan_limit_pct=targets.fan_limit_pct if "fan_limit" in points else None,
        ventilation_limit_pct=targets.ventilation_limit_pct if "ventilation_limit" in points else None,
        supply_air_c=targets.supply_air_c if "supply_air" in points else None,
    )


@dataclass
class ZooLoop:
    """One building's control: observe what it has, one decide() step, write what it can."""

    zoo: ZooSpec
    policy: Policy
    target_kw: float
    state: ControlState = field(init=False)
    limits: Limits | None = None
    decision_s: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.state = ControlState(self.policy, self.target_kw)

    def __call__(self, site: Site) -> None:
        building = site.building(self.zoo.name)
        if self.limits is None:
            self.limits = Limits(hours=opening_hours(building))
        points = points_of(self.zoo)
        observation = visible(observe(site, building), points)
        started = time.perf_counter()
        step = decide(observation, self.state, self.limits)
        self.decision_s.append(time.perf_counter() - started)
        apply(building, writable(step.targets, points))


def policy_for(controller: str, model: str) -> Policy:
    if controller == "rules":
        return RuleBasedPolicy()
    if controller == "planner":
        return planned(Planner(RuleBasedPolicy()))
    if controller == "onnx":
        return load_policy(model, BENCH_TRUST)
    raise ValueError(f"controller: unknown {controller!r} (planner, rules or onnx)")


def run(
    zoo: ZooSpec,
    scenario: str,
    *,
    loop: Callable[[Site], None] | None = None,
    days: int | None = None,
    weather_offset: int = 0,
) -> Kpis:
    """The building's KPIs through the scenario (its baseline when `loop` is None)."""
    seed = weather_seed(zoo.seed) + weather_offset

    def make_site(start: datetime) -> Site:
        return ZooSite(start, zoo, SCENARIOS[scenario], seed)

    result = run_scenario(scenario, days=days, before_step=loop, make_site=make_site)
    return result.kpis[zoo.name]


def demand_target_kw(zoo: ZooSpec, scenario: str, days: int | None = None) -> float:
    """80% of the building's baseline peak in the scenario under "last year's" weather."""
    return TARGET_SHARE * run(zoo, scenario, days=days, weather_offset=TARGET_SEED_OFFSET).peak_15min_kw


def planned(planner: Planner) -> Policy:
    """The planner while it has a model and a plan, else the rules (as the agent runs it)."""
    return ModelOrRules(planner, RuleBasedPolicy(), planner.now, lambda reason, previous: None)


def commission(zoo: ZooSpec, scenario: str, planner: Planner, days: int | None = None) -> None:
    """The planner's commissioning, as on site before control is switched on: it watches the building run
    its own sequences (shadow mode) through the scenario under other weather, COMMISSIONING_SHIFT earlier."""
    limits: Limits | None = None

    def watch(site: Site) -> None:
        nonlocal limits
        building = site.building(zoo.name)
        limits = limits or Limits(hours=opening_hours(building))
        seen = visible(observe(site, building), points_of(zoo))
        seen = replace(seen, at=seen.at - COMMISSIONING_SHIFT)
        planner.observe(seen, IntervalDemand().state(seen.at), limits)

    run(zoo, scenario, loop=watch, days=days, weather_offset=COMMISSIONING_SEED_OFFSET)


def run_controlled(
    zoo: ZooSpec, scenario: str, controller: str, target_kw: float, *, model: str, days: int | None = None
) -> tuple[Kpis, list[float]]:
    """KPIs under the control core, and its decision times in seconds. The planner is commissioned first."""
    policy = policy_for(controller, model)
    if controller == "planner":
        planner = Planner(RuleBasedPolicy())
        commission(zoo, scenario, planner, days)
        policy = planned(planner)
    loop = ZooLoop(zoo, policy, target_kw)
    return run(zoo, scenario, loop=loop, days=days), loop.decision_s


@dataclass(frozen=True, slots=True)
class Ratios:
    peak: float  # billed (15-minute) peak, controlled / baseline
    hvac: float  # HVAC energy
    cost: float  # TOU energy and one month's demand charge
    discomfort_kh: float  # K.h per zone, controlled less baseline


def ratios(base: Kpis, controlled: Kpis) -> Ratios:
    return Ratios(
        controlled.peak_15min_kw / base.peak_15min_kw,
        controlled.hvac_energy_kwh / base.hvac_energy_kwh if base.hvac_energy_kwh > 0 else float("nan"),
        controlled.total_cost_krw / base.total_cost_krw,
        controlled.tdis_kh - base.tdis_kh,
    )


@dataclass(frozen=True, slots=True)
class Week:
    """One building through one scenario: its baseline and each controller's KPIs."""

    zoo: ZooSpec
    scenario: str
    target_kw: float
    kpis: dict[str, Kpis]  # 'baseline' and each controller

    def ratios(self, controller: str) -> Ratios:
        return ratios(self.kpis["baseline"], self.kpis[controller])


@dataclass(frozen=True, slots=True)
class Summary:
    controller: str
    weeks: int
    median: Ratios
    worst: Week  # the highest peak ratio
    peak_rises: int  # weeks whose peak rose
    less_comfortable: int  # weeks more than 0.1 K.h per zone less comfortable than the baseline


def summarise(weeks: list[Week], controller: str) -> Summary:
    rs = [w.ratios(controller) for w in weeks]
    median = Ratios(
        statistics.median(r.peak for r in rs),
        statistics.median(r.hvac for r in rs),
        statistics.median(r.cost for r in rs),
        statistics.median(r.discomfort_kh for r in rs),
    )
    worst = max(weeks, key=lambda w: w.ratios(controller).peak)
    return Summary(
        controller,
        len(weeks),
        median,
        worst,
        sum(r.peak > 1.0 for r in rs),
        sum(r.discomfort_kh > 0.1 for r in rs),
    )


def table(weeks: list[Week], controllers: tuple[str, ...] = CONTROLLERS) -> list[str]:
    """One line per building and week: each controller's ratios to the building's own sequences."""
    head = f"  {'building':10s} {'week':7s} {'zones':>5s} {'hvac':13s} {'knobs':7s}"
    for c in controllers:
        head += f" | {c + ' peak':>10s} {'HVAC':>6s} {'cost':>6s} {'dK.h/z':>7s}"
    lines = [head]
    for w in weeks:
        line = (
            f"  {w.zoo.name:10s} {w.scenario:7s} {w.zoo.zone_count:5d} {w.zoo.hvac:13s} "
            f"{'limited' if w.zoo.limited else 'all':7s}"
        )
        for c in controllers:
            r = w.ratios(c)
            line += f" | {r.peak:10.3f} {r.hvac:6.3f} {r.cost:6.3f} {r.discomfort_kh:+7.2f}"
        lines.append(line)
    return lines


def summary_lines(weeks: list[Week], controllers: tuple[str, ...] = CONTROLLERS) -> list[str]:
    lines = []
    for c in controllers:
        s = summarise(weeks, c)
        m = s.median
        worst = s.worst.ratios(c)
        lines += [
            f"  {c}: median over {s.weeks} building-weeks: peak {m.peak:.3f}, HVAC {m.hvac:.3f}, "
            f"cost {m.cost:.3f}, discomfort {m.discomfort_kh:+.2f} K.h/zone; peak rose in {s.peak_rises}, "
            f"> +0.1 K.h/zone in {s.less_comfortable}",
            f"    worst ({s.worst.scenario}, peak {worst.peak:.3f}): {s.worst.zoo.describe()}",
        ]
    return lines
