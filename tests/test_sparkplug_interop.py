"""Sparkplug B against an independent host application: tests/interop/sparkplug_host.mjs, built on Eclipse
Tahu's sparkplug-payload and mqtt.js, on a real mosquitto, with `edge-agent run` in a process of its own
polling a simulated SDM630 meter (Modbus TCP) and a simulated VAV controller (BACnet/IP).

The host decodes every metric of the births and data and checks aliases and seq continuity itself; this
test checks what it reports against the simulated devices and the configuration, then sends a rebirth, a
DCMD write (and one out of range), takes its STATE offline and online again, and kills the agent."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import shutil
import signal
import struct
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from edge_agent.config import load_config
from edge_sim.devices.bacnet.controllers import RoomController
from edge_sim.devices.meters.base import MeterReading
from edge_sim.devices.meters.sdm630 import Sdm630
from edge_sim.devices.modbus_servers import ModbusTcpMeterServer
from edge_sim.site.site import Site
from tests.conftest import SIM_START
from tests.support import LOOPBACK, Broker, agent_process, free_port, in_background

pytestmark = pytest.mark.integration

INTEROP = Path(__file__).parent / "interop"
SCRIPT = INTEROP / "sparkplug_host.mjs"
GATEWAY, GROUP, HOST = "gw-spb", "plant-a", "scada-1"
WAIT_S = 30.0  # for any one event the host reports, on a loaded 2-core machine

READING = MeterReading(
    power_w=12_000.0, import_kwh=1234.5, export_kwh=0.0, demand_w=11_500.0, max_demand_w=13_000.0,
    voltage_v=230.0, frequency_hz=60.0, power_factor=0.95,
)  # fmt: skip
METER_POINTS = {  # point -> what the meter shows, as its float32 registers carry it
    **{f"voltage_l{n}": READING.voltage_v for n in (1, 2, 3)},
    **{f"current_l{n}": READING.current_a for n in (1, 2, 3)},
    **{f"power_l{n}": READING.power_w / 3 for n in (1, 2, 3)},
    "total_power": READING.power_w,
    "power_factor": READING.power_factor,
    "frequency": READING.frequency_hz,
    "import_energy": READING.import_kwh,
    "export_energy": READING.export_kwh,
    "demand": READING.demand_w,
    "max_demand": READING.max_demand_w,
    "total_energy": READING.import_kwh + READING.export_kwh,
}
VAV_POINTS = {  # analog points of the VAV, set on the controller below
    "zone_temperature": 24.5,
    "zone_co2": 612.0,
    "discharge_air_temperature": 14.0,
    "airflow": 85.5,
    "cooling_setpoint": 26.0,
    "heating_setpoint": 20.0,
}


def float32(value: float) -> float:
    return float(struct.unpack(">f", struct.pack(">f", value))[0])


class Host:
    """The node host: its events in order of arrival, and a way to give it orders."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.events: list[dict[str, Any]] = []
        self._arrived = asyncio.Event()

    async def read(self) -> None:
        assert self.process.stdout is not None
        async for line in self.process.stdout:
            self.events.append(json.loads(line))
            self._arrived.set()

    async def order(self, **order: Any) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(order).encode() + b"\n")
        await self.process.stdin.drain()

    async def wait_for(self, what: str, found: Callable[[list[dict[str, Any]]], bool]) -> None:
        try:
            async with asyncio.timeout(WAIT_S):
                while not found(self.events):
                    self._arrived.clear()
                    await self._arrived.wait()
        except TimeoutError:
            pytest.fail(f"the Sparkplug host saw no {what}; it saw last: {self.events[-10:]}")

    def since(self, start: int, event: str) -> list[dict[str, Any]]:
        return [e for e in self.events[start:] if e["event"] == event]

    @property
    def errors(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == "error"]


