"""`scan modbus` and `decode`: finding Modbus devices and settling word orders on site.

Thin: options are checked here (exit 2 naming the option), the work is done by modbus_scan.py and
decode_table.py, and results are printed as rich tables (the scan's progress on stderr) or as JSON.
    Ctrl-C stops either command cleanly (exit 130; a scan prints what it found so far).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from edge_agent.cli.common import EXIT_CONFIG, EXIT_FAILURE, JsonOption, echo_json, scan_group
from edge_agent.cli.decode_table import (
    BUILTIN_QUANTITIES,
    Cell,
    Quantity,
    RegisterBlock,
    block_json,
    decode_block,
    describe_reading,
    format_value,
    parse_quantity,
    parse_register,
    plausible_readings,
    verdict,
)
from edge_agent.cli.site_file import add_found_to
from edge_agent.config import profiles
from edge_agent.errors import DeviceError

if TYPE_CHECKING:
    from edge_agent.cli.modbus_scan import ProfilePlan, Transport, UnitResult

EXIT_INTERRUPTED = 130  #     Ctrl-C, as a shell reports it
BAUDRATES = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)
ORDER_COLUMNS = ("ABCD", "CDAB", "BADC", "DCBA")
SWEPT = "38400, 19200, 9600 baud with 8E1, 8N1, 8O1"  # what `--sweep` tries (modbus_scan.sweep_settings)


class Parity(StrEnum):
    N = "N"
    E = "E"
    O = "O"  # noqa: E741 (the parity's name)


class RegisterTable(StrEnum):
    holding = "holding"
    input = "input"


Host = Annotated[str | None, typer.Option(help="Modbus TCP host (a serial gateway with --rtu-over-tcp).")]
Port = Annotated[
    int | None, typer.Option(min=1, max=65535, help="TCP port. Default: 502, or 4001 with --rtu-over-tcp.")
]
Serial = Annotated[str | None, typer.Option(help="Serial port of an RS-485 adapter, e.g. /dev/ttyUSB0.")]
Baudrate = Annotated[int, typer.Option(help="Serial line speed.")]
ParityOption = Annotated[Parity, typer.Option(help="Serial parity.")]
Stopbits = Annotated[int, typer.Option(min=1, max=2, help="Serial stop bits.")]
RtuOverTcp = Annotated[bool, typer.Option("--rtu-over-tcp", help="RTU frames over TCP (a serial gateway).")]
ConnectTimeout = Annotated[
    float, typer.Option(min=0.1, max=60, help="Seconds for the connection or serial port to open.")
]


# decode's own options
Registers = Annotated[
    list[str] | None,
    typer.Argument(
        help="Register values, decimal or hex (0x4366 0x8000); or read them live with --host or --serial.",
        metavar="REGISTERS",
        show_default=False,
    ),
]
Address = Annotated[
    str | None,
    typer.Option(
        help="Wire address of the value, decimal or 0x hex: to read it live, or to label typed registers."
    ),
]
Count = Annotated[
    int | None,
    typer.Option(min=1, max=4, help="Registers the value takes (1, 2, 4). Default: 2 live, typed: up to 4."),
]
At = Annotated[
    int | None,
    typer.Option(
        min=0, help="Typed: the register (0-based) the value starts at; the one before is offset -1."
    ),
]
Scale = Annotated[
    float | None, typer.Option(help="Try only this scale on integer readings (default: usual ones).")
]
Ranges = Annotated[
    list[str] | None,
    typer.Option(
        "--range",
        help="Plausible range NAME=LOW..HIGH[UNIT], e.g. current=0.5..80A (repeat); replaces the built-ins.",
    ),
]
TableOption = Annotated[
    RegisterTable, typer.Option(help="Table to read (live): holding (function 03) or input (04).")
]


def register(app: typer.Typer, config_app: typer.Typer) -> None:
    """Add this module's commands to the edge-agent app (config_app: the `config` group)."""
    scan_group(app).command("modbus")(scan_modbus)
    app.command("decode")(decode)


def _quiet_pymodbus() -> None:
    """pymodbus logs every refused connection and stray frame; the commands say what went wrong."""
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)


def _usage(option: str, message: str) -> NoReturn:
    typer.echo(f"{option}: {message}", err=True)
    raise typer.Exit(EXIT_CONFIG)


