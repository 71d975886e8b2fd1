"""Device profiles: one TOML file per device model in drivers/, data only.

A configured device names a profile and gives its address; it may override any field of a profile point
(by the point's name), add points, pick a subset with `only_points`, and override the profile's device
settings. The merged entry is then validated by the same models as any device (config.py), and every
profile file is validated by them too (tests/test_profiles.py).
"""

from __future__ import annotations

import difflib
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
    """A device entry that names a profile, with the profile's settings and points merged in; a ValueError
    names the field as `where.field`."""
    try:
        return merge_profile(entry)
    except ValueError as exc:
        key, message = exc.args[0], exc.args[1]
        raise ValueError(f"{where}.{key}: {message}") from None


def merge_profile(entry: dict[str, Any]) -> dict[str, Any]:
    """`expand`, raising ValueError(key, message, suggestion or None) for what is wrong."""
    name = entry.get("profile")
    if name is None:
        return entry
    only, overrides = entry.get("only_points"), entry.get("points", [])
    shape = _shape_problem(name, only, overrides)
    if shape:  # a ValueError, not a TypeError: pydantic reports only ValueErrors as problems
        key, _, message = shape.partition(": ")
        raise ValueError(key, message, None)
    try:
        profile = load(name)
    except KeyError:
        known = ", ".join(available()) or "none"
        close = difflib.get_close_matches(name, list(available()), n=1, cutoff=0.5)
        message = f"no profile named {name!r} (available: {known})"
        raise ValueError("profile", message, next(iter(close), None)) from None
    protocol = str(entry.get("protocol", ""))
    wanted = "bacnet" if protocol.startswith("bacnet") else "modbus"
    if profile.profile.protocol != wanted:
        raise ValueError("profile", f"{name!r} is a {profile.profile.protocol} profile, not {protocol}", None)
    merged = {k: v for k, v in entry.items() if k not in ("profile", "only_points")}
    for key, value in profile.device.items():
        merged.setdefault(key, value)
    points = {p["name"]: dict(p) for p in profile.points}
    if only is not None:
        missing = [n for n in only if n not in points]
        if missing:
            close = difflib.get_close_matches(missing[0], list(points), n=1, cutoff=0.5)
            message = f"{name!r} has no point {missing[0]!r}"
            raise ValueError(f"only_points[{only.index(missing[0])}]", message, next(iter(close), None))
        points = {n: points[n] for n in only}
    for override in overrides:
        points[override["name"]] = {**points.get(override["name"], {}), **override}
    merged["points"] = list(points.values())
    return merged
