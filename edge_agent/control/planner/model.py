"""The building's mean zone temperature as a second-order ARX model, learnt from its own slots by least
squares (two poles: the air and the mass that pre-cooling charges, as the 3R2C network of
shared/DOMAIN.md):

    Tz[k+1] = a1 Tz[k] + a2 Tz[k-1] + b To[k] - kappa D[k] + g(open, hour of day)

Tz the mean zone temperature at a slot's start, To outdoor, D the building's mean demand over the slot (the
main meter: its HVAC share is what cools), g the gains (sun, people, and the base load's share of D) by
opening and hour. Fits that lack data or come out unphysical (unstable poles, demand that warms) are
refused with the reason; an unstable second order is fitted again as first order.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from edge_agent.control.planner.slots import SLOT, Slot

MIN_SLOTS = 2 * 96  # two days
MIN_OPEN_SLOTS = 16
MAX_POLE = 0.999


@dataclass(frozen=True, slots=True)
class ThermalModel:
    a1: float
    a2: float
    outdoor: float  # b
    kappa_k_per_kw: float
    gains: tuple[float, ...]  # coefficients of `gain_terms`
    rmse_k: float  # one-slot error on the fitting slots
    slots: int

    def gain_k(self, local: datetime, is_open: bool) -> float:
        return float(np.dot(self.gains, gain_terms(local, is_open)))


def gain_terms(local: datetime, is_open: bool) -> list[float]:
    angle = 2 * math.pi * (local.hour + local.minute / 60) / 24
    return [1.0, float(is_open), math.sin(angle), math.cos(angle), math.sin(2 * angle), math.cos(2 * angle)]


def fit_thermal(slots: Sequence[Slot]) -> ThermalModel | str:
    """The model of the slots, or why there is none."""
    if len(slots) < MIN_SLOTS:
        return f"{len(slots)} slots of history, {MIN_SLOTS} needed (two days)"
    if sum(s.open for s in slots) < MIN_OPEN_SLOTS:
        return "too few open hours in the history"
    rows, targets = [], []
    for before, slot in itertools.pairwise(slots):
        if slot.start - before.start == SLOT:
            rows.append(
                [
                    slot.zone_start_c,
                    before.zone_start_c,
                    slot.outdoor_c,
                    -slot.demand_kw,
                    *gain_terms(slot.start, slot.open),
                ]
            )
            targets.append(slot.zone_end_c)
    x, y = np.array(rows), np.array(targets)
    scaled = x / np.maximum(np.abs(x).max(axis=0), 1e-9)
    if np.linalg.matrix_rank(scaled, tol=1e-6) < x.shape[1]:
        return "the demand never varied apart from the time of day and opening: what cools is not known"
    fitted = _fit(x, y)
    if isinstance(fitted, str):
        return fitted
    coefficients = fitted
    rmse = float(np.sqrt(np.mean(np.square(x @ coefficients - y))))
    a1, a2, b, kappa = (float(c) for c in coefficients[:4])
    return ThermalModel(a1, a2, b, kappa, tuple(float(c) for c in coefficients[4:]), rmse, len(rows))


def _fit(x: np.ndarray, y: np.ndarray) -> np.ndarray | str:
    """Second order, else first (an unstable second order); an outdoor coefficient that comes out below 0
    (outdoors and the hour of day move together in a heat wave) is held at 0: the gains carry the day."""
    for drop_outdoor in (False, True):
        for order in (2, 1):
            keep = np.ones(x.shape[1], dtype=bool)
            keep[1] = order == 2
            keep[2] = not drop_outdoor
            coefficients = np.zeros(x.shape[1])
            coefficients[keep] = _least_squares(x[:, keep], y)
            if np.abs(np.roots([1.0, -coefficients[0], -coefficients[1]])).max() < MAX_POLE:
                break
        else:
            return "the fitted building is unstable (its temperature would run away)"
        if coefficients[3] <= 0:
            return "demand does not cool the building in the history (no cooling seen)"
        if coefficients[2] >= 0:
            return coefficients
    return coefficients


def _least_squares(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    scale = np.maximum(np.abs(x).max(axis=0), 1e-9)
    solution, *_ = np.linalg.lstsq(x / scale, y, rcond=None)
    return np.asarray(solution / scale, dtype=float)
