"""One zone's grey-box model: the 3R2C network of shared/DOMAIN.md (an air node and a mass node) discretised
at the 15-minute slot becomes a second-order ARX model, fitted by linear least squares:

    T[k+1] = a1 T[k] + a2 T[k-1] + b_o To[k] + b_s SP[k] + b_p P[k] + gains(hour of day) + c

T the zone temperature, To outdoor, SP the zone's active setpoint(s), P the building's HVAC power (when
metered), gains two harmonics of the hour of day (sun and occupancy). Two poles stand for the air and the
mass node. The room behaves in one of three regimes, each linear, so every coefficient has a copy per
regime (a switched ARX):
- floating: the setpoint is at its setback level (outside the lower half of the cooling setpoint's range,
  or the upper half of the heating setpoint's): the room drifts;
- regulating: conditioned, and the room at or past its setpoint: the loop holds it there;
- deadband: conditioned, and the room more than DEADBAND_K inside its setpoints: the box sits at its
  minimum airflow, the room drifts with the cool supply air (an overcooled room on a mild day).
The regime is read from the temperature the model has, so a simulation switches as the room would.

Quality is judged on held-out days, never on the fitting data: the one-step error, and the error of
multi-hour simulations (each hour of a held-out day, the model runs SIM_HOURS ahead on its own
temperatures with the measured inputs), as RMSE in kelvin and as CV(RMSE).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from numpy.typing import NDArray

SIM_HOURS = 4
SIM_SLOTS = SIM_HOURS * 4
MIN_SETPOINT_RANGE_K = 0.5  # less: the setpoint never moved, its effect cannot be learnt
DEADBAND_K = 0.25
REGIMES = ("floating", "regulating", "deadband")
DEADBAND_RIDGE = 5.0  # pseudo-samples
TINY_RIDGE = 1e-9
MAX_POLE = 0.999  # per 15-minute slot: a zone's slowest mode under about ten days
MIN_CONDITIONED_HOURS = 24.0  # conditioned (open) hours among the fitting days
MAX_ONE_STEP_RMSE_K = 0.5  # a room sensor's display resolution
MAX_SIMULATION_RMSE_K = 1.0

Array = NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class ZoneInputs:
    """One zone's aligned series, one entry per slot (NaN: no reading): temperature, outdoor temperature,
    setpoints (None: not wired), building HVAC power in kW (None: not metered)."""

    slots: Sequence[datetime]  # consecutive 15-minute slot starts, building time
    temperature: Array
    outdoor: Array
    cooling_setpoint: Array | None
    heating_setpoint: Array | None
    hvac_kw: Array | None


@dataclass(frozen=True, slots=True)
class ZoneQuality:
    one_step_rmse_k: float  # held-out days
    one_step_cv_rmse: float
    simulation_rmse_k: float  # SIM_HOURS-ahead simulations started each hour of the held-out days
    simulation_cv_rmse: float
    fitting_samples: int
    held_out_samples: int
    conditioned_hours: float  # among the fitting samples


@dataclass(frozen=True, slots=True)
class ZoneModel:
    """Coefficients in the order of `regressor_names(...)`; `conditioned_below_c` / `_above_c`: the
    setpoint levels that mean conditioned (cooling below, heating above)."""

    regressors: tuple[str, ...]
    coefficients: tuple[float, ...]
    conditioned_below_c: float | None
    conditioned_above_c: float | None


def regressor_names(cooling: bool, heating: bool, hvac: bool) -> tuple[str, ...]:
    base = ["t", "t_prev", "outdoor"]
    base += ["cooling_setpoint"] * cooling + ["heating_setpoint"] * heating + ["hvac_kw"] * hvac
    base += ["sin_h", "cos_h", "sin_2h", "cos_2h", "one"]
    return tuple(f"{name}:{regime}" for regime in REGIMES for name in base)


def conditioned(model: ZoneModel, cooling_sp: float | None, heating_sp: float | None) -> bool:
    if model.conditioned_below_c is not None and cooling_sp is not None:
        return cooling_sp < model.conditioned_below_c
    if model.conditioned_above_c is not None and heating_sp is not None:
        return heating_sp > model.conditioned_above_c
    return False


@dataclass(frozen=True, slots=True)
class SlotInputs:
    """What the model is given for one slot besides the zone's own temperatures."""

    local: datetime  # the slot's start, building time
    outdoor: float
    cooling_setpoint: float | None
    heating_setpoint: float | None
    hvac_kw: float | None


