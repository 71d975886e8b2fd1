"""One attack's set-up: a broker, the independent observer, the logging load device, the agent; and the
accounting at its end (drain, stop, what is still buffered, the ledger's verdict)."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.faults.commands import CommandFormat
from bench.faults.observer import Expected, Observer
from bench.faults.parts import (
    GATEWAY,
    AgentProcess,
    Broker,
    ModbusDevice,
    agent_config,
    modbus_device,
    wait_for,
)
from bench.faults.table import Row
from edge_agent import signing

DRAIN_S = 60  # the most a final run waits for the sequence to close


@dataclass
class Rig:
    workdir: Path
    broker: Broker
    observer: Observer
    load: ModbusDevice
    agent: AgentProcess
    buffer: Path
    room_port: int | None
    commands: CommandFormat

    def configure(
        self, extra_modbus: tuple[ModbusDevice, ...] = (), interval_s: float = 0.2, protocol: str = "auto"
    ) -> None:
        """Write the agent's configuration again with other options (see parts.agent_config); it trusts
        the key the bench signs commands with, if any."""
        self.agent.config = agent_config(
            self.workdir, self.broker.url, self.buffer, self.load,
            room_port=self.room_port, extra_modbus=extra_modbus, interval_s=interval_s,
            trusted_key=trusted(self.commands), protocol=protocol,
        )  # fmt: skip

    def new_readings(self, timeout_s: float = 30) -> float | None:
        """Seconds until a reading not seen before this call arrives (None: none within the time)."""
        start = time.monotonic()
        if wait_for(lambda: self.observer.ledger.new_since(start) is not None, timeout_s):
            return self.observer.ledger.new_since(start)
        return None

    def recovery(self, since: float, beyond: int = 0, timeout_s: float = 30) -> float | None:
        """Seconds from `since` (the fault removed) to the first new reading above seq `beyond`."""
        wait_for(lambda: self.observer.ledger.new_since(since, beyond) is not None, timeout_s)
        return self.observer.ledger.new_since(since, beyond)

    def assigned(self) -> int:
        """The highest seq the buffer file says was ever issued (read while the agent is down)."""
        try:
            with contextlib.closing(sqlite3.connect(f"file:{self.buffer}?mode=ro", uri=True, timeout=5)) as c:
                row = c.execute("SELECT seq FROM sqlite_sequence WHERE name = 'readings'").fetchone()
        except sqlite3.DatabaseError:
            return 0
        return int(row[0]) if row else 0

    def pending(self) -> set[int]:
        """Seqs still in the buffer file, read with sqlite3 once the agent has stopped."""
        return buffered_seqs(self.buffer)

    def finish(self, row: Row, excused: set[int] | None = None, expected: Expected | None = None) -> None:
        """A last run until the sequence has no gap (bounded), a clean stop, then the ledger's verdict."""
        if self.broker.process is None:
            self.broker.start()
        self.broker.resume()
        self.agent.check()
        if not self.agent.alive():
            self.agent.start()
        ledger = self.observer.ledger
        wait_for(lambda: not (ledger.missing() - (excused or set())), DRAIN_S, 0.2)
        code = self.agent.stop()
        if code not in (0, None):
            row.crashes += 1
            row.note(f"stop exited {code}")
        time.sleep(1)  # the last acknowledged batches reach the observer
        pending = self.pending()
        lost = ledger.lost(pending, excused, expected)
        row.lost += lost
        if expected and lost > ledger.lost(pending, excused):
            row.note(
                f"{lost - ledger.lost(pending, excused)} readings read in the old buffer never delivered"
            )
        row.duplicated += ledger.duplicated
        row.crashes += self.agent.crashes
        if self.agent.exits:
            row.note(f"exit codes {sorted(set(self.agent.exits))}")
        if ledger.collisions:
            row.note(f"{ledger.collisions} new readings reused a seq already delivered")
        if ledger.dropped_reported:
            row.note(f"{ledger.dropped_reported} reported dropped")


def trusted(commands: CommandFormat) -> str | None:
    """The public key the agent must trust for the bench's commands (None: they are unsigned)."""
    return signing.public_key_text(commands.key) if commands.key is not None else None


def buffered_seqs(buffer: Path, device: str | None = None) -> set[int]:
    """Seqs in the buffer file (of one device's readings when given), read with sqlite3."""
    if not buffer.exists():
        return set()
    query, args = "SELECT seq FROM readings", ()
    if device is not None:
        query, args = query + " WHERE device = ?", (device,)  # type: ignore[assignment]
    try:
        with contextlib.closing(sqlite3.connect(f"file:{buffer}?mode=ro", uri=True, timeout=5)) as conn:
            return {int(r[0]) for r in conn.execute(query, args)}
    except sqlite3.DatabaseError:
        return set()


@contextlib.contextmanager
def rig(workdir: Path, name: str, room_port: int | None, buffer: Path | None = None) -> Iterator[Rig]:
    """A fresh broker, observer, load device and (not yet started) agent for one attack."""
    workdir = workdir / name
    workdir.mkdir(parents=True)
    broker = Broker(workdir / "broker")
    broker.start()
    try:
        observer = Observer(broker.port, GATEWAY, client_id=f"observer-{name}")
        try:
            with modbus_device("load", workdir) as load:
                buffer = buffer or workdir / "buffer.db"
                commands = CommandFormat(f"edge/{GATEWAY}/command")
                config = agent_config(
                    workdir, broker.url, buffer, load, room_port=room_port, trusted_key=trusted(commands)
                )
                agent = AgentProcess(config, workdir / "agent.log")
                try:
                    yield Rig(workdir, broker, observer, load, agent, buffer, room_port, commands)
                finally:
                    if agent.process is not None:
                        agent.stop()
        finally:
            observer.close()
    finally:
        broker.stop()
