"""The building model file: versioned JSON with the fitted coefficients, the fit report (held-out
quality, refusals), the data span and the configuration's point names it was fitted on.

The agent loads it at start (`[control] building_model`) and refuses, with a ModelError saying why, a file
that is not one, that was refused when fitted, or whose zones and points are not the configuration's.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edge_agent.control.building_model.base_load import BaseLoadProfile
from edge_agent.control.building_model.fit import BuildingFit, ModelPoints
from edge_agent.control.building_model.series import SLOT
from edge_agent.control.building_model.zone import SIM_HOURS, ZoneModel
from edge_agent.control.setup import ZonePoints
from edge_agent.errors import ModelError

FORMAT = "edge-agent-building-model"
VERSION = 1


def _finite(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else value


def fit_report(fit: BuildingFit) -> dict[str, Any]:
    """What `model fit --json` prints and the file carries besides the coefficients."""
    return {
        "accepted": fit.accepted,
        "refusals": fit.refusals,
        "fitted_at": fit.fitted_at.isoformat(),
        "data": {
            "first": None if fit.first is None else fit.first.isoformat(),
            "last": None if fit.last is None else (fit.last + SLOT).isoformat(),
            "days": len(fit.days),
            "held_out_days": [d.isoformat() for d in fit.held_out_days],
        },
        "zones": {
            name: {k: _finite(v) if isinstance(v, float) else v for k, v in asdict(z.quality).items()}
            for name, z in fit.zones.items()
        },
        "base_load": None
        if fit.base_load_quality is None
        else {k: _finite(v) if isinstance(v, float) else v for k, v in asdict(fit.base_load_quality).items()},
        "base_load_note": fit.base_load_note,
    }


def to_json(fit: BuildingFit) -> str:
    p = fit.points
    document = {
        "format": FORMAT,
        "version": VERSION,
        "slot_minutes": int(SLOT.total_seconds() // 60),
        "simulation_hours": SIM_HOURS,
        "points": {
            "outdoor_temperature": p.outdoor_temperature,
            "demand": p.demand,
            "demand_in_watts": p.demand_in_watts,
            "hvac_power": p.hvac_power,
            "hvac_in_watts": p.hvac_in_watts,
            "zones": [
                {
                    "name": z.name,
                    "temperature": z.temperature,
                    "cooling_setpoint": z.cooling_setpoint,
                    "heating_setpoint": z.heating_setpoint,
                }
                for z in p.zones
            ],
        },
        "report": fit_report(fit),
        "zones": {
            name: {
                "regressors": list(z.model.regressors),
                "coefficients": list(z.model.coefficients),
                "conditioned_below_c": z.model.conditioned_below_c,
                "conditioned_above_c": z.model.conditioned_above_c,
            }
            for name, z in fit.zones.items()
        },
        "base_load_kw": None if fit.base_load is None else fit.base_load.kw,
    }
    return json.dumps(document, indent=2, allow_nan=False)


@dataclass(frozen=True, slots=True)
class BuildingModelRef:
    """How the agent names the model it loaded: birth message and status."""

    file: str  # the file's name
    sha256: str
    fitted_at: str  # ISO 8601, when `model fit` ran


@dataclass(frozen=True, slots=True)
class BuildingModel:
    ref: BuildingModelRef
    points: ModelPoints
    zones: dict[str, ZoneModel]
    base_load: BaseLoadProfile | None
    report: dict[str, Any]


def load_building_model(
    path: Path, zones: tuple[ZonePoints, ...], outdoor_temperature: str | None
) -> BuildingModel:
    """The file at `path`, checked against the configuration's zones and outdoor temperature point."""
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise ModelError(str(path), f"cannot read: {error.strerror}") from None
    try:
        model = _parse(path, json.loads(raw))
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise ModelError(
            str(path), f"not a valid building model file: {type(error).__name__} {error}"
        ) from None
    _matches(path, model, zones, outdoor_temperature)
    ref = BuildingModelRef(path.name, hashlib.sha256(raw).hexdigest(), model.report["fitted_at"])
    return BuildingModel(ref, model.points, model.zones, model.base_load, model.report)


def _parse(path: Path, data: Any) -> BuildingModel:
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ModelError(
            str(path), f"not a building model (format {FORMAT!r}): write one with `edge-agent model fit`"
        )
    if data.get("version") != VERSION:
        raise ModelError(
            str(path), f"building model version {data.get('version')!r}, this agent reads {VERSION}"
        )
    report = data["report"]
    if not report["accepted"]:
        raise ModelError(str(path), "the fit was refused: " + "; ".join(report["refusals"]))
    p = data["points"]
    points = ModelPoints(
        tuple(
            ZonePoints(z["name"], z["temperature"], z["cooling_setpoint"], z["heating_setpoint"])
            for z in p["zones"]
        ),
        p["outdoor_temperature"],
        p["demand"],
        bool(p["demand_in_watts"]),
        p["hvac_power"],
        bool(p["hvac_in_watts"]),
    )
    zones = {
        name: ZoneModel(
            tuple(str(r) for r in z["regressors"]),
            tuple(float(c) for c in z["coefficients"]),
            None if z["conditioned_below_c"] is None else float(z["conditioned_below_c"]),
            None if z["conditioned_above_c"] is None else float(z["conditioned_above_c"]),
        )
        for name, z in data["zones"].items()
    }
    if any(len(z.regressors) != len(z.coefficients) for z in zones.values()):
        raise ValueError("a zone's coefficients do not match its regressors")
    base = data["base_load_kw"]
    base_load = (
        None
        if base is None
        else BaseLoadProfile({k: [None if v is None else float(v) for v in vs] for k, vs in base.items()})
    )
    placeholder = BuildingModelRef(path.name, "", str(report["fitted_at"]))
    return BuildingModel(placeholder, points, zones, base_load, report)


def _matches(
    path: Path, model: BuildingModel, zones: tuple[ZonePoints, ...], outdoor_temperature: str | None
) -> None:
    fitted = {z.name: z for z in model.points.zones}
    configured = {z.name: z for z in zones}
    if set(fitted) != set(configured):
        raise ModelError(
            str(path),
            f"fitted for zones {', '.join(sorted(fitted)) or '(none)'}; the configuration has"
            f" {', '.join(sorted(configured)) or '(none)'}: fit it again (`edge-agent model fit`)",
        )
    for name, zone in configured.items():
        was = fitted[name]
        for field in ("temperature", "cooling_setpoint", "heating_setpoint"):
            if getattr(was, field) != getattr(zone, field):
                raise ModelError(
                    str(path),
                    f"zone {name}: {field} was {getattr(was, field)} when fitted, the configuration says"
                    f" {getattr(zone, field)}: fit it again",
                )
        if name not in model.zones:
            raise ModelError(str(path), f"zone {name}: no fitted model in the file")
    if model.points.outdoor_temperature != outdoor_temperature:
        raise ModelError(
            str(path),
            f"outdoor temperature was {model.points.outdoor_temperature} when fitted, the configuration says"
            f" {outdoor_temperature}: fit it again",
        )
