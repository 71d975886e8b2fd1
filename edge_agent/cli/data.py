"""`buffer stats|export` and `model info|check`: the buffer file and the ONNX model, from a shell.

Both buffer commands only read (SQLite read-only, never blocking the running agent); the model commands
read the file (`info`) or load it exactly as the agent does (`check`, its signature first); `model sign`
is in keys.py.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TextIO

import typer

from edge_agent.cli.common import (
    EXIT_CONFIG,
    EXIT_FAILURE,
    ConfigOption,
    JsonOption,
    age_text,
    echo_json,
    load_or_exit,
    mib_text,
)
from edge_agent.errors import BufferUnreadable, InferenceFailed, ModelError

if TYPE_CHECKING:  # the modules themselves are imported by the commands that use them: every other
    # command, and `edge-agent run`, starts without SQLite, numpy or onnxruntime loaded on their behalf
    from edge_agent.cli.model_card import ModelCard, Trial
    from edge_agent.store.reader import BufferReader, BufferSummary

ExportFormat = Literal["jsonl", "csv"]  # buffer_reader.ExportFormat, needed here at run time by typer

buffer_app = typer.Typer(
    help="Look into the store-and-forward buffer (read-only: safe while the agent runs).",
    no_args_is_help=True,
)
model_app = typer.Typer(help="Describe and check the ONNX control model.", no_args_is_help=True)

ModelPath = Annotated[
    Path | None,
    typer.Argument(help="ONNX file. Default: the configured [control] model, else models/load_shaving.onnx."),
]


def register(app: typer.Typer, config_app: typer.Typer) -> None:
    """Add this module's commands to the edge-agent app (config_app: the `config` group)."""
    app.add_typer(buffer_app, name="buffer")
    app.add_typer(model_app, name="model")


# --- buffer ------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _open_buffer(config: Path | None) -> Iterator[tuple[BufferReader, int]]:
    """The configured buffer file, read-only, and its size cap in bytes; exit 1 naming the file."""
    from edge_agent.store.reader import BufferReader

    settings = load_or_exit(config)
    try:
        with BufferReader(settings.buffer.resolved_path().absolute()) as reader:
            yield reader, int(settings.buffer.cap_mb * 1024 * 1024)
    except BufferUnreadable as error:
        typer.echo(f"edge-agent: {error}", err=True)
        raise typer.Exit(EXIT_FAILURE) from None


@buffer_app.command("stats")
def buffer_stats(config: ConfigOption = None, json: JsonOption = False) -> None:
    """Depth, oldest and newest unsent reading, size against the cap, readings per device, drops."""
    with _open_buffer(config) as (reader, cap_bytes):
        summary = reader.summary()
    now = datetime.now(UTC)
    if json:
        echo_json(_summary_json(summary, cap_bytes, now))
        return
    for line in _summary_lines(summary, cap_bytes, now):
        typer.echo(line)


def _summary_json(s: BufferSummary, cap_bytes: int, now: datetime) -> dict[str, Any]:
    def position(which: str) -> dict[str, Any] | None:
        at = s.oldest if which == "oldest" else s.newest
        if at is None:
            return None
        return {"seq": at.seq, "ts": iso_ts(at.ts), "age_s": round((now - at.ts).total_seconds(), 3)}

    return {
        "path": str(s.path),
        "depth": s.depth,
        "oldest": position("oldest"),
        "newest": position("newest"),
        "used_bytes": s.used_bytes,
        "file_bytes": s.file_bytes,
        "cap_bytes": cap_bytes,
        "dropped": s.dropped,
        "last_dropped_seq": s.last_dropped_seq,
        "last_seq": s.last_seq,
        "sessions": s.sessions,
        "devices": [
            {
                "device": d.device,
                "readings": d.readings,
                "oldest": iso_ts(d.oldest),
                "newest": iso_ts(d.newest),
            }
            for d in s.devices
        ],
    }


