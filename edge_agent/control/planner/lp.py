"""The plan: a linear programme over the next HORIZON slots, solved by HiGHS (scipy.optimize.linprog).

Variables: the mean zone temperature at the end of each slot T[1..H], the demand of each slot D[0..H-1],
the plan's peak M, the kelvin past the comfort edge S[1..H] and E, M's excess over the month's billed peak
(or the target). The building follows the thermal model (model.py); D stays between the floor (the plant at
rest) and the ceiling (the most the building has drawn); T stays above the pre-cooling floor and, while
the building is open, under the comfort edge (S, priced prohibitively, keeps a hot day feasible); before
opening the plant may pre-cool only within the pre-cooling window (else it rests, as the building's own
night setback has it). The cost: the demand charge on E, a tenth of it on M (under the billed peak a
lower peak saves nothing, but the forecast is uncertain), and the energy at each slot's tariff price.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linprog

from edge_agent.control.planner.model import ThermalModel

SLOT_H = 0.25
COMFORT_KRW_PER_K_SLOT = 1e6  # a plan past the comfort edge only where nothing else can hold it
UNBILLED_PEAK_SHARE = 0.1  # a peak under the month's billed one still costs this share of the demand charge
# (the forecast is uncertain: a plan that spends the headroom up to the billed peak soon sets a new one)


@dataclass(frozen=True, slots=True)
class Horizon:
    """The forecast and bounds, one entry per slot from now on (T bounds: the slot's end)."""

    outdoor_c: list[float]
    gain_k: list[float]
    floor_kw: list[float]
    ceiling_kw: list[float]  # = floor_kw where the plant must rest
    t_low_c: list[float]
    t_high_c: list[float]
    price_krw_per_kwh: list[float]


@dataclass(frozen=True, slots=True)
class Plan:
    temperature_c: list[float]  # T[1..H]
    demand_kw: list[float]  # D[0..H-1]
    peak_kw: float


def solve(
    model: ThermalModel,
    temperatures_c: tuple[float, float],
    horizon: Horizon,
    peak_floor_kw: float,
    demand_krw_per_kw: float,
) -> Plan | str:
    """The cheapest plan from the mean zone temperature now and a slot ago, or why there is none."""
    h = len(horizon.outdoor_c)
    n = 3 * h + 2  # T[1..H], D[0..H-1], M, S[1..H] (kelvin past the comfort edge), E (M over the floor)
    t0, t_before = temperatures_c
    eq = np.zeros((h, n))
    rhs = np.zeros(h)
    for k in range(h):
        # T[k+1] - a1 T[k] - a2 T[k-1] + kappa D[k] = b To[k] + g[k]; T[0], T[-1] known (column k-1: T[k])
        eq[k, k] = 1.0
        eq[k, h + k] = model.kappa_k_per_kw
        rhs[k] = model.outdoor * horizon.outdoor_c[k] + horizon.gain_k[k]
        for lag, a in ((1, model.a1), (2, model.a2)):
            j = k + 1 - lag  # T[j], j <= 0 known
            if j >= 1:
                eq[k, j - 1] = -a
            else:
                rhs[k] += a * (t0 if j == 0 else t_before)
    upper = np.zeros((2 * h + 1, n))
    for k in range(h):
        upper[k, h + k], upper[k, 2 * h] = 1.0, -1.0  # D[k] - M <= 0
        upper[h + k, k], upper[h + k, 2 * h + 1 + k] = 1.0, -1.0  # T[k+1] - S[k+1] <= high
    upper[2 * h, 2 * h], upper[2 * h, n - 1] = 1.0, -1.0  # M - E <= floor
    cost = np.zeros(n)
    cost[h : 2 * h] = np.array(horizon.price_krw_per_kwh) * SLOT_H
    cost[2 * h] = UNBILLED_PEAK_SHARE * demand_krw_per_kw
    cost[2 * h + 1 : n - 1] = COMFORT_KRW_PER_K_SLOT
    cost[n - 1] = demand_krw_per_kw
    bounds = (
        [(low, None) for low in horizon.t_low_c]
        + list(zip(horizon.floor_kw, horizon.ceiling_kw, strict=True))
        + [(0.0, None)]
        + [(0.0, None)] * h
        + [(0.0, None)]
    )
    b_ub = np.concatenate([np.zeros(h), np.array(horizon.t_high_c), [peak_floor_kw]])
    result = linprog(cost, A_ub=upper, b_ub=b_ub, A_eq=eq, b_eq=rhs, bounds=bounds, method="highs")
    if result.status != 0:
        return f"no feasible plan ({result.message})"
    x = result.x
    return Plan([float(v) for v in x[:h]], [float(v) for v in x[h : 2 * h]], float(x[2 * h]))
