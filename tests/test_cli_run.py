"""`edge-agent run` refuses to start with a clear sentence when a resource it needs is missing."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edge_agent.cli.app import app
from tests.support import LOOPBACK, free_port, started_and_stopped, wait_until

pytestmark = pytest.mark.integration

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
    assert result.exit_code == 2  # an operator must fix it: systemd does not restart it
    assert f"buffer {blocker / 'buffer.db'}: directory {blocker} does not exist" in result.output


def test_busy_bacnet_port_names_the_address(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as squatter:
        squatter.bind((LOOPBACK, 0))
        port = squatter.getsockname()[1]
        config = tmp_path / "agent.toml"
        config.write_text(BACNET_ONLY.format(buffer=tmp_path / "b.db", port=port))
        result = runner.invoke(app, ["run", "--config", str(config)])
    assert result.exit_code == 1
    assert f"BACnet/IP address 127.0.0.1:{port}: cannot bind" in result.output


RTU_ONLY = """
[buffer]
path = "{buffer}"

[mqtt]
url = "mqtt://127.0.0.1:{port}"

[[devices]]
name = "sub-meter"
protocol = "modbus-rtu"
serial_port = "{serial}"
unit_id = 2
profile = "eastron-sdm630"

[[pollers]]
device = "sub-meter"
interval_s = 1
"""


def test_an_rs485_site_starts_and_stops_cleanly(tmp_path: Path) -> None:
    """The serial client is made inside the event loop: `run` on an RS-485 site (its adapter unplugged)
    starts, reports the device down, and stops on SIGTERM with exit 0."""
    config = tmp_path / "agent.toml"
    config.write_text(
        RTU_ONLY.format(buffer=tmp_path / "b.db", port=free_port(), serial=tmp_path / "ttyUSB0")
    )
    log = tmp_path / "agent.log"
    with log.open("wb") as sink:
        agent = subprocess.Popen(
            [sys.executable, "-m", "edge_agent", "run", "--config", str(config)], stdout=sink, stderr=sink
        )
    try:
        wait_until(
            lambda: "device down" in log.read_text(), 20, "the unplugged adapter's device reported down"
        )
    finally:
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(timeout=30) == 0, log.read_text()[-2000:]
    assert "agent stopped" in log.read_text()


def test_a_site_without_devices_starts_and_stops_cleanly(tmp_path: Path) -> None:
    """Zero devices is a valid (if idle) gateway: it starts, and SIGTERM stops it with exit 0."""
    config = tmp_path / "agent.toml"
    config.write_text(
        f'[buffer]\npath = "{tmp_path / "b.db"}"\n[gateway]\nsocket = "{tmp_path / "agent.sock"}"\n'
        f'[mqtt]\nurl = "mqtt://{LOOPBACK}:{free_port()}"\n'
    )
    assert "agent stopped" in started_and_stopped(config)
