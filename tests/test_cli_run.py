"""`edge-agent run` refuses to start with a clear sentence when a resource it needs is missing."""

from __future__ import annotations

import socket
from pathlib import Path

from typer.testing import CliRunner

from edge_agent.cli import app
from tests.support import LOOPBACK, free_port

runner = CliRunner()

BACNET_ONLY = """
[buffer]
path = "{buffer}"

[bacnet]
local_address = "127.0.0.1:{port}"

[[devices]]
name = "room-101"
protocol = "bacnet-ip"
host = "127.0.0.1:47999"
instance = 1001
points = [{{ name = "zone_temperature", object = "analog-input,1" }}]
"""


def test_unwritable_buffer_names_the_file(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    config = tmp_path / "agent.toml"
    config.write_text(BACNET_ONLY.format(buffer=blocker / "buffer.db", port=free_port()))
    result = runner.invoke(app, ["run", "--config", str(config)])
    assert result.exit_code == 1
    assert f"buffer {blocker / 'buffer.db'}: cannot open" in result.output


def test_busy_bacnet_port_names_the_address(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as squatter:
        squatter.bind((LOOPBACK, 0))
        port = squatter.getsockname()[1]
        config = tmp_path / "agent.toml"
        config.write_text(BACNET_ONLY.format(buffer=tmp_path / "b.db", port=port))
        result = runner.invoke(app, ["run", "--config", str(config)])
    assert result.exit_code == 1
    assert f"BACnet/IP address 127.0.0.1:{port}: cannot bind" in result.output
