"""Polls underway: how many polls have sent their requests and not yet handed their readings over.

The reading path's writer commits what is queued once every poll underway is in (one commit, one message
to the broker, for a whole wave of polls due together), and never later than its interval after the first
reading queued: a slow or silent device delays nobody's readings by more than that. Each commit wakes the
buffer's thread, the flusher and the uplink, so fewer of them is most of the agent's CPU.
"""

from __future__ import annotations

import asyncio


class PollsUnderway:
    def __init__(self) -> None:
        self._count = 0
        self._all_in: asyncio.Future[None] | None = None  # a writer waiting for the count to reach 0

    def begin(self) -> None:
        self._count += 1

    def end(self) -> None:
        self._count -= 1
        if not self._count and self._all_in is not None and not self._all_in.done():
            self._all_in.set_result(None)

    async def all_in(self, timeout_s: float) -> None:
        """Until no poll is underway, or `timeout_s` has passed."""
        if not self._count or timeout_s <= 0:
            return
        loop = asyncio.get_running_loop()
        self._all_in = all_in = loop.create_future()
        timer = loop.call_later(timeout_s, _settle, all_in)
        try:
            await all_in
        finally:
            timer.cancel()
            self._all_in = None


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
