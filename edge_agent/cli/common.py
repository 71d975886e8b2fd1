"""What every edge-agent command shares: exit codes, the --config option, loading a configuration, --json.

Exit codes: 0 success, 1 runtime failure (a device or the daemon did not answer as asked), 2 a configuration
or usage mistake, 3 the running daemon could not be reached (status, control).
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from edge_agent.config import AgentConfig, load_config
from edge_agent.errors import ConfigError

EXIT_FAILURE = 1
EXIT_CONFIG = 2
EXIT_NO_DAEMON = 3

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="Configuration file (TOML). Default: the built-in simulator setup."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def load_or_exit(path: Path | None) -> AgentConfig:
    """The configuration, or exit 2 naming every offending field."""
    try:
        return load_config(path)
    except ConfigError as error:
        exit_refused(error)


def exit_refused(error: ConfigError) -> NoReturn:
    """Print every problem of a configuration, one a line, then exit 2."""
    count = len(error.problems)
    typer.echo(f"{error.source}: configuration is not valid ({count} problem{'s' * (count != 1)})", err=True)
    for problem in error.problems:
        typer.echo(f"  {problem}", err=True)
    raise typer.Exit(EXIT_CONFIG)


def scan_group(app: typer.Typer) -> typer.Typer:
    """The `scan` group that `scan modbus` and `scan bacnet` share: whichever registers first creates it."""
    for group in app.registered_groups:
        if group.name == "scan" and group.typer_instance is not None:
            return group.typer_instance
    scan_app = typer.Typer(help="Find devices on a bus or network.", no_args_is_help=True)
    app.add_typer(scan_app, name="scan")
    return scan_app


def age_text(delta: timedelta) -> str:
    """A duration the way a technician reads it: '3 h 12 min', '40 s'."""
    seconds = max(0, int(delta.total_seconds()))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {seconds} s"
    return f"{seconds} s"


def mib_text(size: float) -> str:
    """A size the one way every command shows it: binary units (KiB under a MiB, else MiB)."""
    if size < 1024 * 1024:
        return f"{size / 1024:,.0f} KiB"
    return f"{size / (1024 * 1024):,.1f} MiB"


def echo_json(data: Any) -> None:
    """One JSON document on stdout (datetimes and paths as strings)."""
    typer.echo(json.dumps(data, indent=2, default=str, allow_nan=False))
