"""Attacks at the device side: misbehaving Modbus devices next to a well-behaved one (kill -9 during
control: control_attacks)."""

from __future__ import annotations

import contextlib
import time

from bench.faults.parts import modbus_device
from bench.faults.rig import Rig
from bench.faults.table import Row

SLOWED = 0.8  # the load device polled less than this share of its rate alone: slowed
BUSY = 0.5  # the agent's CPU share beside the misbehaving devices, at most


def misbehaving_modbus(r: Rig, phase_s: float) -> Row:
    """Three misbehaving Modbus servers (garbage answers, another unit id, an unsolicited flood) polled next
    to the load device: its polls per second (its own log) against a run without them."""
    row = Row("misbehaving Modbus devices")
    r.agent.start()
    r.new_readings()
    t0 = time.time()
    time.sleep(phase_s)
    alone = r.load.reads_between(t0 + 1, time.time()) / (phase_s - 1)
    r.agent.stop()
    with contextlib.ExitStack() as stack:
        bad = [
            stack.enter_context(modbus_device(mode, r.workdir, mode))
            for mode in ("garbage", "wrong-unit", "flood")
        ]
        r.configure(extra_modbus=tuple(bad))
        r.agent.start()
        r.new_readings()
        cpu0, t1 = r.agent.cpu_s(), time.time()
        time.sleep(phase_s)
        r.agent.check()
        together = r.load.reads_between(t1 + 1, time.time()) / (phase_s - 1)
        cpu = (r.agent.cpu_s() - cpu0) / (time.time() - t1) if r.agent.alive() else float("nan")
        row.cases += len(bad)
        row.note(f"load device polled {together:.1f}/s beside them, {alone:.1f}/s alone")
        row.note(f"agent CPU {cpu:.0%}")
        if together < SLOWED * alone:
            row.miss("the well-behaved device was polled less often")
        if not cpu < BUSY:
            row.miss("the agent was kept busy")
        accepted = r.observer.ledger.good.get("wrong-unit", 0)
        if accepted:
            row.miss(f"{accepted} good readings from answers of another unit id")
        r.finish(row)
    return row
