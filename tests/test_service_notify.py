"""`edge-agent run` under systemd's notify protocol, systemd's side played by a datagram socket: READY=1
comes after the first poll, WATCHDOG=1 keeps coming while healthy and stops while a loop is stuck, STOPPING=1
and exit 0 follow SIGTERM. (With BACnet writes to give back: tests/test_control_bacnet.py.)"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from edge_sim.devices.meters.sdm630 import Sdm630
from edge_sim.devices.modbus_servers import ModbusTcpMeterServer
from tests.support import LOOPBACK, agent_process, free_port, notify_socket

pytestmark = pytest.mark.integration


async def messages(sock: socket.socket, until: str, timeout_s: float) -> list[str]:
    """Datagrams from the agent, up to and including the first that contains `until`."""
    loop = asyncio.get_running_loop()
    seen: list[str] = []
    async with asyncio.timeout(timeout_s):
        while not seen or until not in seen[-1]:
            seen.append((await loop.sock_recv(sock, 4096)).decode())
    return seen


@contextlib.asynccontextmanager
async def agent_under_systemd(
    tmp_path: Path, meter_port: int, interval_s: float
) -> AsyncIterator[tuple[socket.socket, asyncio.subprocess.Process]]:
    """`edge-agent run` polling one meter, with systemd's notify socket (WATCHDOG=1 due every 0.5 s)."""
    config = tmp_path / "agent.toml"
    config.write_text(
        f'[buffer]\npath = "{tmp_path / "b.db"}"\n[mqtt]\nurl = "mqtt://{LOOPBACK}:{free_port()}"\n'
        f'[[devices]]\nname = "meter"\nprotocol = "modbus-tcp"\nhost = "{LOOPBACK}"\nport = {meter_port}\n'
        f'profile = "eastron-sdm630"\n[[pollers]]\ndevice = "meter"\ninterval_s = {interval_s}\n'
    )
    with notify_socket() as (path, sock):
        env = {**os.environ, "NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000"}
        agent = await agent_process(config, env=env)
        try:
            yield sock, agent
        finally:
            if agent.returncode is None:
                agent.send_signal(signal.SIGTERM)


async def test_ready_after_first_poll_watchdog_while_healthy_stopping_on_sigterm(tmp_path: Path) -> None:
    async with (
        ModbusTcpMeterServer(LOOPBACK, 0, [Sdm630(unit_id=1)]) as meter,
        agent_under_systemd(tmp_path, meter.port, 0.5) as (sock, agent),
    ):
        try:
            startup = await messages(sock, "READY=1", 20)
            assert any("READY=1" in m for m in startup)
            assert "polling 1 devices" in startup[-1]
            later = await messages(sock, "WATCHDOG=1", 5)
            later += await messages(sock, "WATCHDOG=1", 5)
            assert sum("WATCHDOG=1" in m for m in later) >= 2
        finally:
            agent.send_signal(signal.SIGTERM)
        stopping = await messages(sock, "STOPPING=1", 10)
        assert "STOPPING=1" in stopping[-1]
        async with asyncio.timeout(20):
            _, err = await agent.communicate()
        assert agent.returncode == 0, err.decode()[-2000:]


async def test_watchdog_withheld_while_a_buffer_commit_hangs(tmp_path: Path) -> None:
    """A commit that does not return (here: another process holds the buffer's write lock; on a Pi, an SD card
    that hangs) withholds WATCHDOG=1 so systemd restarts the agent; it comes back once the commit returns."""
    async with (
        ModbusTcpMeterServer(LOOPBACK, 0, [Sdm630(unit_id=1)]) as meter,
        agent_under_systemd(tmp_path, meter.port, 0.2) as (sock, agent),
    ):
        try:
            await messages(sock, "READY=1", 20)
            await messages(sock, "WATCHDOG=1", 5)
            with contextlib.closing(sqlite3.connect(tmp_path / "b.db", isolation_level=None)) as holder:
                holder.execute("BEGIN IMMEDIATE")  # the agent's next commit waits (5 s), fails, retries
                await asyncio.sleep(3.0)  # past the commit's allowed 2 s (four watchdog intervals)
                withheld = await quiet(sock, 1.5)  # before the commit gives up, 5 s after it began
                holder.execute("ROLLBACK")
            assert not any("WATCHDOG=1" in m for m in withheld), withheld
            resumed = await messages(sock, "WATCHDOG=1", 15)
            assert "WATCHDOG=1" in resumed[-1]
        finally:
            agent.send_signal(signal.SIGTERM)
        async with asyncio.timeout(20):
            _, err = await agent.communicate()
        assert agent.returncode == 0, err.decode()[-2000:]
        assert b"watchdog withheld" in err
        assert b"buffer writer" in err


async def quiet(sock: socket.socket, seconds: float) -> list[str]:
    """Every datagram that arrives within `seconds` (after draining what waited before)."""
    with contextlib.suppress(BlockingIOError):
        while True:
            sock.recv(4096)
    loop = asyncio.get_running_loop()
    seen: list[str] = []
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            while True:
                seen.append((await loop.sock_recv(sock, 4096)).decode())
    return seen
