"""edge-sim: serve the simulated building's devices on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
from datetime import datetime
from typing import Annotated, Any

import typer

from edge_agent.clock import ScaledClock
from edge_agent.errors import StartupError
from edge_sim.faults import FaultKind
from edge_sim.layout import BACNET_OFFSET, CONTROL_OFFSET, DEFAULT_BASE_PORT, DEFAULT_HOST, DEFAULT_START
from edge_sim.simulator import Simulator

app = typer.Typer(help="A simulated building behind real Modbus and BACnet servers.", no_args_is_help=True)


@app.callback()
def _root() -> None:
    """edge-sim commands."""


def _parse_start(text: str) -> datetime:
    try:
        start = datetime.fromisoformat(text)
    except ValueError as exc:
        raise typer.BadParameter(f"not an ISO 8601 time: {text!r}") from exc
    if start.tzinfo is None:
        raise typer.BadParameter("give a UTC offset, e.g. 2026-08-05T14:00+09:00")
    return start


def _parse_line(text: str) -> tuple[int, str, int]:
    """'19200-8E1' -> (19200, 'E', 1)."""
    baudrate, _, frame = text.partition("-")
    if not (
        baudrate in ("1200", "2400", "4800", "9600", "19200", "38400", "57600", "115200")
        and re.fullmatch(r"8[NEO][12]", frame)
    ):
        raise typer.BadParameter(f"{text!r}: expected BAUD-8PS, e.g. 9600-8N1 or 19200-8E1")
    return int(baudrate), frame[1], int(frame[2])


# What --base-port places where (layout.py): every port counted from it, on 127.0.0.1.
PORT_PLAN = (
    "The first of the simulator's ports: Modbus TCP meters on this port and the next two, BACnet/IP "
    f"controllers (UDP) from this port + {BACNET_OFFSET}, the fault channel (TCP) on this port + "
    f"{CONTROL_OFFSET}."
)


@app.command()
def run(
    speed: Annotated[float, typer.Option(min=0.001, help="Building seconds per wall-clock second.")] = 1.0,
    base_port: Annotated[
        int,
        typer.Option(min=1, max=65535 - CONTROL_OFFSET, help=PORT_PLAN),
    ] = DEFAULT_BASE_PORT,
    start: Annotated[str, typer.Option(help="Building time at start, ISO 8601 with offset.")] = DEFAULT_START,
    seed: Annotated[int, typer.Option(help="Weather seed.")] = 0,
    serial_bus: Annotated[
        bool, typer.Option(help="Serve the RS-485 sub-meters on a socat pty pair (needs socat).")
    ] = True,
    *,
    rs485_line: Annotated[
        str, typer.Option(help="The RS-485 bus's line setting; its meters answer only a client set so.")
    ] = "9600-8N1",
    hangul_names: Annotated[
        bool, typer.Option(help="Room controllers name themselves and their objects in Korean.")
    ] = False,
) -> None:
    """Serve the devices on 127.0.0.1 until Ctrl-C or SIGTERM; print one line per device."""
    clock = ScaledClock(_parse_start(start), speed)
    options = {"serial_bus": serial_bus, "rs485_line": _parse_line(rs485_line), "hangul_names": hangul_names}
    try:
        asyncio.run(_serve(clock, base_port, seed=seed, options=options))
    except (OSError, RuntimeError, StartupError) as exc:  # pymodbus says RuntimeError for a busy port
        typer.echo(f"edge-sim: cannot serve from base port {base_port}: {exc}", err=True)
        raise typer.Exit(1) from None


async def _serve(clock: ScaledClock, base_port: int, *, seed: int, options: dict[str, Any]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with Simulator(clock, base_port, seed=seed, **options) as sim:
        for endpoint in sim.endpoints():
            print(endpoint.line(), flush=True)
        print(f"{'control':<30} {'tcp':<11} {sim.host}:{sim.control_port}  (edge-sim fault ...)", flush=True)
        print(f"building time {clock.start.isoformat()} at speed {clock.speed:g}; Ctrl-C stops", flush=True)
        await stop.wait()
    with contextlib.suppress(NotImplementedError):
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


@app.command()
def demo(
    broker: Annotated[
        str | None, typer.Option(help="MQTT broker URL, e.g. mqtt://127.0.0.1:1883 (default: the built-in).")
    ] = None,
    seconds: Annotated[
        float | None, typer.Option("--for", min=0.1, help="Stop after this many seconds (default: Ctrl-C).")
    ] = None,
    speed: Annotated[float, typer.Option(min=0.001, help="Simulated building seconds per second.")] = 60.0,
    base_port: Annotated[
        int,
        typer.Option(min=1, max=65535 - CONTROL_OFFSET, help=PORT_PLAN),
    ] = DEFAULT_BASE_PORT,
) -> None:
    """Start the simulator and the agent together and show live readings, buffer depth and uplink state."""
    from edge_agent.config import MqttConfig, load_config
    from edge_sim.demo import run_demo

    settings = load_config(None)  # the built-in configuration: the simulated site
    if broker is not None:
        try:
            mqtt = MqttConfig.model_validate({**settings.mqtt.model_dump(), "url": broker})
        except ValueError as exc:
            typer.echo(f"--broker: {exc}", err=True)
            raise typer.Exit(2) from None
        settings = settings.model_copy(update={"mqtt": mqtt})
    raise typer.Exit(run_demo(settings, seconds, speed, base_port))


@app.command()
def kpi(
    scenario: Annotated[str, typer.Option(help="summer, winter or shoulder.")] = "summer",
    seed: Annotated[int, typer.Option(help="Weather seed.")] = 0,
    days: Annotated[
        int | None, typer.Option(min=1, help="Days to run (default: the scenario's week).")
    ] = None,
) -> None:
    """Run the baseline through a scenario week in-process and print the KPIs per building and site."""
    from edge_agent.control.savings.kpi import format_table
    from edge_sim.physics.climate import SCENARIOS
    from edge_sim.study import run_scenario

    if scenario not in SCENARIOS:
        raise typer.BadParameter(f"choose one of {', '.join(SCENARIOS)}", param_hint="--scenario")
    result = run_scenario(scenario, seed=seed, days=days)
    chosen = result.scenario
    typer.echo(f"{chosen.description}; baseline; weather seed {seed}; from {chosen.start:%Y-%m-%d}")
    typer.echo(format_table(result.kpis))


fault_app = typer.Typer(help="Inject faults into a running `edge-sim run`.", no_args_is_help=True)
app.add_typer(fault_app, name="fault")
BasePortOption = Annotated[int, typer.Option(min=1, max=65535 - CONTROL_OFFSET, help=PORT_PLAN)]


def _control(base_port: int, request: dict[str, object]) -> None:
    from edge_sim.control import control_port, send

    try:
        answer = asyncio.run(send(DEFAULT_HOST, control_port(base_port), request))
    except (OSError, TimeoutError) as exc:
        typer.echo(f"edge-sim: no simulator answers on base port {base_port}: {exc}", err=True)
        raise typer.Exit(1) from None
    if not answer.get("ok"):
        typer.echo(f"edge-sim: refused: {answer.get('error')}", err=True)
        raise typer.Exit(2)
    faults = answer.get("faults") or {}
    for device, kind in sorted(faults.items()):
        typer.echo(f"{device:<30} {kind}")
    typer.echo(f"building time {answer.get('building_time')}; {len(faults)} fault(s) in force")


@fault_app.command("set")
def fault_set(
    device: Annotated[str, typer.Argument(help="Device name, as `edge-sim run` lists it.")],
    kind: Annotated[FaultKind, typer.Argument(help="What goes wrong.")],
    delay: Annotated[float, typer.Option(help="Seconds, for 'slow'.")] = 3.0,
    code: Annotated[int, typer.Option(help="Modbus exception code, for 'exception'.")] = 4,
    base_port: BasePortOption = DEFAULT_BASE_PORT,
) -> None:
    """Make a device fail: offline, slow, exception, corrupt, swap-words or stuck."""
    _control(base_port, {"op": "set", "device": device, "fault": kind.value, "delay_s": delay, "code": code})


@fault_app.command("clear")
def fault_clear(
    device: Annotated[str, typer.Argument(help="Device name.")], base_port: BasePortOption = DEFAULT_BASE_PORT
) -> None:
    """Bring a device back to normal."""
    _control(base_port, {"op": "clear", "device": device})


@fault_app.command("clock-jump")
def fault_clock_jump(
    seconds: Annotated[float, typer.Argument(help="How far the building clock jumps forward.")],
    base_port: BasePortOption = DEFAULT_BASE_PORT,
) -> None:
    """Step the building's clock forward at once."""
    _control(base_port, {"op": "clock-jump", "seconds": seconds})


@fault_app.command("list")
def fault_list(base_port: BasePortOption = DEFAULT_BASE_PORT) -> None:
    """The faults in force."""
    _control(base_port, {"op": "list"})


def main() -> None:
    app()
