"""The simulator's counterfactual for savings: a building's uncontrolled run, recorded step by step.

`record` runs a scenario with no control and keeps, per step, the building's demand and the outdoor
temperature. `RecordedBaseline` replays that run as a control.baseline.Baseline (the exact counterfactual
for the same weather, which a real building never has); `hourly_samples` feeds control.baseline.fit_towt,
the model a real building uses instead.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from edge_agent.control.savings.baseline import HourSample
from edge_sim.physics.climate import SCENARIOS
from edge_sim.site.site import Site
from edge_sim.site.specs import BUILDINGS, BuildingSpec
from edge_sim.study import run_scenario


@dataclass(frozen=True, slots=True)
class StepRecord:
    end: datetime  # the step's end, aware
    demand_kw: float  # over the step
    outdoor_c: float


def record(
    scenario: str, building: str, *, seed: int, specs: tuple[BuildingSpec, ...] = BUILDINGS
) -> list[StepRecord]:
    """The building's uncontrolled steps through the scenario week (after the study's warm-up)."""
    start = SCENARIOS[scenario].start
    records: list[StepRecord] = []

    def keep(site: Site) -> None:  # called before each step: the state the previous step ended in
        if site.now > start:
            power = site.building(building).power.total / 1000
            records.append(StepRecord(site.now, power, site.outdoor.temperature_c))

    run_scenario(scenario, seed=seed, before_step=keep, specs=specs)
    return records


def hourly_samples(records: Iterable[StepRecord]) -> list[HourSample]:
    """Hourly means, each stamped with the start of its hour; a step belongs to the hour it ends in."""
    hours: dict[datetime, list[StepRecord]] = {}
    for r in records:
        start = (r.end - timedelta(microseconds=1)).replace(minute=0, second=0, microsecond=0)
        hours.setdefault(start, []).append(r)
    return [
        HourSample(start, sum(r.outdoor_c for r in rs) / len(rs), sum(r.demand_kw for r in rs) / len(rs))
        for start, rs in sorted(hours.items())
    ]


@dataclass(slots=True)
class RecordedBaseline:
    """The recorded run as a Baseline: the demand of the step ending at the asked time."""

    records: list[StepRecord]
    name: str = "simulator"
    _by_end: dict[datetime, float] = field(init=False)

    def __post_init__(self) -> None:
        self._by_end = {r.end: r.demand_kw for r in self.records}

    def demand_kw(self, local: datetime, outdoor_c: float | None) -> tuple[float | None, bool]:
        return self._by_end.get(local), False
