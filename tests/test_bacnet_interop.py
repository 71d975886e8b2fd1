"""Interoperability with an independent BACnet stack: @bacnet-js/client (Node.js, tests/interop) reads a
simulated room controller's zone temperature, commands its cooling setpoint at priority 10 and relinquishes
it, over real BACnet/IP on loopback. The node client binds its own loopback port and addresses the
controller by unicast."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from edge_sim.devices.bacnet.controllers import RoomController
from edge_sim.physics.climate import SCENARIOS
from edge_sim.physics.sun import KST
from edge_sim.site.site import Site
from tests.support import LOOPBACK, free_port

pytestmark = pytest.mark.integration

INTEROP = Path(__file__).parent / "interop"
SCRIPT = INTEROP / "bacnet_client.mjs"
OPEN_HOURS = SCENARIOS["summer"].start + timedelta(hours=14)  # Monday 14:00, library open
REQUEST_TIMEOUT_MS = 5000
PROCESS_TIMEOUT_S = 20.0  # node's start-up plus one request, with room to spare on a loaded machine
FLOAT32 = 1e-4  # a REAL carries ~7 significant digits: a zone temperature to well under 1e-4 K


def _node() -> str:
    """The node binary, or a failed test (never a skip) saying what is missing and how to install it."""
    node = shutil.which("node")
    missing = [
        what
        for what, absent in [
            ("Node.js (`node` on PATH)", node is None),
            ("tests/interop/node_modules", not (INTEROP / "node_modules" / "@bacnet-js" / "client").is_dir()),
        ]
        if absent
    ]
    if node is None or missing:
        pytest.fail(
            f"the BACnet interop test needs {' and '.join(missing)}: run the README's test command "
            "(./scripts/test.sh), which installs them through scripts/install_interop.sh",
            pytrace=False,
        )
    return node


async def run_node(*args: str) -> tuple[int, str, str]:
    """Run the node client to completion (killed past PROCESS_TIMEOUT_S): exit code, stdout, stderr."""
    process = await asyncio.create_subprocess_exec(
        _node(),
        str(SCRIPT),
        *args,
        cwd=INTEROP,
        env={**os.environ, "BACNET_TIMEOUT_MS": str(REQUEST_TIMEOUT_MS)},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(PROCESS_TIMEOUT_S):
            out, err = await process.communicate()
    except TimeoutError:
        process.kill()
        await process.communicate()
        pytest.fail(f"node bacnet_client.mjs {' '.join(args)}: still running after {PROCESS_TIMEOUT_S} s")
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def bacnet_js(*args: str) -> str:
    """The node client's stdout, or a failed test with its stderr."""
    code, out, err = await run_node(*args)
    if code != 0:
        pytest.fail(f"node bacnet_client.mjs {' '.join(args)} exited {code}: {err.strip()}")
    return out


async def read_present_value(port: int, obj: str) -> Any:
    shown = json.loads(await bacnet_js("read", f"{LOOPBACK}:{port}", obj))
    assert shown["type"] == "REAL", shown
    return shown["value"]


def slot(controller: RoomController, priority: int) -> Any:
    """What bacpypes3's priority array holds at `priority` (1-based): a float, or None when relinquished."""
    value = controller.cooling_sp.obj.priorityArray[priority - 1]
    return None if value.null is not None else float(value.real)


async def test_bacnet_js_reads_writes_and_relinquishes_a_room_controller() -> None:
    site = Site(OPEN_HOURS, seed=1)
    site.advance(600)
    zone = site.building("library").zone("reading-1")
    port = free_port()
    controller = RoomController(zone, 1301, f"{LOOPBACK}:{port}", "library")
    local = site.now.astimezone(KST)
    _node()  # before serving anything: a missing install fails at once with the remedy
    async with controller.stack:
        controller.sync(local, site.outdoor)
        assert zone.thermal.t_air != 26.0  # a temperature that cannot pass for the setpoint
        temperature = await read_present_value(port, "analog-input,1")
        assert temperature == pytest.approx(zone.thermal.t_air, abs=FLOAT32)
        assert await read_present_value(port, "analog-value,1") == 26.0  # the sequence's occupied setpoint

        assert await bacnet_js("write", f"{LOOPBACK}:{port}", "analog-value,1", "27.5", "10") == ""
        assert slot(controller, 10) == 27.5
        assert [p for p in range(1, 17) if slot(controller, p) is not None] == [10]
        controller.sync(local, site.outdoor)
        assert zone.overrides.cooling_sp == 27.5
        assert controller.cooling_sp.active_priority() == 10
        assert await read_present_value(port, "analog-value,1") == 27.5

        assert await bacnet_js("relinquish", f"{LOOPBACK}:{port}", "analog-value,1", "10") == ""
        assert slot(controller, 10) is None
        controller.sync(local, site.outdoor)
        assert zone.overrides.cooling_sp is None
        assert controller.cooling_sp.active_priority() is None
        assert await read_present_value(port, "analog-value,1") == 26.0  # the controller's own sequence


async def test_bacnet_js_reports_a_bacnet_error() -> None:
    """A write the controller refuses (a sensor's present value) fails the node client with the error."""
    site = Site(OPEN_HOURS, seed=1)
    zone = site.building("library").zone("reading-1")
    port = free_port()
    controller = RoomController(zone, 1301, f"{LOOPBACK}:{port}", "library")
    async with controller.stack:
        code, out, err = await run_node("write", f"{LOOPBACK}:{port}", "analog-input,1", "99", "10")
    assert code == 1
    assert out == ""
    assert "WRITE_ACCESS_DENIED" in err, err
    assert controller.temperature.presentValue != 99.0
