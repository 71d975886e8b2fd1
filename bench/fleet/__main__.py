"""Runs the fleet bench (see bench/fleet/__init__.py)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import queue
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from multiprocessing.context import SpawnProcess
from pathlib import Path
from typing import Any

from bench.fleet.cluster import NatsCluster, wait_ready
from bench.fleet.features import Feature, check_features
from bench.fleet.gateways import TOPIC_PREFIX, Final, Sample, WorkerSpec, run_worker
from bench.fleet.proxy import LinkProxy
from bench.fleet.receiver import Subscriber
from bench.fleet.report import Timeline, Window, loss, recovery, table

KILLED = 1  # the node killed: n2
DRAIN_TIMEOUT_S = 300.0  # after the meters stop, how long the bench waits for every buffer to empty


def timeline(minutes: float, fast: bool, outage_s: float) -> Timeline:
    if fast:
        return Timeline(kill=30, restart=55, cut=85, restore=85 + outage_s, end=max(150, 85 + outage_s + 40))
    restore = 240 + outage_s
    return Timeline(kill=90, restart=150, cut=240, restore=restore, end=max(minutes * 60, restore + 60))


class Collector:
    """Takes the workers' reports off their queue, in a thread of its own."""

    def __init__(self, reports: multiprocessing.Queue[Any]) -> None:
        self.samples: dict[str, list[Sample]] = {}
        self.latest: dict[str, Sample] = {}
        self.finals: list[Final] = []
        self.cpu_s = 0.0
        self.workers_done = 0
        self._reports = reports
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                report = self._reports.get(timeout=0.2)
            except queue.Empty:
                continue
            if report[0] == "samples":
                for sample in report[1]:
                    self.samples.setdefault(sample.gateway, []).append(sample)
                    self.latest[sample.gateway] = sample
            else:
                self.cpu_s += report[2]
                self.finals += report[3]
                self.workers_done += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _gateways(count: int, workers: int, urls: list[str]) -> Iterator[list[tuple[str, list[str]]]]:
    """Gateway ids and their broker lists (each starting at its home node, in turn), dealt to workers."""
    fleet = [(f"gw-{n:03d}", urls[n % len(urls) :] + urls[: n % len(urls)]) for n in range(count)]
    for w in range(workers):
        yield fleet[w::workers]


