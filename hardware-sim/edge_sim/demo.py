"""`edge-sim demo`: the simulator and the agent in one process, with a live terminal view (its screen is
titled "edge-agent demo": what runs is the agent).

The demo's agent controls the library (demo_control.py: active, with a demand target below its afternoon
demand, and the library's shipped baseline), on the simulator's building clock. The control panel shows
what `edge-agent status` and `control` see over the agent's local socket: the mode, the last decision and
who made it and why, today's saving against the baseline with its uncertainty; and the library's
clock-aligned 15-minute demand, averaged from the main meter as polled, against the target.
"""

from __future__ import annotations

import asyncio
import json
import signal
import tempfile
from collections import deque
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from edge_agent.acquisition.latest import LatestValues
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
from edge_agent.control.limits import KNOBS
from edge_agent.errors import StartupError
from edge_agent.readings import Quality, Reading, utc_now
from edge_agent.service.agent import Agent
from edge_agent.service.local_socket import request
from edge_agent.service.logs import configure_logging
from edge_agent.uplink.session import UplinkState
from edge_sim.demo_control import DEMAND, with_control
from edge_sim.layout import DEFAULT_BASE_PORT, DEFAULT_START, rs485_link
from edge_sim.simulator import Simulator

REFRESH_S = 0.25
STATUS_TIMEOUT_S = 2.0
LOG_LINES = 6
_OWN_STATUS = "id=demo"  # the agent logs each status command the demo sends: not shown
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
        config = with_control(config, Path(state))
        log_lines: deque[str] = deque(maxlen=100)  # the newest LOG_LINES not about the demo's own asking
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
    clock = ScaledClock(datetime.fromisoformat(DEFAULT_START), speed)
    async with Simulator(clock, base_port, control=False) as sim:
        if seconds is not None:  # counted from when the simulated site answers, however long that took
            loop.call_later(seconds, done.set)
        agent = Agent(config, clock)  # the building's time: control steps as often as the simulator runs
        demand = FifteenMinuteDemand()
        stop = asyncio.Event()
        agent_task = asyncio.create_task(agent.run(stop), name="agent")
        with Live(console=console, refresh_per_second=1 / REFRESH_S, transient=False) as live:
            while not done.is_set() and not agent_task.done():
                demand.sample(sim.clock.now(), agent.latest)
                control = await _ask_control(config.gateway.socket)
                live.update(_render(agent, sim, log_lines, control, demand))
                await asyncio.sleep(REFRESH_S)
            control = await _ask_control(config.gateway.socket)
            stop.set()
            await asyncio.wait([agent_task])
            live.update(_render(agent, sim, log_lines, control, demand))
        if agent_task.exception() is not None:
            console.print(f"[red]agent failed: {agent_task.exception()!r}[/]")
            return 1
    return 0


async def _ask_control(socket: Path) -> dict[str, Any] | str:
    """Control's state as `edge-agent control` gets it (the status command on the local socket), or why
    the agent did not answer."""
    payload = json.dumps({"id": "demo", "command": "status", "args": {}}).encode()
    try:
        reply = json.loads(await request(socket, payload, STATUS_TIMEOUT_S))
    except (OSError, TimeoutError, ValueError) as exc:
        return (
            "the agent's socket does not answer yet" if isinstance(exc, OSError | TimeoutError) else str(exc)
        )
    if not reply.get("ok"):
        return f"status refused: {reply.get('error')}"
    control: dict[str, Any] = reply["result"]["control"]
    return control


class FifteenMinuteDemand:
    """The library's demand over the current clock-aligned 15 minutes of building time (what the tariff
    bills), averaged from the main meter's readings as the demo samples them."""

    def __init__(self) -> None:
        self.interval: datetime | None = None
        self._sum = 0.0
        self._count = 0

    def sample(self, now: datetime, latest: LatestValues) -> None:
        reading = latest.get(DEMAND)
        if reading is None or reading.quality is not Quality.GOOD or reading.value is None:
            return
        start = now.replace(minute=now.minute - now.minute % 15, second=0, microsecond=0)
        if start != self.interval:
            self.interval, self._sum, self._count = start, 0.0, 0
        self._sum += reading.value / 1000 if reading.unit == "W" else reading.value
        self._count += 1

    @property
    def average_kw(self) -> float | None:
        return self._sum / self._count if self._count else None


