"""`edge-agent model info|check`: what the committed model says about itself, and the agent's verdict on a
model before it is deployed (the same loader, the same reasons). Signatures: tests/test_cli_keys.py."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import onnx
from typer.testing import CliRunner

from edge_agent.cli.app import app
from edge_agent.control.features import FEATURE_UNITS
from tests.onnx_models import TRUSTED, signed, small_model

runner = CliRunner()
COMMITTED = Path(__file__).resolve().parents[1] / "models" / "load_shaving.onnx"


def unsigned_ok(tmp_path: Path) -> str:
    """A configuration that runs unsigned models (the committed one is unsigned: models/README.md)."""
    config = tmp_path / "unsigned-ok.toml"
    config.write_text("[control]\nallow_unsigned_model = true\n")
    return str(config)


def test_info_shows_the_committed_models_version_inputs_and_digest() -> None:
    result = runner.invoke(app, ["model", "info", str(COMMITTED)])
    assert result.exit_code == 0, result.output
    assert "version      load_shaving 1.0" in result.stdout
    assert "features float32 [batch, 20]" in result.stdout
    for name, unit in FEATURE_UNITS.items():
        assert any(line.split()[1:2] == [name] and line.endswith(unit) for line in result.stdout.splitlines())

    card = json.loads(runner.invoke(app, ["model", "info", str(COMMITTED), "--json"]).stdout)
    data = COMMITTED.read_bytes()
    assert card["sha256"] == hashlib.sha256(data).hexdigest()
    assert card["size_bytes"] == len(data)
    assert [i["name"] for i in card["inputs"]] == list(FEATURE_UNITS)
    assert card["outputs"][2] == {"name": "plant_limit", "unit": "%"}
    proto = onnx.load(str(COMMITTED))  # the reference reader agrees on what info parsed by hand
    assert card["opset"] == next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    assert card["ir_version"] == proto.ir_version
    assert card["fingerprint"] == next(
        p.value for p in proto.metadata_props if p.key == "edge_agent.training_fingerprint"
    )


def test_check_accepts_the_committed_model_and_decides_once(tmp_path: Path) -> None:
    config = unsigned_ok(tmp_path)
    result = runner.invoke(app, ["model", "check", str(COMMITTED), "-c", config])
    assert result.exit_code == 0, result.output
    assert "accepted by the agent (version load_shaving 1.0)" in result.stdout
    assert "signature  UNSIGNED, allowed by [control] allow_unsigned_model" in result.stdout
    assert f"sha256     {hashlib.sha256(COMMITTED.read_bytes()).hexdigest()}" in result.stdout
    assert "plant_limit" in result.stdout
    assert "inference  first" in result.stdout

    as_json = runner.invoke(app, ["model", "check", str(COMMITTED), "-c", config, "--json"])
    verdict = json.loads(as_json.stdout)
    assert verdict["accepted"] is True
    assert verdict["signed_by"] is None
    assert 50.0 <= verdict["decision"]["plant_limit"] <= 100.0
    assert 0 < verdict["median_inference_s"] < 0.1


def test_check_refuses_wrong_input_names_with_the_agents_reason(tmp_path: Path) -> None:
    names = [[n, u] for n, u in FEATURE_UNITS.items()]
    names[3] = ["occupied", "people"]
    model = small_model(tmp_path / "renamed.onnx", inputs=names)
    config = unsigned_ok(tmp_path)
    result = runner.invoke(app, ["model", "check", str(model), "-c", config])
    assert result.exit_code == 2
    assert "input 3 is 'occupied' (people), the agent's is 'open' (1 while open)" in result.stderr

    verdict = json.loads(runner.invoke(app, ["model", "check", str(model), "-c", config, "--json"]).stdout)
    assert verdict["accepted"] is False
    assert verdict["reason"].startswith("input 3 is 'occupied'")

    described = runner.invoke(app, ["model", "info", str(model)])  # info still says what the file holds
    assert described.exit_code == 0, described.output
    assert "occupied" in described.stdout


def test_corrupt_or_missing_model_exits_2(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(COMMITTED.read_bytes()[:1000])  # a copy cut short
    for command in ("info", "check"):
        result = runner.invoke(app, ["model", command, str(corrupt), "-c", unsigned_ok(tmp_path)])
        assert result.exit_code == 2, result.output
        assert f"model {corrupt}: not a valid ONNX model" in result.stderr
    missing = runner.invoke(app, ["model", "check", str(tmp_path / "absent.onnx")])
    assert missing.exit_code == 2
    assert "cannot be read" in missing.stderr


def test_default_is_the_configured_model(tmp_path: Path) -> None:
    model = signed(small_model(tmp_path / "site.onnx"))
    config = tmp_path / "agent.toml"
    config.write_text(f'[control]\nmodel = "{model}"\nmodel_keys = ["{TRUSTED}"]\n')
    result = runner.invoke(app, ["model", "check", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert f"{model}: accepted by the agent (version test)" in result.stdout
    assert f"signature  signed by {TRUSTED}" in result.stdout
