"""Training episodes: one scenario window of the simulated site under one controller, run in a worker.

A controller is "baseline" (the buildings' own sequences), "rules" (the fallback limiter) or the bytes of
an ONNX model, run through the agent's own loader, so what is trained is what ships.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from edge_agent.control.decision import Decision
from edge_agent.control.features import Features
from edge_agent.control.onnx_policy import policy_from_bytes
from edge_agent.control.policy import Policy
from edge_agent.control.rules import RuleBasedPolicy
from edge_agent.control.savings.kpi import Kpis
from edge_sim.control_study import demand_targets, run_controlled
from edge_sim.study import run_scenario

Controller = str | bytes
WEEK_H = 7 * 24.0


@dataclass(frozen=True)
class Episode:
    scenario: str
    seed: int
    days: int | None  # None: the scenario's whole week
    targets: tuple[tuple[str, float], ...]  # building -> demand target, kW


@dataclass(frozen=True)
class Outcome:
    cost_krw: dict[str, float]  # per building: the KPI's cost, a week at this window's pace
    tdis_kh: dict[str, float]
    hvac_kwh: dict[str, float]
    features: npt.NDArray[np.float32] | None = None  # every step's features, when logged


class Logged:
    """A policy that keeps every features vector it was shown."""

    def __init__(self, inner: Policy) -> None:
        self.inner = inner
        self.name = inner.name
        self.rows: list[npt.NDArray[np.float32]] = []

    def decide(self, features: Features) -> Decision:
        self.rows.append(features.vector()[0])
        return self.inner.decide(features)


def weekly_cost(kpis: Kpis) -> float:
    """The bench's cost KPI for a week like this window: TOU energy scaled to 7 days + one month's demand
    charge on the window's peak."""
    return kpis.energy_cost_krw * WEEK_H / kpis.hours + kpis.demand_charge_krw


def targets_of(job: tuple[str, int]) -> tuple[tuple[str, float], ...]:
    scenario, seed = job
    return tuple(demand_targets(scenario, seed).items())


def run(job: tuple[Episode, Controller, bool]) -> Outcome:
    """One episode; with `log`, the features every policy call saw (for imitation)."""
    episode, controller, log = job
    if controller == "baseline":
        result = run_scenario(episode.scenario, seed=episode.seed, days=episode.days)
        loggers: list[Logged] = []
    else:
        model = controller if isinstance(controller, bytes) else None

        def policy() -> Policy:
            inner: Policy = RuleBasedPolicy() if model is None else policy_from_bytes(model, "<candidate>")
            return Logged(inner) if log else inner

        result, loops = run_controlled(
            episode.scenario, policy, dict(episode.targets), seed=episode.seed, days=episode.days
        )
        loggers = [loop.policy for loop in loops if isinstance(loop.policy, Logged)]
    names = [name for name, _ in episode.targets]
    features = np.array([row for logger in loggers for row in logger.rows]) if loggers else None
    return Outcome(
        {b: weekly_cost(result.kpis[b]) for b in names},
        {b: result.kpis[b].tdis_kh for b in names},
        {b: result.kpis[b].hvac_energy_kwh for b in names},
        features,
    )
