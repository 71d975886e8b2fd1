"""`edge-agent model fit` end to end on a real buffer file, and the fitted model as the agent meets it:
loaded at start, named (file, sha256, fit date) in status and in the birth message, refused when it does
not match the configuration."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime
from io import StringIO
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from pydantic import TypeAdapter
from rich.console import Console
from typer.testing import CliRunner

from edge_agent.cli import local as cli_local
from edge_agent.cli.app import app
from edge_agent.config import load_config
from edge_agent.readings import Reading
from edge_agent.service.agent import Agent, AgentStatus
from edge_agent.service.building_model import BuildingModelStatus
from edge_agent.store.buffer import Buffer
from tests.building_data import commissioning, site_toml
from tests.support import LOOPBACK, Broker, running_agent

runner = CliRunner()
HVAC = "hvac-meter/total_power"


async def _buffer(path: Path, readings: tuple[Reading, ...]) -> None:
    async with Buffer(path) as buffer:
        for start in range(0, len(readings), 5000):
            await buffer.append(list(readings[start : start + 5000]))


def _site(tmp_path: Path, days: int, **keys: str) -> Path:
    buffer = tmp_path / "buffer.db"
    asyncio.run(_buffer(buffer, commissioning("library", days)))
    extra = "\n".join(f'{key} = "{value}"' for key, value in keys.items())
    site = tmp_path / "site.toml"
    site.write_text(site_toml("library", str(buffer), extra=extra))
    return site


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A library fitted from ten days in its buffer: (the model file, what `model fit` printed)."""
    tmp_path = tmp_path_factory.mktemp("fitted")
    site = _site(tmp_path, 10)
    output = tmp_path / "library-model.json"
    result = runner.invoke(
        app,
        ["model", "fit", "-c", str(site), "-o", str(output), "--hvac-power", HVAC],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    return output, result.output


@pytest.mark.integration
def test_fit_from_the_buffer_writes_a_versioned_model_with_its_report(fitted: tuple[Path, str]) -> None:
    output, printed = fitted
    assert "data: 10 days from 2026-07-24T00:00:00+09:00 to 2026-08-03T00:15:00+09:00" in printed
    assert "zone lobby: held-out one-step" in printed
    assert "base load: held-out hourly CV(RMSE)" in printed
    assert f"{output}: written" in printed
    model = json.loads(output.read_text())
    assert (model["format"], model["version"], model["slot_minutes"]) == ("edge-agent-building-model", 1, 15)
    assert model["points"]["outdoor_temperature"] == "ahu/outdoor_air_temperature"
    assert model["points"]["hvac_power"] == HVAC
    assert [z["name"] for z in model["points"]["zones"]] == ["reading-1", "reading-2", "stacks", "lobby"]
    report = model["report"]
    assert report["accepted"] is True
    assert report["refusals"] == []
    assert report["data"]["days"] == 10
    assert report["data"]["held_out_days"] == ["2026-08-01", "2026-08-02"]
    for quality in report["zones"].values():
        assert quality["simulation_rmse_k"] <= 1.0
    assert report["base_load"]["cv_rmse"] <= 0.30
    assert set(model["zones"]) == {"reading-1", "reading-2", "stacks", "lobby"}


@pytest.mark.integration
def test_two_days_in_the_buffer_are_refused_and_nothing_is_written(tmp_path: Path) -> None:
    site = _site(tmp_path, 2)
    output = tmp_path / "model.json"
    result = runner.invoke(app, ["model", "fit", "-c", str(site), "-o", str(output), "--hvac-power", HVAC])
    assert result.exit_code == 1
    assert "refused: 2 days of data with an outdoor temperature" in result.output
    assert "at least 7" in result.output
    assert "not written" in result.output
    assert not output.exists()


def test_an_unknown_hvac_point_is_a_usage_error(tmp_path: Path) -> None:
    site = tmp_path / "site.toml"
    site.write_text(site_toml("library", str(tmp_path / "b.db")))
    result = runner.invoke(app, ["model", "fit", "-c", str(site), "-o", "m.json", "--hvac-power", "nope/x"])
    assert result.exit_code == 2
    assert "--hvac-power: nope/x is not a configured point" in result.output


@pytest.mark.integration
def test_the_agent_loads_the_model_and_names_it_in_status_and_birth(
    fitted: tuple[Path, str], tmp_path: Path, broker: Broker
) -> None:
    model, _ = fitted
    site = tmp_path / "site.toml"
    site.write_text(
        site_toml("library", str(tmp_path / "buffer.db"), extra=f'building_model = "{model}"')
        + f'\n[mqtt]\nurl = "mqtt://{LOOPBACK}:{broker.port}"\n'
    )
    sha256 = hashlib.sha256(model.read_bytes()).hexdigest()
    fitted_at = json.loads(model.read_text())["report"]["fitted_at"]

    async def scenario() -> tuple[dict[str, object], BuildingModelStatus | None]:
        config = load_config(site)
        async with aiomqtt.Client(LOOPBACK, broker.port, identifier="central") as central:
            await central.subscribe(f"edge/{config.gateway.id}/status", qos=1)
            async with running_agent(config) as agent:
                async with asyncio.timeout(10):
                    async for message in central.messages:
                        assert isinstance(message.payload, bytes)
                        birth = json.loads(message.payload)
                        if birth.get("online"):
                            shown = json.loads(TypeAdapter(AgentStatus).dump_json(agent.status()))
                            cli_local._print_status(
                                shown, datetime.now(UTC), Console(file=printed, width=200)
                            )
                            return birth, agent.status().building_model
        raise AssertionError("no birth message")

    printed = StringIO()
    birth, status = asyncio.run(scenario())
    assert f"building model: {model.name} sha256 {sha256[:12]} fitted {fitted_at}" in printed.getvalue()
    assert birth["building_model"] == {"file": model.name, "sha256": sha256, "fitted_at": fitted_at}
    assert status is not None
    assert status.loaded is not None
    assert (status.loaded.file, status.loaded.sha256, status.refused) == (model.name, sha256, None)


def test_a_model_fitted_for_other_zones_is_refused_saying_which(
    fitted: tuple[Path, str], tmp_path: Path
) -> None:
    model, _ = fitted
    site = tmp_path / "site.toml"
    site.write_text(
        site_toml(
            "library",
            str(tmp_path / "b.db"),
            zones=["reading-1", "reading-2"],
            extra=f'building_model = "{model}"',
        )
    )
    agent = Agent(load_config(site))
    assert agent.building_model is not None
    assert agent.building_model.loaded is None
    assert agent.building_model.refused == (
        "fitted for zones lobby, reading-1, reading-2, stacks; the configuration has reading-1, reading-2:"
        " fit it again (`edge-agent model fit`)"
    )


def test_a_model_whose_zone_reads_another_point_is_refused(fitted: tuple[Path, str], tmp_path: Path) -> None:
    model, _ = fitted
    text = site_toml("library", str(tmp_path / "b.db"), extra=f'building_model = "{model}"')
    site = tmp_path / "site.toml"
    site.write_text(
        text.replace(
            'temperature = "lobby-vav/zone_temperature"', 'temperature = "stacks-vav/zone_temperature"'
        )
    )
    agent = Agent(load_config(site))
    assert agent.building_model is not None
    assert agent.building_model.refused == (
        "zone lobby: temperature was lobby-vav/zone_temperature when fitted, the configuration says"
        " stacks-vav/zone_temperature: fit it again"
    )


def test_fit_from_an_export_prints_the_report_as_json(tmp_path: Path) -> None:
    """The platform's export in `buffer export`'s shape, CSV or JSON lines, instead of the buffer."""
    readings = tmp_path / "commissioning.jsonl"
    with readings.open("w") as out:
        for r in commissioning("library", 10):
            line = {"ts": r.ts.isoformat(), "device": r.device, "point": r.point, "value": r.value}
            out.write(json.dumps({**line, "quality": "good"}) + "\n")
    site = tmp_path / "site.toml"
    site.write_text(site_toml("library", str(tmp_path / "absent.db")))
    output = tmp_path / "model.json"
    result = runner.invoke(
        app,
        ["model", "fit", str(readings), "-c", str(site), "-o", str(output), "--hvac-power", HVAC, "--json"],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert (report["source"], report["output"], report["accepted"]) == (str(readings), str(output), True)
    assert set(report["zones"]) == {"reading-1", "reading-2", "stacks", "lobby"}
    assert all(q["one_step_rmse_k"] <= 0.5 for q in report["zones"].values())
    assert json.loads(output.read_text())["report"] == {
        k: v for k, v in report.items() if k not in ("source", "output")
    }


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda m: {**m, "version": 2}, "building model version 2, this agent reads 1"),
        (lambda m: {**m, "format": "towt"}, "not a building model (format 'edge-agent-building-model')"),
        (
            lambda m: {
                **m,
                "report": {**m["report"], "accepted": False, "refusals": ["zone lobby: too hot"]},
            },
            "the fit was refused: zone lobby: too hot",
        ),
        (lambda m: {k: v for k, v in m.items() if k != "zones"}, "not a valid building model file: KeyError"),
    ],
)
def test_a_file_that_is_not_an_accepted_model_is_refused_saying_why(
    fitted: tuple[Path, str], tmp_path: Path, change: Callable[[dict[str, Any]], dict[str, Any]], reason: str
) -> None:
    model = tmp_path / "model.json"
    model.write_text(json.dumps(change(json.loads(fitted[0].read_text()))))
    site = tmp_path / "site.toml"
    site.write_text(site_toml("library", str(tmp_path / "b.db"), extra=f'building_model = "{model}"'))
    agent = Agent(load_config(site))
    assert agent.building_model is not None
    assert agent.building_model.loaded is None
    assert agent.building_model.refused is not None
    assert agent.building_model.refused.startswith(reason)
