"""Closed-loop control on the simulator: the buildings' own sequences (baseline), the rule-based limiter and
the ONNX model, each building with its own loop and a demand target of 80% of its baseline peak under
other weather (seed + 1000), as an operator sets "80% of last year's peak".

1. Seed 0 (a weather seed the model was not trained on) on the shipped buildings: the KPI table per
   scenario week, ratios to the baseline, and the issue's goals checked on the summer and winter weeks.
2. Held-out plants: weather seeds never used in training, on buildings with other envelopes, internal
   gains and windows (dataclasses.replace on the shipped specs).
   Cost is the KPI's: the week's TOU energy plus one month's demand charge on its peak; for the site, both
   on the buildings' summed power, and as billed: each building on its own meter.
3. Decision latency: features + policy + guards per step, p50 and p99.
Run: .venv/bin/python -m bench.control [path/to/model.onnx]   (2 worker processes, about 2 minutes)
"""

from __future__ import annotations

import multiprocessing
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from edge_agent.control.model_trust import ModelTrust
from edge_agent.control.onnx_policy import load_policy
from edge_agent.control.policy import Policy
from edge_agent.control.rules import RuleBasedPolicy
from edge_agent.control.savings.kpi import Kpis, format_table
from edge_sim.control_study import demand_targets, run_controlled
from edge_sim.site.specs import BUILDINGS, BuildingSpec, ZoneSpec
from edge_sim.study import SITE, run_scenario

MODEL = Path(__file__).parents[1] / "models" / "load_shaving.onnx"
BENCH_TRUST = ModelTrust(allow_unsigned=True)  # measures a model, in no building (a .sig must match)
SCENARIOS = ("summer", "winter", "shoulder")
GOAL_SCENARIOS = ("summer", "winter")
CONTROLLERS = ("baseline", "rules", "onnx")
PEAK_GOAL, HVAC_GOAL, TDIS_SLACK_KH = 0.80, 0.85, 0.005  # tdis: no worse than baseline, to rounding
SPREAD = 0.15


@dataclass(frozen=True)
class Plant:
    label: str
    seed: int  # weather
    change: str  # "none", "up" (+15%), "down" (-15%) or "mixed" (each zone and parameter at random)


NOMINAL = Plant("shipped buildings, weather seed 0", 0, "none")
HELD_OUT = (
    Plant("seed 101, +15% gains, windows, conductances", 101, "up"),
    Plant("seed 102, -15% gains, windows, conductances", 102, "down"),
    Plant("seed 103, each +/-15% at random per zone", 103, "mixed"),
)


def specs_of(plant: Plant) -> tuple[BuildingSpec, ...]:
    rng = random.Random(plant.seed)

    def factor() -> float:
        return {"up": 1 + SPREAD, "down": 1 - SPREAD}.get(plant.change) or rng.uniform(1 - SPREAD, 1 + SPREAD)

    def zone(spec: ZoneSpec) -> ZoneSpec:
        p = spec.params
        params = replace(
            p,
            window_area_m2=p.window_area_m2 * factor(),
            u_window=p.u_window * factor(),
            u_opaque=p.u_opaque * factor(),
            infiltration_ach=p.infiltration_ach * factor(),
        )
        return replace(
            spec,
            params=params,
            m2_per_person=spec.m2_per_person / factor(),
            lighting_w_m2=spec.lighting_w_m2 * factor(),
            plug_w_m2=spec.plug_w_m2 * factor(),
        )

    if plant.change == "none":
        return BUILDINGS
    return tuple(replace(b, zones=tuple(zone(z) for z in b.zones)) for b in BUILDINGS)


def targets_job(job: tuple[str, Plant]) -> dict[str, float]:
    scenario, plant = job
    return demand_targets(scenario, plant.seed, specs_of(plant))


def run_job(job: tuple[str, Plant, str, dict[str, float], str]) -> tuple[dict[str, Kpis], list[float]]:
    """KPIs per building and site, and the decision times in seconds."""
    scenario, plant, controller, targets, model = job
    specs = specs_of(plant)
    if controller == "baseline":
        return run_scenario(scenario, seed=plant.seed, specs=specs).kpis, []

    def policy() -> Policy:
        return RuleBasedPolicy() if controller == "rules" else load_policy(model, BENCH_TRUST)

    result, loops = run_controlled(scenario, policy, targets, seed=plant.seed, specs=specs)
    return result.kpis, [s for loop in loops for s in loop.decision_s]


METRICS: tuple[tuple[str, Callable[[Kpis], float]], ...] = (
    ("peak 15-min demand", lambda k: k.peak_15min_kw),
    ("HVAC energy", lambda k: k.hvac_energy_kwh),
    ("total cost", lambda k: k.total_cost_krw),
)


def ratios(kpis: dict[str, dict[str, Kpis]], key: str) -> list[str]:
    base = kpis["baseline"][key]
    lines = [f"  {'ratio to baseline, ' + key:34s} {'rules':>7s} {'onnx':>7s}"]
    for label, of in METRICS:
        lines.append(
            f"  {label:34s} " + " ".join(f"{of(kpis[c][key]) / of(base):7.3f}" for c in CONTROLLERS[1:])
        )
    if key == SITE:
        own = " ".join(f"{bills(kpis[c]) / bills(kpis['baseline']):7.3f}" for c in CONTROLLERS[1:])
        lines.append(f"  {'total cost, each building billed':34s} {own}")
    tdis = " ".join(f"{kpis[c][key].tdis_kh:7.2f}" for c in CONTROLLERS[1:])
    lines.append(f"  {'tdis K.h (baseline ' + f'{base.tdis_kh:.2f})':34s} {tdis}")
    return lines


