"""Device profiles: one TOML file per device model in drivers/, data only.

A configured device names a profile and gives its address; it may override any field of a profile point
(by the point's name), add points, pick a subset with `only_points`, and override the profile's device
settings. The merged entry is then validated by the same models as any device (config.py), and every
profile file is validated by them too (tests/test_profiles.py).
"""

from __future__ import annotations

import functools
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

DEVICE_SETTINGS = {"max_registers", "max_gap", "timeout_s", "forbidden"}


class ProfileInfo(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    manufacturer: str
    model: str
    protocol: Literal["modbus", "bacnet"]


class ProfileFile(BaseModel):
    """A drivers/*.toml file; its points are checked as device points when a device uses it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    profile: ProfileInfo
    device: dict[str, Any] = {}
    points: list[dict[str, Any]]


def _drivers_dir() -> Path:
    installed = resources.files("edge_agent").joinpath("drivers")
    if installed.is_dir():
        return Path(str(installed))
    return Path(__file__).resolve().parents[2] / "drivers"  # a source checkout


@functools.cache
def available() -> dict[str, Path]:
    """Profile name -> file."""
    return {path.stem: path for path in sorted(_drivers_dir().glob("*.toml"))}


@functools.cache
def load(name: str) -> ProfileFile:
    path = available().get(name)
    if path is None:
        raise KeyError(name)
    profile = ProfileFile.model_validate(tomllib.loads(path.read_text(encoding="utf-8")))
    unknown = set(profile.device) - DEVICE_SETTINGS
    if unknown:
        raise ValueError(f"{path.name}: [device] may set {sorted(DEVICE_SETTINGS)}, not {sorted(unknown)}")
    return profile


def _shape_problem(name: object, only: object, overrides: object) -> str | None:
    """What is not of the shape `expand` merges: names are strings, overrides are tables."""
    if not isinstance(name, str):
        return f"profile: expected a profile name, not {name!r}"
    if only is not None and not (isinstance(only, list) and all(isinstance(n, str) for n in only)):
        return "only_points: expected a list of point names"
    if not (isinstance(overrides, list) and all(isinstance(p, dict) for p in overrides)):
        return "points: expected a list of point tables"
    for i, override in enumerate(overrides):
        if not isinstance(override.get("name"), str):
            return f"points[{i}].name: expected a point name"
    return None


def expand(entry: dict[str, Any], where: str) -> dict[str, Any]:
    """A device entry that names a profile, with the profile's settings and points merged in."""
    name = entry.get("profile")
    if name is None:
        return entry
    only, overrides = entry.get("only_points"), entry.get("points", [])
    shape = _shape_problem(name, only, overrides)
    if shape:  # a ValueError, not a TypeError: pydantic reports only ValueErrors as problems
        raise ValueError(f"{where}.{shape}")
    try:
        profile = load(name)
    except KeyError:
        known = ", ".join(available()) or "none"
        raise ValueError(f"{where}.profile: no profile named {name!r} (available: {known})") from None
    protocol = str(entry.get("protocol", ""))
    wanted = "bacnet" if protocol.startswith("bacnet") else "modbus"
    if profile.profile.protocol != wanted:
        raise ValueError(f"{where}.profile: {name!r} is a {profile.profile.protocol} profile, not {protocol}")
    merged = {k: v for k, v in entry.items() if k not in ("profile", "only_points")}
    for key, value in profile.device.items():
        merged.setdefault(key, value)
    points = {p["name"]: dict(p) for p in profile.points}
    if only is not None:
        missing = [n for n in only if n not in points]
        if missing:
            raise ValueError(f"{where}.only_points: {name!r} has no point {missing[0]!r}")
        points = {n: points[n] for n in only}
    for override in overrides:
        points[override["name"]] = {**points.get(override["name"], {}), **override}
    merged["points"] = list(points.values())
    return merged
