"""`status` and `control`: talking to the running daemon over its local UNIX socket.

Both send the same JSON requests as the MQTT command topic (docs/mqtt.md) to the socket the configuration
names (`[gateway] socket`), so they find the daemon by the same --config it runs on. `status` shows the
hazards first (devices not `up`, a buffer that is not writing, writes of ours held on devices). When the
agent does not answer, both still list the writes its journal says are held (a killed run's), then exit 3.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from edge_agent.cli.common import (
    EXIT_CONFIG,
    EXIT_FAILURE,
    EXIT_NO_DAEMON,
    ConfigOption,
    JsonOption,
    age_text,
    echo_json,
    load_or_exit,
    mib_text,
)
from edge_agent.control.settings import ControlMode
from edge_agent.service.local_socket import find_socket, request

REQUEST_TIMEOUT_S = 10.0

SocketOption = Annotated[
    Path | None,
    typer.Option("--socket", help="The daemon's socket (default: the one the configuration names)."),
]


def register(app: typer.Typer, config_app: typer.Typer) -> None:
    """Add this module's commands to the edge-agent app (config_app: the `config` group)."""
    app.command()(status)
    app.command()(control)


def status(config: ConfigOption = None, socket: SocketOption = None, as_json: JsonOption = False) -> None:
    """Ask the running agent how it is: hazards first, then devices, buffer, uplink, control. Exit 3 when it
    does not answer (the writes its journal lists as still held on devices are shown even then)."""
    result = _ask(config, socket, "status", {}, as_json=as_json)
    if as_json:
        echo_json(result)
        return
    _print_status(result, datetime.now(UTC), Console(markup=False))  # names, errors: printed as they are


def control(
    mode: Annotated[ControlMode | None, typer.Argument(help="off, shadow or active.")] = None,
    target: Annotated[
        float | None, typer.Option("--target", help="Demand target in kW (15-minute average).")
    ] = None,
    config: ConfigOption = None,
    socket: SocketOption = None,
    as_json: JsonOption = False,
) -> None:
    """Switch load shaving off, to shadow (decide and log, write nothing) or active, and/or set its
    demand target; with neither, show control's state. Lasts until the agent restarts ([control] mode)."""
    results: dict[str, Any] = {}
    if target is not None:
        results |= _ask(config, socket, "set_demand_target", {"kw": target}, as_json=as_json)
    if mode is not None:
        results |= _ask(config, socket, "set_control_mode", {"mode": mode.value}, as_json=as_json)
    status = _ask(config, socket, "status", {}, as_json=as_json)
    state = status["control"]
    if as_json:
        echo_json(state)
        return
    for key, value in results.items():
        typer.echo(f"{key} set to {value}")
    _print_control(state, Console(markup=False), status.get("labels") or {})


def _ask(
    config: Path | None, socket: Path | None, command: str, args: dict[str, Any], *, as_json: bool = False
) -> dict[str, Any]:
    """One command's result from the daemon; exits 2 or 1 when it refuses, and 3 when it cannot be reached,
    after listing the writes the journal says are still held on devices."""
    settings = load_or_exit(config)
    path = socket or find_socket(settings)
    payload = json.dumps({"id": "cli", "command": command, "args": args}).encode()
    try:
        reply = json.loads(asyncio.run(request(path, payload, REQUEST_TIMEOUT_S)))
    except (OSError, TimeoutError) as exc:
        reason = "no answer in time" if isinstance(exc, TimeoutError) else exc.strerror or str(exc)
        typer.echo(f"edge-agent is not running, or not on {path}: {reason}", err=True)
        _show_journal(settings.buffer.resolved_path().parent, f"{path}: {reason}", as_json)
        raise typer.Exit(EXIT_NO_DAEMON) from None
    if not reply.get("ok"):
        error = reply.get("error") or {}
        typer.echo(f"{command}: refused ({error.get('code')}): {error.get('message')}", err=True)
        usage = error.get("code") in {"invalid", "out-of-limits", "unknown-point", "not-writable"}
        raise typer.Exit(EXIT_CONFIG if usage else EXIT_FAILURE)
    result: dict[str, Any] = reply.get("result") or {}
    return result


def _show_journal(state_dir: Path, reason: str, as_json: bool) -> None:
    """The writes a run that is not answering left held on devices, from its journal (holds.db)."""
    from edge_agent.errors import JournalError  # (sqlite3 only for this)
    from edge_agent.store.holds import HOLDS_JOURNAL, read_holds

    journal = state_dir / HOLDS_JOURNAL
    try:
        holds = read_holds(journal)
    except JournalError as error:
        typer.echo(f"holds: {error}", err=True)
        return
    writes = [
        {
            "point": h.point,
            "value": h.value,
            "priority": h.priority,
            "since": h.since.isoformat(),
            "lease_until": None if h.lease_until is None else h.lease_until.isoformat(),
            "holder": "central" if h.owner == "central" else "left",
        }
        for h in holds
    ]
    if as_json:
        echo_json({"running": False, "reason": reason, "journal": str(journal), "holds": writes})
        return
    if not writes:
        typer.echo(f"holds: none in {journal}")
        return
    typer.echo(f"holds still on the devices, by {journal} (the next start gives control's back):")
    for write in writes:
        typer.echo(_hold_line(write))


