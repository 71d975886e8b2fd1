from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path

import pytest
import structlog
from hypothesis import settings

from edge_agent.clock import ManualClock
from edge_sim.simulator import Simulator
from tests.support import Broker, free_base_port, run_mosquitto

SIM_START = datetime.fromisoformat("2026-08-05T14:00+09:00")

# Every run tries the same examples (a failure is the code's, not the draw's), and no example is failed for
# its time: an example that starts an event loop or a buffer can take a second on a busy two-core machine
# (pytest-timeout still bounds a test that hangs). HYPOTHESIS_PROFILE=explore draws new, and more, examples:
# the way to look for new failures, e.g. `HYPOTHESIS_PROFILE=explore pytest -m "not integration"`.
settings.register_profile("ci", derandomize=True, deadline=None, database=None, print_blob=True)
settings.register_profile(
    "explore", max_examples=int(os.environ.get("HYPOTHESIS_EXAMPLES", "1000")), deadline=None, print_blob=True
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    with run_mosquitto(tmp_path) as running:
        yield running


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(SIM_START)


@pytest.fixture
async def sim(clock: ManualClock) -> AsyncIterator[Simulator]:
    """The site's TCP and BACnet devices on loopback (no RS-485 bus), on a clock the test moves."""
    async with Simulator(clock, free_base_port(), serial_bus=False) as running:
        yield running


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """A CLI test configures logging onto streams that close with it: put the defaults back after each."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)
