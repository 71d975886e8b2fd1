"""Watchdog: asyncio.timeout for a section a hot loop enters thousands of times a second.

asyncio.timeout arms a timer and a Timeout object for every section (about 3.5 us); a poller runs one
section per request. A Watchdog keeps one timer and moves it only when it fires early (the section then
running ends later) or when a section must end sooner than it is set for: while sections end in time, it
fires about once per timeout period, whatever their number. It pays at a building's load too: polling 50
SDM630 meters x 13 points each second, the agent took 6-7% more CPU with asyncio.timeout in its place
(bench/building_load.py).

    watchdog = Watchdog()
    with watchdog.within(2.0):   # TimeoutError if the section takes longer
        await request()

One section at a time (a link's turn, a poller's poll); entering a second raises RuntimeError. As with
asyncio.timeout, an outside cancel stays a cancel: only the watchdog's own cancel becomes TimeoutError.
"""

from __future__ import annotations

import asyncio
import math
from types import TracebackType
from typing import Self


class Watchdog:
    __slots__ = ("_cancelling", "_deadline", "_expired", "_seconds", "_task", "_timer")

    def __init__(self) -> None:
        self._task: asyncio.Task[object] | None = None
        self._seconds = math.inf
        self._deadline = math.inf
        self._cancelling = 0
        self._expired = False
        self._timer: asyncio.TimerHandle | None = None

    def within(self, seconds: float) -> Self:
        """The next section may last `seconds`."""
        self._seconds = seconds
        return self

    def __enter__(self) -> None:
        if self._task is not None:
            raise RuntimeError("the watchdog is already guarding a section")
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a watchdog guards a section of a task")
        loop = task.get_loop()
        self._task, self._cancelling, self._expired = task, task.cancelling(), False
        self._deadline = deadline = loop.time() + self._seconds
        timer = self._timer
        if timer is None or timer.when() > deadline:
            if timer is not None:
                timer.cancel()
            self._timer = loop.call_at(deadline, self._check)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        task, self._task = self._task, None
        if self._expired:  # the watchdog's cancel is taken back, whatever ended the section
            assert task is not None
            if task.uncancel() <= self._cancelling and exc_type is asyncio.CancelledError:
                raise TimeoutError from exc

    def close(self) -> None:
        """Disarm the timer (the owner is done with the watchdog)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _check(self) -> None:
        self._timer = None
        task = self._task
        if task is None:
            return  # no section running: the next one arms the timer again
        loop = task.get_loop()
        if loop.time() < self._deadline:
            self._timer = loop.call_at(self._deadline, self._check)
        else:
            self._expired = True
            task.cancel()
