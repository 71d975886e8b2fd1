"""A policy's decision: one value per knob, the same for the rule-based limiter and the ONNX model.

The model's output vector is in KNOBS' order (limits.py states each knob's range). Guards (guards.py)
turn a decision into what is written, zone by zone, within the comfort band and the configured limits.
"""

from __future__ import annotations

import math
from dataclasses import astuple, dataclass, fields

from edge_agent.control.limits import KNOBS


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