def regime(model: ZoneModel, t: float, inputs: SlotInputs) -> int:
    """The index in REGIMES of the room's regime at temperature `t`."""
    cooling, heating = inputs.cooling_setpoint, inputs.heating_setpoint
    if not conditioned(model, cooling, heating):
        return 0
    below_cooling = cooling is None or t < cooling - DEADBAND_K
    above_heating = heating is None or t > heating + DEADBAND_K
    return 2 if below_cooling and above_heating and (cooling, heating) != (None, None) else 1


def _features(t: float, t_prev: float, inputs: SlotInputs, which: int) -> list[float]:
    angle = 2 * math.pi * (inputs.local.hour + inputs.local.minute / 60) / 24
    row = [t, t_prev, inputs.outdoor]
    row += [v for v in (inputs.cooling_setpoint, inputs.heating_setpoint, inputs.hvac_kw) if v is not None]
    row += [math.sin(angle), math.cos(angle), math.sin(2 * angle), math.cos(2 * angle), 1.0]
    return [v if r == which else 0.0 for r in range(len(REGIMES)) for v in row]


def predict_next(model: ZoneModel, t: float, t_prev: float, inputs: SlotInputs) -> float:
    """The zone temperature one slot after `inputs.local`, from this slot's and the previous one's."""
    return float(np.dot(_features(t, t_prev, inputs, regime(model, t, inputs)), model.coefficients))


class _Design:
    """The zone's data as regression rows: for each slot k with everything known, x[k] and T[k+1]."""

    def __init__(self, data: ZoneInputs, model: ZoneModel) -> None:
        self.data = data
        self.model = model
        n = len(data.slots)
        self.rows: dict[int, list[float]] = {}
        self.on = np.zeros(n, dtype=bool)
        for k in range(1, n - 1):
            row = self.row(k, data.temperature[k], data.temperature[k - 1])
            if row is not None and not math.isnan(data.temperature[k + 1]):
                self.rows[k] = row

    def inputs(self, k: int) -> SlotInputs | None:
        d = self.data
        cooling = None if d.cooling_setpoint is None else float(d.cooling_setpoint[k])
        heating = None if d.heating_setpoint is None else float(d.heating_setpoint[k])
        hvac = None if d.hvac_kw is None else float(d.hvac_kw[k])
        inputs = SlotInputs(d.slots[k], float(d.outdoor[k]), cooling, heating, hvac)
        if any(v is not None and math.isnan(v) for v in (inputs.outdoor, cooling, heating, hvac)):
            return None
        return inputs

    def row(self, k: int, t: float, t_prev: float) -> list[float] | None:
        inputs = self.inputs(k)
        if inputs is None or math.isnan(t) or math.isnan(t_prev):
            return None
        which = regime(self.model, t, inputs)
        self.on[k] = which > 0
        return _features(t, t_prev, inputs, which)


def _levels(setpoint: Array | None) -> tuple[float, float] | None:
    if setpoint is None:
        return None
    known = setpoint[~np.isnan(setpoint)]
    return (float(known.min()), float(known.max())) if known.size else None


def setpoint_range_k(data: ZoneInputs) -> float:
    """How far the zone's setpoints moved in the data (the larger of cooling and heating)."""
    spans = [
        hi - lo for lo, hi in filter(None, (_levels(data.cooling_setpoint), _levels(data.heating_setpoint)))
    ]
    return max(spans, default=0.0)


def fit_zone(data: ZoneInputs, fitting: Array) -> tuple[ZoneModel, int, float]:
    """Least squares on the slots where `fitting` is True: the model, its sample count and the
    conditioned hours among them."""
    cooling, heating = _levels(data.cooling_setpoint), _levels(data.heating_setpoint)
    names = regressor_names(cooling is not None, heating is not None, data.hvac_kw is not None)
    shell = ZoneModel(
        names,
        (),
        None if cooling is None else (cooling[0] + cooling[1]) / 2,
        None if heating is None else (heating[0] + heating[1]) / 2,
    )
    design = _Design(data, shell)
    ks = [k for k in design.rows if fitting[k]]
    if len(ks) < len(names):
        return shell, len(ks), 0.0
    coefficients = _least_squares(np.array([design.rows[k] for k in ks]), data.temperature[np.array(ks) + 1])
    model = ZoneModel(
        names,
        tuple(float(c) for c in coefficients),
        shell.conditioned_below_c,
        shell.conditioned_above_c,
    )
    return model, len(ks), float(design.on[ks].sum()) / 4


