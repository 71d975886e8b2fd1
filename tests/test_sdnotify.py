"""The notify protocol against systemd's side played by a real AF_UNIX datagram socket."""

from __future__ import annotations

import asyncio
import os
import socket
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from edge_agent.service.sdnotify import Heartbeats, Notifier, keep_alive

RECV_TIMEOUT_S = 2.0


@pytest.fixture
def systemd_socket() -> Iterator[tuple[socket.socket, str]]:
    """A bound datagram socket in a short temporary directory (AF_UNIX paths are limited to 107 bytes)."""
    with tempfile.TemporaryDirectory(prefix="sdn") as directory:
        path = str(Path(directory) / "notify")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.bind(path)
            sock.settimeout(RECV_TIMEOUT_S)
            yield sock, path


def received(sock: socket.socket) -> str:
    return sock.recv(4096).decode()


@pytest.mark.integration
def test_ready_status_watchdog_stopping_arrive_as_systemd_reads_them(
    systemd_socket: tuple[socket.socket, str],
) -> None:
    sock, path = systemd_socket
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "30000000"})

    assert notifier.watchdog_interval_s == 15.0
    assert notifier.ready("polling 10 devices")
    assert received(sock) == "READY=1\nSTATUS=polling 10 devices"
    assert notifier.watchdog()
    assert received(sock) == "WATCHDOG=1"
    assert notifier.status("uplink down\nbuffering")
    assert received(sock) == "STATUS=uplink down buffering"  # a newline would end the value early
    assert notifier.stopping()
    assert received(sock) == "STOPPING=1"


@pytest.mark.integration
def test_abstract_namespace_socket() -> None:
    name = f"edge-agent-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        sock.settimeout(RECV_TIMEOUT_S)
        notifier = Notifier.from_environment({"NOTIFY_SOCKET": "@" + name})
        assert notifier.ready()
        assert received(sock) == "READY=1"


def test_without_notify_socket_nothing_is_sent_and_nothing_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    notifier = Notifier.from_environment()

    with capture_logs() as logs:
        assert not notifier.ready()
        assert not notifier.watchdog()
        assert not notifier.stopping()
    assert notifier.watchdog_interval_s is None
    assert logs == []


@pytest.mark.integration
def test_watchdog_meant_for_another_process_is_ignored(systemd_socket: tuple[socket.socket, str]) -> None:
    _, path = systemd_socket
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "30000000"}
    assert Notifier.from_environment({**env, "WATCHDOG_PID": str(os.getpid())}).watchdog_interval_s == 15.0
    assert (
        Notifier.from_environment({**env, "WATCHDOG_PID": str(os.getpid() + 1)}).watchdog_interval_s is None
    )


@pytest.mark.integration
def test_a_stalled_or_missing_systemd_neither_blocks_nor_raises_and_is_logged_once(
    systemd_socket: tuple[socket.socket, str],
) -> None:
    _, path = systemd_socket  # bound but never read: its queue fills up
    stalled = Notifier.from_environment({"NOTIFY_SOCKET": path})
    missing = Notifier.from_environment({"NOTIFY_SOCKET": path + "-gone"})

    with capture_logs() as logs:
        sent = [stalled.watchdog() for _ in range(1000)]
        assert not any(missing.ready() for _ in range(3))

    assert sent[0]
    assert not sent[-1]  # would have blocked: the datagram is dropped instead
    failures = [entry for entry in logs if entry["event"] == "sd_notify failed"]
    assert len(failures) == 2  # one per notifier
    assert {entry["log_level"] for entry in failures} == {"warning"}


def test_heartbeats_turn_unhealthy_when_one_loop_stops_beating() -> None:
    now = [100.0]
    beats = Heartbeats(clock=lambda: now[0])
    beats.register("poll:meter-1", max_age_s=10.0)
    beats.register("uplink", max_age_s=30.0)
    assert beats.healthy()

    for _ in range(5):  # the uplink keeps beating, the poller went quiet at 100
        now[0] += 5.0
        beats.beat("uplink")
    assert not beats.healthy()
    assert beats.overdue() == ["poll:meter-1"]
    assert beats.healthy(now=105.0)  # an explicit time is judged as such

    beats.beat("poll:meter-1")
    assert beats.healthy()
    beats.unregister("poll:meter-1")  # stopped on purpose: no longer expected to beat
    now[0] += 20.0
    assert beats.healthy()
    with pytest.raises(KeyError, match="poll:meter-1"):
        beats.beat("poll:meter-1")


@pytest.mark.integration
async def test_keep_alive_withholds_the_watchdog_while_a_loop_is_stuck(
    systemd_socket: tuple[socket.socket, str],
) -> None:
    sock, path = systemd_socket
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "20000"})  # every 10 ms
    now = [0.0]
    stuck_seen = asyncio.Event()  # keep_alive has looked at the heartbeats since the loop got stuck

    def clock() -> float:
        if now[0] >= 5.0:
            stuck_seen.set()
        return now[0]

    beats = Heartbeats(clock=clock)
    beats.register("poll", max_age_s=1.0)

    async def next_message(timeout_s: float) -> str:
        async with asyncio.timeout(timeout_s):
            return (await loop.sock_recv(sock, 4096)).decode()

    with capture_logs() as logs:
        task = asyncio.create_task(keep_alive(notifier, beats))
        assert await next_message(RECV_TIMEOUT_S) == "WATCHDOG=1"
        assert await next_message(RECV_TIMEOUT_S) == "WATCHDOG=1"

        now[0] = 5.0  # the poll loop is stuck
        async with asyncio.timeout(RECV_TIMEOUT_S):
            await stuck_seen.wait()
        while True:  # drain what was sent before it was noticed
            try:
                sock.recv(4096)
            except BlockingIOError:
                break
        with pytest.raises(TimeoutError):
            await next_message(0.2)

        beats.beat("poll")
        assert await next_message(RECV_TIMEOUT_S) == "WATCHDOG=1"
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    events = [(entry["event"], entry.get("overdue")) for entry in logs]
    assert events == [("watchdog withheld", ["poll"]), ("watchdog resumed", None)]


@pytest.mark.integration
async def test_keep_alive_returns_at_once_without_a_watchdog(
    systemd_socket: tuple[socket.socket, str],
) -> None:
    _, path = systemd_socket
    async with asyncio.timeout(RECV_TIMEOUT_S):
        await keep_alive(Notifier.from_environment({"NOTIFY_SOCKET": path}), Heartbeats())


def test_a_worker_is_overdue_only_while_stuck_in_its_work() -> None:
    now = [0.0]
    beats = Heartbeats(clock=lambda: now[0])
    beats.register_work("buffer writer", max_age_s=60)
    now[0] = 1000.0  # idle for long: fine
    assert beats.healthy()
    with beats.working("buffer writer"):
        now[0] += 59
        assert beats.healthy()
        now[0] += 2  # one commit for 61 s: stuck
        assert beats.overdue() == ["buffer writer"]
    assert beats.healthy()  # it returned
