"""The daemon's local UNIX socket: the technician's `edge-agent status` and `control` reach it here.

One JSON request per line, the same requests as the MQTT command topic (docs/mqtt.md), answered by the same
CommandRouter with one JSON reply per line. Access is the file's: mode 0660, the service user and its group.
The socket is a convenience, not a duty: when it cannot be bound (path too long, another live agent on it)
the agent logs why and keeps polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import structlog

from edge_agent.config import AgentConfig
from edge_agent.uplink.commands import MAX_COMMAND_BYTES

log = structlog.get_logger("edge_agent.local_socket")

MAX_CONNECTIONS = 8  # technicians' commands at once; more wait for the accept
IDLE_TIMEOUT_S = 60.0  # a connection that sends nothing for this long is closed
MAX_PATH_BYTES = 107  # sun_path, less the terminating NUL
SYSTEMD_RUNTIME_DIRECTORY = Path("/run/edge-agent")  # RuntimeDirectory= of systemd/edge-agent.service
SESSION_LINK = "edge-agent.sock"  # in $XDG_RUNTIME_DIR: an agent run outside systemd, found from anywhere

Handler = Callable[[bytes], Awaitable[bytes]]


def socket_path(config: AgentConfig) -> Path:
    """Where the agent of this configuration listens."""
    path = config.gateway.socket
    if path.is_absolute():
        return path
    runtime = os.environ.get("RUNTIME_DIRECTORY")
    base = Path(runtime.split(":")[0]) if runtime else config.buffer.resolved_path().parent
    return base / path


def find_socket(config: AgentConfig) -> Path:
    """The socket a command-line user reaches the agent on: the daemon's own rule, or, from a shell without
    $RUNTIME_DIRECTORY, the systemd service's runtime directory, or the session's link ($XDG_RUNTIME_DIR),
    whichever has a socket (from any directory, without --config on a standard install)."""
    path = socket_path(config)
    if config.gateway.socket.is_absolute() or _is_socket(path):
        return path
    service = SYSTEMD_RUNTIME_DIRECTORY / config.gateway.socket
    return next((p for p in (service, *well_known_sockets()) if is_socket(p)), path)


def well_known_sockets() -> list[Path]:
    """Where an agent can be found without its configuration: the systemd unit's runtime directory, then
    the link a run outside systemd leaves in $XDG_RUNTIME_DIR."""
    found = [SYSTEMD_RUNTIME_DIRECTORY / "edge-agent.sock"]
    session = os.environ.get("XDG_RUNTIME_DIR")
    if session:
        found.append(Path(session) / SESSION_LINK)
    return found


@contextlib.asynccontextmanager
async def serving(path: Path, handler: Handler) -> AsyncIterator[asyncio.Server | None]:
    """Serve `handler` on `path` while inside; None (and one log line) when the socket cannot be had."""
    server = await _start(path, handler)
    link = None if server is None else await _session_link(path)
    try:
        yield server
    finally:
        if server is not None:
            server.close()
            _remove_socket(path)
        if link is not None and _points_to(link, path):
            link.unlink(missing_ok=True)


async def _session_link(path: Path) -> Path | None:
    """Outside systemd, a link to our socket in $XDG_RUNTIME_DIR, so that the command line finds the agent
    from any directory; left alone when another live agent has it."""
    session = os.environ.get("XDG_RUNTIME_DIR")
    if os.environ.get("RUNTIME_DIRECTORY") or not session or Path(session) == path.parent:
        return None
    link = Path(session) / SESSION_LINK
    if link.is_symlink() and await _live(link.resolve()):
        log.info("session socket link kept: another agent answers on it", link=str(link))
        return None
    return _make_link(link, path)


def _make_link(link: Path, path: Path) -> Path | None:
    try:
        if link.is_symlink():
            link.unlink()
        link.symlink_to(path.resolve())
    except OSError as error:
        log.info("no session socket link", link=str(link), error=str(error))
        return None
    return link


def is_socket(path: Path) -> bool:
    """A socket at `path`, or at the end of a link there."""
    try:
        return stat.S_ISSOCK(path.stat().st_mode)
    except OSError:
        return False


def _points_to(link: Path, path: Path) -> bool:
    try:
        return link.is_symlink() and link.readlink() == path.resolve()
    except OSError:
        return False


async def _start(path: Path, handler: Handler) -> asyncio.Server | None:
    if len(os.fsencode(path)) > MAX_PATH_BYTES:
        log.error("local socket unavailable: path too long", socket=str(path), max_bytes=MAX_PATH_BYTES)
        return None
    if await _live(path):
        log.error("local socket unavailable: another agent answers on it", socket=str(path))
        return None
    limit = asyncio.Semaphore(MAX_CONNECTIONS)

    async def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async with limit:
            await _converse(reader, writer, handler)

    try:
        _remove_socket(path)  # left by an agent that did not stop cleanly
        server = await asyncio.start_unix_server(connected, path, limit=MAX_COMMAND_BYTES + 2)
        os.chmod(path, 0o660)
    except OSError as error:
        log.error("local socket unavailable", socket=str(path), error=str(error))  # noqa: TRY400
        return None
    log.info("local socket listening", socket=str(path))
    return server


async def _live(path: Path) -> bool:
    """True when something accepts connections on `path`."""
    if not _is_socket(path):
        return False
    try:
        _, writer = await asyncio.wait_for(asyncio.open_unix_connection(path), 1.0)
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True


def _is_socket(path: Path) -> bool:
    try:
        return stat.S_ISSOCK(path.lstat().st_mode)
    except FileNotFoundError:
        return False


def _remove_socket(path: Path) -> None:
    """Unlink a socket file; anything else at that path is left alone (binding will then say why)."""
    if _is_socket(path):
        path.unlink(missing_ok=True)


async def _converse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, handler: Handler) -> None:
    try:
        while True:
            oversized = False
            try:
                async with asyncio.timeout(IDLE_TIMEOUT_S):
                    line = await reader.readline()
            except ValueError:  # over the stream's limit: the router refuses it by size, then we hang up
                line, oversized = b"?" * (MAX_COMMAND_BYTES + 1), True
            if not line:
                return
            writer.write((await handler(line.strip())) + b"\n")
            await writer.drain()
            if oversized:
                return
    except (TimeoutError, ConnectionError):
        return
    finally:
        writer.close()


async def request(path: Path, payload: bytes, timeout_s: float) -> bytes:
    """One request to the agent listening on `path`; its reply line. OSError when nobody listens."""
    async with asyncio.timeout(timeout_s):
        reader, writer = await asyncio.open_unix_connection(path, limit=4 * 1024 * 1024)
        try:
            writer.write(payload + b"\n")
            await writer.drain()
            reply = await reader.readline()
        finally:
            writer.close()
    if not reply:
        raise ConnectionResetError(f"{path}: the agent closed the connection without a reply")
    return reply
