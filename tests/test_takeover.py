"""Issue 21, item 5: two gateways started with one id take each other's MQTT session in turn. Each says so
(log, status, birth) within a minute and backs off instead of fighting; neither loses a buffered reading."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from io import StringIO
from pathlib import Path
from typing import Any, Literal

import pytest
from rich.console import Console
from structlog.testing import capture_logs

from edge_agent.cli import local as cli_local
from edge_agent.config import AgentConfig, MqttConfig
from edge_agent.readings import Quality, Reading
from edge_agent.service.agent import Agent
from edge_agent.service.local_socket import request, socket_path
from edge_agent.store.buffer import Buffer
from edge_agent.uplink.session import Uplink, UplinkState
from edge_agent.uplink.sparkplug.metrics import TAKEOVERS, node_birth
from edge_agent.uplink.takeover import (
    CLOSED_WITHOUT_REASON,
    EARLY_REPEATS,
    EARLY_S,
    SESSION_TAKEN_OVER,
    STABLE_S,
    TakeoverWatch,
)
from tests.support import (
    Broker,
    async_wait_until,
    central_subscriber,
    in_background,
    read_birth,
    running_agent,
)
from tests.takeover_front import takeover_front

GATEWAY = "gw-twice"
KEEPALIVE_TIMEOUT = 0x8D  # paho's reason for a broker that stopped answering


# --- telling a takeover from other losses --------------------------------------------------------------


def session(watch: TakeoverWatch, at: float, lasted: float, reason: int | None) -> str | None:
    watch.connected(at)
    return watch.lost(reason, at + lasted)


def test_mqtt5_says_session_taken_over_at_once() -> None:
    watch = TakeoverWatch()
    assert session(watch, 0, 3600, SESSION_TAKEN_OVER) is not None
    assert (watch.count, watch.taken_over(3600)) == (1, True)
    assert watch.last_at is not None


def test_without_a_reason_only_repeated_early_closes_are_a_takeover() -> None:
    watch = TakeoverWatch()
    at = 0.0
    for _ in range(EARLY_REPEATS - 1):
        assert session(watch, at, EARLY_S / 2, CLOSED_WITHOUT_REASON) is None
        at += 10
    assert session(watch, at, 1, KEEPALIVE_TIMEOUT) is None  # a broker gone silent is not another client
    assert session(watch, at, EARLY_S * 2, CLOSED_WITHOUT_REASON) is None  # not right after connecting
    assert session(watch, at, 0.5, None) is None  # ended on our side
    assert session(watch, at + 10, 0.5, CLOSED_WITHOUT_REASON) is not None
    assert watch.count == 1


def test_early_closes_far_apart_are_not_a_takeover() -> None:
    watch = TakeoverWatch()
    for i in range(10):
        assert session(watch, i * 200.0, 1, CLOSED_WITHOUT_REASON) is None
    assert not watch.taken_over(2000)


def test_the_wait_grows_while_taken_over_and_a_long_session_ends_it() -> None:
    watch = TakeoverWatch(base_s=2, cap_s=300)
    session(watch, 0, 1, SESSION_TAKEN_OVER)
    waits = [watch.next_delay() for _ in range(10)]
    ceilings = [min(300, 2 * 2**i) for i in range(10)]
    assert all(c / 2 <= w <= c for w, c in zip(waits, ceilings, strict=True))  # never a quick grab back
    watch.connected(100)
    assert watch.taken_over(100 + STABLE_S - 1)
    assert not watch.taken_over(100 + STABLE_S)
    assert watch.next_delay() <= 2  # started over
    assert watch.count == 1  # the count stays: the birth says it happened


def test_status_puts_a_taken_over_id_among_the_hazards() -> None:
    now = datetime.now(UTC)
    uplink = {
        "state": "connecting", "broker": "node-b:1883", "brokers": 2, "mqtt": "5", "session": 7,
        "readings_published": 0, "events_waiting": 0, "events_dropped": 0, "last_error": None, "takeovers": 3,
        "last_takeover": (now - timedelta(seconds=40)).isoformat(), "taken_over": True,
    }  # fmt: skip
    status = {
        "gateway": GATEWAY, "devices": [], "queue": {"batches_waiting": 0, "capacity": 10},
        "buffer": {"depth": 0, "oldest_ts": None, "size_bytes": 0, "cap_bytes": 1e6, "dropped": 0},
        "uplink": uplink, "clock": {"state": "synchronized", "held": 0},
        "control": {"mode": "off", "demand_target_kw": None},
    }  # fmt: skip
    printed = StringIO()
    cli_local._print_status(status, now, Console(file=printed, width=300, markup=False))
    text = printed.getvalue()
    assert (
        f"gateway {GATEWAY}: hazards:\n  uplink: another client with gateway id '{GATEWAY}' takes its "
        in text
    )
    assert "at node-b:1883 (3 times, the last 40 s ago): two gateways with one id?" in text
    assert "uplink: connecting to node-b:1883 (one of 2 brokers)" in text


# --- two gateways, one id, one broker ------------------------------------------------------------------


def meter(name: str, n: int, start: int = 0) -> list[Reading]:
    t0 = datetime(2026, 12, 7, tzinfo=UTC)
    return [
        Reading(name, "total_power", float(start + i), "W", Quality.GOOD, t0 + timedelta(seconds=start + i))
        for i in range(n)
    ]


def seqs_of(seen: Any, device: str) -> set[int]:
    return {r.seq for a in seen.arrivals for r in a.batch.readings if r.device == device}


@pytest.mark.integration
@pytest.mark.parametrize(
    ("protocol", "told"),
    [
        ("5", True),  # a broker that says 0x8E "session taken over" (the front, as MQTT 5 asks)
        ("5", False),  # Debian 12's mosquitto 2.0.11: closes the older connection without a word
        ("3.1.1", False),  # 3.1.1 has no word for it
    ],
)
async def test_two_gateways_with_one_id_both_say_so_and_neither_loses_a_reading(
    broker: Broker, tmp_path: Path, protocol: Literal["5", "3.1.1"], told: bool
) -> None:
    each = 400
    async with (
        takeover_front(broker.port) as front,
        Buffer(tmp_path / "first.db") as first_buffer,
        Buffer(tmp_path / "second.db") as second_buffer,
        central_subscriber(broker.port, GATEWAY) as seen,
    ):
        url = f"mqtt://127.0.0.1:{front.port if told else broker.port}"
        config = MqttConfig(url=url, protocol=protocol, batch_size=20, backlog_messages_per_s=5.0)
        await first_buffer.append(meter("meter-first", each))
        await second_buffer.append(meter("meter-second", each))
        first = Uplink(config, GATEWAY, first_buffer)
        second = Uplink(config, GATEWAY, second_buffer)
        with capture_logs() as logged:
            async with in_background(second.run()):
                async with in_background(first.run()):
                    await async_wait_until(
                        lambda: first.statistics().taken_over and second.statistics().taken_over,
                        60,
                        "both gateways to say they are taken over",
                    )
                    await first_buffer.append(meter("meter-first", 50, start=each))  # still buffering
                # The first is stopped; the second is let back on, and drains all it holds.
                await second_buffer.append(meter("meter-second", 50, start=each))
                await async_wait_until(
                    lambda: second_buffer.statistics().depth == 0, 60, "the second drained"
                )
                assert second.statistics().state is UplinkState.CONNECTED
                await async_wait_until(
                    lambda: len(seqs_of(seen, "meter-second")) == each + 50, 10, "all arrived"
                )
        # The stopped one lost nothing either: what did not reach the broker is still in its buffer (all of
        # it may have: it could be on between two takeovers when its last readings came).
        kept = await first_buffer.backlog_batch(5000, 0, first_buffer.last_seq)
        still = set() if kept is None else {r["seq"] for r in json.loads(kept.readings_json)}
        assert seqs_of(seen, "meter-first") | still == set(range(1, each + 51))
        assert len(still) == first_buffer.statistics().depth
    assert seqs_of(seen, "meter-second") == set(range(1, each + 51))
    errors = [
        e for e in logged if e["log_level"] == "error" and e["event"].startswith("gateway id taken over")
    ]
    assert {e["gateway"] for e in errors} == {GATEWAY}
    assert {e["broker"] for e in errors} == {url.removeprefix("mqtt://")}
    silent = f"times within {EARLY_S:.0f} s of accepting it, giving no reason"
    expected = "MQTT 5 reason 0x8E" if told else silent
    assert all(expected in e["why"] for e in errors), errors
    assert all(e["retry_in_s"] >= 1 for e in errors)  # backs off, not straight back
    assert (front.taken_over > 0) == told
    assert len(errors) == first.statistics().takeovers + second.statistics().takeovers
    births = [read_birth(s) for s in seen.status if s["online"]]
    assert births[-1].takeover is not None
    assert births[-1].takeover.count == second.statistics().takeovers
    assert births[0].takeover is None


def test_a_sparkplug_node_birth_carries_the_takeovers_once_there_are_any() -> None:
    def metrics(takeovers: int) -> dict[str, int | bool]:
        birth = node_birth(3, 1_000, takeovers)
        return {m.name: getattr(m, m.WhichOneof("value")) for m in birth.metrics}

    assert metrics(0) == {"bdSeq": 3, "Node Control/Rebirth": False}
    assert metrics(2) == {"bdSeq": 3, "Node Control/Rebirth": False, TAKEOVERS: 2}


async def status_text(agent: Agent) -> tuple[str, dict[str, Any]]:
    """What `edge-agent status` prints, and its --json, asked over the agent's socket."""
    payload = json.dumps({"id": "t", "command": "status", "args": {}}).encode()
    result = json.loads(await request(socket_path(agent.config), payload, 10))["result"]
    printed = StringIO()
    cli_local._print_status(result, datetime.now(UTC), Console(file=printed, width=300, markup=False))
    return printed.getvalue(), result


@pytest.mark.integration
async def test_two_agents_with_one_id_show_it_in_status(broker: Broker, tmp_path: Path) -> None:
    def config(name: str) -> AgentConfig:
        (tmp_path / name).mkdir()
        return AgentConfig.model_validate(
            {
                "gateway": {"id": GATEWAY},
                "buffer": {"path": str(tmp_path / name / "b.db")},
                "mqtt": {"url": broker.url},
                "log": {"level": "warning"},
            }
        )

    async with running_agent(config("a")) as first, running_agent(config("b")) as second:
        await async_wait_until(
            lambda: first.uplink.statistics().taken_over and second.uplink.statistics().taken_over,
            60,
            "both agents to say they are taken over",
        )
        for agent in (first, second):
            text, result = await status_text(agent)
            assert (
                f"gateway {GATEWAY}: hazards:\n  uplink: another client with gateway id '{GATEWAY}'" in text
            )
            assert result["uplink"]["taken_over"] is True
            assert result["uplink"]["takeovers"] >= 1