def _summary_lines(s: BufferSummary, cap_bytes: int, now: datetime) -> Iterator[str]:
    yield f"buffer    {s.path}"
    yield f"depth     {s.depth:,} readings waiting for the broker"
    for label, at in (("oldest", s.oldest), ("newest", s.newest)):
        if at is not None:
            yield f"{label:<9} #{at.seq} at {iso_ts(at.ts)} ({age_text(now - at.ts)} ago)"
    share = s.used_bytes / cap_bytes if cap_bytes else 0.0
    yield (
        f"size      {_mib(s.used_bytes)} of the {_mib(cap_bytes)} cap ({share:.1%});"
        f" {_mib(s.file_bytes)} on disk with the write-ahead log"
    )
    dropped = f"{s.dropped:,} readings unsent, ever (the cap, a full disk or queue, a damaged file, a stop)"
    if s.dropped:
        dropped += f", the newest #{s.last_dropped_seq}"
    yield f"dropped   {dropped}"
    yield f"numbered  {s.last_seq:,} readings since the file was created; {s.sessions:,} uplink sessions"
    if s.devices:
        width = max(len("device"), *(len(d.device) for d in s.devices))
        yield f"  {'device':<{width}}  {'readings':>10}  {'oldest':<27}  newest"
        for d in s.devices:
            yield f"  {d.device:<{width}}  {d.readings:>10,}  {iso_ts(d.oldest):<27}  {iso_ts(d.newest)}"


def iso_ts(ts: datetime) -> str:
    from edge_agent.store.reader import iso

    return iso(ts)


def _mib(size: int) -> str:
    return mib_text(size)


def _moment(text: str | None, option: str) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        typer.echo(f"{option}: {text!r} is not an ISO 8601 time", err=True)
        raise typer.Exit(EXIT_CONFIG) from None
    if moment.tzinfo is None:
        typer.echo(f"{option}: {text!r} needs a UTC offset, e.g. 2026-08-05T14:00+09:00 or ...Z", err=True)
        raise typer.Exit(EXIT_CONFIG)
    return moment


@buffer_app.command("export")
def buffer_export(
    *,
    config: ConfigOption = None,
    device: Annotated[str | None, typer.Option(help="Only this device's readings.")] = None,
    since: Annotated[str | None, typer.Option(help="From this time on (ISO 8601 with offset).")] = None,
    until: Annotated[str | None, typer.Option(help="Before this time (ISO 8601 with offset).")] = None,
    fmt: Annotated[ExportFormat, typer.Option("--format", help="JSON lines or CSV with a header.")] = "jsonl",
    output: Annotated[str, typer.Option("--output", "-o", help="File to write, or - for stdout.")] = "-",
) -> None:
    """Write the unsent readings, oldest first; nothing is deleted or marked as sent."""
    from edge_agent.store.reader import ExportFilter, write_readings

    which = ExportFilter(device, _moment(since, "--since"), _moment(until, "--until"))
    with _open_buffer(config) as (reader, _cap):
        try:
            with _output(output) as out:
                count = write_readings(reader.unsent(which), out, fmt)
        except BufferUnreadable as error:
            typer.echo(f"edge-agent: {error}", err=True)
            raise typer.Exit(EXIT_FAILURE) from None
        except BrokenPipeError:  # `... | head`: the reader has seen enough
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return
    typer.echo(f"{count:,} reading{'' if count == 1 else 's'} exported from {reader.path}", err=True)


@contextlib.contextmanager
def _output(target: str) -> Iterator[TextIO]:
    if target == "-":
        yield sys.stdout
        sys.stdout.flush()
        return
    try:
        out = Path(target).open("w", encoding="utf-8", newline="")  # noqa: SIM115 - closed below
    except OSError as exc:
        typer.echo(f"--output: cannot write {target} ({exc.strerror or exc})", err=True)
        raise typer.Exit(EXIT_FAILURE) from None
    with out:
        yield out


# --- model -------------------------------------------------------------------------------------------


def _model_path(path: Path | None, config: Path | None) -> Path:
    from edge_agent.cli.model_card import default_model_path

    if path is not None:
        return path
    return default_model_path(load_or_exit(config).control.model)


def _refuse(error: ModelError, json: bool) -> None:
    if json:
        echo_json({"path": error.path, "accepted": False, "reason": error.reason})
    typer.echo(f"edge-agent: {error}", err=True)
    raise typer.Exit(EXIT_CONFIG)


@model_app.command("info")
def model_info(path: ModelPath = None, config: ConfigOption = None, json: JsonOption = False) -> None:
    """Version, training fingerprint, inputs and outputs with units, opset, size and sha256."""
    from edge_agent.cli.model_card import describe

    try:
        card = describe(_model_path(path, config))
    except ModelError as error:
        _refuse(error, json)
        return
    if json:
        echo_json(_card_json(card))
        return
    for line in _card_lines(card):
        typer.echo(line)


