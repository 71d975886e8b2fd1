"""Sliding-window power demand from a cumulative energy register, as a meter computes it.

demand = energy imported over the last window / window length (15 minutes for Korean billing). With less
than a window of history: energy so far / time so far. The maximum demand counts full windows only, so a
short burst at start-up does not set it. The energy at the window's start is interpolated linearly
between the samples around it, so samples may come at any rate.
"""

from __future__ import annotations

from collections import deque

WINDOW_S = 900.0


class SlidingDemand:
    """Fed with (timestamp s, cumulative import kWh) samples in time order. Memory is bounded: samples
    kept are at least `resolution_s` apart (besides the newest), at most window_s / resolution_s + 3."""

    def __init__(self, window_s: float = WINDOW_S, resolution_s: float = 1.0) -> None:
        if window_s <= 0 or resolution_s <= 0:
            raise ValueError("window and resolution must be positive")
        self.window_s = window_s
        self.resolution_s = resolution_s
        self._samples: deque[tuple[float, float]] = deque()
        self.demand_w = 0.0
        self.max_demand_w = 0.0

    def __len__(self) -> int:
        """Samples held."""
        return len(self._samples)

    def add(self, t_s: float, import_kwh: float) -> float:
        """Record a sample and return the demand in W."""
        samples = self._samples
        if samples and t_s < samples[-1][0]:
            raise ValueError(f"sample at {t_s} s is older than the last one at {samples[-1][0]} s")
        if len(samples) >= 2 and samples[-1][0] - samples[-2][0] < self.resolution_s:
            samples[-1] = (t_s, import_kwh)  # the newest was too close to the one before: replace it
        else:
            samples.append((t_s, import_kwh))
        start = t_s - self.window_s
        while len(samples) >= 2 and samples[1][0] <= start:
            samples.popleft()  # keep one sample at or before the window's start, for interpolation
        first_t, first_kwh = samples[0]
        if first_t >= start:  # at most a window of history: energy so far over time so far
            elapsed = t_s - first_t
            self.demand_w = (import_kwh - first_kwh) * 3.6e6 / elapsed if elapsed > 0 else 0.0
        else:
            next_t, next_kwh = samples[1]
            start_kwh = first_kwh + (next_kwh - first_kwh) * (start - first_t) / (next_t - first_t)
            self.demand_w = (import_kwh - start_kwh) * 3.6e6 / self.window_s
        if first_t <= start:
            self.max_demand_w = max(self.max_demand_w, self.demand_w)
        return self.demand_w
