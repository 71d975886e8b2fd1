"""The edge-agent command line. Thin: parse, call, print.

Exit codes: 0 success, 1 runtime failure, 2 bad configuration or usage.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import structlog
import typer

from edge_agent.cli import bacnet as cli_bacnet
from edge_agent.cli import building_model as cli_building_model
from edge_agent.cli import command_sign
from edge_agent.cli import data as cli_data
from edge_agent.cli import fleet as cli_fleet
from edge_agent.cli import keys as cli_keys
from edge_agent.cli import local as cli_local
from edge_agent.cli import modbus as cli_modbus
from edge_agent.cli import points as cli_points
from edge_agent.cli import savings as cli_savings
from edge_agent.cli.common import (
    EXIT_CONFIG,
    EXIT_FAILURE,
    ConfigOption,
    JsonOption,
    echo_json,
    exit_refused,
    load_or_exit,
)
from edge_agent.clock import Clock, ScaledClock
from edge_agent.config import BacnetDevice, builtin_config_text, check_file
from edge_agent.config.control import KNOB_NEEDS
from edge_agent.errors import ConfigError, ShutdownIncomplete, StartupError
from edge_agent.service.gc_tuning import settle_after_startup

if TYPE_CHECKING:
    from edge_agent.service.agent import Agent

app = typer.Typer(
    help="Edge gateway agent: polls Modbus and BACnet devices, buffers every reading, syncs to MQTT.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
config_app = typer.Typer(help="Check and print configuration files.", no_args_is_help=True)
app.add_typer(config_app, name="config")


def _print_version(value: bool) -> None:
    if value:
        from edge_agent import __version__

        typer.echo(f"edge-agent {__version__}")
        raise typer.Exit


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    pass


def _building_clock(speed: float | None, start: str | None) -> Clock | None:
    """The wall clock (None) unless a simulated building's time is asked for."""
    if speed is None and start is None:
        return None
    try:
        begin = datetime.fromisoformat(start) if start else datetime.now(UTC)
    except ValueError:
        typer.echo(f"--clock-start: {start!r} is not an ISO 8601 time", err=True)
        raise typer.Exit(EXIT_CONFIG) from None
    if begin.tzinfo is None:
        typer.echo(f"--clock-start: {start!r} needs a UTC offset, e.g. 2026-08-05T14:00+09:00", err=True)
        raise typer.Exit(EXIT_CONFIG)
    return ScaledClock(begin, speed or 1.0)


@app.command()
def run(
    config: ConfigOption = None,
    clock_speed: Annotated[
        float | None,
        typer.Option(min=0.001, help="Building seconds per wall-clock second (a simulated plant)."),
    ] = None,
    clock_start: Annotated[
        str | None, typer.Option(help="Building time at start, ISO 8601 with offset (a simulated plant).")
    ] = None,
) -> None:
    """Run the agent until SIGTERM or Ctrl-C. In the field it runs on the wall clock; `--clock-speed` and
    `--clock-start` (the same as `edge-sim run`'s) let it drive a simulated building faster than real time."""
    from edge_agent.service.agent import Agent
    from edge_agent.service.config_rollout import ConfigRollout
    from edge_agent.service.logs import configure_logging

    rollout = ConfigRollout.at_start(config)  # a pushed file on trial; a crash loop's is rolled back here
    try:
        checked = check_file(config)
    except ConfigError as error:
        if rollout is not None:
            rollout.failed_start(str(error))  # on trial: the last good file, and again (never returns)
        exit_refused(error)
    settings = checked.config
    clock = _building_clock(clock_speed, clock_start)
    configure_logging(settings.log)
    for warning in checked.warnings:  # what `config check` warns about, in the journal too
        structlog.get_logger("edge_agent.config").warning("configuration", warning=warning.text())
    try:
        asyncio.run(_run_until_signalled(lambda: Agent(settings, clock, rollout)))
    except StartupError as error:  # exit 2 when an operator must fix it first (the unit does not restart)
        typer.echo(f"edge-agent: {error}", err=True)
        if rollout is not None:
            rollout.failed_start(str(error))
        raise typer.Exit(EXIT_FAILURE if error.restart_helps else EXIT_CONFIG) from None
    except ShutdownIncomplete as error:
        typer.echo(f"edge-agent: {error}", err=True)
        raise typer.Exit(EXIT_FAILURE) from None
    except Exception as error:
        if rollout is not None:
            structlog.get_logger("edge_agent.service").exception("agent crashed")
            rollout.failed_start(f"{type(error).__name__}: {error}")
        raise
    if rollout is not None:
        rollout.stopped()  # executes itself again when a new configuration or a rollback asked for it


