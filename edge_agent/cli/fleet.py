"""`edge-agent fleet`: the central side's view of every gateway publishing under a prefix, live.

It subscribes (read only) to the status, readings, savings and events topics of docs/mqtt.md and to Sparkplug
B's node births, deaths and data, feeds uplink/fleet_view.py, and redraws a table (or prints JSON) every
--refresh seconds until --for runs out or Ctrl-C. A lost connection is retried with backoff; a broker that
cannot be reached at the start is exit 3.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import signal
import ssl
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, get_args

import aiomqtt
import typer
from pydantic import ValidationError
from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from edge_agent.backoff import Backoff
from edge_agent.cli.common import EXIT_CONFIG, EXIT_NO_DAEMON, JsonOption, age_text
from edge_agent.config import MqttConfig
from edge_agent.uplink.fleet_view import FleetView, GatewayRow, State
from edge_agent.uplink.sparkplug.topics import NAMESPACE

ONCE_DEFAULT_S = 5.0  # --once without --for: long enough for the retained births and a batch from each
CONNECT_TIMEOUT_S = 10.0
EXIT_UNREACHABLE = EXIT_NO_DAEMON  # 3: what was asked for could not be reached (here the broker)
OPTIONS = {"url": "--broker", "topic_prefix": "--prefix", "password_file": "--password-file"}  # by field


def register(app: typer.Typer, config_app: typer.Typer) -> None:
    """Add `fleet` to the edge-agent app (config_app unused)."""
    app.command()(fleet)


def fleet(
    *,
    broker: Annotated[
        str, typer.Option(help="The central broker: mqtt://HOST[:PORT] or mqtts://HOST[:PORT].")
    ] = "mqtt://127.0.0.1:1883",
    prefix: Annotated[str, typer.Option(help="The gateways' [mqtt] topic_prefix.")] = "edge",
    group: Annotated[str, typer.Option(help="Sparkplug B group id to follow ('+': every group).")] = "+",
    as_json: JsonOption = False,
    once: Annotated[
        bool, typer.Option("--once", help=f"Print once, after --for seconds (default {ONCE_DEFAULT_S:g}).")
    ] = False,
    duration: Annotated[
        float | None, typer.Option("--for", min=0.1, help="Stop after this many seconds (default: Ctrl-C).")
    ] = None,
    refresh: Annotated[float, typer.Option(min=0.2, help="Seconds between redraws.")] = 2.0,
    stale_after: Annotated[
        float, typer.Option(min=1, help="An online gateway heard nothing from for this long shows as silent.")
    ] = 120.0,
    ca_file: Annotated[Path | None, typer.Option(help="TLS: the CA of the broker's certificate.")] = None,
    username: Annotated[str | None, typer.Option(help="The broker's user name.")] = None,
    password_file: Annotated[Path | None, typer.Option(help="A file holding the password.")] = None,
) -> None:
    """Every gateway under the prefix, online or not: version, config hash, control model, backlog, last
    reading's age, last savings report, takeover warnings; a table redrawn live, or --json (one document
    with --once, else one line per refresh)."""
    if password_file is not None and username is None:
        typer.echo("--password-file needs --username", err=True)
        raise typer.Exit(EXIT_CONFIG)
    try:
        mqtt = MqttConfig(
            url=broker, topic_prefix=prefix, ca_file=ca_file, username=username, password_file=password_file
        )
    except ValidationError as error:
        for problem in error.errors():
            fields = [str(part) for part in problem["loc"]]
            where = "".join(f"{OPTIONS.get(field, field)}: " for field in fields)
            typer.echo(f"{where}{problem['msg']}", err=True)
        raise typer.Exit(EXIT_CONFIG) from None
    # Read again at every connection, as the agent does; a file that cannot be read now is a usage mistake.
    for option, path, read in (
        ("--password-file", password_file, mqtt.password),
        ("--ca-file", ca_file, mqtt.tls_context),
    ):
        try:
            read()
        except (OSError, ssl.SSLError) as error:
            typer.echo(
                f"{option} {path}: cannot read it: {getattr(error, 'strerror', None) or error}", err=True
            )
            raise typer.Exit(EXIT_CONFIG) from None
    if group != "+" and any(c in group for c in "/+#"):
        typer.echo(
            f"--group: {group!r} is a Sparkplug group id, no '/', '+' or '#' (or '+' for all)", err=True
        )
        raise typer.Exit(EXIT_CONFIG)
    watch = Watch(mqtt, group, as_json=as_json, once=once, refresh_s=refresh, stale_after_s=stale_after)
    window = duration if duration is not None else (ONCE_DEFAULT_S if once else None)
    code = asyncio.run(watch.run(window))
    raise typer.Exit(code)


class Watch:
    """The subscription, the view it feeds, and its printing."""

    def __init__(
        self,
        mqtt: MqttConfig,
        group: str,
        *,
        as_json: bool,
        once: bool,
        refresh_s: float,
        stale_after_s: float,
    ) -> None:
        self.mqtt, self.group = mqtt, group
        self.as_json, self.once, self.refresh_s = as_json, once, refresh_s
        self.view = FleetView(mqtt.topic_prefix, _now(), stale_after_s)
        self.problem: str | None = None  # the connection's, while it is retried
        self.connected = asyncio.Event()
        self.console = Console(width=None if sys.stdout.isatty() else 200, highlight=False)

    async def run(self, window: float | None) -> int:
        """Watch until the window ends or a signal; the exit code."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        listening = asyncio.create_task(self._listen())
        try:
            if not await self._first_connection(listening):
                typer.echo(
                    f"edge-agent fleet: cannot reach the broker at {self.mqtt.url}: {self.problem}", err=True
                )
                return EXIT_UNREACHABLE
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(window):
                    await self._show(stop)
        finally:
            listening.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listening
        self._print_last()
        return 0

    async def _first_connection(self, listening: asyncio.Task[None]) -> bool:
        connected = asyncio.create_task(self.connected.wait())
        await asyncio.wait({connected, listening}, timeout=CONNECT_TIMEOUT_S, return_when="FIRST_COMPLETED")
        connected.cancel()
        if not self.connected.is_set() and self.problem is None:
            self.problem = f"no answer within {CONNECT_TIMEOUT_S:g} s"
        return self.connected.is_set()

    async def _listen(self) -> None:
        """Subscribe and feed the view; a lost connection is tried again (the first failure ends it)."""
        backoff = Backoff(cap_s=15.0)
        while True:
            try:
                await self._session(backoff)
            except aiomqtt.MqttError as error:
                self.problem = str(error) or type(error).__name__
            except OSError as error:  # the TLS files or the password file
                self.problem = f"{error.filename or ''}: {error.strerror or error}".lstrip(": ")
            if not self.connected.is_set():
                return
            await asyncio.sleep(backoff.next_delay())

    async def _session(self, backoff: Backoff) -> None:
        mqtt = self.mqtt
        async with aiomqtt.Client(
            mqtt.host,
            mqtt.port,
            identifier=f"edge-agent-fleet-{secrets.token_hex(4)}",  # several may watch at once
            tls_context=mqtt.tls_context(),
            username=mqtt.username,
            password=mqtt.password(),
            timeout=CONNECT_TIMEOUT_S,
        ) as client:
            for kind in ("status", "readings", "savings", "events"):
                await client.subscribe(f"{mqtt.topic_prefix}/+/{kind}", qos=1)
            for kind in ("NBIRTH/+", "NDEATH/+", "DDATA/+/+", "NDATA/+"):
                await client.subscribe(f"{NAMESPACE}/{self.group}/{kind}", qos=1)
            self.problem = None
            self.connected.set()
            backoff.reset()
            async for message in client.messages:
                payload = message.payload if isinstance(message.payload, bytes) else b""
                self.view.feed(str(message.topic), payload, _now())

    async def _show(self, stop: asyncio.Event) -> None:
        """Print at every refresh (the live table, or a JSON line) until stopped; --once: only at the end."""
        if self.once or (not self.as_json and not self.console.is_terminal):
            await stop.wait()
            return
        if self.as_json:
            while not stop.is_set():
                print(json.dumps(self._document(), allow_nan=False), flush=True)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.refresh_s)
            return
        with Live(self._render(), console=self.console, auto_refresh=False, transient=True) as live:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.refresh_s)
                live.update(self._render(), refresh=True)

    def _print_last(self) -> None:
        """The final picture: one JSON document (pretty with --once), or the table."""
        if self.as_json:
            print(json.dumps(self._document(), indent=2 if self.once else None, allow_nan=False), flush=True)
        else:
            self.console.print(self._render())

    def _document(self) -> dict[str, object]:
        return {
            "broker": self.mqtt.url,
            "connection": self.problem or "connected",
            **self.view.snapshot(_now()),
        }

    def _render(self) -> Group:
        now = _now()
        rows = self.view.rows(now)
        table = Table(title=f"{self.mqtt.url} {escape(self.mqtt.topic_prefix)}/+", title_justify="left")
        for column in ("gateway", "state", "version", "config", "control model", "backlog", "dropped"):
            table.add_column(column)
        for column in ("last reading", "last savings", "warning"):
            table.add_column(column)
        for row in rows:
            table.add_row(*_cells(row))
        states = {state: sum(r.state == state for r in rows) for state in get_args(State)}
        footer = ", ".join(f"{count} {state}" for state, count in states.items() if count) or "none"
        lines: list[Table | Text] = [table, Text(f"{len(rows)} gateways: {footer}; at {now:%H:%M:%S} UTC")]
        if self.view.ignored:
            reasons = "; ".join(f"{reason} ({count})" for reason, count in self.view.ignored.most_common(3))
            lines.append(
                Text(f"ignored {self.view.ignored.total()} unreadable messages: {reasons}", "yellow")
            )
        if self.problem is not None:
            lines.append(Text(f"broker: {self.problem}; reconnecting", "red"))
        return Group(*lines)