class FleetRun:
    """One run: the cluster, the links, central, the workers; the scenario; the figures."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.plan = timeline(args.minutes, args.fast, args.outage)
        self.workdir = Path(tempfile.mkdtemp(prefix="fleet-bench-"))
        self.cluster = NatsCluster(self.workdir)
        self.proxies = [LinkProxy(port.mqtt) for port in self.cluster.ports]
        self.subscribers = [
            Subscriber(self.cluster.name(i), p.mqtt, TOPIC_PREFIX) for i, p in enumerate(self.cluster.ports)
        ]
        self.context = multiprocessing.get_context("spawn")
        self.reports: multiprocessing.Queue[Any] = self.context.Queue()
        self.stop_meters, self.finish = self.context.Event(), self.context.Event()
        self.processes: list[SpawnProcess] = []
        self.background: list[asyncio.Task[None]] = []
        self.collector = Collector(self.reports)
        self.features: list[Feature] = []
        self.t0 = 0.0

    async def start(self) -> None:
        self.cluster.start()
        await asyncio.gather(*(wait_ready(p.mqtt) for p in self.cluster.ports))
        print(f"NATS cluster up in {self.workdir}; checking MQTT features", flush=True)
        self.features = await check_features(self.cluster)
        for proxy in self.proxies:
            await proxy.start()
        ready = [asyncio.Event() for _ in self.subscribers]
        self.background += [
            asyncio.create_task(s.run(e)) for s, e in zip(self.subscribers, ready, strict=True)
        ]
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in ready)), 60)
        args = self.args
        urls = [p.url for p in self.proxies]
        for index, gateways in enumerate(_gateways(args.gateways, args.workers, urls)):
            spec = WorkerSpec(index, gateways, self.workdir, args.points, args.tick, args.start_spread)
            process = self.context.Process(
                target=run_worker, args=(spec, self.reports, self.stop_meters, self.finish)
            )
            process.start()
            self.processes.append(process)
        self.t0 = time.time()
        self.background.append(asyncio.create_task(self._monitor()))
        print(f"{args.gateways} gateways in {args.workers} processes; {self.plan}", flush=True)

    def progress(self, note: str = "") -> None:
        latest = list(self.collector.latest.values())
        connected = sum(s.connected for s in latest)
        depth = sum(s.depth for s in latest)
        messages = max((s.counts.messages for s in self.subscribers), default=0)
        print(
            f"  t={time.time() - self.t0:6.0f} s  connected {connected:3d}/{len(latest)}  "
            f"buffered {depth:7,}  central messages {messages:,}  {note}",
            flush=True,
        )

    async def _monitor(self) -> None:
        while True:
            await asyncio.sleep(10)
            self.progress()

    async def _at(self, at: float) -> None:
        await asyncio.sleep(max(0.0, self.t0 + at - time.time()))

    async def scenario(self) -> None:
        plan, node = self.plan, self.cluster.name(KILLED)
        await self._at(plan.kill)
        self.cluster.kill(KILLED)
        self.progress(f"node {node} killed")
        await self._at(plan.restart)
        self.cluster.start(KILLED)
        self.progress(f"node {node} restarted")
        await self._at(plan.cut)
        for proxy in self.proxies:
            proxy.cut()
        self.progress("every link cut")
        await self._at(plan.restore)
        for proxy in self.proxies:
            proxy.restore()
        self.progress("every link restored")
        await self._at(plan.end)
        self.stop_meters.set()
        self.progress("meters stopped; waiting for every buffer to empty")

    async def wind_down(self) -> None:
        """Until every buffer is empty and central has every gateway's last reading; then the workers stop."""
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while not self._drained() and time.monotonic() < deadline:  # noqa: ASYNC110 - polled figures
            await asyncio.sleep(1)
        await asyncio.sleep(2)  # stragglers: duplicates in flight
        self.progress("done")
        self.finish.set()
        while self.collector.workers_done < len(self.processes) and time.monotonic() < deadline + 30:  # noqa: ASYNC110
            await asyncio.sleep(0.2)

    def _drained(self) -> bool:
        latest = list(self.collector.latest.values())
        if len(latest) < self.args.gateways or any(s.depth for s in latest):
            return False
        for sample in latest:  # central has every seq, on at least one subscriber
            seen = [sub.counts.seqs.get(sample.gateway, bytearray()) for sub in self.subscribers]
            if sample.last_seq and not any(len(s) > sample.last_seq and s[sample.last_seq] for s in seen):
                return False
        return True

    async def close(self) -> None:
        self.finish.set()
        for task in self.background:
            task.cancel()
        await asyncio.gather(*self.background, return_exceptions=True)
        for proxy in self.proxies:
            await proxy.close()
        for process in self.processes:
            process.join(30)
            if process.is_alive():
                process.kill()
        self.collector.stop()
        self.cluster.stop()
        if not self.args.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def figures(self, cpu: dict[str, float], elapsed: float) -> str:
        plan, t0, fleet = self.plan, self.t0, self.args.gateways
        attempts = sorted(t for proxy in self.proxies for t in proxy.attempts)
        deaths = [(t, g) for s in self.subscribers for g, times in s.counts.deaths.items() for t in times]
        if self.args.keep:  # for a closer look: every connection attempt, in seconds after the start
            (self.workdir / "attempts.json").write_text(json.dumps([round(t - t0, 3) for t in attempts]))
        events = [
            (f"node {self.cluster.name(KILLED)} killed at {plan.kill:.0f} s, "
             f"restarted at {plan.restart:.0f} s",
             plan.kill, plan.kill, plan.cut, "the kill"),
            (f"every link cut at {plan.cut:.0f} s for {plan.restore - plan.cut:.0f} s",
             plan.cut, plan.restore, plan.end, "the restore"),
        ]  # fmt: skip
        recoveries = [
            recovery(
                name,
                self.collector.samples,
                Window(t0 + start, t0 + back, t0 + until, since),
                attempts,
                deaths,
                fleet,
            )
            for name, start, back, until, since in events
        ]
        counts = [s.counts for s in self.subscribers]
        result = loss(self.collector.finals, counts)
        broker = "a 3-node NATS server cluster (JetStream, MQTT 3.1.1)"
        return table(broker, self.features, fleet, plan.end / 60, result, counts, recoveries, cpu, elapsed)


async def run(args: argparse.Namespace) -> str:
    fleet = FleetRun(args)
    try:
        await fleet.start()
        cpu0 = fleet.cluster.cpu_s(), os.times()
        await fleet.scenario()
        await fleet.wind_down()
        elapsed = time.time() - fleet.t0
        ours = os.times()
        cpu = {
            f"broker {fleet.cluster.name(i)}": after - before
            for i, (before, after) in enumerate(zip(cpu0[0], fleet.cluster.cpu_s(), strict=True))
        }
        cpu[f"gateways ({args.workers} processes)"] = fleet.collector.cpu_s
        cpu["bench (proxies, central)"] = ours.user + ours.system - cpu0[1].user - cpu0[1].system
    finally:
        await fleet.close()
    return fleet.figures(cpu, elapsed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.fleet", description=__doc__)
    parser.add_argument("--gateways", type=int, default=100)
    parser.add_argument("--workers", type=int, default=4, help="worker processes the gateways are dealt to")
    parser.add_argument("--minutes", type=float, default=8.0, help="readings for this long (at least 6)")
    parser.add_argument("--fast", action="store_true", help="a 2.5-minute run with a 30 s outage")
    parser.add_argument("--outage", type=float, help="seconds every link is cut (60; 30 with --fast)")
    parser.add_argument("--points", type=int, default=10, help="readings per gateway per tick")
    parser.add_argument("--tick", type=float, default=1.0, help="seconds between a gateway's readings")
    parser.add_argument("--start-spread", type=float, default=10.0, help="gateways start within this")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, buffers)")
    args = parser.parse_args(argv)
    if args.outage is None:
        args.outage = 30.0 if args.fast else 60.0
    with contextlib.suppress(KeyboardInterrupt):
        print(asyncio.run(run(args)))
        return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
