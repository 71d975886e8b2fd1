"""Untrusted commands: odd response topics, retained and replayed commands, expired ones, junk, oversize
payloads, a flood. Judged by the replies the observer sees, the agent staying up, and the load device's own
log of the writes it received (and, for BACnet, an independent read of the priority array)."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

from bench.faults.bacnet_read import priority_array
from bench.faults.parts import GATEWAY, VALVE_RANGE, wait_for
from bench.faults.rig import Rig
from bench.faults.table import Row

COMMAND = f"edge/{GATEWAY}/command"
REPLY = f"edge/{GATEWAY}/reply"


def send(r: Rig, payload: bytes, **route: Any) -> float:
    sent = time.monotonic()
    r.observer.publish(COMMAND, payload, **route)
    return sent


def reply_to(r: Rig, since: float, command_id: str | None, timeout_s: float = 10) -> dict[str, Any] | None:
    """The first reply after `since` with this id (any id when None), within `timeout_s`."""

    def found() -> list[dict[str, Any]]:
        return [x for x in r.observer.replies(since) if command_id is None or x.get("id") == command_id]

    wait_for(lambda: bool(found()), timeout_s)
    replies = found()
    return replies[0] if replies else None


def valve_writes(r: Rig, value: float | None = None) -> list[dict[str, Any]]:
    return [w for w in r.load.writes() if w["address"] == 100 and (value is None or w["value"] == value)]


def valve_args(value: float) -> dict[str, Any]:
    return {"device": "load", "point": "valve", "value": value}


def write_valve(r: Rig, value: float, **extra: Any) -> bytes:
    return r.commands.payload("write_point", valve_args(value), **extra)


def up_again(r: Rig, row: Row, case: str) -> None:
    """After a case: the agent is still up (else: a crash, and a restart as the unit would)."""
    if not r.agent.check():
        row.note(f"{case}: agent exited {r.agent.exits[-1]}")
        r.new_readings(20)


def probe_format(r: Rig) -> None:
    """Whether the agent takes the `expires` field: a status command carrying one is answered ok."""
    body = r.commands.body("status")
    body["expires"] = "2099-01-01T00:00:00Z"
    since = send(r, json.dumps(body).encode())
    reply = reply_to(r, since, body["id"])
    r.commands.with_expires = bool(reply and reply.get("ok"))


@dataclass
class Session:
    """One attack's commands: each sent, its reply awaited, the agent checked after it."""

    r: Rig
    row: Row
    unanswered: list[str] = field(default_factory=list)

    def case(self, name: str, payload: bytes, command_id: str | None, **route: Any) -> dict[str, Any] | None:
        self.row.cases += 1
        reply = reply_to(self.r, send(self.r, payload, **route), command_id)
        if reply is None:
            self.unanswered.append(name)
        up_again(self.r, self.row, name)
        return reply


def commands(r: Rig, flood: int = 1000) -> Row:
    row = Row("malformed and hostile commands")
    r.agent.start()
    r.new_readings()
    probe_format(r)
    session = Session(r, row)
    topics_and_junk(session)
    out_of_limits(session)
    replays(session)
    retained(session)
    flood_commands(r, row, flood)
    r.finish(row)
    if session.unanswered:
        row.miss(f"no reply to: {', '.join(session.unanswered)}")
    return row


def topics_and_junk(s: Session) -> None:
    r, row = s.r, s.row
    for name, topic in (("wildcard response topic", f"{REPLY}/+"), ("foreign response topic", "foreign/x")):
        body = r.commands.body("status")
        s.case(name, json.dumps(body).encode(), body["id"], response_topic=topic, correlation=b"c")
    foreign = r.observer.where(lambda m: m.topic.startswith("foreign/"))
    if foreign:
        row.miss(f"{len(foreign)} replies published outside the gateway's prefix")
    for name, payload in (
        ("not JSON", b"{not json"), ("JSON array", b"[1, 2]"), ("not UTF-8", b"\xff\xfe\x00"), ("empty", b""),
        ("no command", b'{"id": "x-1"}'), ("deep nesting", b"[" * 100_000 + b"]" * 100_000),
    ):  # fmt: skip
        s.case(name, payload, None)
    rss = r.agent.rss_mib()
    s.case("10 MB payload", b'{"id": "big", "command": "status", "pad": "' + b"x" * 10_000_000 + b'"}', None)
    if r.agent.alive():
        row.note(f"RSS {rss:.0f} -> {r.agent.rss_mib():.0f} MiB after a 10 MB command")


