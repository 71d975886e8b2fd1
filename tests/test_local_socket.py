"""The daemon's local socket: one reply per request line, a stale socket file replaced, a live one left to
its owner, oversized requests refused, and a path the kernel cannot take reported instead of crashing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import structlog

from edge_agent.service.local_socket import request, serving
from edge_agent.uplink.commands import MAX_COMMAND_BYTES

pytestmark = pytest.mark.integration


async def echo(payload: bytes) -> bytes:
    return json.dumps({"got": len(payload)}).encode()


async def test_each_line_gets_its_reply(tmp_path: Path) -> None:
    path = tmp_path / "a.sock"
    async with serving(path, echo) as server:
        assert server is not None
        assert json.loads(await request(path, b'{"x": 1}', 5)) == {"got": 8}
        assert path.stat().st_mode & 0o777 == 0o660
    assert not path.exists()


async def test_a_stale_socket_file_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "a.sock"
    async with serving(path, echo):
        pass
    async with serving(path, echo) as first:  # a crashed agent's file: nobody accepts on it
        path.unlink()
        async with serving(path, echo):
            pass
        assert first is not None


async def test_a_live_agents_socket_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "a.sock"
    async with serving(path, echo) as first:
        with structlog.testing.capture_logs() as logs:
            async with serving(path, echo) as second:
                assert second is None
        assert first is not None
        assert json.loads(await request(path, b"{}", 5)) == {"got": 2}  # the first still answers
    assert any(e["event"] == "local socket unavailable: another agent answers on it" for e in logs)


async def test_an_oversized_request_is_refused_by_size(tmp_path: Path) -> None:
    path = tmp_path / "a.sock"
    async with serving(path, echo):
        reply = json.loads(await request(path, b"x" * (MAX_COMMAND_BYTES + 10), 5))
    assert reply["got"] > MAX_COMMAND_BYTES  # the router sees an oversized payload and refuses it


async def test_a_path_too_long_is_reported(tmp_path: Path) -> None:
    path = tmp_path / ("d" * 120) / "a.sock"
    with structlog.testing.capture_logs() as logs:
        async with serving(path, echo) as server:
            assert server is None
    assert logs[0]["event"] == "local socket unavailable: path too long"
    with pytest.raises(OSError, match=r"too long|No such file"):
        await request(path, b"{}", 5)