def _least_squares(x: Array, y: Array) -> Array:
    """Per-regime coefficients. The deadband regime is fitted as the regulating one's plus a difference
    that a ridge penalty (DEADBAND_RIDGE pseudo-samples) holds small: the regime is often rare in the data,
    and a regime learnt from a handful of slots would extrapolate wildly.

    A regime whose two poles come out unstable (a smooth drift fitted as acceleration: T[k+1] grows with
    T[k] - T[k-1]) is fitted again as first order, without its T[k-1] term: a room left alone settles."""
    m = x.shape[1] // len(REGIMES)
    regulating, deadband = slice(m, 2 * m), slice(2 * m, 3 * m)
    shared = x.copy()
    shared[:, regulating] += x[:, deadband]  # columns: floating, conditioned (either), deadband's difference
    scale = np.maximum(np.abs(shared).max(axis=0), 1e-9)
    penalty = np.zeros((m, 3 * m))
    penalty[:, deadband] = np.sqrt(DEADBAND_RIDGE) * np.eye(m)
    a = np.vstack([shared / scale, penalty])
    b = np.concatenate([y, np.zeros(m)])
    keep = np.ones(3 * m, dtype=bool)
    while True:
        # Normal equations with a whisker of ridge (columns that never vary, such as a setback setpoint,
        # are otherwise singular): as good as lstsq at this size, and far faster on a busy Pi.
        kept = a[:, keep]
        gram = kept.T @ kept + TINY_RIDGE * len(b) * np.eye(kept.shape[1])
        solution: Array = np.zeros(3 * m)
        solution[keep] = np.linalg.solve(gram, kept.T @ b)
        solution /= scale
        solution[deadband] += solution[regulating]
        unstable = [
            r for r in range(len(REGIMES)) if keep[r * m + 1] and _unstable(solution[r * m : r * m + 2])
        ]
        if not unstable:
            return solution
        for r in unstable:  # T[k-1] is the block's second column
            keep[r * m + 1] = False
            if r == 1:
                keep[2 * m + 1] = False  # the deadband's difference follows its regulating regime


def _unstable(ar: Array) -> bool:
    """Whether T[k+1] = ar[0] T[k] + ar[1] T[k-1] has a pole on or outside the unit circle."""
    return bool(np.abs(np.roots([1.0, -ar[0], -ar[1]])).max() >= MAX_POLE)


def _rmse(errors: list[float]) -> float:
    return float(np.sqrt(np.mean(np.square(errors)))) if errors else math.nan


def judge_zone(
    model: ZoneModel, data: ZoneInputs, held_out: Array, samples: int, hours: float
) -> ZoneQuality:
    """One-step and SIM_HOURS-ahead simulation errors on the held-out slots."""
    design = _Design(data, model)
    coefficients = np.array(model.coefficients)
    one_step = [
        float(np.dot(row, coefficients)) - data.temperature[k + 1]
        for k, row in design.rows.items()
        if held_out[k]
    ]
    simulated: list[float] = []
    for start in range(1, len(data.slots) - SIM_SLOTS):
        if not held_out[start] or data.slots[start].minute != 0:
            continue
        t, t_prev = data.temperature[start], data.temperature[start - 1]
        errors: list[float] = []
        for k in range(start, start + SIM_SLOTS):
            row = design.row(k, t, t_prev)
            actual = data.temperature[k + 1]
            if row is None or math.isnan(actual):
                errors = []
                break
            t, t_prev = float(np.dot(row, coefficients)), t
            errors.append(t - actual)
        simulated += errors
    mean = float(np.nanmean(data.temperature[held_out])) if held_out.any() else math.nan
    return ZoneQuality(
        one_step_rmse_k=_rmse(one_step),
        one_step_cv_rmse=_rmse(one_step) / mean,
        simulation_rmse_k=_rmse(simulated),
        simulation_cv_rmse=_rmse(simulated) / mean,
        fitting_samples=samples,
        held_out_samples=len(one_step),
        conditioned_hours=hours,
    )
