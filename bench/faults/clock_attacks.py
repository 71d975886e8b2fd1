"""Clock steps while the agent runs, under libfaketime: 3 days back, then 5 years ahead, then back to true
time. Judged at the observer: readings stamped more than an hour from its own clock must be marked (not
quality good), the step must be logged, and the agent must stay up."""

from __future__ import annotations

import time
from pathlib import Path

from bench.faults.rig import Rig
from bench.faults.table import Row

LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1")
STEPS = ("-3d", "+5y")


def clock_steps(r: Rig, step_s: float) -> Row:
    row = Row("clock steps (libfaketime: 3 days back, 5 years ahead)")
    if not LIBFAKETIME.exists():
        row.miss("skipped: libfaketime is not installed (apt-get install libfaketime)")
        return row
    offset = r.workdir / "faketime"
    offset.write_text("+0\n")
    r.agent.env = {
        "LD_PRELOAD": str(LIBFAKETIME),
        "FAKETIME_TIMESTAMP_FILE": str(offset),  # the offset, read again every second
        "FAKETIME_CACHE_DURATION": "1",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",  # only the wall clock steps, as with NTP or an RTC
    }
    r.agent.start()
    r.new_readings()
    for step in STEPS:
        logged = len(step_lines(r))
        offset.write_text(f"{step}\n")
        time.sleep(step_s)
        r.agent.check()
        if len(step_lines(r)) == logged:
            row.miss(f"no log line for the step {step}")
        offset.write_text("+0\n")
        removed = time.monotonic()
        row.recovery_s.append(r.recovery(removed))
        row.cases += 1
    ledger = r.observer.ledger
    row.note(
        f"{ledger.skewed} readings stamped off the true time, {ledger.skewed_unmarked} of them quality good"
    )
    if ledger.skewed_unmarked:
        row.miss(f"{ledger.skewed_unmarked} wrongly stamped readings not marked")
    r.finish(row)
    return row


def step_lines(r: Rig) -> list[str]:
    """The agent's log lines about its clock (a new one after a step: the step was logged)."""
    return r.agent.log_lines("clock")
