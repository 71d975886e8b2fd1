"""`scan bacnet`: finding BACnet devices and writing a configuration snippet for them.

Thin: options are checked here (exit 2 naming the option), the scan is bacnet_scan.py's, and the results
are printed as rich tables or JSON, and as a TOML snippet of [[devices]] and [[pollers]] that
`edge-agent config check` accepts.
"""

from __future__ import annotations

import asyncio
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from edge_agent.cli.common import EXIT_CONFIG, EXIT_FAILURE, JsonOption, echo_json, scan_group
from edge_agent.cli.hangul import romanize
from edge_agent.cli.site_file import add_found_to
from edge_agent.config.devices import BACNET_OBJECT_TYPES
from edge_agent.errors import DeviceError, StartupError

if TYPE_CHECKING:
    from edge_agent.cli.bacnet_scan import ScannedDevice, ScannedObject, ScanRequest

POLL_INTERVAL_S = 5.0
IPV4_PORT = re.compile(r"^\d{1,3}(\.\d{1,3}){3}(:\d{1,5})?$")
UNITS = {
    "degrees-celsius": "degC", "degrees-fahrenheit": "degF", "degrees-kelvin": "K", "percent": "%",
    "percent-relative-humidity": "%RH", "parts-per-million": "ppm", "watts": "W", "kilowatts": "kW",
    "megawatts": "MW", "watt-hours": "Wh", "kilowatt-hours": "kWh", "megawatt-hours": "MWh", "volts": "V",
    "amperes": "A", "hertz": "Hz", "kilovolt-amperes": "kVA", "kilovolt-amperes-reactive": "kvar",
    "pascals": "Pa", "kilopascals": "kPa", "bars": "bar", "liters-per-second": "L/s",
    "liters-per-minute": "L/min", "cubic-meters-per-hour": "m3/h", "cubic-meters-per-second": "m3/s",
    "meters-per-second": "m/s", "luxes": "lx", "seconds": "s", "minutes": "min", "hours": "h",
    "no-units": "",
}  # fmt: skip
NOTHING_ANSWERED = """\
Nothing answered within {wait:g} s. Possible reasons:
  - a wrong address or port, or a firewall dropping UDP to or from {local};
  - devices on another subnet: give --bbmd HOST:PORT (a BBMD there), or ask their addresses directly;
  - a broadcast that does not reach them: devices bound to a bare address (no /prefix), and every device
    on loopback, hear only Who-Is sent to their own address and port;
  - devices that answer with a broadcast I-Am: scan from their network's port, --local-address IP/24:47808
    (stop the agent first, it holds that port), or through --bbmd."""


def register(app: typer.Typer, config_app: typer.Typer) -> None:
    """Add this module's commands to the edge-agent app (config_app: the `config` group)."""
    scan_group(app).command("bacnet")(scan_bacnet)


def _usage(message: str) -> typer.Exit:
    typer.echo(f"scan bacnet: {message}", err=True)
    return typer.Exit(EXIT_CONFIG)


