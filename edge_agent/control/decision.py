"""A policy's decision: one value per knob, the same for the rule-based limiter and the ONNX model.

The model's output vector is in KNOBS' order. Guards (guards.py) turn a decision into what is written,
zone by zone, within the comfort band and the configured limits.
"""

from __future__ import annotations

import math
from dataclasses import astuple, dataclass, fields
from typing import NamedTuple


class ModelError(Exception):
    """A policy model that cannot be used: missing, corrupt, mismatched, or failing (onnx_policy.py)."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"model {path}: {reason}")
        self.path = path
        self.reason = reason


class Knob(NamedTuple):
    unit: str
    low: float
    high: float
    neutral: float  # the value that changes nothing in the building


KNOBS: dict[str, Knob] = {
    "cooling_offset": Knob("K", 0.0, 2.2, 0.0),  # zone cooling setpoints raised (Guideline 36 levels)
    "heating_offset": Knob("K", 0.0, 2.2, 0.0),  # zone heating setpoints lowered
    "plant_limit": Knob("%", 50.0, 100.0, 100.0),  # the heat-pump plant's demand limit
    "fan_limit": Knob("%", 50.0, 100.0, 100.0),  # the air handler's fan speed cap
    "ventilation_limit": Knob("%", 10.0, 100.0, 100.0),  # outdoor air, share of design (CO2-guarded)
    "lighting_floor": Knob("%", 10.0, 100.0, 100.0),  # lowest dimming level in daylit zones
    "precondition": Knob("1 to start early", 0.0, 1.0, 0.0),  # occupied setpoints before opening
}


@dataclass(frozen=True, slots=True)
class Decision:
    cooling_offset: float
    heating_offset: float
    plant_limit: float
    fan_limit: float
    ventilation_limit: float
    lighting_floor: float
    precondition: float

    @classmethod
    def neutral(cls) -> Decision:
        return cls(*(knob.neutral for knob in KNOBS.values()))

    @classmethod
    def from_vector(cls, values: list[float]) -> Decision:
        """Clipped to each knob's range; a non-finite value raises ValueError naming the knob."""
        if len(values) != len(KNOBS):
            raise ValueError(f"a decision has {len(KNOBS)} values, got {len(values)}")
        clipped = []
        for (name, knob), value in zip(KNOBS.items(), values, strict=True):
            if not math.isfinite(value):
                raise ValueError(f"knob {name} is {value}")
            clipped.append(min(knob.high, max(knob.low, float(value))))
        return cls(*clipped)

    def values(self) -> dict[str, float]:
        return dict(zip(KNOBS, astuple(self), strict=True))

    @property
    def sheds(self) -> bool:
        """True when any knob is away from neutral (the building is asked to do with less)."""
        return any(abs(v - KNOBS[k].neutral) > 1e-6 for k, v in self.values().items() if k != "precondition")


assert list(KNOBS) == [f.name for f in fields(Decision)]
