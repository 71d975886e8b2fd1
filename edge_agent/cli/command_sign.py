"""`command sign`: a command signed for one gateway, as central would publish it (docs/mqtt.md)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer

from edge_agent.cli.common import EXIT_CONFIG, ConfigOption, load_or_exit
from edge_agent.signing import load_private_key, sign
from edge_agent.uplink.admission import signed_bytes


def register(app: typer.Typer, config_app: typer.Typer) -> None:
    """Add `command sign` to the edge-agent app."""
    command_app = typer.Typer(help="Commands for a gateway, as central sends them.", no_args_is_help=True)
    command_app.command("sign")(command_sign)
    app.add_typer(command_app, name="command")


def command_sign(
    command: Annotated[
        str, typer.Argument(help='The command as JSON: {"id": ..., "command": ..., "args": ...}.')
    ],
    key: Annotated[
        Path, typer.Option("--key", help="The signer's private key (PEM, `edge-agent keys new`).")
    ],
    gateway: Annotated[
        str | None, typer.Option(help="The gateway's id (default: the configuration's).")
    ] = None,
    expires_in: Annotated[
        float, typer.Option(help="Seconds until `expires`, when the command has none.")
    ] = 60,
    config: ConfigOption = None,
) -> None:
    """Print the signed envelope of COMMAND for the gateway's command topic (prefix and id from the
    configuration), ready to publish, e.g. with `mosquitto_pub -t edge/GW/command -s`."""
    try:
        body = json.loads(command)
        private = load_private_key(key.read_bytes())
    except (OSError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_CONFIG) from None
    if not isinstance(body, dict):
        typer.echo("error: the command must be a JSON object", err=True)
        raise typer.Exit(EXIT_CONFIG)
    settings = load_or_exit(config)
    if "expires" not in body:
        when = datetime.now(UTC) + timedelta(seconds=expires_in)
        body["expires"] = when.isoformat(timespec="seconds").replace("+00:00", "Z")
    topic = f"{settings.mqtt.topic_prefix}/{gateway or settings.gateway.id}/command"
    text = json.dumps(body, separators=(",", ":"))
    typer.echo(json.dumps({"signed": text, "signature": sign(private, signed_bytes(topic, text))}))
