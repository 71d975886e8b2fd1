"""A token bucket with two budgets, messages per second and bytes per second, for the uplink's backlog.

Each budget refills continuously up to one second's worth (the burst). `take` waits until both budgets
cover the message, then spends them. A message larger than one second's byte budget is let through once
the bucket is full, leaving it in debt, so a big batch is slowed, never stuck.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class TokenBucket:
    def __init__(
        self, messages_per_s: float, bytes_per_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if messages_per_s <= 0 or bytes_per_s <= 0:
            raise ValueError("token bucket rates must be positive")
        self.messages_per_s = messages_per_s
        self.bytes_per_s = bytes_per_s
        self._clock = clock
        self._messages = max(1.0, messages_per_s)  # start full: one second's burst
        self._bytes = bytes_per_s
        self._at = clock()

    def _refill(self) -> None:
        now = self._clock()
        elapsed, self._at = now - self._at, now
        self._messages = min(max(1.0, self.messages_per_s), self._messages + elapsed * self.messages_per_s)
        self._bytes = min(self.bytes_per_s, self._bytes + elapsed * self.bytes_per_s)

    def wait_s(self, size: int) -> float:
        """How long until a message of `size` bytes may go (0: now)."""
        self._refill()
        need_bytes = min(float(size), self.bytes_per_s)  # an oversized message waits for a full bucket
        return max(
            0.0,
            (1.0 - self._messages) / self.messages_per_s,
            (need_bytes - self._bytes) / self.bytes_per_s,
        )

    def spend(self, size: int) -> None:
        self._refill()
        self._messages -= 1.0
        self._bytes -= size

    async def take(self, size: int) -> None:
        """Wait for the budgets to cover one message of `size` bytes, then spend them."""
        delay = self.wait_s(size)
        while delay > 0:  # one sleep is enough unless the clock ran slow
            await asyncio.sleep(delay)
            delay = self.wait_s(size)
        self.spend(size)
