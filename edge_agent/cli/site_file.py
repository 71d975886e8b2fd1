"""Adding what a scan found to a site file (`scan modbus --add-to`, `scan bacnet --add-to`).

The file is edited with tomlkit, which keeps its comments, order and layout: the new [[devices]] entries go
after the file's last device, their [[pollers]] after its last poller. Where that would move any of the
file's own lines (tomlkit regroups [[devices]] tables that other tables split), the entries are appended at
the end of the file instead, which TOML allows, and the file's text stays as it was above them.

A device the file already has at the same address (host and unit, serial port and unit, BACnet host and
instance) is reported as present and not added again, so a second scan adds nothing twice. A new device
whose name the file already uses for another address is a clash: the whole merge is refused, naming it,
and the file is left as it was. The merged text must pass the same validation as `config check`, else
nothing is written.

Writing: a timestamped backup of the old file first (`site.toml.20261207T191500Z.bak`), then the new text
to a temporary file beside it, fsync, rename over the file (its mode kept), fsync of the directory. A crash
leaves the old file or the new one, never half of either.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.exceptions import TOMLKitError
from tomlkit.items import AoT

from edge_agent.config import AgentConfig, parse_config
from edge_agent.errors import ConfigError, Refused


@dataclass(frozen=True, slots=True)
class Present:
    found: str  # the name the scan gave it
    existing: str  # the name the file gives the device at that address
    address: str


@dataclass(frozen=True, slots=True)
class MergeResult:
    path: Path
    added: list[str] = field(default_factory=list)
    present: list[Present] = field(default_factory=list)
    backup: Path | None = None  # None: nothing was written


def add_to_site_file(path: Path, snippet: str, now: datetime | None = None) -> MergeResult:
    """Merge the snippet's [[devices]] and their [[pollers]] into the site file at `path` (created when
    missing). Raises Refused naming the clash, or what keeps the file or the merge from validating; the
    file is then unchanged."""
    target = path.resolve()  # a symlinked site file stays a symlink: its target is rewritten
    try:
        old_text = target.read_text(encoding="utf-8") if target.exists() else ""
    except (OSError, UnicodeDecodeError) as exc:
        raise Refused(f"{path}: cannot read: {exc}") from None
    site = _parse_toml(old_text, str(path))
    site_config = _validated(old_text, str(path), "fix the file first, then scan again")
    found = _parse_toml(snippet, "the scan's snippet")
    found_config = _validated(snippet, "the scan's snippet", "a bug: please report it")

    by_address = {d.address: d.name for d in site_config.devices}
    by_name = {d.name: d.address for d in site_config.devices}
    result = MergeResult(path)
    clashes: list[str] = []
    new_tables: list[Any] = []
    for table, device in zip(_entries(found, "devices"), found_config.devices, strict=True):
        if device.address in by_address:
            result.present.append(Present(device.name, by_address[device.address], device.address))
        elif device.name in by_name:
            clashes.append(
                f"device {device.name!r}: the file has a device of that name at {by_name[device.name]}, "
                f"the scan found one at {device.address}"
            )
        else:
            new_tables.append(table)
            result.added.append(device.name)
    if clashes:
        raise Refused(f"{path}: not changed: " + "; ".join(clashes) + " (rename one, then add again)")
    if not new_tables:
        return result
    pollers = [p for p in _entries(found, "pollers") if p.get("device") in result.added]
    _append(site, "devices", new_tables, path)
    _append(site, "pollers", pollers, path)
    new_text = tomlkit.dumps(site)
    if not _only_additions(old_text, new_text):
        new_text = (
            old_text.rstrip("\n") + ("\n\n" if old_text.strip() else "") + _alone(snippet, result.added)
        )
    _validated(new_text, f"{path} with the scan's devices", "nothing was written")
    backup = _write_with_backup(target, old_text if target.exists() else None, new_text, now)
    return MergeResult(path, result.added, result.present, backup)


def _only_additions(old: str, new: str) -> bool:
    """Whether `new` is `old` with lines inserted, none changed, moved or removed."""
    matcher = difflib.SequenceMatcher(None, old.splitlines(), new.splitlines(), autojunk=False)
    return all(tag in ("equal", "insert") for tag, *_ in matcher.get_opcodes())


def _alone(snippet: str, names: list[str]) -> str:
    """The snippet's entries for the devices named (and their pollers), as TOML text of their own."""
    found = tomlkit.parse(snippet)
    document = tomlkit.document()
    for key, field_name in (("devices", "name"), ("pollers", "device")):
        tables = [t for t in _entries(found, key) if t.get(field_name) in names]
        if tables:
            document.append(key, tomlkit.aot())
            for table in tables:
                document[key].append(table)
    return tomlkit.dumps(document)


