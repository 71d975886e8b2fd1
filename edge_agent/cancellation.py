"""A cancel that Python 3.11's asyncio.wait_for swallowed.

wait_for (inside aiomqtt's publish and pymodbus' requests) can lose a cancel that arrives together with the
answer it waits for: the caller goes on as if never cancelled, and a loop that awaits again then waits
forever (a stop that never ends). Loops that await those libraries check after each call.
"""

from __future__ import annotations

import asyncio


def raise_if_cancelling() -> None:
    """Raise CancelledError if the current task was asked to stop (its cancel possibly swallowed)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