def _card_json(card: ModelCard) -> dict[str, Any]:
    def named(pairs: tuple[tuple[str, str], ...] | None) -> list[dict[str, str]] | None:
        return None if pairs is None else [{"name": n, "unit": u} for n, u in pairs]

    return {
        "path": card.path,
        "version": card.version,
        "fingerprint": card.fingerprint,
        "size_bytes": card.size_bytes,
        "sha256": card.sha256,
        "ir_version": card.ir_version,
        "opset": card.opset,
        "opsets": [{"domain": d or "ai.onnx", "version": v} for d, v in card.opsets],
        "producer": card.producer,
        "inputs": named(card.inputs),
        "outputs": named(card.outputs),
        "input_tensors": [t.describe() for t in card.input_tensors],
        "output_tensors": [t.describe() for t in card.output_tensors],
    }


def _card_lines(card: ModelCard) -> Iterator[str]:
    missing = "(not in the metadata)"
    yield f"model        {card.path}"
    yield f"version      {card.version or missing}"
    yield f"fingerprint  {card.fingerprint or missing}"
    yield f"file         {card.size_bytes:,} bytes, sha256 {card.sha256}"
    opsets = ", ".join(f"{d or 'ai.onnx'} {v}" for d, v in card.opsets)
    yield f"format       ONNX IR {card.ir_version}, opset {opsets}; produced by {card.producer or '?'}"
    for label, tensors, pairs in (
        ("inputs", card.input_tensors, card.inputs),
        ("outputs", card.output_tensors, card.outputs),
    ):
        yield f"{label:<12} {'; '.join(t.describe() for t in tensors)}"
        if pairs is None:
            yield f"  names and units {missing}"
            continue
        width = max((len(n) for n, _ in pairs), default=0)
        for index, (name, unit) in enumerate(pairs):
            yield f"  {index:>2}  {name:<{width}}  {unit}"


@model_app.command("check")
def model_check(path: ModelPath = None, config: ConfigOption = None, json: JsonOption = False) -> None:
    """Load the model as the agent does: its signature under the configuration's [control] model_keys,
    then its inputs and outputs (exit 2 with the reason if it would refuse it); then decide once on a
    representative summer-afternoon feature vector; exit 0 when the agent would use it."""
    from edge_agent.cli.model_card import default_model_path, trial
    from edge_agent.service.control_setup import model_trust

    control = load_or_exit(config).control
    model = path if path is not None else default_model_path(control.model)
    try:
        result = trial(model, model_trust(control))
    except InferenceFailed as failure:  # loads, fails when run: the agent would fall back to the rules
        typer.echo(f"edge-agent: {failure.error}", err=True)
        raise typer.Exit(EXIT_FAILURE) from None
    except ModelError as error:
        _refuse(error, json)
        return
    if json:
        echo_json(_trial_json(result))
        return
    for line in _trial_lines(result):
        typer.echo(line)


def _trial_json(t: Trial) -> dict[str, Any]:
    from edge_agent.control.features import FEATURE_UNITS

    return {
        "path": t.path,
        "accepted": True,
        "version": t.version,
        "fingerprint": t.fingerprint,
        "sha256": t.trust.sha256,
        "signed_by": t.trust.signer,
        "trust": t.trust.describe(),
        "features": dict(zip(FEATURE_UNITS, _feature_values(t), strict=True)),
        "decision": t.decision.values(),
        "first_inference_s": t.first_inference_s,
        "median_inference_s": t.median_inference_s,
    }


def _feature_values(t: Trial) -> list[float]:
    return [float(v) for v in t.features.vector()[0]]


def _trial_lines(t: Trial) -> Iterator[str]:
    from edge_agent.control.limits import KNOBS

    yield f"model      {t.path}: accepted by the agent (version {t.version})"
    yield f"signature  {t.trust.describe()}"
    yield f"sha256     {t.trust.sha256}"
    f = t.features
    day = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")[int(f.day_of_week)]
    hours, minutes = divmod(round(f.hour_of_day * 60), 60)
    yield (
        f"features   {day} {hours:02d}:{minutes:02d} in Seoul, open, {f.outdoor_temperature:g} degC outside,"
        f" demand {f.demand:g} kW against a {f.demand_target:g} kW target, peak tariff band"
    )
    yield "decision"
    for knob, value in t.decision.values().items():
        yield f"  {knob:<18} {value:>6.3g}  {KNOBS[knob].unit}"
    yield (
        f"inference  first {t.first_inference_s * 1e3:.2f} ms (with set-up);"
        f" median {t.median_inference_s * 1e6:.0f} us over the next runs"
    )
