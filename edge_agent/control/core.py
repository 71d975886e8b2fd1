"""The control core: one step from an observation to what should be written. The agent's ControlLoop, the
simulator study (edge_sim.control_study), the benchmarks and training all call this one `decide`, so every
figure published about control measures the code that runs in a building.

    Observation ─▶ 15-minute demand ─▶ Features ─▶ policy ─▶ Decision ─▶ guards (Limits) ─▶ Targets
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edge_agent.control.decision import Decision
from edge_agent.control.demand import IntervalDemand
from edge_agent.control.features import Features, build_features
from edge_agent.control.guards import Guards, Targets
from edge_agent.control.limits import Limits
from edge_agent.control.observation import Observation
from edge_agent.control.policy import Observer, Policy


@dataclass(slots=True)
class ControlState:
    """What one building's control carries from step to step."""

    policy: Policy
    demand_target_kw: float | None = None  # None: this month's open-hours peak so far (demand.py)
    demand: IntervalDemand = field(default_factory=IntervalDemand)
    guards: Guards = field(default_factory=Guards)


@dataclass(frozen=True, slots=True)
class Step:
    features: Features
    decision: Decision
    targets: Targets
    policy: str  # who decided: 'planner', 'onnx' or 'rules'


def decide(observation: Observation, state: ControlState, limits: Limits) -> Step:
    """One decision from a complete observation (check `observation.missing()` first)."""
    state.demand.add(observation.at, observation.demand_kw or 0.0, limits.hours)
    interval = state.demand.state(observation.at)
    if isinstance(state.policy, Observer):
        state.policy.observe(observation, interval, limits)
    features = build_features(observation, interval, state.demand_target_kw, limits.hours)
    decision = state.policy.decide(features)
    targets = state.guards.apply(decision, observation, features, limits)
    return Step(features, decision, targets, state.policy.name)