def _age(iso: str | None, now: datetime) -> str:
    if iso is None:
        return "never"
    return f"{age_text(now - datetime.fromisoformat(iso))} ago"


def _hazards(status: dict[str, Any], now: datetime) -> list[str]:
    """What needs a look, before any table: devices not up, a buffer not writing, writes of ours held."""
    lines = []
    for device in status["devices"]:
        if device["health"] != "up":
            last = _age(device["last_success"], now)
            lines.append(f"  device {device['device']}: {device['health']}, last complete poll {last}")
    buffer = status["buffer"]
    if buffer.get("write_state", "writing") != "writing":
        lines.append(f"  buffer: {buffer['write_state']}: {buffer['write_reason']}")
    lines += [_hold_line(write) for write in status.get("holds", [])]
    uplink = status.get("uplink") or {}
    if uplink.get("taken_over"):
        last = _age(uplink["last_takeover"], now)
        lines.append(
            f"  uplink: another client with gateway id {status['gateway']!r} takes its session at "
            f"{uplink['broker']} ({uplink['takeovers']} times, the last {last}): two gateways with one id? "
            "This one waits longer before each reconnect; give each its own id"
        )
    return lines


def _of_brokers(uplink: dict[str, Any]) -> str:
    brokers = uplink.get("brokers", 1)
    return f" (one of {brokers} brokers)" if brokers > 1 else ""


def _print_status(status: dict[str, Any], now: datetime, console: Console) -> None:
    hazards = _hazards(status, now)
    console.print(f"gateway {status['gateway']}: " + ("hazards:" if hazards else "no hazards"))
    for line in hazards:
        console.print(line)
    devices = Table(title=f"gateway {status['gateway']}: devices")
    for column in ("device", "health", "last poll", "polls", "failures", "last error"):
        devices.add_column(column)
    colours = {"up": "green", "degraded": "yellow", "late": "red", "down": "red"}
    for device in status["devices"]:
        health = device["health"]
        devices.add_row(
            device["device"],
            Text(health, style=colours.get(health, "")),
            _age(device["last_success"], now),
            str(device["polls"]),
            str(device["failures"]),
            device["last_error"] or "",
        )
    console.print(devices)
    buffer, uplink, queue = status["buffer"], status["uplink"], status["queue"]
    oldest = "none" if buffer["oldest_ts"] is None else _age(buffer["oldest_ts"], now)
    writing = buffer.get("write_state", "writing")
    console.print(
        f"buffer: {writing}; {buffer['depth']} readings unsent, oldest {oldest}; "
        f"{mib_text(buffer['size_bytes'])} of {mib_text(buffer['cap_bytes'])}; "
        f"dropped unsent {buffer['dropped']} (ever: the cap, a full disk or queue, a damaged file, a stop)"
        + (f", {buffer['unnumbered']} of them since start never numbered" if buffer.get("unnumbered") else "")
    )
    queue_dropped = (
        f"; {queue['readings_dropped']} readings dropped (queue full)"
        if queue.get("readings_dropped")
        else ""
    )
    console.print(f"queue: {queue['batches_waiting']} of {queue['capacity']} batches waiting{queue_dropped}")
    session = f"MQTT {uplink['mqtt']}, session {uplink['session']}"
    console.print(
        f"uplink: {uplink['state']} to {uplink['broker']}{_of_brokers(uplink)} ({session}); "
        f"{uplink['readings_published']} readings published; "
        f"events waiting {uplink['events_waiting']}, dropped {uplink['events_dropped']}"
        + (f"; last error: {uplink['last_error']}" if uplink["last_error"] else "")
    )
    clock = status["clock"]
    held = f"; {clock['held']} readings held until it is set" if clock["held"] else ""
    steps = ""
    if clock.get("steps"):  # stepped while running: how far, and what was marked
        steps = (
            f"; {clock['steps']} step(s), the last {clock['last_step_s']:+.0f} s; "
            f"{clock['uncertain']} readings sent as uncertain-time"
        )
    console.print(f"clock: {clock['state']}{held}{steps}")
    _print_control(status["control"], console, status.get("labels") or {})
    _print_building_model(status.get("building_model"), console)
    if status.get("demand_response"):
        _print_demand_response(status["demand_response"], console)