def out_of_limits(s: Session) -> None:
    """Writes out of limits: judged at the device's own log and on the controller."""
    r, row = s.r, s.row
    for n, value in enumerate((150.0, -5.0, 1e308)):
        s.case(f"valve {value}", write_valve(r, value, id=f"limits-{n}"), f"limits-{n}")
    s.case("valve NaN", b'{"id": "nan-1", "command": "write_point", "args": {"device": "load", '
           b'"point": "valve", "value": NaN}}', None)  # fmt: skip
    if r.room_port is not None:
        body = r.commands.body("write_point", {"device": "room", "point": "cooling_setpoint", "value": 35.0})
        s.case("setpoint 35", json.dumps(body).encode(), body["id"])
        if 35.0 in asyncio.run(priority_array(r.room_port)):
            row.wrong_writes += 1
            row.note("a setpoint of 35 reached the controller")
    low, high = VALVE_RANGE
    outside = [w for w in valve_writes(r) if w["value"] is None or not low <= w["value"] <= high]
    row.wrong_writes += len(outside)


def replays(s: Session) -> None:
    """One command id three times; an expired command."""
    r, row = s.r, s.row
    body = r.commands.body("write_point", {"device": "load", "point": "valve", "value": 42.0})
    for attempt in range(3):
        s.case(f"replay {attempt + 1}", json.dumps(body).encode(), body["id"])
    twice = len(valve_writes(r, 42.0)) - 1
    if twice > 0:
        row.wrong_writes += twice
        row.note(f"one command id executed {twice + 1} times")
    s.case("expired", r.commands.expired("write_point", valve_args(55.0)), None)
    if valve_writes(r, 55.0):
        row.wrong_writes += 1
        row.note("an expired command was executed")
    if not r.commands.with_expires:
        row.miss("the agent refuses the `expires` field")


def retained(s: Session) -> None:
    """A retained write, then a newer one; a restart must not bring the old value back. Then a retained
    command with a wildcard response topic across a restart."""
    r, row, case = s.r, s.row, s.case
    case("retained write", write_valve(r, 10.0, id="retained-1"), "retained-1", retain=True)
    case("newer write", write_valve(r, 20.0), None)
    r.agent.stop()
    before = len(valve_writes(r, 10.0))
    r.agent.start()
    r.new_readings(20)
    time.sleep(2)
    again = len(valve_writes(r, 10.0)) - before
    if again > 0:
        row.wrong_writes += again
        row.note("a retained write was executed again after a restart")
    r.observer.publish(COMMAND, b"", retain=True)  # clear it
    body = r.commands.body("status")
    row.cases += 1
    r.observer.publish(COMMAND, json.dumps(body).encode(), retain=True, response_topic=f"{REPLY}/+")
    time.sleep(2)
    r.agent.stop()
    exits = len(r.agent.exits)
    for _ in range(3):  # each start meets the retained command again
        r.agent.start()
        wait_for(lambda: r.agent.started() or not r.agent.alive(), 30)
        time.sleep(3)
        if r.agent.check(restart=False):
            break
    if len(r.agent.exits) > exits:
        row.note(f"a retained wildcard command: {len(r.agent.exits) - exits} of 3 starts exited")
    r.observer.publish(COMMAND, b"", retain=True)
    r.agent.check()
    if not r.agent.alive():
        r.agent.start()
    r.new_readings(20)


def flood_commands(r: Rig, row: Row, count: int) -> None:
    """`count` commands at once: each gets a reply (an answer or "busy"), none is met with silence."""
    ids = [f"flood-{i}" for i in range(count)]
    since = time.monotonic()
    for i, command_id in enumerate(ids):
        args = {"kw": 100.0 + i % 100}
        r.observer.publish(COMMAND, r.commands.payload("set_demand_target", args, id=command_id))
    row.cases += 1

    def answered() -> int:
        wanted = set(ids)
        return len({x.get("id") for x in r.observer.replies(since) if x.get("id") in wanted})

    wait_for(lambda: answered() == count, 30, 0.2)
    replied = answered()
    if replied < count:
        row.miss(f"flood: {count - replied} of {count} commands without a reply")
    else:
        row.note(f"flood: {count} of {count} answered")
    up_again(r, row, "flood")
