"""The control loop keeps a fixed schedule on the building's clock: decisions on multiples of the step,
however long a step takes, also on a simulated building's fast clock; a step that overruns skips the next
slot and says so. Before its first step, status already names the inputs control lacks."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pytest

from edge_agent.acquisition.latest import LatestValues
from edge_agent.clock import ManualClock, ScaledClock
from edge_agent.control.calendar import OpeningHours
from edge_agent.control.loop import ControlLoop
from edge_agent.control.points import Holder
from edge_agent.control.schedule import FixedRate
from edge_agent.readings import Quality, Reading, utc_now
from edge_agent.service.control_setup import control_settings, control_setup
from tests.one_zone import ALWAYS_OPEN, VALUES, one_zone_control

START = datetime.fromisoformat("2026-08-05T14:00:00+09:00")  # open, hot


@dataclass
class Building:
    values: LatestValues = field(default_factory=lambda: LatestValues(dict.fromkeys(VALUES, 600.0)))
    writes: list[tuple[str, float | None]] = field(default_factory=list)

    def latest(self, ref: str) -> Reading | None:
        return self.values.get(ref)

    async def write(self, ref: str, value: float | None, priority: int | None) -> None:
        self.writes.append((ref, value))

    async def holder(self, ref: str) -> Holder:
        return Holder(prioritised=True)

    def feed(self) -> None:
        now = utc_now()
        for ref, (value, unit) in VALUES.items():
            device, point = ref.split("/")
            self.values.update([Reading(device, point, value, unit, Quality.GOOD, now)])


class SlowLoop(ControlLoop):
    """A step that takes `cost_s` of wall time, as reading and writing the building's devices do."""

    cost_s = 0.0

    async def step(self) -> None:
        await asyncio.sleep(self.cost_s)
        await super().step()


def control_loop(
    building: Building,
    clock: ManualClock | ScaledClock,
    events: list[dict[str, object]],
    mode: str,
    step_s: float = 60.0,
) -> SlowLoop:
    config = one_zone_control(
        **ALWAYS_OPEN,
        mode=mode,
        step_s=step_s,
        demand_target_kw=100.0,
    )
    return SlowLoop(
        "gw",
        control_setup(config, units={ref: unit for ref, (_, unit) in VALUES.items()}),
        control_settings(config),
        building,
        clock=clock,
        send_event=lambda payload: events.append(json.loads(payload)),
    )


class SimulatedTime:
    """A ManualClock whose sleeps pass building time at once: the schedule's logic without waiting."""

    def __init__(self, start: datetime) -> None:
        self.clock = ManualClock(start)
        self.slept: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.clock.advance(seconds)


async def test_decisions_fall_on_multiples_of_the_step_without_drift() -> None:
    time = SimulatedTime(START + timedelta(seconds=17.3))
    schedule = FixedRate(time.clock, 60.0, time.sleep)
    slots = []
    for _ in range(30):
        slots.append(await schedule.next())
        time.clock.advance(8.9)  # each step costs building time
    assert slots == [START + timedelta(minutes=m) for m in range(1, 31)]
    assert schedule.skipped == 0


async def test_a_step_that_overruns_skips_to_the_next_slot_and_counts_it() -> None:
    time = SimulatedTime(START)
    schedule = FixedRate(time.clock, 60.0, time.sleep)
    assert await schedule.next() == START  # started on a slot: the first decision at once
    time.clock.advance(150.0)  # past the next two slots
    assert await schedule.next() == START + timedelta(minutes=3)
    assert schedule.skipped == 2
    time.clock.advance(5.0)
    assert await schedule.next() == START + timedelta(minutes=4)
    assert schedule.skipped == 2


async def test_a_clock_set_back_is_followed_at_once_not_waited_out() -> None:
    time = SimulatedTime(START)
    schedule = FixedRate(time.clock, 60.0, time.sleep)
    await schedule.next()
    time.clock.advance(-3610.0)  # NTP sets the time an hour (and 10 s) back
    assert await schedule.next() == START - timedelta(hours=1)
    assert max(time.slept) <= 60.0


@pytest.mark.parametrize("step_s", [60.0, 900.0])
async def test_on_a_fast_clock_the_loop_decides_once_per_step_of_building_time(step_s: float) -> None:
    """A simulated building at 1,200x: a step of 60 s building time is 50 ms of wall time, and each step
    costs 10 ms of it (12 s of building time). The loop must still decide once per slot, never drift."""
    speed = 1200.0 * step_s / 60.0
    OpeningHours().is_holiday(START.date())  # the holiday tables load once per process: not on this clock
    building, events = Building(), list[dict[str, object]]()
    building.feed()
    clock = ScaledClock(START, speed)
    loop = control_loop(building, clock, events, "shadow", step_s)
    loop.cost_s = 0.2 * step_s / speed  # a fifth of a step
    slots = 60
    end = START + timedelta(seconds=slots * step_s)
    running = asyncio.create_task(loop.run())
    for _ in range(2000):  # bounded: 2,000 x 5 ms
        if clock.now() >= end + timedelta(seconds=step_s / 2):
            break
        await asyncio.sleep(0.005)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    times = [datetime.fromisoformat(str(e["at"])) for e in events if e["kind"] == "decision"]
    decided = [at for at in times if at <= end + timedelta(seconds=step_s / 2)]
    status = loop.status()
    # the first slot after START (the clock runs on while the loop starts) to the one at `end`
    # (sleeping a step after each step, the loop made 48 of 60: a step's cost added to every period)
    assert len(decided) >= slots - 6, f"{len(decided)} decisions in {slots} steps of building time"
    assert slots - 1 <= len(decided) + status.skipped_steps <= slots + 1  # a slot is decided or skipped
    assert status.skipped_steps <= 6  # only a stall of the (shared) test machine skips one


async def test_before_its_first_step_status_names_the_missing_inputs_and_nothing_is_written() -> None:
    building, events = Building(), list[dict[str, object]]()  # the devices have not answered yet
    loop = control_loop(building, ManualClock(START), events, "active")
    assert set(loop.status().missing_inputs) == {"outdoor temperature", "building demand", "z temperature"}
    await loop.step()
    assert building.writes == []
    assert loop.status().steps == 0
    assert [e["kind"] for e in events if e["kind"] != "mode"] == ["fallback"]
    building.feed()
    await loop.step()
    assert loop.status().missing_inputs == []
    assert loop.status().steps == 1
    assert building.writes  # the demand (150 kW) is above the target (100 kW): control sheds