def _transport(
    *,
    host: str | None,
    port: int | None,
    serial: str | None,
    baudrate: int,
    parity: Parity,
    stopbits: int,
    rtu_over_tcp: bool,
) -> Transport | None:
    """The transport the options name, None when they name none; exits 2 on a contradiction."""
    from edge_agent.cli.modbus_scan import Transport  # the Modbus stack loads only for these commands

    if host is not None and serial is not None:
        _usage("--host/--serial", "give one: --host for TCP (or a serial gateway), --serial for RS-485")
    if baudrate not in BAUDRATES:
        _usage("--baudrate", f"{baudrate} is not one of {', '.join(map(str, BAUDRATES))}")
    if serial is not None:
        if rtu_over_tcp or port is not None:
            _usage("--serial", "--port and --rtu-over-tcp are for TCP; a serial port takes --baudrate etc.")
        return Transport("rtu", serial_port=serial, baudrate=baudrate, parity=parity.value, stopbits=stopbits)
    if host is None:
        return None
    if not host.strip():
        _usage("--host", "empty host name")
    if rtu_over_tcp:
        return Transport("rtu-tcp", host=host, port=port or 4001)
    return Transport("tcp", host=host, port=port or 502)


def _reason(error: DeviceError) -> str:
    """The error's message without its device and address (the caller names them)."""
    return str(error).removeprefix(f"{error.device} {error.address}: ")


def _stdout_console(*, stderr: bool = False) -> Console:
    """Tables on stdout (or stderr); wide enough when piped that a row stays on one line."""
    console = Console(stderr=stderr)
    if not console.is_terminal:
        console.width = 160
    return console


# --- scan modbus --------------------------------------------------------------------------------


