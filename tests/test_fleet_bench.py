"""The fleet bench (bench/fleet, issue 21): its judge, and the broker features it checks on a real NATS
cluster (slow: it starts three nats-server nodes, so it runs only with --run-slow)."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest
from bench.fleet.cluster import NatsCluster, wait_ready
from bench.fleet.features import check_features
from bench.fleet.gateways import Final, Sample
from bench.fleet.receiver import Counts, Subscriber
from bench.fleet.report import Loss, Window, loss, recovery, table

T = 1_000_000.0  # a wall-clock second, for the samples


def _final(gateway: str, last_seq: int) -> Final:
    return Final(gateway, last_seq, dropped=0, depth=0, connects=1, published=last_seq)


def _counts(node: str, seen: dict[str, list[int]]) -> Counts:
    counts = Counts(node)
    for gateway, seqs in seen.items():
        counts.add(gateway, seqs)
    return counts


def test_a_reading_no_subscriber_received_is_lost_and_its_gateway_named() -> None:
    finals = [_final("gw-001", 6), _final("gw-002", 3)]
    central = [
        _counts("n1", {"gw-001": [1, 2, 3], "gw-002": [1, 2, 3, 3]}),
        _counts("n2", {"gw-001": [3, 6]}),  # 4 and 5 reached nobody
    ]
    result = loss(finals, central)
    assert result.lost == {"gw-001": [4, 5]}
    assert (result.sent, result.received) == (9, 7)
    printed = table("a broker", [], 2, 1.0, result, central, [], {}, 60.0)
    assert "gw-001: 2 lost, seq 4-5" in printed
    assert "lost                             2  in 1 of 2 gateways" in printed
    assert "central on n1: 6 distinct, 1 duplicated" in printed


def test_central_counts_the_seqs_of_a_batch_in_either_format() -> None:
    subscriber = Subscriber("n1", 0, "edge")
    consecutive = b'{"bdSeq": 1, "seq": 4, "last": 6, "seqs": null, "r": [[0, 0, 1], [1, 0, 2], [0, 9, 1]]}'
    gap = b'{"bdSeq": 2, "seq": 1, "last": 3, "seqs": [1, 3], "r": [[0, 0, 1.0], [0, 5, 1.0]]}'
    for compact in (consecutive, gap):
        subscriber._take("edge/gw-001/readings", compact, retained=False)
    subscriber._take("edge/gw-002/readings", b'{"readings": [{"seq": 2}, {"seq": 3}]}', retained=False)
    assert list(subscriber.counts.seqs["gw-001"]) == [0, 1, 0, 1, 1, 1, 1]
    assert list(subscriber.counts.seqs["gw-002"]) == [0, 0, 1, 1]


def _history(gateway: str, states: list[tuple[float, bool, int, float | None]]) -> list[Sample]:
    """(seconds, connected, connects, oldest reading's age) -> samples."""
    return [Sample(gateway, T + at, up, n, "", 0, age, 0) for at, up, n, age in states]


def test_reconnect_and_drain_count_from_the_restore_and_attempts_per_second() -> None:
    lost = [(0, True, 1, 0.5), (11, False, 1, 1.0)]
    samples = {
        "gw-001": _history("gw-001", [*lost, (72, True, 2, 60.0), (75, True, 2, 1.0)]),  # back, drained
        "gw-002": _history("gw-002", [*lost, (74, True, 2, 50.0), (78, True, 2, 0.2)]),
        "gw-003": _history("gw-003", [(0, True, 1, 0.5), (20, True, 1, 0.5)]),  # never lost its session
    }
    attempts = [T + 10.1] * 3 + [T + 71.5, T + 73.2]  # three in one second: over a third of three gateways
    deaths = [(T + 10.5, "gw-001"), (T + 10.6, "gw-001"), (T + 10.6, "gw-002")]  # gw-001's from two nodes
    outage = recovery("outage", samples, Window(T + 10, T + 70, T + 100, "the restore"), attempts, deaths, 3)
    assert (outage.affected, outage.reconnected, outage.drained) == (2, 2, 2)
    assert outage.reconnect_s == pytest.approx(4.0)
    assert outage.drain_s == pytest.approx(8.0)
    assert (outage.attempts, outage.peak_attempts, outage.busy_seconds, outage.deaths) == (5, 3, 1, 2)
    assert (outage.peak_down, outage.peak_back) == (3, 1)
    printed = table("a broker", [], 3, 1.0, Loss(0, 0, {}, 0), [], [outage], {}, 60.0)
    assert (
        "in one second at most 3 (100% of the fleet) while down, 1 (33% of the fleet) after the restore"
        in printed
    )


def test_a_gateway_that_never_comes_back_leaves_no_time() -> None:
    samples = {
        "gw-001": _history("gw-001", [(0, True, 1, 0.5), (11, False, 1, 1.0), (72, True, 2, 0.5)]),
        "gw-002": _history("gw-002", [(0, True, 1, 0.5), (11, False, 1, 1.0), (90, False, 1, 80.0)]),
    }
    outage = recovery("outage", samples, Window(T + 10, T + 70, T + 100, "the restore"), [], [], 2)
    assert (outage.affected, outage.reconnected) == (2, 1)
    assert outage.reconnect_s is None
    printed = table("a broker", [], 2, 1.0, Loss(0, 0, {}, 0), [], [outage], {}, 60.0)
    assert "reconnected: 1 of 2, not all by the next event" in printed


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.skipif(shutil.which("nats-server") is None, reason="nats-server is not installed")
def test_a_nats_cluster_has_what_the_uplink_uses(tmp_path: Path) -> None:
    cluster = NatsCluster(tmp_path)

    async def features() -> dict[str, bool]:
        await asyncio.gather(*(wait_ready(p.mqtt) for p in cluster.ports))
        return {f.name: f.works for f in await check_features(cluster)}

    cluster.start()
    try:
        works = asyncio.run(features())
    finally:
        cluster.stop()
    assert works == dict.fromkeys(works, True)
    assert len(works) == 5
