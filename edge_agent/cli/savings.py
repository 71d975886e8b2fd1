"""`baseline fit` and `savings`: the counterfactual the daily savings are measured against, and the ledger."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from edge_agent.cli.common import EXIT_CONFIG, EXIT_FAILURE, ConfigOption, JsonOption, echo_json, load_or_exit
from edge_agent.control.savings.ledger import SAVINGS_LEDGER

if TYPE_CHECKING:  # numpy: imported by `baseline fit` only
    from edge_agent.control.savings.baseline import FitQuality
    from edge_agent.control.savings.uncertainty import Residuals

GUIDELINE_14_CV_RMSE = 0.30  # hourly data


def register(app: typer.Typer, config_app: typer.Typer) -> None:
    """Add this module's commands to the edge-agent app (config_app: the `config` group)."""
    baseline_app = typer.Typer(help="The baseline daily savings are measured against.", no_args_is_help=True)
    baseline_app.command("fit")(baseline_fit)
    app.add_typer(baseline_app, name="baseline")
    app.command()(savings)


def baseline_fit(
    readings: Annotated[
        Path, typer.Argument(help="Readings without control: .jsonl or .csv (ts, device, point, value).")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="The baseline file to write.")],
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Fit the building's baseline (time of week and temperature) on weeks without control, for
    `[control] baseline`. The demand and outdoor temperature points and the opening hours come from the
    configuration's [control] section."""
    from edge_agent.control.savings.baseline import fit_towt  # numpy: only for this command
    from edge_agent.control.savings.fit import hourly_samples, read_rows
    from edge_agent.service.control_setup import opening_hours

    settings = load_or_exit(config)
    control = settings.control
    if control.demand is None or control.outdoor_temperature is None:
        typer.echo("[control] needs demand and outdoor_temperature to fit a baseline", err=True)
        raise typer.Exit(EXIT_CONFIG)
    units = {f"{d.name}/{p.name}": p.unit for d in settings.devices for p in d.points}
    try:
        samples = hourly_samples(
            read_rows(readings),
            control.demand,
            control.outdoor_temperature,
            demand_in_watts=units.get(control.demand) == "W",
        )
        baseline = fit_towt(samples, opening_hours(control))
    except OSError as error:
        typer.echo(f"{readings}: cannot read: {error.strerror}", err=True)
        raise typer.Exit(EXIT_FAILURE) from None
    except ValueError as error:
        typer.echo(f"{readings}: {error}", err=True)
        raise typer.Exit(EXIT_CONFIG) from None
    output.write_text(baseline.to_json())
    q = baseline.quality
    residuals = q.residuals()
    if as_json:
        echo_json(
            {
                "baseline": str(output),
                "quality": asdict(q),
                "residuals": None
                if residuals is None
                else {**asdict(residuals), "effective_samples": residuals.effective_samples},
                "guideline_14_cv_rmse": GUIDELINE_14_CV_RMSE,
            }
        )
    else:
        _print_fit(output, q, residuals)
    if q.cv_rmse > GUIDELINE_14_CV_RMSE:
        typer.echo(
            f"warning: CV(RMSE) above ASHRAE Guideline 14's {GUIDELINE_14_CV_RMSE:.0%} for hourly data: "
            "the savings will be uncertain; fit on more weeks without control",
            err=True,
        )


def _print_fit(output: Path, q: FitQuality, residuals: Residuals | None) -> None:
    typer.echo(
        f"{output}: {q.samples} hours from {q.first} to {q.last}, outdoor {q.outdoor_range_c[0]:.1f} to "
        f"{q.outdoor_range_c[1]:.1f} C; CV(RMSE) {q.cv_rmse:.1%}, NMBE {q.nmbe:+.1%}"
    )
    if residuals is not None:  # what a day's savings uncertainty will come from (docs/savings.md)
        typer.echo(
            f"residuals: {residuals.parameters} parameters, CV(RMSE) over n - p {residuals.cv_rmse:.1%}, "
            f"hour-to-hour autocorrelation {residuals.autocorrelation:.2f} "
            f"({residuals.effective_samples:.0f} independent hours of {residuals.samples})"
        )


def savings(
    config: ConfigOption = None,
    days: Annotated[int, typer.Option(min=1, help="How many of the latest days.")] = 7,
    as_json: JsonOption = False,
) -> None:
    """The daily savings reports kept in the ledger next to the buffer (the last --days); none yet is no
    failure (with --json: an empty list)."""
    path = load_or_exit(config).buffer.resolved_path().parent / SAVINGS_LEDGER
    try:
        lines = path.read_text().splitlines()[-days:]
    except FileNotFoundError:
        lines = []
    reports = [json.loads(line) for line in lines if line.strip()]
    if as_json:
        echo_json(reports)
        return
    if not reports:
        typer.echo(f"{path}: no savings reported yet (needs [control] baseline and a day of control)")
        return
    typer.echo(
        f"{'day':<11}{'covered h':>10}{'avoided kWh':>13}{'+- 68%':>9}{'+- 90%':>9}{'FSU 68/90':>12}"
        f"{'peak kW':>9}{'KRW':>10}{'tCO2eq':>9}"
    )
    for r in reports:
        avoided = r["avoided"]
        typer.echo(
            f"{r['day']:<11}{r['hours_covered']:>10.1f}{avoided['energy_kwh']:>13.1f}{_uncertainty(r)}"
            f"{avoided['peak_kw']:>9.1f}{avoided['energy_cost_krw']:>10,.0f}{avoided['emissions_t']:>9.4f}"
            + ("  within noise" if (r.get("uncertainty") or {}).get("within_noise") else "")
        )
    if any((r.get("uncertainty") or {}).get("within_noise") for r in reports):
        typer.echo(
            "within noise: the avoided kWh are smaller than their 68% uncertainty (ASHRAE Guideline 14): "
            "the baseline cannot tell that day's saving from its own error"
        )


def _uncertainty(report: dict[str, Any]) -> str:
    """The avoided energy's absolute uncertainty at 68% and 90% and its FSU; dashes when unknown (a
    baseline fitted before the uncertainty was kept, or a report written before)."""
    u = report.get("uncertainty")
    if not u:
        return f"{'-':>9}{'-':>9}{'-':>12}"
    fsu = "-" if u["fsu_68"] is None else f"{u['fsu_68']:.0%}/{u['fsu_90']:.0%}"
    return f"{u['kwh_68']:>9.1f}{u['kwh_90']:>9.1f}{fsu:>12}"
