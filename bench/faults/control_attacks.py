"""kill -9 during active control: the agent's own control loop holds priority 10 on edge-sim's controllers
(a fast building clock, as tests/test_control_recovery.py runs it). The next start must give those holds
back before control's first step: judged by a BACnet client of the bench's own reading the priority arrays,
and by the order of the agent's log lines. Central's `write_point` is central's intent: kept across the
crash (docs/operations.md, "Holds after a crash"), and listed by `status`."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from bench.faults.bacnet_read import priority_array
from bench.faults.command_attacks import code, reply_to, send
from bench.faults.parts import GATEWAY, LOOPBACK, wait_for
from bench.faults.rig import Rig, trusted
from bench.faults.table import Row

START = "2026-08-05T14:00:00+09:00"  # a hot Wednesday afternoon, the library open
SPEED = 60.0  # one control step (60 s of building time) per wall-clock second
OURS = 10  # control's priority (the default write_priority)
CENTRAL = 12  # the priority of central's write_point
ROOMS = {"room1": "library-reading-1-vav", "room2": "library-reading-2-vav"}
CONTROLLERS = {"plant": "library-plant", **ROOMS}  # the points control writes: analog-value,1 on each
FIRST_STEP = "control mode"  # logged by control's first step
RELEASED = "recovered hold released"
Site = dict[str, tuple[str, str]]  # edge-sim's devices: name -> (address, BACnet instance)


def control_config(r: Rig, where: Site, mode: str) -> Path:
    """Load shaving on the simulated library, shedding all the way (a target far below its demand)."""
    path = r.workdir / f"control-{mode}.toml"
    path.write_text(control_toml(where, mode, r.buffer, r.broker.url, trusted(r.commands)))
    return path


def control_toml(where: Site, mode: str, buffer: Path, mqtt_url: str, key: str | None) -> str:
    meter_host, meter_port = where["library-main-meter"][0].split(":")
    bacnet = {"ahu": ("library-ahu", "edge-sim-ahu"), "plant": ("library-plant", "edge-sim-plant")}
    bacnet |= {name: (controller, "edge-sim-vav") for name, controller in ROOMS.items()}
    lines = [
        f'[gateway]\nid = "{GATEWAY}"', f'[buffer]\npath = "{buffer}"',
        f'[mqtt]\nurl = "{mqtt_url}"\nkeepalive_s = 5', f'[bacnet]\nlocal_address = "{LOOPBACK}:0"',
        '[log]\nformat = "json"', f"[commands]\ntrusted_keys = {json.dumps([key] if key else [])}",
        f'[control]\nmode = "{mode}"\ndemand_target_kw = 10.0\ndemand = "meter/total_power"',
        'outdoor_temperature = "ahu/outdoor_air_temperature"\nplant_limit = "plant/demand_limit"',
        "open_days = [0, 1, 2, 3, 4, 5, 6]\nclose_hour = 22\nzones = [",
        *(
            f'  {{ name = "{n}", temperature = "{n}/zone_temperature",'
            f' cooling_setpoint = "{n}/cooling_setpoint", co2 = "{n}/zone_co2" }},'
            for n in ROOMS
        ),
        "]",
        f'[[devices]]\nname = "meter"\nprotocol = "modbus-tcp"\nhost = "{meter_host}"\nport = {meter_port}',
        'profile = "schneider-iem3255"\nonly_points = ["total_power"]',
    ]  # fmt: skip
    for name, (controller, profile) in bacnet.items():
        lines += [
            f'[[devices]]\nname = "{name}"\nprotocol = "bacnet-ip"\nhost = "{where[controller][0]}"',
            f'instance = {where[controller][1]}\nprofile = "{profile}"',
        ]
    for name in ("meter", *bacnet):
        lines.append(f'[[pollers]]\ndevice = "{name}"\ninterval_s = 0.5')
    return "\n".join(lines) + "\n"


def slots(where: Site, priority: int) -> dict[str, float | None]:
    """Each written point's slot at `priority`, read by the bench's own BACnet client."""

    async def read() -> dict[str, float | None]:
        found = {}
        for point, controller in CONTROLLERS.items():
            port = int(where[controller][0].rsplit(":", 1)[1])
            found[point] = (await priority_array(port))[priority - 1]
        return found

    return asyncio.run(read())


def events(r: Rig) -> list[dict[str, Any]]:
    """The JSON log lines of the agent's current run."""
    with r.agent.log.open("rb") as log:
        log.seek(r.agent.log_offset)
        text = log.read().decode(errors="replace")
    found = []
    for line in text.splitlines():
        try:
            found.append(json.loads(line))
        except ValueError:
            continue
    return [e for e in found if isinstance(e, dict)]


