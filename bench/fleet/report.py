"""The fleet bench's figures, from what the workers sampled, what the link proxies timed and what central's
subscribers counted; and the table that prints them."""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass

from bench.fleet.features import Feature
from bench.fleet.gateways import Final, Sample
from bench.fleet.receiver import Counts

DRAINED_AGE_S = 3.0  # a backlog is drained when no reading waits longer than this (live data: ~1 tick)


@dataclass(frozen=True)
class Timeline:
    """When each event happens, in seconds after the fleet's start."""

    kill: float
    restart: float
    cut: float
    restore: float
    end: float  # the meters stop


@dataclass(frozen=True)
class Window:
    """An event's window (wall clock): from `start` (the loss) to `until` (the next event); `back` is when
    the broker or the links came back, which the times count from."""

    start: float
    back: float
    until: float
    since: str  # what `back` is, in words


@dataclass(frozen=True)
class Recovery:
    """One event, seen from the gateways."""

    name: str
    affected: int  # gateways that lost their session
    reconnected: int
    reconnect_s: float | None  # until the last of them had a session again, after `since` (None: not all)
    drained: int
    drain_s: float | None  # until the last had no reading waiting over DRAINED_AGE_S (None: not all)
    since: str  # what the times count from
    peak_attempts: int  # the most connection attempts in one second, in this event's window
    peak_at: float  # ... in that second (seconds after `back`)
    peak_down: int  # the most in one second before `back` (while the links were down)
    peak_back: int  # the most in one second from `back` on
    peak_connects: int  # the most sessions established in one second, in this event's window
    busy_seconds: int  # seconds in the window with more than a third of the fleet attempting
    attempts: int  # connection attempts in the window
    deaths: int  # gateways whose Last Will (a death) central received in the window


@dataclass(frozen=True)
class Loss:
    sent: int  # readings buffered (seq 1..last_seq of every gateway)
    received: int  # distinct readings central received (any subscriber)
    lost: dict[str, list[int]]  # gateway -> seqs no subscriber received
    dropped: int  # readings the gateways' buffers dropped (cap, disk): counted, not lost unseen


def recovery(  # noqa: PLR0917 - an event and what was measured around it
    name: str,
    samples: dict[str, list[Sample]],
    window: Window,
    attempts: list[float],
    deaths: list[tuple[float, str]],
    fleet: int,
) -> Recovery:
    """Gateways that were connected at the window's start and lost their session in it; how long after
    `back` each had a session again and its backlog sent; the connection attempts in the window."""
    reconnect_at: list[float] = []
    drained_at: list[float] = []
    connects_at: list[float] = []
    affected = 0
    for history in samples.values():
        before = [s for s in history if s.at <= window.start]
        during = [s for s in history if window.start < s.at < window.until]
        connects_at += [b.at for a, b in itertools.pairwise(during) if b.connects > a.connects]
        if not before or not during or not before[-1].connected:
            continue
        connects = before[-1].connects
        lost = next((s for s in during if not s.connected or s.connects > connects), None)
        if lost is None:
            continue
        affected += 1
        again = next((s for s in during if s.at >= lost.at and s.connected and s.connects > connects), None)
        if again is None:
            continue
        reconnect_at.append(again.at)
        drained = next((s for s in during if s.at >= again.at and _drained(s)), None)
        if drained is not None:
            drained_at.append(drained.at)
    per_second = Counter(int(t) for t in attempts if window.start <= t < window.until)
    peak_second, peak = max(per_second.items(), key=lambda item: item[1], default=(window.back, 0))
    return Recovery(
        name,
        affected,
        len(reconnect_at),
        max(reconnect_at) - window.back if reconnect_at and len(reconnect_at) == affected else None,
        len(drained_at),
        max(drained_at) - window.back if drained_at and len(drained_at) == affected else None,
        window.since,
        peak,
        peak_second - window.back,
        max((n for second, n in per_second.items() if second < int(window.back)), default=0),
        max((n for second, n in per_second.items() if second >= int(window.back)), default=0),
        max(Counter(int(t) for t in connects_at).values(), default=0),
        sum(1 for n in per_second.values() if n * 3 > fleet),
        sum(per_second.values()),
        len({gateway for t, gateway in deaths if window.start <= t < window.until}),
    )


