"""The watchdog bounds a section as asyncio.timeout does: an overrun is a TimeoutError on time, a section
that ends in time is left alone, and an outside cancel stays a cancel."""

from __future__ import annotations

import asyncio

import pytest

from edge_agent.protocols.watchdog import Watchdog


async def test_a_section_that_overruns_ends_in_timeout_on_time() -> None:
    loop = asyncio.get_running_loop()
    watchdog = Watchdog()
    start = loop.time()
    with pytest.raises(TimeoutError), watchdog.within(0.1):
        await asyncio.sleep(5)
    assert 0.09 <= loop.time() - start < 0.5
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]
    await asyncio.sleep(0)  # no cancel left over for the task's next await


async def test_sections_that_end_in_time_are_left_alone_and_a_later_overrun_is_caught() -> None:
    loop = asyncio.get_running_loop()
    watchdog = Watchdog()
    start = loop.time()
    while loop.time() - start < 0.3:  # many sections across several timeout periods
        with watchdog.within(0.05):
            await asyncio.sleep(0.001)
    with pytest.raises(TimeoutError), watchdog.within(0.05):
        await asyncio.sleep(1)
    watchdog.close()


async def test_a_shorter_section_after_a_longer_one_is_bounded_by_its_own_time() -> None:
    loop = asyncio.get_running_loop()
    watchdog = Watchdog()
    with watchdog.within(10):
        await asyncio.sleep(0)
    start = loop.time()
    with pytest.raises(TimeoutError), watchdog.within(0.05):
        await asyncio.sleep(5)
    assert loop.time() - start < 0.5


async def test_an_outside_cancel_stays_a_cancel() -> None:
    watchdog = Watchdog()
    entered = asyncio.Event()

    async def section() -> None:
        with watchdog.within(5):
            entered.set()
            await asyncio.sleep(10)

    task = asyncio.create_task(section())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    watchdog.close()


async def test_one_section_at_a_time() -> None:
    watchdog = Watchdog()
    with watchdog.within(1), pytest.raises(RuntimeError, match="already guarding"), watchdog.within(1):
        pass
    watchdog.close()
