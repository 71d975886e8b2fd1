"""Reading a configuration file: bounded, UTF-8, TOML, then every problem of it at once (diagnose.py).

`load_config` and `parse_config` raise a ConfigError whose problems name each offending device, poller or
field with its line (`device 'main-meter', unit_id: ... (line 12)`); `check_text` also returns the warnings
of a valid file.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from edge_agent.config.agent import BUILTIN_CONFIG, AgentConfig, builtin_config_text, problems_of
from edge_agent.config.diagnose import Diagnosis, Problem
from edge_agent.errors import ConfigError

MAX_FILE_BYTES = 4 * 1024 * 1024
"""A configuration file is text a person wrote: larger than this, it is the wrong file."""
MAX_DEPTH = 16
"""The deepest a configuration nests (devices[0].points[0].write_range[0] is 5 levels)."""


@dataclass(frozen=True)
class Checked:
    config: AgentConfig
    warnings: list[Problem]


def _unusable_values(value: object, path: str = "", depth: int = 0) -> list[str]:
    """Values no field accepts but that would reach validation: NUL characters (which paths, serial
    ports and hosts would carry to the operating system) and nesting bombs."""
    if depth > MAX_DEPTH:
        return [f"{path or 'file'}: nested more than {MAX_DEPTH} levels deep"]
    if isinstance(value, str):
        return [f"{path}: contains a NUL character"] if "\x00" in value else []
    if isinstance(value, dict):
        items: list[tuple[str, object]] = [(f"{path}.{k}" if path else str(k), v) for k, v in value.items()]
    elif isinstance(value, list):
        items = [(f"{path}[{i}]", v) for i, v in enumerate(value)]
    else:
        return []
    return [problem for key, item in items for problem in _unusable_values(item, key, depth + 1)]


def _refuse(source: str, problems: list[Problem]) -> ConfigError:
    return ConfigError(source, [p.text() for p in problems], [p.as_dict() for p in problems])


def check_text(text: str, source: str) -> Checked:
    """Parse and validate TOML text (`source` names it in errors): the configuration and its warnings."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = re.search(r"line (\d+)", str(exc))
        problem = Problem("", f"not valid TOML: {exc}", int(line[1]) if line else None)
        raise _refuse(source, [problem]) from exc
    except RecursionError:  # tomllib parses arrays and inline tables recursively
        problem = Problem("", f"not valid TOML: nested more than {MAX_DEPTH} levels deep")
        raise _refuse(source, [problem]) from None
    unusable = _unusable_values(data)
    if unusable:
        found = [p.split(": ", 1) for p in unusable]
        raise _refuse(source, [Problem(where, message) for where, message in found])
    diagnosis = Diagnosis(data, text)
    if diagnosis.problems:
        raise _refuse(source, diagnosis.problems)
    try:
        config = AgentConfig.model_validate(data)
    except ValidationError as exc:  # what the passes above missed: still every problem, by path
        raise _refuse(source, [Problem("", problem) for problem in problems_of(exc)]) from exc
    return Checked(config, diagnosis.warnings(config))


def parse_config(text: str, source: str) -> AgentConfig:
    """Parse and validate TOML text; `source` names it in errors."""
    return check_text(text, source).config


def read_config_text(path: Path) -> str:
    """A configuration file's text, read with bounds; ConfigError when it is not one."""
    try:
        with path.open("rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)  # bounded: a device file such as /dev/zero never ends
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read: {exc.strerror or exc}"]) from exc
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(
            str(path), [f"larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB: not a configuration file"]
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(str(path), [f"not UTF-8 text: {exc}"]) from exc


def check_file(path: Path | None) -> Checked:
    """A configuration file (the built-in default when None), checked: its configuration and warnings."""
    if path is None:
        return check_text(builtin_config_text(), BUILTIN_CONFIG)
    return check_text(read_config_text(path), str(path))


def load_config(path: Path | None) -> AgentConfig:
    """Read a configuration file, or the built-in default when path is None."""
    return check_file(path).config
