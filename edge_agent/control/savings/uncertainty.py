"""How sure a day's savings are: ASHRAE Guideline 14-2014's fractional savings uncertainty (Annex B).

The baseline is a regression fitted on n hourly points; its residuals there have a CV(RMSE) and a lag-1
autocorrelation rho (hourly residuals are far from independent: the n points hold only
n' = n (1 - rho) / (1 + rho) independent ones). Over m reporting-period hours with a savings fraction F
(avoided / baseline energy), Guideline 14 gives the fractional savings uncertainty

    FSU = dE / E_save = 1.26 * t * (CV / F) * sqrt((n / n') * (1 + 2 / n') / m)

and so the savings' absolute uncertainty dE = FSU * E_save = 1.26 * t * CV * E_baseline * sqrt(...), which
does not depend on F. Here:
- CV is Guideline 14's CV(RMSE): sqrt(SSE / (n - p)) / mean, p the fitted parameters;
- 1.26 is Reddy and Claridge's (2000) empirical correction of the simple formula for hourly/daily models;
- t is Student's t at the confidence level, at the fit's n - p degrees of freedom (TOWT has up to 192
  parameters: n' - p would be negative for any baseline shorter than many months);
- rho below zero counts as zero (the correction is for positive autocorrelation only).
Guideline 14 asks for an FSU below 50% at 68% confidence for a savings claim; a savings smaller than its
own 68% uncertainty cannot be told from the baseline's noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

EMPIRICAL_FACTOR = 1.26
CONFIDENCE_LEVELS = (0.68, 0.90)


@dataclass(frozen=True, slots=True)
class Residuals:
    """What the baseline's fit says about its own error, on its n hourly points."""

    samples: int  # n: hours fitted
    parameters: int  # p: independent parameters fitted (the design's rank)
    cv_rmse: float  # Guideline 14's: sqrt(SSE / (n - p)) / mean demand
    autocorrelation: float  # rho: lag-1, between consecutive hours' residuals

    @property
    def effective_samples(self) -> float:
        """n' = n (1 - rho) / (1 + rho), rho at least 0."""
        rho = max(self.autocorrelation, 0.0)
        return self.samples * (1 - rho) / (1 + rho)


@dataclass(frozen=True, slots=True)
class SavingsUncertainty:
    cv_rmse: float  # the baseline's, Guideline 14's definition (n - p)
    autocorrelation: float  # rho of the baseline's residuals
    fit_hours: int  # n
    effective_fit_hours: float  # n'
    reporting_hours: float  # m: the hours these savings cover
    savings_fraction: float  # F = avoided / baseline energy
    kwh_68: float  # the savings' absolute uncertainty at 68% confidence: avoided +- this
    kwh_90: float  # ... at 90%
    fsu_68: float | None  # kwh_68 / |avoided kWh|; None when nothing was avoided
    fsu_90: float | None
    within_noise: bool  # |avoided kWh| < kwh_68: not a claim the baseline can support


def savings_uncertainty(
    residuals: Residuals, baseline_kwh: float, avoided_kwh: float, reporting_hours: float
) -> SavingsUncertainty | None:
    """Guideline 14's uncertainty of `avoided_kwh` against `baseline_kwh` over `reporting_hours`; None
    when it cannot be estimated (no hours, no baseline energy, no residual degrees of freedom)."""
    n, n_eff = residuals.samples, residuals.effective_samples
    if reporting_hours <= 0 or baseline_kwh <= 0 or n_eff < 1 or n <= residuals.parameters:
        return None
    spread = math.sqrt((n / n_eff) * (1 + 2 / n_eff) / reporting_hours)
    relative = EMPIRICAL_FACTOR * residuals.cv_rmse * spread  # dE / E_baseline, before t
    df = n - residuals.parameters
    kwh_68, kwh_90 = (student_t(level, df) * relative * baseline_kwh for level in CONFIDENCE_LEVELS)
    saved = abs(avoided_kwh)
    return SavingsUncertainty(
        cv_rmse=residuals.cv_rmse,
        autocorrelation=residuals.autocorrelation,
        fit_hours=n,
        effective_fit_hours=n_eff,
        reporting_hours=reporting_hours,
        savings_fraction=avoided_kwh / baseline_kwh,
        kwh_68=kwh_68,
        kwh_90=kwh_90,
        fsu_68=kwh_68 / saved if saved > 0 else None,
        fsu_90=kwh_90 / saved if saved > 0 else None,
        within_noise=saved < kwh_68,
    )


@lru_cache(maxsize=64)
def student_t(confidence: float, df: int) -> float:
    """The two-sided Student's t for `confidence` (0.9: the 95th percentile) at `df` degrees of freedom:
    its CDF integrated by Simpson's rule and inverted by bisection (no scipy on the gateway)."""
    if not 0 < confidence < 1 or df < 1:
        raise ValueError(f"confidence {confidence} must be in (0, 1) and df {df} at least 1")
    half = confidence / 2  # the density's integral from 0 to t
    low, high = 0.0, 1.0
    while _t_mass(high, df) < half:
        high *= 2
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if _t_mass(middle, df) < half else (low, middle)
    return (low + high) / 2


def _t_mass(t: float, df: int, intervals: int = 400) -> float:
    """The Student's t density's integral from 0 to t."""
    scale = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(df * math.pi)
    h = t / intervals
    total = 0.0
    for i in range(intervals + 1):
        weight = 1 if i in (0, intervals) else 4 if i % 2 else 2
        total += weight * (1 + (i * h) ** 2 / df) ** (-(df + 1) / 2)
    return scale * total * h / 3
