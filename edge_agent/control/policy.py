"""Who decides: a policy maps features to a decision; the model while it can be trusted, else the rules.

The model is used while it loads, answers with finite numbers and its inputs are in range. Otherwise the
rule-based limiter decides, and `on_change` is told why once each time the reason changes (None: the model
decides again). After a model failure the rules decide for MODEL_RETRY of building time before the
model is asked again.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable

from edge_agent.control.decision import Decision
from edge_agent.control.demand import IntervalState
from edge_agent.control.features import Features
from edge_agent.control.limits import Limits
from edge_agent.control.observation import Observation
from edge_agent.errors import ModelError

MODEL_RETRY = timedelta(minutes=15)
NO_TARGET = "no demand target yet: none set, and the month's open-hours peak is not known yet"


class Policy(Protocol):
    @property
    def name(self) -> str: ...

    def decide(self, features: Features) -> Decision: ...


@runtime_checkable
class Observer(Protocol):
    """A policy that learns from every observation besides its features (the planner)."""

    def observe(self, observation: Observation, interval: IntervalState, limits: Limits) -> None: ...


class ModelOrRules:
    """A Policy: the model when it is trusted, the rules otherwise; `name` says who decided last."""

    def __init__(
        self,
        model: Policy | None,
        rules: Policy,
        now: Callable[[], datetime],
        on_change: Callable[[str | None, str | None], None],
    ) -> None:
        self.model = model
        self.rules = rules
        self._now = now
        self._on_change = on_change  # (new reason or None, previous reason)
        self.fallback: str | None = None if model is not None else "no model configured"
        self._retry_at: datetime | None = None
        self.name = rules.name

    def use_rules(self, reason: str) -> None:
        if reason != self.fallback:
            previous, self.fallback = self.fallback, reason
            self._on_change(reason, previous)

    def observe(self, observation: Observation, interval: IntervalState, limits: Limits) -> None:
        if isinstance(self.model, Observer):  # it learns even while the rules decide
            self.model.observe(observation, interval, limits)

    def decide(self, features: Features) -> Decision:
        policy = self._choose(features)
        try:
            decision = policy.decide(features)
        except ModelError as error:
            self.use_rules(f"model failed: {error.reason}")
            self._retry_at = self._now() + MODEL_RETRY
            policy, decision = self.rules, self.rules.decide(features)
        self.name = policy.name
        return decision

    def _choose(self, features: Features) -> Policy:
        if self.model is None or (self._retry_at is not None and self._now() < self._retry_at):
            return self.rules
        if features.demand_target <= 0:  # the model was never shown a building without a target
            self.use_rules(NO_TARGET)
            return self.rules
        outside = features.out_of_range()
        if outside:
            self.use_rules(f"inputs out of the model's range: {', '.join(outside)}")
            return self.rules
        if self.fallback is not None:
            previous, self.fallback = self.fallback, None
            self._on_change(None, previous)
        return self.model
