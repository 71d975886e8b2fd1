"""Attacks at the device side: kill -9 while our write holds a BACnet controller, and misbehaving Modbus
devices next to a well-behaved one."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

from bench.faults.bacnet_read import priority_array
from bench.faults.command_attacks import reply_to, send
from bench.faults.parts import modbus_device
from bench.faults.rig import Rig
from bench.faults.table import Row

PRIORITY = 10
SLOWED = 0.8  # the load device polled less than this share of its rate alone: slowed
BUSY = 0.5  # the agent's CPU share beside the misbehaving devices, at most


def setpoint(r: Rig, value: float | None) -> bool:
    """write_point on the room's cooling setpoint, at the agent's priority; whether it was answered ok."""
    body = r.commands.body("write_point", {"device": "room", "point": "cooling_setpoint", "value": value})
    reply = reply_to(r, send(r, json.dumps(body).encode()), body["id"])
    return bool(reply and reply.get("ok"))


def slot(r: Rig) -> float | None:
    assert r.room_port is not None
    return asyncio.run(priority_array(r.room_port))[PRIORITY - 1]


def kill9_holding_a_write(r: Rig, cases: int) -> Row:
    """Our priority-10 write on the controller, SIGKILL (once with the broker up, once down), restart: the
    next start must relinquish it (read by a BACnet client of the bench's own)."""
    row = Row("kill -9 holding a BACnet write")
    if r.room_port is None:
        row.miss("skipped: no simulator")
        return row
    r.agent.start()
    r.new_readings()
    for case in range(cases):
        value = 26.5 + 0.5 * (case % 3)
        if not setpoint(r, value) or slot(r) != value:
            row.miss(f"case {case}: the write did not land")
            continue
        outage = case % 2 == 1
        if outage:
            r.broker.stop()
        r.agent.kill9()
        beyond = max(r.assigned(), r.observer.ledger.highest)
        removed = time.monotonic()
        r.agent.start()
        if outage:
            time.sleep(3)
            r.broker.start()
        row.recovery_s.append(r.recovery(removed, beyond))
        time.sleep(3)  # the restart has long passed its start-up
        row.cases += 1
        if slot(r) == value:
            row.wrong_writes += 1
            setpoint(r, None)  # relinquish by hand for the next case
    if row.wrong_writes:
        row.note("our priority-10 value still on the controller after restart")
    r.finish(row)
    return row


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