@contextlib.asynccontextmanager
async def sparkplug_host(broker: Broker) -> AsyncIterator[Host]:
    node = shutil.which("node")
    if node is None or not (INTEROP / "node_modules" / "sparkplug-payload").is_dir():
        pytest.fail(
            "the Sparkplug interop test needs Node.js and tests/interop/node_modules: run the README's test "
            "command (./scripts/test.sh), which installs them through scripts/install_interop.sh",
            pytrace=False,
        )
    process = await asyncio.create_subprocess_exec(
        node, str(SCRIPT), broker.url, GROUP, HOST, cwd=INTEROP,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    host = Host(process)
    try:
        async with in_background(host.read()):
            await host.wait_for(
                "connection (ready)", lambda events: any(e["event"] == "ready" for e in events)
            )
            yield host
    finally:
        process.kill()
        await process.wait()


@contextlib.asynccontextmanager
async def devices() -> AsyncIterator[tuple[int, int]]:
    """The meter (Modbus TCP port) and the VAV controller (BACnet port), showing known values."""
    bacnet_port = free_port()
    vav = RoomController(
        Site(SIM_START, seed=0).building("library").zones[0], 1301, f"{LOOPBACK}:{bacnet_port}", "library"
    )
    vav.temperature.presentValue = VAV_POINTS["zone_temperature"]
    vav.co2.presentValue = VAV_POINTS["zone_co2"]
    vav.discharge.presentValue = VAV_POINTS["discharge_air_temperature"]
    vav.airflow.presentValue = VAV_POINTS["airflow"]
    async with ModbusTcpMeterServer(LOOPBACK, 0, [Sdm630(unit_id=1)]) as meter, vav.stack:
        await meter.show(1, READING)
        yield meter.port, bacnet_port


def write_config(tmp_path: Path, broker: Broker, meter_port: int, bacnet_port: int) -> Path:
    config = tmp_path / "agent.toml"
    config.write_text(
        f'[gateway]\nid = "{GATEWAY}"\n[log]\nformat = "json"\n[buffer]\npath = "{tmp_path / "b.db"}"\n'
        f'[mqtt]\nurl = "{broker.url}"\nformat = "sparkplug"\ngroup_id = "{GROUP}"\n'
        f'primary_host_id = "{HOST}"\n'
        "batch_size = 1\n"  # a DDATA per reading: seq wraps past 255 within the test
        f'[bacnet]\nlocal_address = "{LOOPBACK}:0"\n'
        f'[[devices]]\nname = "meter"\nprotocol = "modbus-tcp"\nhost = "{LOOPBACK}"\nport = {meter_port}\n'
        f'profile = "eastron-sdm630"\nonly_points = {json.dumps(list(METER_POINTS))}\n'
        f'[[devices]]\nname = "vav"\nprotocol = "bacnet-ip"\nhost = "{LOOPBACK}:{bacnet_port}"\n'
        f'instance = 1301\nprofile = "edge-sim-vav"\n'
        '[[pollers]]\ndevice = "meter"\ninterval_s = 0.5\n[[pollers]]\ndevice = "vav"\ninterval_s = 0.5\n'
    )
    return config


def every_metric_has_data(births: dict[str, dict[str, Any]]) -> Callable[[list[dict[str, Any]]], bool]:
    def found(events: list[dict[str, Any]]) -> bool:
        seen = {(e["device"], e["name"]) for e in events if e["event"] == "data" and e["value"] is not None}
        wanted = {(device, m["name"]) for device, birth in births.items() for m in birth["metrics"]}
        return bool(wanted) and wanted <= seen

    return found


def latest(host: Host, device: str, name: str, start: int = 0) -> dict[str, Any] | None:
    found = [e for e in host.since(start, "data") if (e["device"], e["name"]) == (device, name)]
    return found[-1] if found else None


async def replies(broker: Broker, into: list[dict[str, Any]]) -> None:
    """The gateway's replies to commands (DCMD writes included), as central reads them."""
    async with aiomqtt.Client(LOOPBACK, broker.port, identifier="central") as client:
        await client.subscribe(f"edge/{GATEWAY}/reply", qos=1)
        async for message in client.messages:
            assert isinstance(message.payload, bytes)
            into.append(json.loads(message.payload))


async def test_an_independent_sparkplug_host_reads_writes_and_sees_the_death(
    broker: Broker, tmp_path: Path
) -> None:
    answered: list[dict[str, Any]] = []
    async with (
        devices() as (meter_port, bacnet_port),
        sparkplug_host(broker) as host,
        in_background(replies(broker, answered)),
    ):
        config_path = write_config(tmp_path, broker, meter_port, bacnet_port)
        config = load_config(config_path)
        with (tmp_path / "agent.log").open("wb") as log:
            agent = await agent_process(config_path, stderr=log, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            # Births: the node's, then one per device naming every configured point, with its unit.
            await host.wait_for("DBIRTH of both devices", lambda ev: len(host.since(0, "dbirth")) >= 2)
            (nbirth,) = host.since(0, "nbirth")
            births = {e["device"]: e for e in host.since(0, "dbirth")}
            for device in config.devices:
                metrics = {m["name"]: m for m in births[device.name]["metrics"]}
                assert set(metrics) == {p.name for p in device.points}, device.name
                for point in device.points:
                    assert metrics[point.name]["unit"] == point.unit, (device.name, point.name)
                    assert metrics[point.name]["type"] == "Double"
            aliases = [m["alias"] for birth in births.values() for m in birth["metrics"]]
            assert len(set(aliases)) == len(aliases)

            # Data: every metric arrives by alias with the value the device shows.
            await host.wait_for("data for every metric", every_metric_has_data(births))
            for name, shown in METER_POINTS.items():  # the meter's values stay put: every report shows them
                reports = [e for e in host.since(0, "data") if (e["device"], e["name"]) == ("meter", name)]
                unit = next(p.unit for p in config.devices[0].points if p.name == name)
                for report in reports:
                    assert math.isclose(report["value"], float32(shown), rel_tol=1e-7, abs_tol=1e-9), name
                    assert report["unit"] == unit
            for name, shown in VAV_POINTS.items():
                last = latest(host, "vav", name)
                assert last is not None
                assert last["value"] == pytest.approx(shown, abs=1e-4), name

            # A rebirth request: NBIRTH again (same session, seq 0), every DBIRTH, then data again.
            mark = len(host.events)
            await host.order(op="rebirth")
            await host.wait_for("births again", lambda ev: len(host.since(mark, "dbirth")) >= 2)
            (again,) = host.since(mark, "nbirth")
            assert (again["bdSeq"], again["seq"]) == (nbirth["bdSeq"], 0)
            reborn_meter = next(e for e in host.since(mark, "dbirth") if e["device"] == "meter")
            for metric in reborn_meter["metrics"]:  # a birth carries every point's latest value
                assert math.isclose(metric["value"], float32(METER_POINTS[metric["name"]]), rel_tol=1e-7)
            await host.wait_for("data after the rebirth", lambda ev: len(host.since(mark, "data")) > 0)

            # DCMD writes go through the command router: one within the write range is written (the
            # device reports it back), one outside is refused with the router's own error.
            mark = len(host.events)
            await host.order(op="dcmd", device="vav", name="cooling_setpoint", value=27.0)
            await host.wait_for(
                "the written setpoint read back",
                lambda ev: (latest(host, "vav", "cooling_setpoint", mark) or {}).get("value") == 27.0,
            )
            await host.order(op="dcmd", device="vav", name="cooling_setpoint", value=30.0)
            await host.wait_for("a reply to the refused write", lambda ev: len(answered) >= 2)
            assert answered[0]["ok"] is True
            assert answered[0]["result"]["value"] == 27.0
            assert answered[1]["ok"] is False
            assert answered[1]["error"]["code"] == "out-of-limits"
            written = host.since(mark, "data")
            assert all(e["value"] != 30.0 for e in written if e["name"] == "cooling_setpoint")

            # The primary host goes offline: the node dies, publishes nothing, and keeps buffering; back
            # online, a new session's births, then what was buffered meanwhile flagged historical.
            mark = len(host.events)
            await host.order(op="state", online=False)
            await host.wait_for(
                "NDEATH on the host going offline", lambda ev: bool(host.since(mark, "ndeath"))
            )
            await asyncio.sleep(2.0)  # four polls' worth of readings, buffered while the host is away
            await host.order(op="state", online=True)
            await host.wait_for(
                "a historical reading", lambda ev: any(e["historical"] for e in host.since(mark, "data"))
            )
            since = host.events[mark:]
            death = next(i for i, e in enumerate(since) if e["event"] == "ndeath")
            birth = next(i for i, e in enumerate(since) if e["event"] == "nbirth")
            assert death < birth
            assert not [e for e in since[death:birth] if e["event"] == "data"]
            reborn = since[birth]
            assert reborn["bdSeq"] == (nbirth["bdSeq"] + 1) % 256

            # seq has wrapped 255 -> 0 (the host checks every step of it).
            await host.wait_for(
                "seq 255", lambda ev: any(e.get("seq") == 255 for e in host.since(mark, "data"))
            )

            # Killed: the broker publishes the will, NDEATH with the session's bdSeq.
            mark = len(host.events)
            agent.send_signal(signal.SIGKILL)
            await host.wait_for("NDEATH of the killed agent", lambda ev: bool(host.since(mark, "ndeath")))
            assert host.since(mark, "ndeath")[0]["bdSeq"] == reborn["bdSeq"]
            assert host.errors == []
        finally:
            if agent.returncode is None:
                agent.kill()
            await agent.wait()