def _drained(sample: Sample) -> bool:
    return sample.oldest_age_s is None or sample.oldest_age_s < DRAINED_AGE_S


def loss(finals: list[Final], counts: list[Counts]) -> Loss:
    lost: dict[str, list[int]] = {}
    received = 0
    for final in finals:
        seen = [c.seqs.get(final.gateway, bytearray()) for c in counts]
        missing = [
            seq for seq in range(1, final.last_seq + 1) if not any(seq < len(s) and s[seq] for s in seen)
        ]
        received += final.last_seq - len(missing)
        if missing:
            lost[final.gateway] = missing
    return Loss(sum(f.last_seq for f in finals), received, lost, sum(f.dropped for f in finals))


def ranges(seqs: list[int]) -> str:
    """1,2,3,7 -> '1-3, 7' (the first few)."""
    parts: list[str] = []
    start = prev = seqs[0]
    for seq in [*seqs[1:], None]:
        if seq is not None and seq == prev + 1:
            prev = seq
            continue
        parts.append(f"{start}-{prev}" if prev > start else str(start))
        if seq is not None:
            start = prev = seq
    return ", ".join(parts[:5]) + (f" (+{len(parts) - 5} more)" if len(parts) > 5 else "")


def _share(count: int, fleet: int) -> str:
    return f"{count} ({count / fleet:.0%} of the fleet)" if fleet else str(count)


def _s(value: float | None, since: str) -> str:
    return "not all by the next event" if value is None else f"all {value:.1f} s after {since}"


def table(  # noqa: PLR0917 - every figure of the run
    broker: str,
    features: list[Feature],
    fleet: int,
    minutes: float,
    result: Loss,
    counts: list[Counts],
    recoveries: list[Recovery],
    cpu: dict[str, float],
    seconds: float,
) -> str:
    lines = [f"Fleet bench: {fleet} gateways on {broker}, {minutes:.1f} min of readings", ""]
    lines.append("Broker features the uplink uses:")
    lines += [f"  {'yes' if f.works else 'NO '}  {f.name}: {f.detail}" for f in features]
    lines += ["", "Readings:"]
    lines.append(f"  sent (buffered)         {result.sent:>10,}")
    lines.append(f"  received (distinct)     {result.received:>10,}")
    lost = sum(len(v) for v in result.lost.values())
    lines.append(f"  lost                    {lost:>10,}  in {len(result.lost)} of {fleet} gateways")
    lines.append(f"  dropped by the buffers  {result.dropped:>10,}")
    for gateway, seqs in sorted(result.lost.items()):
        lines.append(f"    {gateway}: {len(seqs)} lost, seq {ranges(seqs)}")
    for c in counts:
        distinct = sum(1 for s in c.seqs.values() for n in s if n)
        lines.append(
            f"  central on {c.node}: {distinct:,} distinct, {c.duplicates():,} duplicated; "
            f"{c.sessions} sessions, {c.resumed} resumed with the broker's session"
        )
    lines += ["", "Events:"]
    for r in recoveries:
        lines.append(f"  {r.name}: {r.affected} gateways lost their session")
        lines.append(
            f"    reconnected: {r.reconnected} of {r.affected}, {_s(r.reconnect_s, r.since)}; "
            f"backlog drained: {r.drained} of {r.affected}, {_s(r.drain_s, r.since)}"
        )
        down = f"{_share(r.peak_down, fleet)} while down, " if r.peak_down else ""
        lines.append(
            f"    connection attempts: {r.attempts}; in one second at most {down}"
            f"{_share(r.peak_back, fleet)} after {r.since} (the peak {r.peak_at:+.0f} s after it); "
            f"seconds with over a third of the fleet attempting: {r.busy_seconds}"
        )
        lines.append(
            f"    sessions established in one second: at most {_share(r.peak_connects, fleet)}; "
            f"gateways whose Last Will central received: {r.deaths}"
        )
    lines += ["", f"CPU over {seconds:.0f} s (seconds; share of one core):"]
    lines += [f"  {name:<24}{used:>8.1f}  {used / seconds:>6.1%}" for name, used in cpu.items()]
    return "\n".join(lines)
