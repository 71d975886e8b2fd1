"""Closed-loop studies in-process: run the site through a scenario week and score it with the KPIs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from edge_agent.control.savings.kpi import KpiAccumulator, Kpis
from edge_sim.physics.climate import SCENARIOS, Scenario
from edge_sim.physics.sun import KST
from edge_sim.site.site import CONTROL_STEP_S, Site
from edge_sim.site.specs import BUILDINGS, BuildingSpec

SITE = "site"
WARM_UP = timedelta(days=2)  # run before the scenario starts so the thermal mass is not at its initial guess

StepHook = Callable[[Site], None]
SiteFactory = Callable[[datetime], Site]  # a site starting at the given time (the zoo's own buildings)


@dataclass(frozen=True, slots=True)
class StudyResult:
    scenario: Scenario
    seed: int
    kpis: dict[str, Kpis]  # per building, and "site"


def run_scenario(
    name: str,
    *,
    seed: int = 0,
    days: int | None = None,
    before_step: StepHook | None = None,
    specs: tuple[BuildingSpec, ...] = BUILDINGS,
    make_site: SiteFactory | None = None,
) -> StudyResult:
    """Run the baseline (or whatever `before_step` commands each step) through a scenario.

    `specs`: the buildings (other parameters than the shipped ones make held-out plants).
    `make_site`: builds the site instead (its own weather and building classes; `seed` and `specs` unused).
    """
    scenario = SCENARIOS[name]
    if make_site is not None:
        site = make_site(scenario.start - WARM_UP)
    else:
        site = Site(scenario.start - WARM_UP, seed=seed, offset_k=scenario.offset_k, specs=specs)
    while site.now < scenario.start:
        if before_step is not None:
            before_step(site)
        site.advance(CONTROL_STEP_S)
    accumulators = {
        b.spec.name: KpiAccumulator({z.name: z.spec.params.floor_area_m2 for z in b.zones})
        for b in site.buildings.values()
    }
    accumulators[SITE] = KpiAccumulator(
        {z.name: z.spec.params.floor_area_m2 for b in site.buildings.values() for z in b.zones}
    )
    end = scenario.start + timedelta(days=days or scenario.days)
    while site.now < end:
        if before_step is not None:
            before_step(site)
        site.advance(CONTROL_STEP_S)
        local = site.now.astimezone(KST)
        for building in site.buildings.values():
            accumulators[building.spec.name].add(
                site.now,
                CONTROL_STEP_S,
                zone_temperatures={z.name: z.thermal.t_air for z in building.zones},
                comfort_bands={z.name: z.comfort_band(local) for z in building.zones},
                hvac_w=building.power.hvac,
                total_w=building.power.total,
            )
        everything = [z for b in site.buildings.values() for z in b.zones]
        accumulators[SITE].add(
            site.now,
            CONTROL_STEP_S,
            zone_temperatures={z.name: z.thermal.t_air for z in everything},
            comfort_bands={z.name: z.comfort_band(local) for z in everything},
            hvac_w=sum(b.power.hvac for b in site.buildings.values()),
            total_w=sum(b.power.total for b in site.buildings.values()),
        )
    return StudyResult(scenario, seed, {key: acc.result() for key, acc in accumulators.items()})