def _render(
    agent: Agent,
    sim: Simulator,
    log_lines: deque[str],
    control: dict[str, Any] | str,
    demand: FifteenMinuteDemand,
) -> Group:
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
    parts: list[Table | Panel] = [
        Panel(summary, title=f"edge-agent demo: gateway {status.gateway}"),
        Panel(_control_panel(control, demand), title="control: library"),
        devices,
    ]
    recent = [line for line in log_lines if _OWN_STATUS not in line][-LOG_LINES:]
    if recent:
        parts.append(Panel("\n".join(recent), title="log"))
    return Group(*parts)


def _control_panel(control: dict[str, Any] | str, demand: FifteenMinuteDemand) -> Table:
    """Mode, the last decision and why, the 15-minute demand against the target, today's saving."""
    grid = Table.grid(padding=(0, 2))
    if isinstance(control, str):
        grid.add_row("control", Text(control, style="yellow"))
        return grid
    target = control.get("demand_target_kw")
    target_text = "this month's peak so far" if target is None else f"{target:,.1f} kW"
    grid.add_row(
        "mode", f"{control['mode']}, {control.get('steps', 0)} decisions, demand target {target_text}"
    )
    average = demand.average_kw
    if average is None or demand.interval is None:
        grid.add_row("15-min demand", "waiting for the main meter")
    else:
        over = target is not None and average > target
        until = demand.interval.strftime("%H:%M")
        grid.add_row(
            "15-min demand",
            Text(
                f"{average:,.1f} kW since {until}, "
                + (
                    "no target"
                    if target is None
                    else f"{'above' if over else 'under'} the {target:,.1f} kW target"
                ),
                style="red" if over else "green",
            ),
        )
    grid.add_row("last decision", _decision_text(control))
    grid.add_row("saving today", _saving_text(control.get("savings_today")))
    return grid


def _decision_text(control: dict[str, Any]) -> Text:
    decision = control.get("last_decision")
    if decision is None:
        missing = control.get("missing_inputs") or []
        why = f"inputs missing: {', '.join(missing)}" if missing else "no decision yet"
        return Text(why, style="yellow")
    who = "the ONNX model" if control.get("policy") == "onnx" else "the rule-based limiter"
    if control.get("fallback"):
        who += f" ({control['fallback']})"
    shed = []
    for name, value in decision.items():
        knob = KNOBS.get(name)
        if knob is None or name == "precondition" or abs(value - knob.neutral) < 1e-6:
            continue
        label = name.replace("_", " ")
        shed.append(f"{label} +{value:.1f} K" if knob.unit == "K" else f"{label} {value:.0f}%")
    if decision.get("precondition", 0.0) > 0:
        shed.append("pre-conditioning")
    what = "sheds " + ", ".join(shed) if shed else "sheds nothing"
    return Text(f"{who} {what}", style="bold" if shed else "")


def _saving_text(today: dict[str, Any] | None) -> Text:
    if today is None:
        return Text("none yet: counted from the second control step against the baseline", style="yellow")
    avoided = today["avoided"]
    text = f"{avoided['energy_kwh']:,.1f} kWh so far"
    u = today.get("uncertainty")
    if u is not None:
        text += f" +- {u['kwh_68']:,.1f} (68%), +- {u['kwh_90']:,.1f} (90%)"
        if u["within_noise"]:
            text += ": within the baseline's noise"
    text += f"; {avoided['energy_cost_krw']:,.0f} KRW, {today['hours_covered']:.2f} h against the baseline"
    return Text(text)