def scan_bacnet(
    *,
    address: Annotated[
        list[str] | None,
        typer.Option(
            help="Who-Is to this device, HOST[:PORT] (47808), or to ports HOST:LOW-HIGH; repeatable."
        ),
    ] = None,
    broadcast: Annotated[
        list[str] | None,
        typer.Option(help="Who-Is to a directed broadcast address, e.g. 192.168.1.255:47808; repeatable."),
    ] = None,
    low: Annotated[
        int | None, typer.Option(min=0, max=4194303, help="Lowest device instance asked for.")
    ] = None,
    high: Annotated[
        int | None, typer.Option(min=0, max=4194303, help="Highest device instance asked for.")
    ] = None,
    bbmd: Annotated[
        str | None,
        typer.Option(help="Register as a foreign device with this BBMD, HOST[:PORT], and ask through it."),
    ] = None,
    local_address: Annotated[
        str,
        typer.Option(
            help="The scan's own BACnet/IP address, IP:PORT or IP/PREFIX:PORT (global broadcasts need both)."
        ),
    ] = "0.0.0.0:0",
    wait: Annotated[float, typer.Option(min=0.1, max=60, help="Seconds to collect I-Am answers.")] = 3.0,
    timeout: Annotated[float, typer.Option(min=0.1, max=60, help="Seconds per request to a device.")] = 2.0,
    objects: Annotated[
        bool, typer.Option("--objects", help="List every object: name, units, present value.")
    ] = False,
    snippet: Annotated[
        bool,
        typer.Option(
            "--snippet",
            help="Print only a configuration snippet (devices, points, pollers) on stdout; tables to stderr.",
        ),
    ] = False,
    add_to: Annotated[
        Path | None,
        typer.Option(
            help="Add the devices found (and their pollers) to this site file, keeping its comments; "
            "refuses name clashes, skips devices already in it, keeps a backup."
        ),
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Find BACnet devices with Who-Is and describe each one.

    Who-Is goes to --address and --broadcast addresses, or as a global broadcast when neither is given. For
    each device: instance, address, vendor, model, max APDU, segmentation and objects. Exit 0 when the scan
    ran (saying so when nothing answered), 1 when the local address or the BBMD fails, 2 on a usage
    mistake."""
    from edge_agent.cli import bacnet_scan

    if json_output and snippet:
        raise _usage("--json and --snippet both want stdout: give one (or --add-to FILE)")
    if (low is None) != (high is None) or (low is not None and high is not None and low > high):
        raise _usage("give --low and --high together, low first")
    if bbmd is not None and not IPV4_PORT.match(bbmd):
        raise _usage(f"--bbmd {bbmd!r}: expected IP[:PORT]")
    try:
        targets = bacnet_scan.expand_targets([*(address or []), *(broadcast or [])])
    except ValueError as exc:
        raise _usage(f"--address/--broadcast {exc}") from None
    if not re.fullmatch(r"\d{1,3}(\.\d{1,3}){3}(/\d{1,2})?(:\d{1,5})?", local_address):
        raise _usage(f"--local-address {local_address!r}: expected IP[/prefix][:port]")
    request = bacnet_scan.ScanRequest(
        targets,
        local_address,
        low,
        high,
        wait,
        timeout,
        bbmd,
        objects=objects or snippet or add_to is not None,
    )
    found = _run_scan(request)
    out = Console(stderr=snippet, width=None if sys.stdout.isatty() else 160)
    if json_output:
        echo_json({"devices": [_device_json(d) for d in found]})
    else:
        _print_devices(out, found, objects)
    if not found:
        typer.echo(NOTHING_ANSWERED.format(wait=wait, local=local_address), err=True)
    if snippet:
        typer.echo(snippet_text(found, request), nl=False)
    if add_to is not None:
        add_found_to(add_to, snippet_text(found, request), "scan bacnet")


def _run_scan(request: ScanRequest) -> list[ScannedDevice]:
    from edge_agent.cli import bacnet_scan

    try:
        return asyncio.run(bacnet_scan.scan(request))
    except ValueError as exc:  # a broadcast the local address cannot send
        raise _usage(str(exc)) from None
    except (StartupError, DeviceError) as error:
        typer.echo(f"scan bacnet: {error}", err=True)
        raise typer.Exit(EXIT_FAILURE) from None


# --- tables and JSON ---------------------------------------------------------------------------------


def _vendor(device: ScannedDevice) -> str:
    return f"{device.vendor_name or '?'} ({device.vendor_id})"


def _print_devices(out: Console, found: list[ScannedDevice], objects: bool) -> None:
    table = Table("instance", "address", "name", "vendor", "model", "max APDU", "segmentation", "objects")
    for d in found:
        count = "?" if d.object_ids is None else str(len(d.object_ids))
        row = [str(d.instance), d.address, d.name or "?", _vendor(d), d.model_name or "?", str(d.max_apdu)]
        table.add_row(*row, d.segmentation, count)
    if found:
        out.print(table)
    for d in found:
        if objects and d.objects:
            listing = Table(
                "object", "name", "units", "present value", title=f"device {d.instance} ({d.name})"
            )
            for o in d.objects:
                value = "" if o.present_value is None else _shown(o.present_value)
                listing.add_row(o.object_id, o.name or "", o.units or "", value)
            out.print(listing)
        for error in d.errors:
            out.print(f"[yellow]device {d.instance}: {escape(error)}[/yellow]")


def _shown(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _device_json(d: ScannedDevice) -> dict[str, Any]:
    objects = None
    if d.objects is not None:
        objects = [
            {
                "type": o.type,
                "instance": o.instance,
                "name": o.name,
                "units": o.units,
                "present_value": o.present_value,
            }
            for o in d.objects
        ]
    return {
        "instance": d.instance,
        "address": d.address,
        "name": d.name,
        "vendor_id": d.vendor_id,
        "vendor_name": d.vendor_name,
        "model_name": d.model_name,
        "max_apdu": d.max_apdu,
        "segmentation": d.segmentation,
        "object_count": None if d.object_ids is None else len(d.object_ids),
        "object_ids": None if d.object_ids is None else list(d.object_ids),
        "objects": objects,
        "errors": list(d.errors),
    }


# --- the configuration snippet -----------------------------------------------------------------------


def _toml(text: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's)."""
    import json

    return json.dumps(text, ensure_ascii=False)


def _unique(name: str, taken: set[str]) -> str:
    candidate, n = name, 2
    while candidate in taken:
        suffix = f"_{n}"
        candidate, n = name[: 64 - len(suffix)] + suffix, n + 1
    taken.add(candidate)
    return candidate


def device_name(d: ScannedDevice) -> str:
    """A configuration name from the device's object name (Hangul romanised): letters, digits, '_', '.',
    '-'."""
    name = re.sub(r"[^a-z0-9_.-]+", "-", romanize(d.name or "").lower()).strip("-.")[:64]
    return name or f"bacnet-{d.instance}"


def point_name(o: ScannedObject) -> str:
    """A point name from the object's name, as the profiles spell them: 'Zone Temperature' ->
    'zone_temperature', '1층 열람실 온도' -> '1cheung_yeollamsil_ondo'; from its type and instance when
    nothing readable is left ('analog_input_3')."""
    name = re.sub(r"[^a-z0-9]+", "_", romanize(o.name or "").lower()).strip("_")[:64]
    return name if re.search(r"[a-z]", name) else f"{o.type.replace('-', '_')}_{o.instance}"


def _label(name: str | None) -> str:
    """The object's own name as a point label: control characters as spaces, at most 128 characters; ''
    when nothing is left."""
    return re.sub(r"[\x00-\x1f\x7f]+", " ", name or "").strip()[:128].strip()


def _pollable(o: ScannedObject) -> bool:
    return o.type in BACNET_OBJECT_TYPES and o.type != "device" and o.present_value is not None


def snippet_text(found: list[ScannedDevice], request: ScanRequest) -> str:
    """[[devices]] (protocol bacnet-ip) with a point per object that has a present value, and a [[pollers]]
    entry for each; devices that cannot be configured this way are named in comments."""
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    lines = [
        f"# edge-agent scan bacnet, {stamp}: {len(found)} device(s) answered.",
        "# Check with `edge-agent config check FILE`, then merge into the site's configuration.",
        "# Every point is read-only: a write_range = [low, high] lets commands and control write it.",
        "",
    ]
    taken: set[str] = set()
    names: list[str] = []
    for d in found:
        points = [o for o in d.objects or () if _pollable(o)]
        if not IPV4_PORT.match(d.address) or not points:
            why = (
                "no object with a present value was read"
                if IPV4_PORT.match(d.address)
                else "not an IP address"
            )
            lines += [f"# device {d.instance} at {d.address} left out: {why}", ""]
            continue
        name = _unique(device_name(d), taken)
        names.append(name)
        lines += [
            f"# {d.model_name or 'model ?'} ({_vendor(d)}), max APDU {d.max_apdu}, {d.segmentation}",
            "[[devices]]",
            f"name = {_toml(name)}",
            'protocol = "bacnet-ip"',
            f"host = {_toml(d.address)}",
            f"instance = {d.instance}",
            f"timeout_s = {request.timeout_s:g}",
            "",
        ]
        point_names: set[str] = set()
        for o in points:
            lines += ["[[devices.points]]", f"name = {_toml(_unique(point_name(o), point_names))}"]
            if label := _label(o.name):
                lines += [f"label = {_toml(label)}"]
            lines += [f"object = {_toml(o.object_id)}"]
            if o.units is not None:
                lines += [f"unit = {_toml(UNITS.get(o.units, o.units))}"]
            if o.type.endswith(("-output", "-value")):
                lines += ["# write_range = [low, high]  # commandable? then edge-agent may write it"]
            lines += [""]
    for name in names:
        lines += ["[[pollers]]", f"device = {_toml(name)}", f"interval_s = {POLL_INTERVAL_S:g}", ""]
    return "\n".join(lines)