def scan_modbus(
    *,
    host: Host = None,
    port: Port = None,
    serial: Serial = None,
    baudrate: Baudrate = 9600,
    parity: ParityOption = Parity.N,
    stopbits: Stopbits = 1,
    rtu_over_tcp: RtuOverTcp = False,
    units: Annotated[
        str | None,
        typer.Option(help="Unit ids: 1-247, 1,3,5-9 or 3. Default: 1 over Modbus TCP, 1-247 otherwise."),
    ] = None,
    timeout: Annotated[float, typer.Option(min=0.01, max=60, help="Seconds a unit has to answer.")] = 0.3,
    connect_timeout: ConnectTimeout = 3.0,
    profile: Annotated[
        list[str] | None, typer.Option(help="Try only this profile (repeat for more). Default: all.")
    ] = None,
    show_snippet: Annotated[
        bool,
        typer.Option(
            "--snippet",
            help="Print only [[devices]] and [[pollers]] entries on stdout (the table to stderr).",
        ),
    ] = False,
    add_to: Annotated[
        Path | None,
        typer.Option(
            help="Add the meters identified (and their pollers) to this site file, keeping its comments; "
            "refuses name clashes, skips meters already in it, keeps a backup."
        ),
    ] = None,
    sweep_line: Annotated[
        bool,
        typer.Option(
            "--sweep",
            help="Serial: try 38400, 19200 and 9600 baud with 8E1, 8N1, 8O1 until a unit answers "
            "(instead of --baudrate/--parity).",
        ),
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Ask each unit id in turn whether it is there, and which known meter (drivers/) it is.

    A unit that answers is read where each profile keeps its voltages, frequency and power factor; the
    profile whose registers read plausibly (180-260 V, 49-61 Hz, ...) is the guess, with the evidence.
    Exit 0 when the scan ran (even if nothing answered), 1 when the host or serial port cannot be
    opened, 2 for bad options.
    """
    from edge_agent.cli.modbus_scan import compress, parse_units, plans, scan_json, snippet

    transport = _transport(
        host=host, port=port, serial=serial, baudrate=baudrate, parity=parity, stopbits=stopbits,
        rtu_over_tcp=rtu_over_tcp,
    )  # fmt: skip
    if transport is None:
        _usage("--host/--serial", "give --host HOST (Modbus TCP) or --serial PORT (RS-485)")
    if sweep_line and (baudrate, parity) != (9600, Parity.N):
        _usage("--sweep", "tries the baud rates and parities itself: leave out --baudrate and --parity")
    _check_outputs(transport, sweep_line=sweep_line, json_output=json_output, show_snippet=show_snippet)
    lowest = 0 if transport.kind == "tcp" else 1  # unit 0 is broadcast on a serial line: nobody answers
    try:
        unit_ids = parse_units(units or ("1" if transport.kind == "tcp" else "1-247"), lowest, 247)
    except ValueError as exc:
        _usage("--units", str(exc))
    known = [n for n in profiles.available() if profiles.load(n).profile.protocol == "modbus"]
    for name in profile or ():
        if name not in known:
            _usage("--profile", f"no modbus profile named {name!r} (available: {', '.join(known)})")
    plan_list = plans(transport, timeout, profile or known)

    err = Console(stderr=True, highlight=False)
    where = f"{transport.serial_port}, line settings {SWEPT}" if sweep_line else transport.describe()
    err.print(
        f"Scanning {where}, units {compress(unit_ids)}, {timeout:g} s per unit; "
        f"profiles: {', '.join(p.name for p in plan_list)}",
        soft_wrap=True,
    )
    found, results, interrupted = _run_scan(
        transport, plan_list, unit_ids, (timeout, connect_timeout), sweep_line=sweep_line, err=err
    )
    if sweep_line:
        _report_sweep(found, results, interrupted)
    shown = found or transport
    if json_output:
        data = scan_json(shown, unit_ids, timeout, results, complete=not interrupted)
        if sweep_line:
            answered = found is not None and any(r.answered for r in results)
            data["line_found"] = found.line() if found is not None and answered else None
        echo_json(data)
    else:
        _print_scan(shown, results, stderr=show_snippet)
    text = snippet(shown, results) if found is not None else ""
    if show_snippet:
        typer.echo(text or "# nothing identified: no snippet")
    if add_to is not None and not interrupted:
        add_found_to(add_to, text, "scan modbus")
    if interrupted:
        typer.echo(f"scan modbus: interrupted after {len(results)} of {len(unit_ids)} units", err=True)
        raise typer.Exit(EXIT_INTERRUPTED)


def _check_outputs(transport: Transport, *, sweep_line: bool, json_output: bool, show_snippet: bool) -> None:
    if sweep_line and transport.kind != "rtu":
        _usage("--sweep", "sweeps a serial line's settings: give --serial PORT")
    if json_output and show_snippet:
        _usage("--json/--snippet", "both want stdout: give one (or --add-to FILE)")


def _report_sweep(found: Transport | None, results: Sequence[UnitResult], interrupted: bool) -> None:
    if found is not None and any(r.answered for r in results):
        typer.echo(f"scan modbus: units answer at {found.line()}", err=True)
    elif not interrupted:
        typer.echo(f"scan modbus: no unit answered at any line setting tried ({SWEPT})", err=True)


def _run_scan(
    transport: Transport,
    plan_list: Sequence[ProfilePlan],
    unit_ids: Sequence[int],
    timeouts: tuple[float, float],
    *,
    sweep_line: bool,
    err: Console,
) -> tuple[Transport | None, list[UnitResult], bool]:
    """The scan (or sweep) with its progress bar on stderr: the line setting the results were found at
    (None: a sweep where nothing answered), the results, and whether Ctrl-C stopped it. Exits 1 when the
    host or serial port cannot be opened."""
    from edge_agent.cli.modbus_scan import open_link, scan, sweep, sweep_settings

    timeout, connect_timeout = timeouts
    results: list[UnitResult] = []
    found: list[Transport | None] = [transport]
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("answered {task.fields[answered]}"),
        TimeRemainingColumn(),
        console=err,
    )
    task = progress.add_task("units", total=len(unit_ids), answered=0)

    def on_result(result: UnitResult) -> None:
        results.append(result)
        answered = sum(1 for r in results if r.answered)
        progress.update(task, advance=1, answered=answered, description=f"unit {result.unit}")

    def on_setting(setting: Transport) -> None:
        results.clear()  # only the units probed at the setting that answered are reported
        progress.reset(task, answered=0)
        progress.console.print(f"trying {setting.line()}", highlight=False)
        found[0] = setting

    def on_refused(error: DeviceError) -> None:
        reason = _reason(error).removesuffix(f" ({error.code})")
        progress.console.print(f"  skipped: {reason}", highlight=False)

    async def run() -> None:
        with progress:
            if sweep_line:
                found[0] = await sweep(  # None: no setting answered
                    sweep_settings(transport),
                    plan_list,
                    unit_ids,
                    timeouts,
                    on_setting=on_setting,
                    on_result=on_result,
                    on_refused=on_refused,
                )
                return
            async with open_link(transport, timeout, connect_timeout) as link:
                await scan(link, plan_list, unit_ids, timeout, on_result)

    _quiet_pymodbus()
    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        return found[0], results, True
    except DeviceError as error:
        typer.echo(f"scan modbus: {(found[0] or transport).describe()}: {_reason(error)}", err=True)
        raise typer.Exit(EXIT_FAILURE) from None
    return found[0], results, False


def _print_scan(transport: Transport, results: Sequence[UnitResult], *, stderr: bool = False) -> None:
    """One row per unit that answered; silent units in runs, one row a run (on stderr when stdout carries
    a snippet)."""
    from edge_agent.cli.modbus_scan import compress

    table = Table(title=f"Modbus units on {transport.describe()}", title_justify="left")
    for column in ("unit", "answered", "profile guess", "confidence", "evidence"):
        table.add_column(column, overflow="fold")
    silent: list[UnitResult] = []

    def add_silent() -> None:
        if silent:
            table.add_row(compress([r.unit for r in silent]), "no", "", "", silent[0].note, style="dim")
            silent.clear()

    for result in results:
        if not result.answered:
            if silent and silent[-1].note != result.note:
                add_silent()
            silent.append(result)
            continue
        add_silent()
        best = result.best
        if best is None:
            why = "; ".join(f"{j.profile}: {j.why()}" for j in result.judgements)
            table.add_row(str(result.unit), "yes", "unknown device", "", why)
        else:
            guess = Text(f"{best.profile} ({best.model})", style="bold green")
            table.add_row(str(result.unit), "yes", guess, best.confidence or "", best.why())
    add_silent()
    console = _stdout_console(stderr=stderr)
    console.print(table)
    answered = [r for r in results if r.answered]
    if not answered:
        console.print(f"No unit answered on {transport.describe()}.", highlight=False)
    else:
        named = sum(1 for r in answered if r.best is not None)
        silent_count = len(results) - len(answered)
        console.print(f"{len(answered)} answered, {named} identified, {silent_count} silent.")


# --- decode -------------------------------------------------------------------------------------


def decode(
    registers: Registers = None,
    *,
    address: Address = None,
    count: Count = None,
    at: At = None,
    scale: Scale = None,
    ranges: Ranges = None,
    host: Host = None,
    port: Port = None,
    serial: Serial = None,
    baudrate: Baudrate = 9600,
    parity: ParityOption = Parity.N,
    stopbits: Stopbits = 1,
    rtu_over_tcp: RtuOverTcp = False,
    unit: Annotated[int, typer.Option(min=0, max=247, help="Unit id to read (live).")] = 1,
    table: TableOption = RegisterTable.holding,
    timeout: Annotated[float, typer.Option(min=0.01, max=60, help="Seconds the unit has to answer.")] = 1.0,
    connect_timeout: ConnectTimeout = 3.0,
    json_output: JsonOption = False,
) -> None:
    """Show registers as every type in all four byte/word orders, at the address and one either side.

    Readings within a plausible range (phase voltage 180-260 V, line voltage 320-450 V, frequency
    49-61 Hz, power factor; or your --range) are marked with a check: the cell that reads 230 V names the
    type, the order, and whether the datasheet's address is one off. Exit 1 when the device cannot be
    read, 2 for bad options.
    """
    transport = _transport(
        host=host, port=port, serial=serial, baudrate=baudrate, parity=parity, stopbits=stopbits,
        rtu_over_tcp=rtu_over_tcp,
    )  # fmt: skip
    if scale is not None and not (math.isfinite(scale) and scale != 0):
        _usage("--scale", f"{scale} must be a finite number other than 0")
    wire_address: int | None = None
    if address is not None:
        try:
            wire_address = parse_register(address)
        except ValueError:
            _usage("--address", f"{address!r} is not a wire address 0..65535 (decimal or 0x hex)")
    quantities: Sequence[Quantity] = BUILTIN_QUANTITIES
    if ranges:
        try:
            quantities = [parse_quantity(text) for text in ranges]
        except ValueError as exc:
            _usage("--range", str(exc))
    if transport is None:
        block, source = _typed_block(registers or [], wire_address, count, at)
    else:
        if registers:
            _usage("REGISTERS", "give register values or --host/--serial to read them, not both")
        if wire_address is None:
            _usage("--address", "needed to read from a device (the wire address, 0-based)")
        if at is not None:
            _usage("--at", "only for typed registers: a live read takes one register either side itself")
        read_table: Literal["holding", "input"] = "input" if table is RegisterTable.input else "holding"
        block, source = _live_block(
            transport,
            unit,
            table=read_table,
            address=wire_address,
            count=count or 2,
            timeouts=(timeout, connect_timeout),
        )
    cells = decode_block(block, quantities, scale)
    if json_output:
        echo_json({"source": source, **block_json(block, cells, quantities)})
    else:
        _print_decode(block, cells, source)


def _typed_block(
    texts: Sequence[str], address: int | None, count: int | None, at: int | None
) -> tuple[RegisterBlock, dict[str, Any]]:
    if not texts:
        _usage("REGISTERS", "give register values (e.g. 0x4366 0x8000), or --host/--serial to read them")
    try:
        values = tuple(parse_register(text) for text in texts)
    except ValueError as exc:
        _usage("REGISTERS", str(exc))
    first = at or 0
    if first >= len(values):
        _usage("--at", f"{first} is past the {len(values)} registers given (0-based)")
    if address is not None and address - first < 0:
        _usage("--address", f"{address} with --at {first} puts the first typed register before address 0")
    start = None if address is None else address - first
    return RegisterBlock(values, first, count or min(4, len(values) - first), start), {"registers": "typed"}


def _live_block(
    transport: Transport,
    unit: int,
    *,
    table: Literal["holding", "input"],
    address: int,
    count: int,
    timeouts: tuple[float, float],
) -> tuple[RegisterBlock, dict[str, Any]]:
    """The value's registers and one either side, in one request where the device allows."""
    from edge_agent.cli.modbus_scan import open_link, read_registers

    timeout, connect_timeout = timeouts
    start = max(0, address - 1)
    end = min(0xFFFF, address + count)  # inclusive: the register after the value

    async def read() -> tuple[list[int | None], list[DeviceError]]:
        async with open_link(transport, timeout, connect_timeout) as link:
            return await read_registers(
                link, transport, unit, table=table, start=start, count=end - start + 1, timeout_s=timeout
            )

    where = f"{transport.describe()} unit {unit}"
    _quiet_pymodbus()
    try:
        values, errors = asyncio.run(read())
    except KeyboardInterrupt:
        typer.echo("decode: interrupted", err=True)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except DeviceError as error:
        typer.echo(f"decode: {where}: {_reason(error)}", err=True)
        raise typer.Exit(EXIT_FAILURE) from None
    at = address - start
    if any(value is None for value in values[at : at + count]):
        reason = _reason(errors[0]) if errors else "no value"
        typer.echo(f"decode: {where} {table} registers {address}..{address + count - 1}: {reason}", err=True)
        raise typer.Exit(EXIT_FAILURE)
    source = {"host": transport.describe(), "unit": unit, "table": table, "address": address, "count": count}
    return RegisterBlock(tuple(values), at, count, start), source


def _print_decode(block: RegisterBlock, cells: Sequence[Cell], source: dict[str, Any]) -> None:
    console = _stdout_console()
    shown = " ".join(
        ("" if block.start is None else f"{block.start + i}=") + ("----" if r is None else f"0x{r:04X}")
        for i, r in enumerate(block.registers)
    )
    origin = (
        "typed" if "unit" not in source else f"{source['table']}, unit {source['unit']} at {source['host']}"
    )
    console.print(f"Registers ({origin}): {shown}", highlight=False)
    grid = Table(title="Every reading (✓ plausible, ~ plausible at a guessed scale)", title_justify="left")
    for column in ("offset", "address", "type", *ORDER_COLUMNS):
        grid.add_column(column, justify="right" if column in ORDER_COLUMNS else "left")
    rows: dict[tuple[int, str], dict[str, Cell]] = {}
    for cell in cells:
        rows.setdefault((cell.offset, cell.type), {})[cell.order] = cell
    last_type = block.types()[-1]
    for (offset, data_type), by_order in rows.items():
        texts = [_cell_text(by_order[order]) for order in ORDER_COLUMNS]
        address = by_order["ABCD"].address
        label = "" if address is None else str(address)
        grid.add_row(f"{offset:+d}", label, data_type, *texts, end_section=data_type == last_type)
    console.print(grid)
    for mark, heading, assumed in (("✓", "Plausible:", False), ("~", "Plausible at a guessed scale:", True)):
        readings = plausible_readings(cells, assumed=assumed)
        if readings:
            console.print(heading)
        for cell, orders in readings:
            console.print(f"  {mark} {describe_reading(cell, orders)}", highlight=False)
    console.print(verdict(block, cells), highlight=False)


def _cell_text(cell: Cell) -> Text:
    if cell.match is None:
        return Text(format_value(cell))
    if cell.match.assumed:
        return Text(f"{format_value(cell)} ~", style="yellow")
    return Text(f"{format_value(cell)} ✓", style="bold green")
