from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path

import pytest
import structlog

from edge_agent.clock import ManualClock
from edge_sim.simulator import Simulator
from tests.support import Broker, free_base_port, run_mosquitto

SIM_START = datetime.fromisoformat("2026-08-05T14:00+09:00")


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