def bills(by_key: dict[str, Kpis]) -> float:
    """What the buildings pay: each its own meter, its own demand charge (the site row takes the coincident
    peak of both)."""
    return sum(k.total_cost_krw for key, k in by_key.items() if key != SITE)


def held_out_row(plant: Plant, scenario: str, run: dict[str, dict[str, Kpis]]) -> str:
    base, rules, onnx = (run[c][SITE] for c in CONTROLLERS)
    cells = [f"{of(rules) / of(base):.3f}/{of(onnx) / of(base):.3f}" for _, of in METRICS]
    billed = [bills(run[c]) for c in CONTROLLERS]
    cells.append(f"{billed[1] / billed[0]:.3f}/{billed[2] / billed[0]:.3f}")
    cells.append(f"{base.tdis_kh:.2f}/{rules.tdis_kh:.2f}/{onnx.tdis_kh:.2f}")
    return f"  {plant.label:46s} {scenario:8s} " + " ".join(f"{cell:>13s}" for cell in cells)


def goals(kpis: dict[str, dict[str, Kpis]]) -> dict[str, bool]:
    base, rules, onnx = (kpis[c][SITE] for c in CONTROLLERS)
    met = {}
    for name, k in (("rules", rules), ("onnx", onnx)):
        met[f"{name} peak >= 20% below"] = k.peak_15min_kw <= PEAK_GOAL * base.peak_15min_kw
        met[f"{name} HVAC >= 15% below"] = k.hvac_energy_kwh <= HVAC_GOAL * base.hvac_energy_kwh
        met[f"{name} tdis <= baseline"] = k.tdis_kh <= base.tdis_kh + TDIS_SLACK_KH
    met["onnx cheaper than rules, site"] = onnx.total_cost_krw < rules.total_cost_krw
    met["onnx cheaper than rules, buildings' bills"] = bills(kpis["onnx"]) < bills(kpis["rules"])
    return met


def say_goals(met: dict[str, bool]) -> str:
    return "  goals: " + "; ".join(f"{name}: {'MET' if ok else 'NOT MET'}" for name, ok in met.items())


def main() -> None:
    model = sys.argv[1] if len(sys.argv) > 1 else str(MODEL)
    info = load_policy(model, BENCH_TRUST).info  # refuses a mismatched model before any simulation
    print(f"model {info.path}: {info.version}, training fingerprint {info.fingerprint[:16]}...")
    plants = (NOMINAL, *HELD_OUT)
    cases = [(s, p) for p in plants for s in SCENARIOS]
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        targets = dict(zip(cases, pool.map(targets_job, cases, chunksize=1), strict=True))
        jobs = [(s, p, c, targets[(s, p)], model) for s, p in cases for c in CONTROLLERS]
        results = pool.map(run_job, jobs, chunksize=1)
    kpis: dict[tuple[str, Plant], dict[str, dict[str, Kpis]]] = {}
    latency: dict[str, list[float]] = {"rules": [], "onnx": []}
    for (scenario, plant, controller, _, _), (by_key, times) in zip(jobs, results, strict=True):
        kpis.setdefault((scenario, plant), {})[controller] = by_key
        if plant == NOMINAL and controller in latency:
            latency[controller] += times

    for scenario in SCENARIOS:
        run = kpis[(scenario, NOMINAL)]
        target = ", ".join(f"{b} {kw:.1f} kW" for b, kw in targets[(scenario, NOMINAL)].items())
        print(f"\n== {scenario} week, {NOMINAL.label}; demand targets {target}")
        print(format_table({c: run[c][SITE] for c in CONTROLLERS}))
        for key in (SITE, *(b.name for b in BUILDINGS)):
            print("\n".join(ratios(run, key)))
        if scenario in GOAL_SCENARIOS:
            print(say_goals(goals(run)))

    print("\n== held-out plants (weather and buildings never used in training), site ratios to baseline")
    print(
        f"  {'plant':46s} {'week':8s} "
        + " ".join(f"{h:>13s}" for h in ("peak r/o", "HVAC r/o", "cost r/o", "billed r/o", "tdis b/r/o"))
    )
    held_out_met: dict[str, int] = {}
    for plant in HELD_OUT:
        for scenario in SCENARIOS:
            run = kpis[(scenario, plant)]
            print(held_out_row(plant, scenario, run))
            if scenario in GOAL_SCENARIOS:
                for name, ok in goals(run).items():
                    held_out_met[name] = held_out_met.get(name, 0) + ok
    weeks = len(HELD_OUT) * len(GOAL_SCENARIOS)
    print(
        "  goals on the held-out summer and winter weeks: "
        + "; ".join(f"{name}: {n}/{weeks}" for name, n in held_out_met.items())
    )

    print("\n== decision latency, features + policy + guards per step (seed-0 weeks, both buildings)")
    for name, times in latency.items():
        p50, p99 = np.percentile(np.array(times) * 1e6, [50, 99])
        print(f"  {name:6s} p50 {p50:7.1f} us   p99 {p99:7.1f} us   ({len(times)} steps)")


if __name__ == "__main__":
    main()
