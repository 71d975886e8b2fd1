"""The building as one thermal node, learnt from its own slots by least squares:

    Tz[k+1] - Tz[k] = a (To[k] - Tz[k]) + g(open, hour of day) - kappa D[k]

Tz the mean zone temperature, To outdoor, D the building's mean demand over the slot (the main meter: the
HVAC share is what moves Tz), g the gains (sun, people, the base load's share of D) by opening and hour.
`a` is the envelope's coupling per slot, `kappa` how far a kilowatt of demand cools the building in one
slot. The fit is refused (None, with the reason) when it lacks data or comes out unphysical.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from edge_agent.control.planner.slots import Slot

MIN_SLOTS = 2 * 96  # two days
MIN_OPEN_SLOTS = 16
MAX_COUPLING = 0.3  # per slot: a building whose air follows outdoors faster than this is not one node


@dataclass(frozen=True, slots=True)
class ThermalModel:
    coupling: float  # a, per slot
    kappa_k_per_kw: float  # per slot
    gains: tuple[float, ...]  # coefficients of `gain_terms`
    rmse_k: float  # one-slot error on the fitting slots
    slots: int

    def gain_k(self, local: datetime, is_open: bool) -> float:
        return float(np.dot(self.gains, gain_terms(local, is_open)))


def gain_terms(local: datetime, is_open: bool) -> list[float]:
    angle = 2 * math.pi * (local.hour + local.minute / 60) / 24
    return [1.0, float(is_open), math.sin(angle), math.cos(angle), math.sin(2 * angle), math.cos(2 * angle)]


def fit_thermal(slots: list[Slot]) -> ThermalModel | str:
    """The model of the slots, or why there is none."""
    if len(slots) < MIN_SLOTS:
        return f"{len(slots)} slots of history, {MIN_SLOTS} needed (two days)"
    if sum(s.open for s in slots) < MIN_OPEN_SLOTS:
        return "too few open hours in the history"
    x = np.array([[s.outdoor_c - s.zone_start_c, -s.demand_kw, *gain_terms(s.start, s.open)] for s in slots])
    y = np.array([s.zone_end_c - s.zone_start_c for s in slots])
    scale = np.maximum(np.abs(x).max(axis=0), 1e-9)
    coefficients, *_ = np.linalg.lstsq(x / scale, y, rcond=None)
    coefficients = coefficients / scale
    coupling, kappa = float(coefficients[0]), float(coefficients[1])
    if not 0 < coupling < MAX_COUPLING:
        return f"unphysical envelope coupling {coupling:.3g} per slot"
    if kappa <= 0:
        return "demand does not cool the building in the history (no cooling seen)"
    rmse = float(np.sqrt(np.mean(np.square(x @ coefficients - y))))
    return ThermalModel(coupling, kappa, tuple(float(c) for c in coefficients[2:]), rmse, len(slots))
