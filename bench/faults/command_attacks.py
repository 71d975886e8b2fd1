"""Untrusted commands, judged by docs/mqtt.md's "Commands": odd response topics, junk, oversize payloads,
out-of-limits writes, replayed ids, expired and retained commands, a flood, MQTT 3.1.1, and (with a key the
agent trusts) unsigned, altered and misdirected commands. Judged by the replies the observer sees and their
codes, the agent staying up, and the load device's own log of the writes it received (and, for BACnet, an
independent read of the priority array)."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

from bench.faults.bacnet_read import priority_array
from bench.faults.commands import signed_bytes
from bench.faults.parts import GATEWAY, VALVE_RANGE, wait_for
from bench.faults.rig import Rig
from bench.faults.table import Row
from edge_agent import signing

COMMAND = f"edge/{GATEWAY}/command"
REPLY = f"edge/{GATEWAY}/reply"
LIMIT = 16 * 1024  # docs/mqtt.md: a payload over 16 KiB is refused (`too-large`) unread
RSS_GROWTH_MIB = 32  # the most the agent's RSS may grow over a 10 MB command
QUIET_S = 2.0  # how long a command that gets no reply (by the contract) is watched


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


def code(reply: dict[str, Any] | None) -> str | None:
    """ "ok", the error code, or None (no reply)."""
    if reply is None:
        return None
    if reply.get("ok"):
        return "ok"
    error = reply.get("error")
    return str(error.get("code")) if isinstance(error, dict) else "?"


def valve_writes(r: Rig, value: float | None = None) -> list[dict[str, Any]]:
    return [w for w in r.load.writes() if w["address"] == 100 and (value is None or w["value"] == value)]


def valve_args(value: float) -> dict[str, Any]:
    return {"device": "load", "point": "valve", "value": value}


def up_again(r: Rig, row: Row, case: str) -> None:
    """After a case: the agent is still up (else: a crash, and a restart as the unit would)."""
    if not r.agent.check():
        row.note(f"{case}: agent exited {r.agent.exits[-1]}")
        r.new_readings(20)


@dataclass
class Session:
    """One attack's commands: each sent, its reply awaited and judged, the agent checked after it."""

    r: Rig
    row: Row
    unanswered: list[str] = field(default_factory=list)
    replayed: bytes = b""  # the command sent again and again (replays)

    def case(
        self, name: str, payload: bytes, command_id: str | None, expect: str | None = None, **route: Any
    ) -> dict[str, Any] | None:
        """`expect`: "ok", "refused" (any error) or one error code; None: any reply."""
        self.row.cases += 1
        reply = reply_to(self.r, send(self.r, payload, **route), command_id)
        got = code(reply)
        if got is None:
            self.unanswered.append(name)
        elif expect is not None and got != expect and not (expect == "refused" and got != "ok"):
            self.row.miss(f"{name}: replied {got}, not {expect}")
        up_again(self.r, self.row, name)
        return reply

    def silent(self, name: str, payload: bytes, **route: Any) -> None:
        """A message the contract answers with nothing: none comes, the agent stays up."""
        self.row.cases += 1
        since = send(self.r, payload, **route)
        time.sleep(QUIET_S)
        if self.r.observer.replies(since):
            self.row.miss(f"{name}: answered, though it carries no command")
        up_again(self.r, self.row, name)

    def no_write(self, name: str, *values: float) -> None:
        """The load device received none of these valve values: a refused command wrote nothing."""
        written = [w for value in values for w in valve_writes(self.r, value)]
        if written:
            self.row.wrong_writes += len(written)
            self.row.note(f"{name}: written although refused")


def commands(r: Rig, flood: int = 1000) -> Row:
    row = Row("malformed and hostile commands")
    r.agent.start()
    r.new_readings()
    s = Session(r, row)
    topics_and_junk(s)
    oversize(s)
    out_of_limits(s)
    replays(s)
    retained(s)
    flood_commands(r, row, flood)
    mqtt_311(s)
    signed(s)
    r.finish(row)
    if s.unanswered:
        row.miss(f"no reply to: {', '.join(s.unanswered)}")
    return row


def restart(r: Rig, **options: Any) -> None:
    """The agent stopped, configured again (parts.agent_config's options) and started."""
    r.agent.stop()
    r.configure(**options)
    r.agent.start()
    r.new_readings(20)


