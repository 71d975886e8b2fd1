from __future__ import annotations

import logging
import os
import sys
from collections.abc import AsyncIterator, Generator, Iterator
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


# --- the integration marker, kept honest ---------------------------------------------------------------
# A test that starts a server, a broker or a process, or opens a socket or a serial pty, is marked
# `integration`, and so is one that simulates the building for days (a CPU-minute between them);
# `pytest -m "not integration"` runs the rest in seconds. An unmarked test that does any of the first (in its
# fixtures too) fails, naming what it did. Python's audit events see it wherever it happens in this process:
# the simulator's servers, a client's connect, asyncio's subprocesses, a pty opened by its path.
_OUTSIDE = {"socket.bind", "socket.connect", "subprocess.Popen", "os.posix_spawn", "os.fork", "os.exec"}
_TTYS = ("/dev/pts/", "/dev/ptmx", "/dev/tty")


class _Unmarked:
    """While a test without the marker runs (set up, called, torn down): what it did that needs it."""

    did: list[str] | None = None

    @classmethod
    def audit(cls, event: str, args: tuple[object, ...]) -> None:
        if cls.did is None:
            return
        if event in _OUTSIDE:
            cls.did.append(f"{event} {args[1] if event.startswith('socket') else args[0]!r}")
        elif event == "open" and isinstance(args[0], str) and args[0].startswith(_TTYS):
            cls.did.append(f"open {args[0]!r}")


sys.addaudithook(_Unmarked.audit)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    _Unmarked.did = None if item.get_closest_marker("integration") else []
    yield


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, None, None]:
    try:
        yield
    finally:
        done, _Unmarked.did = sorted(set(_Unmarked.did or ())), None
    if done:
        more = f" and {len(done) - 5} more" if len(done) > 5 else ""
        pytest.fail(f"not marked integration, yet it did: {'; '.join(done[:5])}{more}", pytrace=False)


# --- slow: soak tests, run only when asked (--run-slow), never in CI ------------------------------------
def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", help="also run the tests marked slow (soak tests)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow: a soak test, run with --run-slow")
    for item in items:
        if item.get_closest_marker("slow"):
            item.add_marker(skip)


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
