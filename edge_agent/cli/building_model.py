"""`model fit`: learn the building from its own readings (docs/building_model.md).

Reads the agent's buffer (read-only, safe while it runs) or an export in `buffer export`'s format, takes
the zones, setpoints, outdoor temperature and main meter from the configuration's [control] section, fits
the grey-box zone models and the base-load profile, prints the held-out report and writes the model file,
or refuses, saying why, and writes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from edge_agent.cli.common import EXIT_CONFIG, EXIT_FAILURE, ConfigOption, JsonOption, echo_json, load_or_exit
from edge_agent.errors import BufferUnreadable

if TYPE_CHECKING:
    from edge_agent.control.building_model.fit import BuildingFit


def register(app: typer.Typer, config_app: typer.Typer) -> None:
    """Add `model fit` to the `model` group (cli/data.py)."""
    from edge_agent.cli.data import model_app

    model_app.command("fit")(model_fit)


def model_fit(
    output: Annotated[Path, typer.Option("--output", "-o", help="The building model file to write.")],
    readings: Annotated[
        Path | None,
        typer.Argument(
            help="An export (.jsonl or .csv, `buffer export`'s format). Default: the agent's buffer."
        ),
    ] = None,
    hvac_power: Annotated[
        str | None,
        typer.Option(help="The HVAC power point ('device/point'), for the base load (main meter less HVAC)."),
    ] = None,
    config: ConfigOption = None,
    json: JsonOption = False,
) -> None:
    """Fit per zone a grey-box temperature model and the base-load profile on commissioning data (mode off
    or shadow, a week at least), judged on held-out days; refused fits are not written."""
    from edge_agent.control.building_model.file import fit_report, to_json  # numpy: only for this command
    from edge_agent.control.building_model.fit import ModelPoints, fit_building
    from edge_agent.control.building_model.series import SlotSeries
    from edge_agent.control.setup import ZonePoints
    from edge_agent.service.control_setup import opening_hours

    settings = load_or_exit(config)
    control = settings.control
    units = {f"{d.name}/{p.name}": p.unit for d in settings.devices for p in d.points}
    if hvac_power is not None and hvac_power not in units:
        typer.echo(f"--hvac-power: {hvac_power} is not a configured point", err=True)
        raise typer.Exit(EXIT_CONFIG)
    points = ModelPoints(
        tuple(
            ZonePoints(z.name, z.temperature, z.cooling_setpoint, z.heating_setpoint) for z in control.zones
        ),
        control.outdoor_temperature,
        control.demand,
        control.demand is not None and units.get(control.demand) == "W",
        hvac_power,
        hvac_power is not None and units.get(hvac_power) == "W",
    )
    series = SlotSeries(points.wanted())
    source = str(readings) if readings is not None else str(settings.buffer.resolved_path().absolute())
    try:
        series.extend(_export_rows(readings) if readings is not None else _buffer_rows(Path(source)))
    except (OSError, BufferUnreadable) as error:
        typer.echo(f"{source}: cannot read: {getattr(error, 'strerror', None) or error}", err=True)
        raise typer.Exit(EXIT_FAILURE) from None
    except ValueError as error:
        typer.echo(f"{source}: {error}", err=True)
        raise typer.Exit(EXIT_CONFIG) from None
    fit = fit_building(series, points, opening_hours(control))
    report = fit_report(fit)
    if fit.accepted:
        try:
            output.write_text(to_json(fit))
        except OSError as error:
            typer.echo(f"--output: cannot write {output} ({error.strerror or error})", err=True)
            raise typer.Exit(EXIT_FAILURE) from None
    if json:
        echo_json({"source": source, "output": str(output) if fit.accepted else None, **report})
    else:
        for line in _report_lines(fit, report, output):
            typer.echo(line, err=not fit.accepted and line.startswith("refused"))
    if not fit.accepted:
        raise typer.Exit(EXIT_FAILURE)


def _export_rows(path: Path) -> Iterator[tuple[str, datetime, float]]:
    from edge_agent.control.building_model.series import rows_of_export
    from edge_agent.control.savings.fit import read_rows

    return iter(rows_of_export(read_rows(path)))


def _buffer_rows(path: Path) -> Iterator[tuple[str, datetime, float]]:
    from edge_agent.store.reader import BufferReader

    with BufferReader(path) as reader:
        for stored in reader.unsent():
            r = stored.reading
            if r.value is not None and r.quality.value == "good":
                yield f"{r.device}/{r.point}", r.ts, float(r.value)


def _report_lines(fit: BuildingFit, report: dict[str, Any], output: Path) -> Iterator[str]:
    data = report["data"]
    held = ", ".join(data["held_out_days"]) or "-"
    yield f"data: {data['days']} days from {data['first']} to {data['last']}; held out: {held}"
    for name, q in report["zones"].items():
        yield (
            f"zone {name}: held-out one-step {q['one_step_rmse_k']:.2f} K RMSE"
            f" (CV {q['one_step_cv_rmse']:.1%}),"
            f" 4-hour simulation {q['simulation_rmse_k']:.2f} K RMSE (CV {q['simulation_cv_rmse']:.1%});"
            f" {q['conditioned_hours']:.0f} conditioned hours"
        )
    base = report["base_load"]
    if base is not None:
        yield f"base load: held-out hourly CV(RMSE) {base['cv_rmse']:.1%}, NMBE {base['nmbe']:+.1%}"
    elif report["base_load_note"]:
        yield f"base load: {report['base_load_note']}"
    if fit.accepted:
        yield f"{output}: written"
        return
    for reason in fit.refusals:
        yield f"refused: {reason}"
    yield f"{output}: not written (a planner must not act on this fit)"