def topics_and_junk(s: Session) -> None:
    r, row = s.r, s.row
    for name, topic in (("wildcard response topic", f"{REPLY}/+"), ("foreign response topic", "foreign/x")):
        s.case(name, r.commands.payload("status"), None, "bad-response-topic", response_topic=topic,
               correlation=b"c")  # fmt: skip
    foreign = r.observer.where(lambda m: m.topic.startswith("foreign/"))
    if foreign:
        row.miss(f"{len(foreign)} replies published outside the gateway's prefix")
    for name, payload in (
        ("not JSON", b"{not json"), ("JSON array", b"[1, 2]"), ("not UTF-8", b"\xff\xfe\x00"),
        ("no command", b'{"id": "x-1"}'), ("deep nesting", b"[" * 8000 + b"]" * 8000),
    ):  # fmt: skip
        s.case(name, payload, None, "refused")
    s.case("no expires", json.dumps({"id": "no-exp", "command": "status"}).encode(), None, "refused")
    s.silent("empty payload", b"")


def oversize(s: Session) -> None:
    """Over 16 KiB: `too-large`, unread. 10 MB, over the 256 KiB MQTT 5 maximum packet size the agent
    announces: the broker never delivers it; the agent stays up, small, and answers the next command."""
    r, row = s.r, s.row
    pad = LIMIT + 1 - len(r.commands.payload("status"))
    s.case("just over 16 KiB", r.commands.payload("status", {"pad": "x" * pad}), None, "too-large")
    s.case("200 KiB of garbage", b"\x00garbage" * (200 * 1024 // 8), None, "too-large")
    rss = r.agent.rss_mib()
    r.observer.publish(COMMAND, b'{"id": "big", "command": "status", "pad": "' + b"x" * 10_000_000 + b'"}')
    row.cases += 1
    s.case("a command after 10 MB", r.commands.payload("status"), None, "ok")
    if r.agent.alive():
        grown = r.agent.rss_mib() - rss
        row.note(f"RSS {rss:.0f} -> {rss + grown:.0f} MiB after a 10 MB command")
        if grown > RSS_GROWTH_MIB:
            row.miss(f"RSS grew {grown:.0f} MiB over a 10 MB command")


def out_of_limits(s: Session) -> None:
    """Writes out of limits: judged at the device's own log and on the controller."""
    r, row = s.r, s.row
    for n, value in enumerate((150.0, -5.0, 1e308, float("nan"))):
        s.case(f"valve {value}", r.commands.payload("write_point", valve_args(value), id=f"limits-{n}"), None,
               "refused")  # fmt: skip
    if r.room_port is not None:
        body = r.commands.body("write_point", {"device": "room", "point": "cooling_setpoint", "value": 35.0})
        s.case("setpoint 35", r.commands.encode(body), body["id"], "refused")
        if 35.0 in asyncio.run(priority_array(r.room_port)):
            row.wrong_writes += 1
            row.note("a setpoint of 35 reached the controller")
    low, high = VALVE_RANGE
    outside = [w for w in valve_writes(r) if w["value"] is None or not low <= w["value"] <= high]
    row.wrong_writes += len(outside)


REPLAYED = 42.0  # the valve value of the command replayed (after a reconnect, a restart)


def replays(s: Session) -> None:
    """One command three times: the first reply each time, one write. Its id with other content:
    `duplicate`. Expired, or expiring too far ahead: `expired`. None of the refused ones writes."""
    r = s.r
    body = r.commands.body("write_point", valve_args(REPLAYED), id="replayed-1")
    s.replayed = r.commands.encode(body)
    first = s.case("replay 1", s.replayed, body["id"], "ok")
    for attempt in (2, 3):
        again(s, f"replay {attempt}", first)
    other = r.commands.body("write_point", valve_args(43.0), id=body["id"])
    s.case("same id, other content", r.commands.encode(other), body["id"], "duplicate")
    s.no_write("same id, other content", 43.0)
    s.case("expired", r.commands.expired("write_point", valve_args(55.0)), None, "expired")
    later = r.commands.body("write_point", valve_args(56.0))
    later["expires"] = "2099-01-01T00:00:00Z"
    s.case("expires in 2099", r.commands.encode(later), later["id"], "expired")
    s.no_write("expired", 55.0, 56.0)


def again(s: Session, name: str, first: dict[str, Any] | None) -> None:
    """The replayed command once more: answered with its first reply (same `ts`), not executed again."""
    reply = s.case(name, s.replayed, "replayed-1", "ok")
    if reply and first and reply.get("ts") != first.get("ts"):
        s.row.miss(f"{name}: a new reply, not the first one")
    twice = len(valve_writes(s.r, REPLAYED)) - 1
    if twice > 0:
        s.row.wrong_writes += twice
        s.row.note(f"{name}: one command id executed {twice + 1} times")


def retained(s: Session) -> None:
    """A retained write is refused (`retained`), never executed, even at the next start; the replayed id
    is not executed after a restart either. A retained command with a wildcard response topic across
    three starts: none exits."""
    r, row = s.r, s.row
    s.case("retained write", r.commands.payload("write_point", valve_args(10.0), id="retained-1"),
           "retained-1", "retained", retain=True)  # fmt: skip
    s.case("newer write", r.commands.payload("write_point", valve_args(20.0)), None, "ok")
    restart(r)
    time.sleep(2)
    s.no_write("retained write", 10.0)
    again(s, "replay after a restart", first_reply(r))
    r.observer.publish(COMMAND, b"", retain=True)  # clear it, should the agent not have
    row.cases += 1
    r.observer.publish(COMMAND, r.commands.payload("status"), retain=True, response_topic=f"{REPLY}/+")
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


def first_reply(r: Rig) -> dict[str, Any] | None:
    """The first reply the replayed command ever got."""
    replies = [x for x in r.observer.replies() if x.get("id") == "replayed-1"]
    return replies[0] if replies else None


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
        busy = sum(code(x) == "busy" for x in r.observer.replies(since) if x.get("id") in set(ids))
        row.note(f"flood: {count} of {count} answered ({busy} busy)")
    up_again(r, row, "flood")


def mqtt_311(s: Session) -> None:
    """Under MQTT 3.1.1 (no maximum packet size to announce) a 300 KiB command reaches the agent: it is
    refused `too-large` unread, and the next command is answered."""
    r = s.r
    restart(r, protocol="3.1.1")
    s.case("300 KiB under 3.1.1", r.commands.payload("status", {"pad": "x" * 300 * 1024}), None, "too-large")
    s.case("a command after it (3.1.1)", r.commands.payload("status"), None, "ok")
    restart(r)


def signed(s: Session) -> None:
    """With a key the agent trusts: a signed write runs; unsigned, altered, signed for another gateway or by
    an untrusted key, it is refused and writes nothing."""
    r, row = s.r, s.row
    global_key = r.commands.key
    key = global_key or signing.new_private_key()
    if global_key is None:
        r.commands.key = key
        restart(r)
    row.note("signing on" if global_key else "signing on for the signed cases")
    good = r.commands.body("write_point", valve_args(61.0))
    s.case("signed write", r.commands.encode(good), good["id"], "ok")
    if len(valve_writes(r, 61.0)) != 1:
        row.miss("a signed write did not reach the device once")
    bare = r.commands.body("write_point", valve_args(62.0))
    s.case("unsigned write", r.commands.encode(bare, key=None), None, "unsigned")
    text = json.dumps(r.commands.body("write_point", valve_args(63.0), id="altered-1"), separators=(",", ":"))
    signature = signing.sign(key, signed_bytes(COMMAND, text))
    altered = json.dumps({"signed": text.replace("63.0", "64.0"), "signature": signature}).encode()
    s.case("altered write", altered, None, "bad-signature")
    elsewhere = r.commands.body("write_point", valve_args(65.0))
    text = json.dumps(elsewhere, separators=(",", ":"))
    other = json.dumps(
        {"signed": text, "signature": signing.sign(key, signed_bytes("edge/other-gw/command", text))}
    ).encode()
    s.case("signed for another gateway", other, None, "bad-signature")
    stranger = r.commands.body("write_point", valve_args(66.0))
    s.case("signed by an untrusted key", r.commands.encode(stranger, key=signing.new_private_key()),
           None, "bad-signature")  # fmt: skip
    s.no_write("unsigned, altered or misdirected", 62.0, 63.0, 64.0, 65.0, 66.0)
    if global_key is None:
        r.commands.key = None
        restart(r)
