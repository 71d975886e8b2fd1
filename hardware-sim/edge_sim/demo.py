"""`edge-sim demo`: the simulator and the agent in one process, with a live terminal view (its screen is
titled "edge-agent demo": what runs is the agent)."""

from __future__ import annotations

import asyncio
import signal
import tempfile
from collections import deque
from datetime import datetime
from pathlib import Path

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from edge_agent.acquisition.poller import Health
from edge_agent.clock import ScaledClock
from edge_agent.config import (
    AgentConfig,
    BacnetDevice,
    BufferConfig,
    ModbusDevice,
    ModbusRtuTcpDevice,
    ModbusTcpDevice,
)
from edge_agent.errors import StartupError
from edge_agent.readings import Quality, Reading, utc_now
from edge_agent.service.agent import Agent
from edge_agent.service.logs import configure_logging
from edge_agent.uplink.session import UplinkState
from edge_sim.layout import DEFAULT_BASE_PORT, DEFAULT_START, rs485_link
from edge_sim.simulator import Simulator

REFRESH_S = 0.25
_STATE_STYLE = {
    UplinkState.CONNECTED: "green",
    UplinkState.CONNECTING: "yellow",
    UplinkState.DISCONNECTED: "red",
}
_HEALTH_STYLE = {Health.UP: "green", Health.DEGRADED: "yellow", Health.DOWN: "red"}


def point_at_simulator(config: AgentConfig, base_port: int) -> AgentConfig:
    """The built-in configuration with every device's port moved by as much as the simulator's base port."""
    shift = base_port - DEFAULT_BASE_PORT
    devices: list[ModbusDevice | BacnetDevice] = []
    for device in config.devices:
        if isinstance(device, ModbusTcpDevice | ModbusRtuTcpDevice):
            devices.append(device.model_copy(update={"port": device.port + shift}))
        elif isinstance(device, BacnetDevice):
            host, _, port = device.host.rpartition(":")
            devices.append(device.model_copy(update={"host": f"{host}:{int(port) + shift}"}))
        else:
            devices.append(device.model_copy(update={"serial_port": rs485_link(base_port)}))
    return config.model_copy(update={"devices": devices})


def run_demo(config: AgentConfig, seconds: float | None, speed: float, base_port: int) -> int:
    """Run until Ctrl-C or `seconds`; returns the process exit code."""
    console = Console()
    with tempfile.TemporaryDirectory(prefix="edge-agent-demo-") as state:
        config = point_at_simulator(config, base_port).model_copy(
            update={"buffer": BufferConfig(path=Path(state) / "buffer.db")}
        )
        log_lines: deque[str] = deque(maxlen=6)
        configure_logging(config.log, capture=log_lines)
        try:
            return asyncio.run(
                _demo(
                    config=config,
                    seconds=seconds,
                    speed=speed,
                    base_port=base_port,
                    console=console,
                    log_lines=log_lines,
                )
            )
        except (OSError, RuntimeError, StartupError) as exc:  # pymodbus says RuntimeError for a busy port
            console.print(f"[red]demo: cannot serve the simulator from port {base_port}: {exc}[/]")
            return 1


async def _demo(
    *,
    config: AgentConfig,
    seconds: float | None,
    speed: float,
    base_port: int,
    console: Console,
    log_lines: deque[str],
) -> int:
    from rich.live import Live

    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, done.set)
    if seconds is not None:
        loop.call_later(seconds, done.set)
    clock = ScaledClock(datetime.fromisoformat(DEFAULT_START), speed)
    async with Simulator(clock, base_port, control=False) as sim:
        agent = Agent(config)
        stop = asyncio.Event()
        agent_task = asyncio.create_task(agent.run(stop), name="agent")
        with Live(console=console, refresh_per_second=1 / REFRESH_S, transient=False) as live:
            while not done.is_set() and not agent_task.done():
                live.update(_render(agent, sim, log_lines))
                await asyncio.sleep(REFRESH_S)
            stop.set()
            await asyncio.wait([agent_task])
            live.update(_render(agent, sim, log_lines))
        if agent_task.exception() is not None:
            console.print(f"[red]agent failed: {agent_task.exception()!r}[/]")
            return 1
    return 0


def _render(agent: Agent, sim: Simulator, log_lines: deque[str]) -> Group:
    status = agent.status()
    now = utc_now()
    latest: dict[str, list[Reading]] = {}
    for reading in agent.latest.snapshot():
        latest.setdefault(reading.device, []).append(reading)
    devices = Table(title="Latest readings, one row per device", expand=True)
    devices.add_column("device", no_wrap=True)
    devices.add_column("health")
    devices.add_column("readings")
    devices.add_column("age", justify="right")
    for poller in status.devices:
        readings = latest.get(poller.device, [])
        values = Text()
        for reading in readings:
            if values:
                values.append("  ")
            values.append(f"{reading.point} ")
            style = "bold" if reading.quality is Quality.GOOD else "red"
            shown = (
                "n/a"
                if reading.quality is Quality.UNAVAILABLE
                else "—"
                if reading.value is None
                else f"{reading.value:,.2f}"
            )
            values.append(f"{shown} {reading.unit}".rstrip(), style=style)
        age = f"{min((now - r.ts).total_seconds() for r in readings):.1f} s" if readings else "—"
        health = Text(poller.health, style=_HEALTH_STYLE.get(poller.health, ""))
        devices.add_row(poller.device, health, values, age)
    uplink = status.uplink
    buffer = status.buffer
    summary = Table.grid(padding=(0, 2))
    summary.add_row(
        "uplink",
        Text(f"{uplink.state} to {uplink.broker}", style=_STATE_STYLE[uplink.state]),
        "published",
        f"{uplink.readings_published:,} readings in {uplink.batches_published:,} batches",
    )
    oldest = "—" if buffer.oldest_ts is None else f"{(now - buffer.oldest_ts).total_seconds():.0f} s"
    depth = f"{buffer.depth:,} readings, {buffer.size_bytes / 1e6:.1f} of {buffer.cap_bytes / 1e6:,.0f} MB"
    if buffer.dropped:
        depth += f", {buffer.dropped:,} dropped when full"
    summary.add_row("buffer depth", depth, "oldest unsent", oldest)
    outdoor = f"{sim.site.outdoor.temperature_c:.1f} C outdoors"
    summary.add_row("building time", sim.clock.now().strftime("%Y-%m-%d %H:%M %z"), "weather", outdoor)
    if uplink.last_error:
        summary.add_row("uplink error", Text(uplink.last_error, style="red"), "", "")
    parts: list[Table | Panel] = [Panel(summary, title=f"edge-agent demo: gateway {status.gateway}"), devices]
    if log_lines:
        parts.append(Panel("\n".join(log_lines), title="log"))
    return Group(*parts)
