"""`status` and `control`: talking to the running daemon over its local UNIX socket."""

from __future__ import annotations

import typer


def register(app: typer.Typer, config_app: typer.Typer) -> None:
    """Add this module's commands to the edge-agent app (config_app: the `config` group)."""
