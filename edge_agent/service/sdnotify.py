"""Telling systemd how the agent is doing (sd_notify), with no library, and the loops' heartbeats.

The protocol: a Type=notify service finds the path of an AF_UNIX datagram socket in $NOTIFY_SOCKET (a leading
'@' names a socket in the abstract namespace, i.e. a leading NUL byte) and sends it datagrams of
newline-separated KEY=VALUE lines:

    READY=1       start-up is finished: systemd considers the unit started only now
    STATUS=text   one line that `systemctl status` shows
    WATCHDOG=1    alive; with WatchdogSec= systemd sets $WATCHDOG_USEC and aborts the service when this stays
                  away that long, so it is sent every half interval, and only while every loop is healthy
    STOPPING=1    an orderly stop has begun
    RELOADING=1   the service reloads (here: executes itself again, same pid); READY=1 ends the reload.
                  MONOTONIC_USEC= (CLOCK_MONOTONIC) goes with it, as Type=notify-reload requires

$WATCHDOG_PID, when set, is the process the watchdog is meant for. Outside systemd every call does nothing.
A send never blocks and never raises: the first failure is logged, later ones are not.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Callable, Iterator, Mapping

import structlog

log = structlog.get_logger("edge_agent.sdnotify")


class Notifier:
    def __init__(self, address: str | bytes | None, watchdog_usec: int | None = None) -> None:
        self._address = address
        self._failed = False
        self.watchdog_interval_s: float | None = None
        """How often to send WATCHDOG=1 (half of WatchdogSec=); None without a watchdog."""
        if address is not None and watchdog_usec:
            self.watchdog_interval_s = watchdog_usec / 2_000_000

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        env = os.environ if environ is None else environ
        path = env.get("NOTIFY_SOCKET", "")
        address: str | bytes | None = None
        if path.startswith("@"):
            address = b"\0" + path[1:].encode()
        elif path.startswith("/"):
            address = path
        usec, pid = env.get("WATCHDOG_USEC", ""), env.get("WATCHDOG_PID", "")
        ours = not pid or pid == str(os.getpid())
        return cls(address, int(usec) if usec.isdigit() and ours else None)

    def ready(self, status: str | None = None) -> bool:
        return self._send("READY=1", status)

    def watchdog(self) -> bool:
        return self._send("WATCHDOG=1")

    def stopping(self, status: str | None = None) -> bool:
        return self._send("STOPPING=1", status)

    def reloading(self, status: str | None = None) -> bool:
        return self._send(f"RELOADING=1\nMONOTONIC_USEC={time.monotonic_ns() // 1000}", status)

    def status(self, text: str) -> bool:
        return self._send(None, text)

    def _send(self, state: str | None, status: str | None = None) -> bool:
        """True when the datagram went out."""
        if self._address is None:
            return False
        lines = [state] if state else []
        if status is not None:
            lines.append("STATUS=" + " ".join(status.splitlines()))  # one line: a newline ends the value
        try:  # a socket per message, as libsystemd does: nothing to keep open or to close
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.setblocking(False)
                sock.sendto("\n".join(lines).encode(), self._address)
        except OSError as exc:
            if not self._failed:
                self._failed = True
                log.warning("sd_notify failed", error=str(exc), socket=repr(self._address))
            return False
        return True


class Heartbeats:
    """When each of the agent's loops last showed signs of life: healthy only while every one did recently.

    Two kinds: a loop that beats (`register`, `beat`), overdue when it has not beaten for its max age; and a
    worker that waits for work (`register_work`, `working`), overdue only while one piece of work has taken
    longer than its max age (a disk that hangs), not while it is idle."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._max_age: dict[str, float] = {}
        self._last: dict[str, float] = {}
        self._work_max_age: dict[str, float] = {}
        self._busy_since: dict[str, float] = {}

    def register(self, name: str, max_age_s: float) -> None:
        """A loop that must beat at least every max_age_s seconds; it counts as having beaten now."""
        self._max_age[name] = max_age_s
        self._last[name] = self._clock()

    def unregister(self, name: str) -> None:
        """A loop that ended on purpose."""
        self._max_age.pop(name, None)
        self._last.pop(name, None)

    def beat(self, name: str) -> None:
        if name not in self._max_age:
            raise KeyError(f"heartbeat from unregistered loop {name!r}")
        self._last[name] = self._clock()

    def register_work(self, name: str, max_age_s: float) -> None:
        """A worker whose every piece of work must end within max_age_s seconds."""
        self._work_max_age[name] = max_age_s

    @contextlib.contextmanager
    def working(self, name: str) -> Iterator[None]:
        """Around one piece of work of a registered worker."""
        if name not in self._work_max_age:
            raise KeyError(f"work from unregistered worker {name!r}")
        self._busy_since[name] = self._clock()
        try:
            yield
        finally:
            del self._busy_since[name]

    def overdue(self, now: float | None = None) -> list[str]:
        """The loops that have not beaten within their allowed age, and the workers stuck in their work."""
        at = self._clock() if now is None else now
        late = [name for name, age in self._max_age.items() if at - self._last[name] > age]
        late += [name for name, since in self._busy_since.items() if at - since > self._work_max_age[name]]
        return sorted(late)

    def healthy(self, now: float | None = None) -> bool:
        return not self.overdue(now)


async def keep_alive(notifier: Notifier, heartbeats: Heartbeats) -> None:
    """Send WATCHDOG=1 every half watchdog interval while every loop is healthy; withhold it otherwise, so
    systemd restarts an agent whose loop is stuck. Returns at once without a watchdog."""
    interval = notifier.watchdog_interval_s
    if interval is None:
        return
    withheld: list[str] = []
    while True:
        overdue = heartbeats.overdue()
        if overdue and overdue != withheld:
            log.error("watchdog withheld", overdue=overdue)
        elif withheld and not overdue:
            log.info("watchdog resumed")
        withheld = overdue
        if not overdue:
            notifier.watchdog()
        await asyncio.sleep(interval)
