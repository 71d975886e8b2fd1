"""`read` and `write`: one point or one raw register/object, from a technician's laptop.

    edge-agent read DEVICE [POINT ...] [--priority-array] [--json]
    edge-agent read --modbus HOST[:PORT] [--unit N] --register TABLE:ADDRESS [--type T] [--order O]
    edge-agent read --bacnet HOST[:PORT] --object TYPE,INSTANCE [--property P] [--index N]
    edge-agent write DEVICE POINT VALUE [--priority N | --operator]
    edge-agent write DEVICE POINT --relinquish [--priority N | --operator]

Exit codes: 0 done, 1 a device did not answer or refused (the message names it and its address), 2 a usage
or policy mistake (nothing was sent). The logic lives in point_access.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from edge_agent.cli.common import EXIT_CONFIG, EXIT_FAILURE, ConfigOption, JsonOption, echo_json, load_or_exit
from edge_agent.errors import DeviceError, Refused, StartupError

if TYPE_CHECKING:
    from edge_agent.cli.point_access import PointValue, WriteOutcome, WritePlan
    from edge_agent.config import AgentConfig, BacnetDevice, ModbusDevice

Slots = list[float | None] | None

DeviceArg = Annotated[str, typer.Argument(help="A configured device's name.", show_default=False)]
LocalAddressOption = Annotated[
    str | None,
    typer.Option(
        help="This command's own BACnet/IP address, IP or IP:PORT (default: the configured IP, any port)."
    ),
]
# Raw reads, without a configuration.
ModbusOption = Annotated[
    str | None, typer.Option(help="Raw read of a Modbus TCP device at HOST[:PORT] (502).")
]
UnitOption = Annotated[int, typer.Option(min=0, max=247, help="Raw Modbus: the unit id.")]
RegisterOption = Annotated[
    str | None,
    typer.Option(
        help="Raw Modbus: TABLE:ADDRESS. TABLE: coil, discrete, holding, input, or the read function code "
        "1, 2, 3 (holding), 4 (input); ADDRESS: the 0-based wire address, decimal or 0x hex."
    ),
]
TypeOption = Annotated[
    str,
    typer.Option(
        "--type", help="Raw Modbus: int16, uint16, int32, uint32, int64, uint64, float32, float64, bitfield."
    ),
]
OrderOption = Annotated[str, typer.Option(help="Raw Modbus: byte/word order ABCD, CDAB, BADC or DCBA.")]
CountOption = Annotated[int | None, typer.Option(min=1, max=2, help="Raw Modbus: registers of a bitfield.")]
ScaleOption = Annotated[float, typer.Option(help="Raw Modbus: value = raw x scale.")]
BacnetOption = Annotated[
    str | None, typer.Option(help="Raw read of a BACnet/IP device at HOST[:PORT] (47808).")
]
ObjectOption = Annotated[
    str | None, typer.Option("--object", help="Raw BACnet: TYPE,INSTANCE, e.g. analog-value,1.")
]
PropertyOption = Annotated[
    str, typer.Option("--property", help="Raw BACnet: the property, e.g. priority-array or object-name.")
]
IndexOption = Annotated[int | None, typer.Option(min=0, help="Raw BACnet: one element of an array property.")]
TimeoutOption = Annotated[float, typer.Option(min=0.1, max=60, help="Raw reads: seconds per request.")]


@contextlib.contextmanager
def _exits() -> Iterator[None]:
    """A refusal exits 2 (nothing was sent); a device that failed, or a stack that cannot start, exits 1."""
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # it logs every refused connection; we say why
    try:
        yield
    except Refused as refusal:
        typer.echo(f"edge-agent: {refusal}", err=True)
        raise typer.Exit(EXIT_CONFIG) from None
    except (DeviceError, StartupError) as error:
        typer.echo(f"edge-agent: {error}", err=True)
        raise typer.Exit(EXIT_FAILURE) from None


def _usage(message: str) -> typer.Exit:
    typer.echo(f"edge-agent: {message}", err=True)
    return typer.Exit(EXIT_CONFIG)


def _console() -> Console:
    return Console(width=None if sys.stdout.isatty() else 160)


def slots_line(slots: Slots) -> str:
    """A priority array in one line: the slots that hold a value, and which one is in control."""
    if slots is None:
        return "no priority array"
    held = [(i, value) for i, value in enumerate(slots, start=1) if value is not None]
    if not held:
        return "all 16 slots relinquished (the relinquish default is in control)"
    shown = ", ".join(f"{i}={value:g}" for i, value in held)
    return f"{shown} (priority {held[0][0]} in control)"


def read(
    device: Annotated[
        str | None, typer.Argument(help="A configured device's name.", show_default=False)
    ] = None,
    points: Annotated[
        list[str] | None, typer.Argument(help="Its points (default: all).", show_default=False)
    ] = None,
    *,
    config: ConfigOption = None,
    priority_array: Annotated[
        bool, typer.Option("--priority-array", help="Also show each BACnet point's priority array.")
    ] = False,
    modbus: ModbusOption = None,
    unit: UnitOption = 1,
    register: RegisterOption = None,
    data_type: TypeOption = "uint16",
    order: OrderOption = "ABCD",
    count: CountOption = None,
    scale: ScaleOption = 1.0,
    bacnet: BacnetOption = None,
    obj: ObjectOption = None,
    prop: PropertyOption = "present-value",
    index: IndexOption = None,
    timeout: TimeoutOption = 2.0,
    local_address: LocalAddressOption = None,
    json_output: JsonOption = False,
) -> None:
    """Read configured points, or one raw Modbus register or BACnet property.

    Configured points go through the same requests and decoding as polling. Exit 1 when the device does not
    answer or a point fails, 2 on a usage mistake."""
    from edge_agent.cli import point_access as access

    if [device is not None, modbus is not None, bacnet is not None].count(True) != 1:
        raise _usage("read: give a configured DEVICE, or --modbus or --bacnet for a raw read")
    if modbus is not None and register is None:
        raise _usage("read --modbus: give --register TABLE:ADDRESS")
    if bacnet is not None and obj is None:
        raise _usage("read --bacnet: give --object TYPE,INSTANCE")
    settings = load_or_exit(config)
    with _exits():
        address = access.local_address_for(settings, local_address)
        if bacnet is not None and obj is not None:
            work = access.read_bacnet_property(
                bacnet, obj, prop, index=index, local_address=address, timeout_s=timeout
            )
            _show_property(
                bacnet,
                f"{obj} {prop}" + ("" if index is None else f"[{index}]"),
                asyncio.run(work),
                json_output,
            )
            return
        target: ModbusDevice | BacnetDevice
        if modbus is not None and register is not None:
            target = access.raw_modbus_device(
                modbus, unit, register, data_type, order, count=count, scale=scale, timeout_s=timeout
            )
            names = [p.name for p in target.points]
        else:
            target = access.find_device(settings, device or "")
            names = access.point_names(target, points or [])
        values, slots = asyncio.run(_read(target, names, priority_array, address, settings))
    _show_values(values, slots if priority_array else None, json_output)
    if any(v.error for v in values):
        raise typer.Exit(EXIT_FAILURE)


async def _read(
    device: ModbusDevice | BacnetDevice,
    names: list[str],
    with_slots: bool,
    address: str,
    settings: AgentConfig,
) -> tuple[list[PointValue], dict[str, Slots]]:
    from edge_agent.cli import point_access as access

    async with access.connected(device, address, settings) as client:
        values = await access.read_points(client, device, names)
        slots = {n: await access.priority_array(client, device, n) for n in names} if with_slots else {}
    return values, slots


def _show_values(values: list[PointValue], slots: dict[str, Slots] | None, json_output: bool) -> None:
    if json_output:
        rows = []
        for v in values:
            row: dict[str, Any] = {
                "device": v.device,
                "point": v.point,
                "label": v.label,
                "value": v.value,
                "unit": v.unit,
                "quality": v.quality.value,
                "error": v.error,
            }
            if slots is not None:
                row["priority_array"] = slots[v.point]
            rows.append(row)
        echo_json({"readings": rows})
        return
    columns = ["device", "point", "value", "unit", "quality"] + ([] if slots is None else ["priority array"])
    table = Table(*columns)
    for v in values:
        shown = v.error or ("" if v.value is None else f"{v.value:g}")
        extra = [] if slots is None else [slots_line(slots[v.point])]
        point = v.point if v.label is None else f"{v.point} ({v.label})"
        table.add_row(v.device, point, shown, v.unit, v.quality.value, *extra)
    _console().print(table)


def _show_property(address: str, what: str, value: Any, json_output: bool) -> None:
    if json_output:
        echo_json({"address": address, "property": what, "value": value})
    elif what.endswith(" priority-array") and isinstance(value, list):
        typer.echo(
            f"{address} {what}: {slots_line([v if isinstance(v, int | float) else None for v in value])}"
        )
    else:
        typer.echo(f"{address} {what}: {value}")


def write(
    device: DeviceArg,
    point: Annotated[str, typer.Argument(help="The point (it needs a write_range).", show_default=False)],
    value: Annotated[
        float | None,
        typer.Argument(
            help="Within the point's write_range; a negative one after the options and --: -- -5."
        ),
    ] = None,
    *,
    priority: Annotated[
        int | None, typer.Option(help="BACnet priority 9-15 (default: the device's write_priority, 10).")
    ] = None,
    operator: Annotated[
        bool,
        typer.Option("--operator", help="BACnet: write at priority 8, the manual operator's, on purpose."),
    ] = False,
    relinquish: Annotated[
        bool, typer.Option("--relinquish", help="BACnet: give the priority back (write NULL), no VALUE.")
    ] = False,
    config: ConfigOption = None,
    local_address: LocalAddressOption = None,
    json_output: JsonOption = False,
) -> None:
    """Write one configured point within its write_range, then read it back.

    BACnet writes go at a priority (default the device's write_priority, 10). Refused with exit 2, before
    anything is sent, when the point has no write_range, the value is outside it, or the priority is 1-7 or
    16 (8 only with --operator). Exit 1 when the device does not answer or refuses."""
    from edge_agent.cli import point_access as access

    if relinquish == (value is not None):
        raise _usage("write: give a VALUE, or --relinquish (not both)")
    settings = load_or_exit(config)
    with _exits():
        address = access.local_address_for(settings, local_address)
        target = access.find_device(settings, device)
        plan = access.plan_write(target, point, value, priority=priority, operator=operator)
        outcome = asyncio.run(_write(plan, address, settings))
    back = outcome.readback
    if json_output:
        echo_json(
            {
                "device": target.name,
                "point": plan.point,
                "written": plan.value,
                "priority": plan.priority,
                "value": back.value,
                "unit": back.unit,
                "quality": back.quality.value,
                "error": back.error,
                "priority_array": outcome.priority_array,
            }
        )
    else:
        now = back.error or ("no value" if back.value is None else f"{back.value:g} {back.unit}".strip())
        typer.echo(f"{target.name}/{plan.point} ({target.address}): {plan.describe()}; reads back {now}")
        if outcome.priority_array is not None:
            typer.echo(f"  priority array: {slots_line(outcome.priority_array)}")
    if back.error:
        raise typer.Exit(EXIT_FAILURE)


async def _write(plan: WritePlan, address: str, settings: AgentConfig) -> WriteOutcome:
    from edge_agent.cli import point_access as access

    async with access.connected(plan.device, address, settings) as client:
        return await access.write(client, plan)


def register(app: typer.Typer, config_app: typer.Typer) -> None:
    """Add this module's commands to the edge-agent app (config_app: the `config` group)."""
    app.command("read")(read)
    app.command("write")(write)