async def _run_until_signalled(make_agent: Callable[[], Agent]) -> None:
    """The first SIGTERM or Ctrl-C stops the agent in order; a second one cuts the shutdown short. The agent
    is made inside the event loop: pymodbus' serial client wants a running loop when it is created."""
    agent = make_agent()
    settle_after_startup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()

    def on_signal() -> None:
        if stop.is_set() and main is not None:
            main.cancel()
        if agent.rollout is not None:
            agent.rollout.signalled()  # a stop asked for: no restart on a new configuration
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    with contextlib.suppress(asyncio.CancelledError):
        await agent.run(stop)


@config_app.command("check")
def config_check(
    path: Annotated[Path, typer.Argument(help="Configuration file to validate.")], as_json: JsonOption = False
) -> None:
    """Validate a configuration file: every mistake at once, by device and line, exit 2; then warnings."""
    try:
        checked = check_file(path)
    except ConfigError as error:
        if as_json:
            echo_json({"file": str(path), "ok": False, "problems": error.details})
            raise typer.Exit(EXIT_CONFIG) from None
        exit_refused(error)
    settings, warnings = checked.config, checked.warnings
    devices, pollers = len(settings.devices), len(settings.pollers)
    points = sum(len(d.points) for d in settings.devices)
    control = settings.control
    knobs = control.knobs()
    has = {knob: refs for knob, refs in knobs.items() if refs}
    lacks = {knob: KNOB_NEEDS[knob] for knob, refs in knobs.items() if not refs}
    if as_json:
        echo_json(
            {
                "file": str(path),
                "ok": True,
                "devices": devices,
                "points": points,
                "pollers": pollers,
                "control": {"mode": control.mode, "knobs": has, "missing_knobs": lacks},
                "warnings": [w.as_dict() for w in warnings],
            }
        )
        return
    typer.echo(f"{path}: ok ({devices} devices, {points} points, {pollers} pollers)")
    for warning in warnings:
        typer.echo(f"  warning: {warning.text()}")
    if control.mode == "off" and next(control.references(), None) is None:
        typer.echo("control: off, no [control] points")
        return
    acts = ", ".join(
        f"{knob} ({', '.join(refs) if len(refs) <= 2 else f'{len(refs)} points'})"
        for knob, refs in has.items()
    )
    typer.echo(f"control: {control.mode}; its knobs: {acts or 'none'}")
    for knob, needs in lacks.items():
        typer.echo(f"  lacks {knob}: needs {needs}")


@config_app.command("plan")
def config_plan(
    path: Annotated[Path | None, typer.Argument(help="Configuration file (default: the built-in).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Print the requests each poll cycle makes: Modbus blocks per device, BACnet batches."""
    from edge_agent.protocols.modbus.planner import PlanLimits, plan_reads

    settings = load_or_exit(path)
    plans: list[dict[str, object]] = []
    total_requests = 0
    for device in settings.devices:
        names = [p.name for p in device.points]
        if isinstance(device, BacnetDevice):
            requests: list[dict[str, object]] = [{"service": "ReadPropertyMultiple", "points": names}]
            lines: list[str] = []
        else:
            limits = PlanLimits(device.max_registers, device.max_gap, tuple(device.forbidden))
            blocks = plan_reads(device.points, limits)
            requests = [
                {"table": b.table, "start": b.start, "count": b.count, "points": [p.name for p in b.points]}
                for b in blocks
            ]
            lines = [block.describe() for block in blocks]
        total_requests += len(requests)
        plans.append({"device": device.name, "address": device.address, "requests": requests})
        if not as_json:
            kind = "requests" if lines else "ReadPropertyMultiple"
            typer.echo(f"{device.name} ({device.address}): {len(names)} points in {len(requests)} {kind}")
            for line in lines:
                typer.echo(f"  {line}")
    total_points = sum(len(d.points) for d in settings.devices)
    if as_json:
        echo_json({"devices": plans, "points": total_points, "requests": total_requests})
        return
    typer.echo(f"per poll cycle: {total_points} points in {total_requests} requests")


@config_app.command("default")
def config_default() -> None:
    """Print the built-in configuration (the simulator setup), a starting point for a site file."""
    typer.echo(builtin_config_text(), nl=False)


for commands in (cli_modbus, cli_bacnet, cli_points, cli_local, cli_data, cli_savings, cli_keys):
    commands.register(app, config_app)
command_sign.register(app, config_app)
cli_building_model.register(app, config_app)
cli_fleet.register(app, config_app)


def main() -> None:
    app()