def first_step(r: Rig) -> bool:
    return any(e.get("event") == FIRST_STEP for e in events(r))


def control_recovery(r: Rig, where: Site, cases: int) -> Row:
    """Each case: a run sheds (priority 10 on the plant and two rooms), kill -9 (with the broker up or
    down), the next start. Restarted in shadow mode (it never writes), the priority arrays must show
    every hold given back; restarted active, the log must show them released before the first step."""
    row = Row("kill -9 during active control")
    r.agent.args = ("--clock-speed", str(SPEED), "--clock-start", START)
    active, shadow = control_config(r, where, "active"), control_config(r, where, "shadow")
    for case in range(cases):
        if r.agent.alive():  # the previous case's restart, maybe in shadow mode
            r.agent.stop()
        r.agent.config = active
        r.agent.start()
        if not wait_for(lambda: None not in slots(where, OURS).values(), 90, 0.5):
            row.miss(f"case {case}: control never held all of {sorted(CONTROLLERS)}")
            break
        outage = case % 4 in (1, 2)  # shadow and active restarts, each with the broker up and down
        if outage:
            r.broker.stop()
        r.agent.kill9()
        held = slots(where, OURS)
        restart_in = shadow if case % 2 == 0 else active
        r.agent.config = restart_in
        removed = time.monotonic()
        r.agent.start()
        if outage:
            time.sleep(3)
            r.broker.start()
        row.cases += 1
        if not wait_for(lambda: first_step(r), 60, 0.2):
            row.miss(f"case {case}: no first control step after the restart")
            continue
        row.recovery_s.append(time.monotonic() - removed)
        order = [e.get("event") for e in events(r)]
        released = [e.get("point") for e in events(r) if e.get("event") == RELEASED]
        if len(released) < sum(v is not None for v in held.values()):
            row.miss(f"case {case}: {len(released)} holds released of {held}")
        if RELEASED in order and max(i for i, e in enumerate(order) if e == RELEASED) > order.index(
            FIRST_STEP
        ):
            row.miss(f"case {case}: a hold released after control's first step")
        if restart_in == shadow:
            left = {p: v for p, v in slots(where, OURS).items() if v is not None}
            row.wrong_writes += len(left)
            if left:
                row.note(f"case {case}: our priority-{OURS} writes still on the controllers: {left}")
    row.note(
        f"{row.cases} kills while shedding; restarted in shadow (priority arrays read) and active (log order)"
    )
    central_write_survives(r, where, row, shadow)
    r.finish(row)
    return row


def command(r: Rig, name: str, args: dict[str, Any] | None = None) -> dict[str, Any] | None:
    body = r.commands.body(name, args)
    return reply_to(r, send(r, r.commands.encode(body)), body["id"], 15)


def central_write_survives(r: Rig, where: Site, row: Row, shadow: Path) -> None:
    """Central's write_point (priority 12) across a kill -9: still on the controller after the restart, and
    listed by `status` as central's; relinquished by central's `null`."""
    r.agent.config = shadow
    if not r.agent.alive():
        r.agent.start()
    wait_for(lambda: first_step(r), 60, 0.2)
    point = {"device": "room2", "point": "cooling_setpoint", "priority": CENTRAL}
    row.cases += 1
    if (
        code(command(r, "write_point", {**point, "value": 27.5})) != "ok"
        or slots(where, CENTRAL)["room2"] != 27.5
    ):
        row.miss("central's write_point did not land")
        return
    r.agent.kill9()
    r.agent.start()
    wait_for(lambda: first_step(r), 60, 0.2)
    if slots(where, CENTRAL)["room2"] != 27.5:
        row.miss("central's write_point was released by the restart")
    status = command(r, "status") or {}
    writes = ((status.get("result") or {}).get("control") or {}).get("writes") or []
    if not any(w.get("holder") == "central" and w.get("value") == 27.5 for w in writes):
        row.miss(f"`status` does not list central's hold: {writes}")
    else:
        row.note("central's write kept across the kill and listed by status")
    command(r, "write_point", {**point, "value": None})
    if slots(where, CENTRAL)["room2"] is not None:
        row.miss("central's null did not relinquish its write")