STATE_STYLE = {"online": "green", "silent": "yellow", "offline": "red", "unknown": "dim"}


def _cells(row: GatewayRow) -> list[Text | str]:
    """A row's cells; "-" for what is not known."""
    config = row.config or {}
    sha = config.get("sha256")
    config_text = (
        "-"
        if not isinstance(sha, str)
        else sha[:12] + (f" {config['version']}" if config.get("version") else "")
    )
    model = row.control_model or {}
    model_text = "-" if not model else f"{model.get('file', '?')} ({model.get('stage', '?')})"
    return [
        escape(row.gateway),
        Text(row.state, STATE_STYLE[row.state]),
        escape(row.version or "-"),
        escape(config_text),
        escape(model_text),
        _backlog(row),
        "-" if row.dropped is None else f"{row.dropped:,}",
        "-"
        if row.last_reading_age_s is None
        else f"{age_text(timedelta(seconds=row.last_reading_age_s))} ago",
        _savings(row),
        _takeover(row),
    ]


def _backlog(row: GatewayRow) -> str:
    if row.backlog_left:
        return f"{row.backlog_left:,} left"
    if row.backlog_left == 0:
        return "drained"
    if row.last_batch_historical is False:
        return "live"
    return "-"


def _savings(row: GatewayRow) -> str:
    s = row.savings
    if s is None:
        return "-"
    kwh = "-" if s.avoided_kwh is None else f"{s.avoided_kwh:,.1f} kWh"
    peak = "-" if s.avoided_peak_kw is None else f"{s.avoided_peak_kw:,.1f} kW peak"
    return escape(f"{s.day}: {kwh}, {peak}" + (" (within noise)" if s.within_noise else ""))


def _takeover(row: GatewayRow) -> Text:
    t = row.takeover
    if not t or not t.get("count"):
        return Text("")
    return Text(
        f"TAKEN OVER {t.get('count')}x, last {t.get('last_at', '?')}",
        "bold red",
    )


def _now() -> datetime:
    return datetime.now(UTC)
