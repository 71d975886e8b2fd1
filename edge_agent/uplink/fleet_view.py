"""The fleet as a central subscriber sees it: every gateway heard of under a prefix, online or not, with what
its birth, its batches, its savings reports and its events said last. Pure: feed it messages with the time
they came, ask for rows at a time; `edge-agent fleet` (cli/fleet.py) does the MQTT and the printing.

A gateway's state is `online` or `offline` as its latest status certificate says (a death whose bdSeq is
older than the birth's is stale and changes nothing, docs/mqtt.md), `silent` when online by its birth yet
nothing came from it for `stale_after_s` of watching, and `unknown` when only its data was seen.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, get_args

from edge_agent.uplink.fleet_messages import (
    Batch,
    Cleared,
    Event,
    Ignored,
    Json,
    Savings,
    Status,
    read_message,
)

State = Literal["online", "offline", "silent", "unknown"]


@dataclass
class _Gateway:
    """What is known of one gateway, as messages come."""

    name: str
    online: bool | None = None
    format: str | None = None
    bd_seq: int | None = None
    birth: Status | None = None
    takeover: Json | None = None
    heard_at: datetime | None = None  # the last message from it, by the watcher's clock
    newest_reading: datetime | None = None  # by the gateway's clock
    backlog_last: int | None = None
    historical_up_to: int | None = None  # the highest seq of this session's historical batches
    last_batch_historical: bool | None = None
    dropped: int | None = None
    savings: Savings | None = None
    last_event: Event | None = None
    events: int = 0
    ignored: int = 0


@dataclass(frozen=True)
class GatewayRow:
    """One gateway as `edge-agent fleet` shows it; None: not known (the table prints "-")."""

    gateway: str
    state: State
    format: str | None
    bd_seq: int | None
    version: str | None
    connected_at: str | None
    config: Json | None
    control_model: Json | None
    takeover: Json | None
    backlog_last: int | None
    backlog_left: int | None  # at most this many readings still to come from the backlog; None: unknown
    last_batch_historical: bool | None
    dropped: int | None
    last_reading_at: datetime | None
    last_reading_age_s: float | None
    heard_age_s: float | None
    savings: Savings | None
    last_event: Event | None
    events: int
    ignored: int

    def as_json(self) -> dict[str, Any]:
        """The row for --json: every field, nulls where unknown."""
        return {
            "gateway": self.gateway,
            "state": self.state,
            "format": self.format,
            "bdSeq": self.bd_seq,
            "version": self.version,
            "connected_at": self.connected_at,
            "config": self.config,
            "control_model": self.control_model,
            "takeover": self.takeover,
            "backlog": {
                "backlog_last": self.backlog_last,
                "left": self.backlog_left,
                "last_batch_historical": self.last_batch_historical,
            },
            "dropped": self.dropped,
            "last_reading": None
            if self.last_reading_at is None
            else {
                "at": self.last_reading_at.isoformat().replace("+00:00", "Z"),
                "age_s": self.last_reading_age_s,
            },
            "last_heard_age_s": self.heard_age_s,
            "savings": None
            if self.savings is None
            else {
                "day": self.savings.day,
                "avoided_kwh": self.savings.avoided_kwh,
                "avoided_peak_kw": self.savings.avoided_peak_kw,
                "within_noise": self.savings.within_noise,
            },
            "last_event": None
            if self.last_event is None
            else {"kind": self.last_event.kind, "at": self.last_event.at, "message": self.last_event.message},
            "events": self.events,
            "ignored": self.ignored,
        }


@dataclass
class FleetView:
    prefix: str
    started: datetime  # when watching began: `silent` needs stale_after_s of watching
    stale_after_s: float = 120.0
    ignored: Counter[str] = field(default_factory=Counter)  # reason -> messages
    _gateways: dict[str, _Gateway] = field(default_factory=dict)

    def feed(self, topic: str, payload: bytes, now: datetime) -> None:
        """Take one message as it came (at `now`)."""
        message = read_message(self.prefix, topic, payload)
        if message is None:
            return
        if isinstance(message, Cleared):
            self._gateways.pop(message.gateway, None)
            return
        if isinstance(message, Ignored):
            self.ignored[message.reason] += 1
            if message.gateway is not None:
                self._gateway(message.gateway).ignored += 1
            return
        gateway = self._gateway(message.gateway)
        gateway.heard_at = now
        match message:
            case Status():
                self._status(gateway, message)
            case Batch():
                self._batch(gateway, message)
            case Savings() if gateway.savings is None or message.day >= gateway.savings.day:
                gateway.savings = message  # a report sent again after a restart: the newest day stays
            case Event():
                gateway.events += 1
                gateway.last_event = message

    def rows(self, now: datetime) -> list[GatewayRow]:
        """Every gateway seen, by name."""
        return [self._row(self._gateways[name], now) for name in sorted(self._gateways)]

    def snapshot(self, now: datetime) -> dict[str, Any]:
        """The whole view as one JSON document (`edge-agent fleet --json`)."""
        rows = self.rows(now)
        return {
            "at": now.isoformat().replace("+00:00", "Z"),
            "prefix": self.prefix,
            "watched_s": round((now - self.started).total_seconds(), 1),
            "gateways": [row.as_json() for row in rows],
            "summary": {state: sum(row.state == state for row in rows) for state in get_args(State)},
            "ignored": {"total": self.ignored.total(), "reasons": dict(self.ignored)},
        }

    def _gateway(self, name: str) -> _Gateway:
        return self._gateways.setdefault(name, _Gateway(name))

    def _status(self, gateway: _Gateway, status: Status) -> None:
        if status.online:
            gateway.online, gateway.birth, gateway.format = True, status, status.format
            gateway.bd_seq = status.bd_seq
            gateway.backlog_last, gateway.dropped = status.backlog_last, status.dropped
            gateway.historical_up_to = gateway.last_batch_historical = None  # a new session, a new backlog
            gateway.takeover = status.takeover
            return
        if self._stale_death(gateway, status):
            return
        gateway.online, gateway.format = False, status.format
        if gateway.bd_seq is None:
            gateway.bd_seq = status.bd_seq  # the session that ended, when its birth was not seen
        if status.takeover is not None:  # a death may know of a takeover too
            gateway.takeover = status.takeover

    @staticmethod
    def _stale_death(gateway: _Gateway, death: Status) -> bool:
        """A death of a session older than the current birth's (Sparkplug: any other session's, as its
        bdSeq wraps at 256)."""
        if gateway.bd_seq is None or death.bd_seq is None:
            return False
        if death.format == "sparkplug":
            return death.bd_seq != gateway.bd_seq
        return death.bd_seq < gateway.bd_seq

    @staticmethod
    def _batch(gateway: _Gateway, batch: Batch) -> None:
        if gateway.online is None:
            gateway.format = batch.format  # data without a birth seen yet (Sparkplug's is not retained)
        if batch.newest is not None and (
            gateway.newest_reading is None or batch.newest > gateway.newest_reading
        ):
            gateway.newest_reading = batch.newest
        gateway.last_batch_historical = batch.historical
        if batch.backlog_last is not None:
            gateway.backlog_last = batch.backlog_last
        if batch.dropped is not None:
            gateway.dropped = batch.dropped
        if batch.historical and batch.seq_last is not None:
            gateway.historical_up_to = max(gateway.historical_up_to or 0, batch.seq_last)

    def _row(self, gateway: _Gateway, now: datetime) -> GatewayRow:
        birth = gateway.birth
        heard = max(gateway.heard_at or self.started, self.started)
        return GatewayRow(
            gateway=gateway.name,
            state=self._state(gateway, (now - heard).total_seconds()),
            format=gateway.format,
            bd_seq=gateway.bd_seq,
            version=None if birth is None else birth.version,
            connected_at=None if birth is None else birth.connected_at,
            config=None if birth is None else birth.config,
            control_model=None if birth is None else birth.control_model,
            takeover=gateway.takeover,
            backlog_last=gateway.backlog_last,
            backlog_left=_backlog_left(gateway),
            last_batch_historical=gateway.last_batch_historical,
            dropped=gateway.dropped,
            last_reading_at=gateway.newest_reading,
            last_reading_age_s=None
            if gateway.newest_reading is None
            else max(0.0, round((now - gateway.newest_reading).total_seconds(), 1)),
            heard_age_s=None
            if gateway.heard_at is None
            else round((now - gateway.heard_at).total_seconds(), 1),
            savings=gateway.savings,
            last_event=gateway.last_event,
            events=gateway.events,
            ignored=gateway.ignored,
        )

    def _state(self, gateway: _Gateway, quiet_s: float) -> State:
        if gateway.online is None:
            return "unknown"
        if not gateway.online:
            return "offline"
        return "silent" if quiet_s >= self.stale_after_s else "online"


def _backlog_left(gateway: _Gateway) -> int | None:
    """How many readings the backlog may still send: known once a historical batch of this session came
    (the backlog goes oldest first, up to backlog_last); 0 once it reached backlog_last."""
    if gateway.historical_up_to is None or gateway.backlog_last is None:
        return None
    return max(0, gateway.backlog_last - gateway.historical_up_to)