def _parse_toml(text: str, source: str) -> tomlkit.TOMLDocument:
    try:
        return tomlkit.parse(text)
    except TOMLKitError as exc:
        raise Refused(f"{source}: not valid TOML: {exc}") from None


def _validated(text: str, source: str, advice: str) -> AgentConfig:
    try:
        return parse_config(text, source)
    except ConfigError as error:
        problems = "; ".join(error.problems)
        raise Refused(f"{source} does not pass `config check` ({advice}): {problems}") from None


def _entries(document: tomlkit.TOMLDocument, key: str) -> list[Any]:
    value = document.get(key)
    return list(value) if value is not None else []


def _append(document: tomlkit.TOMLDocument, key: str, tables: list[Any], path: Path) -> None:
    if not tables:
        return
    existing = document.get(key)
    if existing is None:
        if document.body:
            document.add(tomlkit.nl())
        document.append(key, tomlkit.aot())
        existing = document[key]
    if not isinstance(existing, AoT):
        raise Refused(f"{path}: `{key}` is not written as [[{key}]] tables: add the scan's entries by hand")
    for table in tables:
        existing.append(table)


def _write_with_backup(
    target: Path, old_text: str | None, new_text: str, now: datetime | None
) -> Path | None:
    """Backup of the old file (None when there was none), then the new text renamed into place."""
    backup: Path | None = None
    mode = target.stat().st_mode & 0o7777 if target.exists() else 0o644
    if old_text is not None:
        stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
        backup = target.with_name(f"{target.name}.{stamp}.bak")
        number = 1
        while backup.exists():  # two merges in one second: keep both backups
            number += 1
            backup = target.with_name(f"{target.name}.{stamp}-{number}.bak")
        try:
            shutil.copy2(target, backup)
            _fsync(backup)
        except OSError as exc:
            raise Refused(
                f"{target}: not changed: cannot write the backup {backup}: {exc.strerror}"
            ) from None
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(new_text)
            out.flush()
            os.fchmod(out.fileno(), mode)
            os.fsync(out.fileno())
        Path(temporary).replace(target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            Path(temporary).unlink()
        raise Refused(f"{target}: not changed: cannot write it: {exc.strerror}") from None
    _fsync_directory(target.parent)
    return backup


def _fsync(path: Path) -> None:
    with path.open("rb") as handle:
        os.fsync(handle.fileno())


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def add_found_to(path: Path, snippet: str, command: str) -> None:
    """The `--add-to FILE` of a scan: merge, then say on stderr what was added, what was already there and
    where the backup is; exit 2 naming the reason when the merge is refused."""
    import typer

    from edge_agent.cli.common import EXIT_CONFIG

    try:
        result = add_to_site_file(path, snippet)
    except Refused as error:
        typer.echo(f"{command}: --add-to {error}", err=True)
        raise typer.Exit(EXIT_CONFIG) from None
    for present in result.present:
        same = "" if present.found == present.existing else f" as {present.existing!r}"
        typer.echo(f"already in {path}{same}: {present.address} (not added again)", err=True)
    if not result.added:
        typer.echo(f"{path}: nothing new to add; not changed", err=True)
        return
    typer.echo(f"added to {path}: {', '.join(result.added)} (each with its poller)", err=True)
    if result.backup is not None:
        typer.echo(f"the previous file is kept as {result.backup}", err=True)
    typer.echo(f"check it with `edge-agent config check {path}`", err=True)
