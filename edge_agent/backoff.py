"""Full-jitter capped exponential backoff: the one retry policy every loop uses."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    base_s: float = 0.5
    cap_s: float = 30.0
    attempt: int = 0
    floor: float = 0.0
    """The least delay, as a fraction of the ceiling: 0 is full jitter; 0.5 always waits half of it."""
    _rng: random.Random = field(default_factory=random.Random, repr=False)

    def next_delay(self) -> float:
        """A random delay in [floor * ceiling, ceiling], ceiling = min(cap, base * 2**attempt); then count the
        attempt."""
        ceiling = min(self.cap_s, self.base_s * 2 ** min(self.attempt, 32))
        self.attempt += 1
        return self._rng.uniform(self.floor * ceiling, ceiling)

    def reset(self) -> None:
        self.attempt = 0
