"""Poll phases: devices polled on one interval do not all ask at the same instant.

Started together, 50 meters polled each second would fire together every second: their requests queue
on a shared connection and their readings reach the buffer and the broker in one burst, the last of
them tens of milliseconds behind the first. Spread one by one, each poll would wake the event loop, the
buffer's threads and the uplink on its own: three times the CPU. So the devices that share an interval
T fall into PHASES groups, in turn, taking their first polls at offsets k/PHASES of T (of STAGGER_MAX_S
at most, so a device polled every 15 minutes still reads within seconds of a start), and then keep their
own schedule, every T from there: a group's readings share their wake-ups and their commit (underway.py),
no burst holds all of them, and each device is still polled on its interval. The groups follow the order
of the devices in the configuration, so a restart gives the same phases.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

STAGGER_MAX_S = 10.0  # the first polls of devices on one interval spread over at most this long
PHASES = 2  # groups of devices on one interval that poll together (4: p99 no better, CPU +25%; bench/peers)


def start_offsets(intervals: Sequence[float | None]) -> list[float]:
    """For devices whose shortest poll intervals are `intervals` (None: not polled), in configuration
    order: how long after the start each one's first poll is due."""
    sharing: defaultdict[float, list[int]] = defaultdict(list)
    for index, interval in enumerate(intervals):
        if interval is not None:
            sharing[interval].append(index)
    offsets = [0.0] * len(intervals)
    for interval, indices in sharing.items():
        span = min(interval, STAGGER_MAX_S)
        phases = min(PHASES, len(indices))
        for rank, index in enumerate(indices):
            offsets[index] = span * (rank % phases) / phases
    return offsets