def _print_demand_response(state: dict[str, Any], console: Console) -> None:
    """[openadr]: the VTN, and each event pending, active or recently done, with our answer."""
    registered = "registered" if state["registered"] else "not registered"
    line = f"demand response: {registered} with {state['vtn']}"
    if state["reduction_kw"] is not None:
        line += (
            f"; reducing {state['reduction_kw']:.1f} kW against a baseline of {state['baseline_kw']:.1f} kW"
        )
    console.print(line)
    for event in state["events"]:
        window = f"{_clock_time(event['start'])} to {_clock_time(event['end'])}" if event["start"] else ""
        target = "" if event["target_kw"] is None else f", target {event['target_kw']:.1f} kW"
        why = f" ({event['reason']})" if event["reason"] else ""
        console.print(f"  event {event['event_id']}: {event['state']} {window}{target}, {event['opt']}{why}")


def _print_building_model(model: dict[str, Any] | None, console: Console) -> None:
    if model is None:
        return
    loaded = model["loaded"]
    if loaded is None:
        console.print(f"building model: {model['path']} refused: {model['refused']}")
        return
    console.print(
        f"building model: {loaded['file']} sha256 {loaded['sha256'][:12]} fitted {loaded['fitted_at']}"
    )


def _labelled(point: str, labels: dict[str, str]) -> str:
    """'device/point', with the point's label when it has one: 'room/t_1 (1층 열람실 온도)'."""
    return f"{point} ({labels[point]})" if point in labels else point


def _print_control(state: dict[str, Any], console: Console, labels: dict[str, str] | None = None) -> None:
    labels = labels or {}
    target, learned = state.get("demand_target_kw"), state.get("month_target_kw")
    if target is not None:
        aim = f"{target:g} kW"
    elif learned is not None:
        aim = f"the month's open-hours peak, {learned:.1f} kW"
    else:
        aim = "none" if "policy" not in state else "none yet (the month's open-hours peak is not known)"
    line = f"control: {state['mode']}, target {aim}"
    if "policy" not in state:  # no [control] points configured: nothing to decide
        console.print(line + " (no [control] points configured)")
        return
    decided = state["policy"] + (f" (fallback: {state['fallback']})" if state["fallback"] else "")
    console.print(f"{line}, decided by {decided}, {state['steps']} steps")
    if state.get("model_trust"):  # the model in use: who signed it (or UNSIGNED), and which file exactly
        console.print(f"  model {state['model']}: {state['model_trust']}, sha256 {state['model_sha256']}")
    if state.get("shadow"):  # a pushed model deciding beside it, never written (apply_model)
        shadow = state["shadow"]
        console.print(
            f"  in shadow: {shadow['model']}, sha256 {shadow['sha256']}, {shadow['steps']} decisions,"
            f" decides from {shadow['until']}"
        )
    if state["missing_inputs"]:
        missing = ", ".join(_labelled(point, labels) for point in state["missing_inputs"])
        console.print(f"  inputs missing or stale: {missing}")
    for write in state["writes"]:
        console.print(_hold_line({**write, "point": _labelled(write["point"], labels)}))
    for point in state["backed_off"]:
        console.print(f"  backs off {_labelled(point, labels)}: an operator holds it")
    if state.get("savings_today"):
        console.print(_savings_line(state["savings_today"]))


def _savings_line(today: dict[str, Any]) -> str:
    """Today's savings so far against the baseline, with the 68% uncertainty when the baseline has it."""
    avoided = today["avoided"]
    line = f"  saving today {avoided['energy_kwh']:.1f} kWh"
    spread = today.get("uncertainty")
    if spread is not None:
        line += f" +- {spread['kwh_68']:.1f} (68%)" + (
            ", within the baseline's noise" if spread["within_noise"] else ""
        )
    return line + f", {avoided['energy_cost_krw']:.0f} KRW, over {today['hours_covered']:.1f} h"


_HOLDERS = {
    "control": "holds",
    "recovered": "holds (a previous run's, not given back yet)",
    "left": "holds (left by a run that is not answering)",
    "central": "holds for central (write_point, never released by the agent)",
}


def _hold_line(write: dict[str, Any]) -> str:
    """One write we hold on a device: whose, where, since when, and its lease."""
    holder = write.get("holder", "control")
    at = "" if write["priority"] is None else f" at priority {write['priority']}"
    since, lease = write.get("since"), write.get("lease_until")
    when = "" if since is None else f", since {_clock_time(since)}"
    until = "no lease" if lease is None else f"lease until {_clock_time(lease)}"
    return f"  {_HOLDERS.get(holder, holder)} {write['point']} = {write['value']:g}{at}{when}, {until}"


def _clock_time(iso: str) -> str:
    return datetime.fromisoformat(iso).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
