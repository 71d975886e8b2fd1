"""The garbage collector's settings for the agent's process.

Every poll makes a few short-lived tuples per point, and the readings waiting for the buffer's next commit
live for up to 50 ms. With CPython's defaults, the youngest generation is collected every 700 allocations,
and the older ones walk everything alive since startup (modules, configuration, pydantic's schemas: a few
hundred thousand objects). On the acquisition bench (ten meters polled flat out), that was 12% of the
agent's CPU. Once the agent is built, what is alive stays alive: it is frozen out of the collector's walks,
and the youngest generation is collected every 10,000 allocations. Reference cycles live a little longer;
nothing else changes.
"""

from __future__ import annotations

import gc

YOUNGEST_THRESHOLD = 10_000  # the gain levels off from here (bench/acquisition.py, figure 1)


def settle_after_startup() -> None:
    """Call once, when the agent's long-lived objects are made (a process-wide setting)."""
    gc.collect()
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(YOUNGEST_THRESHOLD, middle, oldest)
