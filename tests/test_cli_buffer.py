"""`edge-agent buffer stats|export` on a real buffer file written by edge_agent.store.buffer.Buffer: what a
technician sees is what the agent holds, the export reads back exactly, and the agent loses nothing."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edge_agent.cli.app import app
from edge_agent.readings import Quality, Reading
from edge_agent.store import reader as buffer_reader
from edge_agent.store.buffer import Buffer

runner = CliRunner()


@pytest.fixture
def t0() -> datetime:
    """The oldest reading's time: two hours before the test starts (the stats show its age), on a whole
    second; sub-second parts are binary fractions, which the buffer stores exactly."""
    return datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)


def known_readings(t0: datetime) -> list[Reading]:
    meter = [
        Reading("meter-main", "total_power", value, "W", quality, t0 + timedelta(seconds=i, milliseconds=250))
        for i, (value, quality) in enumerate(
            [(230.1, Quality.GOOD), (1 / 3, Quality.GOOD), (1e-300, Quality.STALE), (None, Quality.BAD)] * 3
        )
    ]
    rooms = [
        Reading("vav-1", "zone_temperature", 24.5 + i / 10, "degC", Quality.GOOD, t0 + timedelta(seconds=i))
        for i in range(6)
    ]
    return sorted(meter + rooms, key=lambda r: r.ts)


async def _write(path: Path, readings: list[Reading]) -> None:
    async with Buffer(path) as buffer:
        for reading in readings:  # one commit each: seq follows the list's order
            await buffer.append([reading])


async def _depth(path: Path) -> int:
    async with Buffer(path) as buffer:
        return buffer.statistics().depth


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, t0: datetime) -> Path:
    """A configuration whose buffer holds known_readings(t0); exports read it in pages of 4 rows."""
    monkeypatch.setattr(buffer_reader, "PAGE_ROWS", 4)
    asyncio.run(_write(tmp_path / "buffer.db", known_readings(t0)))
    path = tmp_path / "agent.toml"
    path.write_text(f'[buffer]\npath = "{tmp_path / "buffer.db"}"\ncap_mb = 64\n')
    return path


def parse_jsonl(text: str) -> list[tuple[int, Reading]]:
    rows = [json.loads(line) for line in text.splitlines()]
    return [
        (
            row["seq"],
            Reading(
                row["device"],
                row["point"],
                row["value"],
                row["unit"],
                Quality(row["quality"]),
                datetime.fromisoformat(row["ts"]),
            ),
        )
        for row in rows
    ]


def parse_csv(text: str) -> list[tuple[int, Reading]]:
    return [
        (
            int(row["seq"]),
            Reading(
                row["device"],
                row["point"],
                float(row["value"]) if row["value"] else None,
                row["unit"],
                Quality(row["quality"]),
                datetime.fromisoformat(row["ts"]),
            ),
        )
        for row in csv.DictReader(io.StringIO(text))
    ]


def test_stats_shows_depth_oldest_age_and_readings_per_device(config: Path, t0: datetime) -> None:
    result = runner.invoke(app, ["buffer", "stats", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "18 readings waiting" in result.stdout
    assert "oldest    #1 at " in result.stdout
    assert "(2 h 0 min ago)" in result.stdout
    assert "of the 64.0 MiB cap" in result.stdout
    assert any(line.split()[:2] == ["meter-main", "12"] for line in result.stdout.splitlines())
    assert any(line.split()[:2] == ["vav-1", "6"] for line in result.stdout.splitlines())

    shown = json.loads(runner.invoke(app, ["buffer", "stats", "-c", str(config), "--json"]).stdout)
    assert shown["depth"] == 18
    assert shown["oldest"]["seq"] == 1
    assert datetime.fromisoformat(shown["oldest"]["ts"]) == t0
    assert 7200 <= shown["oldest"]["age_s"] < 7260
    assert shown["cap_bytes"] == 64 * 1024 * 1024
    assert 0 < shown["used_bytes"] <= shown["file_bytes"]
    assert {d["device"]: d["readings"] for d in shown["devices"]} == {"meter-main": 12, "vav-1": 6}
    assert shown["dropped"] == 0


@pytest.mark.parametrize(("fmt", "parse"), [("jsonl", parse_jsonl), ("csv", parse_csv)])
def test_export_round_trips_the_exact_readings_and_leaves_them_buffered(
    config: Path, tmp_path: Path, t0: datetime, fmt: str, parse: Callable[[str], list[tuple[int, Reading]]]
) -> None:
    out = tmp_path / f"export.{fmt}"
    result = runner.invoke(
        app, ["buffer", "export", "-c", str(config), "--format", fmt, "--output", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "18 readings exported" in result.stderr
    exported = parse(out.read_text())
    assert exported == list(enumerate(known_readings(t0), 1))  # every value to the last bit, seq, ts, quality
    assert asyncio.run(_depth(tmp_path / "buffer.db")) == 18  # still waiting for the broker

    to_stdout = runner.invoke(app, ["buffer", "export", "-c", str(config), "--format", fmt])
    assert to_stdout.stdout == out.read_text()


def test_export_filters_by_device_and_time(config: Path, t0: datetime) -> None:
    since, until = t0 + timedelta(seconds=2), t0 + timedelta(seconds=5)
    args = ["buffer", "export", "-c", str(config), "--device", "vav-1"]
    args += [
        "--since",
        since.isoformat(),
        "--until",
        until.astimezone(timezone(timedelta(hours=9))).isoformat(),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    exported = [r for _, r in parse_jsonl(result.stdout)]
    expected = [r for r in known_readings(t0) if r.device == "vav-1" and since <= r.ts < until]
    assert exported == expected
    assert len(expected) == 3

    naive = runner.invoke(app, ["buffer", "export", "-c", str(config), "--since", "2026-08-05T14:00"])
    assert naive.exit_code == 2
    assert "needs a UTC offset" in naive.stderr


def test_missing_buffer_exits_1_naming_the_file_and_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "state" / "nothing-here.db"
    missing.parent.mkdir()
    config = tmp_path / "agent.toml"
    config.write_text(f'[buffer]\npath = "{missing}"\n')
    for command in (["stats"], ["export"]):
        result = runner.invoke(app, ["buffer", *command, "-c", str(config)])
        assert result.exit_code == 1
        assert f"buffer {missing}: does not exist" in result.stderr
    assert list(missing.parent.iterdir()) == []


def test_reads_while_the_agent_holds_a_write_transaction(config: Path, tmp_path: Path) -> None:
    writer = sqlite3.connect(tmp_path / "buffer.db", isolation_level=None, timeout=0)
    try:
        writer.execute("BEGIN IMMEDIATE")
        writer.execute(
            "INSERT INTO readings (device, point, value, unit, quality, ts_us) VALUES (?, ?, ?, ?, ?, ?)",
            ("meter-main", "total_power", 1.0, "W", "good", 0),
        )
        stats = runner.invoke(app, ["buffer", "stats", "-c", str(config), "--json"])
        export = runner.invoke(app, ["buffer", "export", "-c", str(config)])
        assert stats.exit_code == 0, stats.output
        assert json.loads(stats.stdout)["depth"] == 18  # the committed readings only
        assert len(export.stdout.splitlines()) == 18
        writer.execute("COMMIT")  # timeout=0: would raise 'database is locked' had a reader blocked it
    finally:
        writer.close()
    assert asyncio.run(_depth(tmp_path / "buffer.db")) == 19
