"""The zoo's held-out buildings through the shipped control core, against each building's own sequences.

For every held-out building (seeds from 1000, edge_sim/zoo/seeds.py) and the summer and winter weeks: the
rule-based limiter's and the ONNX policy's billed-peak, HVAC energy and cost ratios to the baseline and the
discomfort delta (K.h per zone); then the medians, the worst building with its parameters, and the
decision time p50/p99 of a 12-zone building. Targets: 80% of each building's baseline peak under other
weather, as bench/control.py.

Run: .venv/bin/python -m bench.zoo [--fast] [--buildings N] [--model path.onnx]
  full: 20 buildings x 2 weeks x (target, baseline, rules, onnx), 2 worker processes (several minutes)
  --fast: 2 buildings, the summer week's first day (what tests/test_zoo.py runs)
"""

from __future__ import annotations

import argparse
import multiprocessing
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, replace
from multiprocessing.pool import Pool
from pathlib import Path
from typing import TypeVar

import numpy as np

from edge_sim.zoo.generate import generate
from edge_sim.zoo.seeds import held_out_seeds
from edge_sim.zoo.study import CONTROLLERS, Week, demand_target_kw, run, run_controlled, summary_lines, table

MODEL = str(Path(__file__).parents[1] / "models" / "load_shaving.onnx")
LATENCY_SEED = 1999  # a held-out building forced to 12 zones, for the decision time
LATENCY_DAYS = 1
A = TypeVar("A")
R = TypeVar("R")


@dataclass(frozen=True)
class Plan:
    seeds: tuple[int, ...]
    scenarios: tuple[str, ...]
    days: int | None  # None: the whole scenario week
    model: str
    controllers: tuple[str, ...] = CONTROLLERS
    latency: bool = True  # also time decide() on a 12-zone building


Case = tuple[int, str, int | None, str, tuple[str, ...]]  # seed, scenario, days, model, controllers


def _case(case: Case) -> Week:
    """One building through one scenario: its target, its baseline and each controller."""
    seed, scenario, days, model, controllers = case
    zoo = generate(seed, "held-out")
    target = demand_target_kw(zoo, scenario, days)
    kpis = {"baseline": run(zoo, scenario, days=days)}
    for controller in controllers:
        kpis[controller] = run_controlled(zoo, scenario, controller, target, model=model, days=days)[0]
    return Week(zoo, scenario, target, kpis)


def _latency(job: tuple[str, str, str]) -> tuple[str, list[float]]:
    """decide()'s times on a 12-zone held-out building through one day (no target: none is shed)."""
    scenario, controller, model = job
    zoo = generate(LATENCY_SEED, "held-out", zones=12)
    return controller, run_controlled(zoo, scenario, controller, 1e9, model=model, days=LATENCY_DAYS)[1]


def _each(pool: Pool | None, function: Callable[[A], R], items: list[A]) -> Iterator[R]:
    """Results as they come, one job at a time to each worker; with no pool, in this process (tests)."""
    if pool is None:
        return (function(i) for i in items)
    return pool.imap_unordered(function, items, chunksize=1)


def study(
    plan: Plan, processes: int = 2, on_week: Callable[[Week], None] | None = None
) -> tuple[list[Week], dict[str, list[float]]]:
    """The weeks of every building and scenario (each told to `on_week` as it ends), and the 12-zone
    building's decision times per controller."""
    cases: list[Case] = [
        (seed, scenario, plan.days, plan.model, plan.controllers)
        for seed in plan.seeds
        for scenario in plan.scenarios
    ]
    timing = [(plan.scenarios[0], c, plan.model) for c in plan.controllers] if plan.latency else []
    weeks: dict[tuple[int, str], Week] = {}
    with multiprocessing.get_context("spawn").Pool(processes) if processes > 1 else nullcontext() as pool:
        latency = dict(_each(pool, _latency, timing))
        for week in _each(pool, _case, cases):
            weeks[(week.zoo.seed, week.scenario)] = week
            if on_week is not None:
                on_week(week)
    return [weeks[(seed, scenario)] for seed, scenario, *_ in cases], latency


def report(plan: Plan, weeks: list[Week], latency: dict[str, list[float]]) -> list[str]:
    span = "the first day" if plan.days == 1 else f"{plan.days} days" if plan.days else "the week"
    lines = [f"== zoo: {len(plan.seeds)} held-out buildings, {', '.join(plan.scenarios)} ({span}); "
             "ratios to each building's own sequences"]  # fmt: skip
    lines += [f"  {generate(seed, 'held-out').describe()}" for seed in plan.seeds]
    lines += ["", *table(weeks, plan.controllers), "", *summary_lines(weeks, plan.controllers)]
    lines.append(f"\n== decision time, 12-zone building (seed {LATENCY_SEED}), features + policy + guards")
    for controller, times in latency.items():
        p50, p99 = np.percentile(np.array(times) * 1e3, [50, 99])
        lines.append(f"  {controller:6s} p50 {p50:6.2f} ms   p99 {p99:6.2f} ms   ({len(times)} steps)")
    return lines


def plan_of(*, fast: bool, buildings: int = 20, model: str = MODEL) -> Plan:
    if fast:
        return Plan(held_out_seeds(2), ("summer",), 1, model)
    return Plan(held_out_seeds(buildings), ("summer", "winter"), None, model)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="2 buildings, the summer week's first day")
    parser.add_argument("--buildings", type=int, default=20)
    parser.add_argument("--model", default=MODEL)
    parser.add_argument("--controllers", default=",".join(CONTROLLERS), help="of: " + ", ".join(CONTROLLERS))
    args = parser.parse_args()
    plan = plan_of(fast=args.fast, buildings=args.buildings, model=args.model)
    plan = replace(plan, controllers=tuple(args.controllers.split(",")))
    started = time.monotonic()
    print("  as each building-week ends: " + table([], plan.controllers)[0].strip(), flush=True)

    def progress(week: Week) -> None:
        print(table([week], plan.controllers)[1], flush=True)

    weeks, latency = study(plan, on_week=progress)
    print("\n".join(report(plan, weeks, latency)))
    print(f"\n  ({time.monotonic() - started:.0f} s wall)")


if __name__ == "__main__":
    main()
