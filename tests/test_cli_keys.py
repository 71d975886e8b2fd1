"""`edge-agent keys new` and `model sign`, end to end with `model check`: a key pair, a signed model, the
public key in the configuration; and every way the agent refuses a model it should not trust, each with
the reason `model check` gives."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from edge_agent import signing
from edge_agent.cli import local as cli_local
from edge_agent.cli.app import app

runner = CliRunner()
COMMITTED = Path(__file__).resolve().parents[1] / "models" / "load_shaving.onnx"


def new_key(name: Path) -> str:
    result = runner.invoke(app, ["keys", "new", str(name)])
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


def site_config(tmp_path: Path, model: Path, *keys: str, allow_unsigned: bool = False) -> str:
    config = tmp_path / "agent.toml"
    listed = ", ".join(f'"{k}"' for k in keys)
    unsigned = "true" if allow_unsigned else "false"
    config.write_text(
        f'[control]\nmodel = "{model}"\nmodel_keys = [{listed}]\nallow_unsigned_model = {unsigned}\n'
    )
    return str(config)


def check(config: str) -> tuple[int, str, dict[str, object]]:
    result = runner.invoke(app, ["model", "check", "-c", config])
    verdict = json.loads(runner.invoke(app, ["model", "check", "-c", config, "--json"]).stdout)
    return result.exit_code, result.stdout + result.stderr, verdict


def test_keys_new_writes_a_private_key_only_its_owner_reads_and_never_overwrites_it(tmp_path: Path) -> None:
    line = new_key(tmp_path / "models")
    private, public = tmp_path / "models.pem", tmp_path / "models.pub"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert public.read_text().strip() == line
    key = signing.load_private_key(private.read_bytes())
    assert signing.public_key_text(key) == line
    assert signing.load_public_key(line)  # the form the configuration takes

    before = private.read_bytes()
    again = runner.invoke(app, ["keys", "new", str(tmp_path / "models")])
    assert again.exit_code == 2
    assert f"{private} exists: keys are never overwritten" in again.stderr
    assert private.read_bytes() == before
    assert public.read_text().strip() == line


def test_keys_new_sign_and_configure_round_trip_then_one_changed_byte_is_refused(tmp_path: Path) -> None:
    model = tmp_path / "load_shaving.onnx"
    shutil.copyfile(COMMITTED, model)
    line = new_key(tmp_path / "site-models")
    signed = runner.invoke(app, ["model", "sign", "--key", str(tmp_path / "site-models.pem"), str(model)])
    assert signed.exit_code == 0, signed.output
    assert f"wrote {model}.sig" in signed.stdout
    config = site_config(tmp_path, model, line)

    code, output, verdict = check(config)
    assert code == 0, output
    assert f"signature  signed by {line}" in output
    assert verdict["accepted"] is True
    assert verdict["signed_by"] == line

    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0x40  # one byte, in the weights
    model.write_bytes(bytes(data))
    code, output, verdict = check(config)
    assert code == 2
    assert f"the file does not match its signature by {line}: changed after it was signed" in output
    assert verdict["accepted"] is False
    assert f"by {line}" in str(verdict["reason"])


def test_check_names_why_an_unsigned_or_stranger_signed_model_is_refused(tmp_path: Path) -> None:
    model = tmp_path / "load_shaving.onnx"
    shutil.copyfile(COMMITTED, model)
    ours = new_key(tmp_path / "ours")

    code, output, _ = check(site_config(tmp_path, model, ours))
    assert code == 2
    assert "unsigned: no signature file load_shaving.onnx.sig" in output

    code, output, verdict = check(site_config(tmp_path, model, ours, allow_unsigned=True))
    assert code == 0, output
    assert "signature  UNSIGNED, allowed by [control] allow_unsigned_model" in output
    assert verdict["trust"] == "UNSIGNED, allowed by [control] allow_unsigned_model"

    stranger = new_key(tmp_path / "stranger")
    sign = ["model", "sign", "-k", str(tmp_path / "stranger.pem"), str(model)]
    assert runner.invoke(app, sign).exit_code == 0
    code, output, _ = check(site_config(tmp_path, model, ours, allow_unsigned=True))
    assert code == 2
    assert f"signed by {stranger}, a key [control] model_keys does not trust" in output

    code, output, _ = check(site_config(tmp_path, model))
    assert code == 2
    assert "[control] model_keys trusts no key" in output


def test_sign_refuses_a_file_that_is_not_a_model_or_a_key_that_is_not_one(tmp_path: Path) -> None:
    new_key(tmp_path / "k")
    text = tmp_path / "notes.txt"
    text.write_text("not a model\n")
    result = runner.invoke(app, ["model", "sign", "--key", str(tmp_path / "k.pem"), str(text)])
    assert result.exit_code == 2
    assert "not a valid ONNX model" in result.stderr
    assert not (tmp_path / "notes.txt.sig").exists()

    model = tmp_path / "m.onnx"
    shutil.copyfile(COMMITTED, model)
    result = runner.invoke(app, ["model", "sign", "--key", str(tmp_path / "k.pub"), str(model)])
    assert result.exit_code == 2
    assert f"--key {tmp_path / 'k.pub'}: not an unencrypted PEM private key" in result.stderr
    assert not (tmp_path / "m.onnx.sig").exists()


def test_a_configuration_with_a_malformed_key_names_the_field(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text('[control]\nmodel_keys = ["ed25519:not-base64!"]\n')
    result = runner.invoke(app, ["config", "check", str(config)])
    assert result.exit_code == 2
    assert "control.model_keys[0]" in result.stderr
    assert "not valid base64" in result.stderr


@pytest.mark.integration
def test_the_installed_command_makes_keys_and_signs(tmp_path: Path) -> None:
    """The same round trip through the real entry point, as an operator types it."""
    model = tmp_path / "load_shaving.onnx"
    shutil.copyfile(COMMITTED, model)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}

    def edge_agent(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "edge_agent", *args]
        return subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, check=False)

    made = edge_agent("keys", "new", "release")
    assert made.returncode == 0, made.stderr
    line = made.stdout.strip()
    assert edge_agent("model", "sign", "--key", "release.pem", str(model)).returncode == 0
    checked = edge_agent("model", "check", "-c", site_config(tmp_path, model, line))
    assert checked.returncode == 0, checked.stderr
    assert f"signed by {line}" in checked.stdout


def test_status_shows_who_signed_the_model_in_use_or_that_it_runs_unsigned() -> None:
    state = {
        "mode": "active", "demand_target_kw": 100.0, "policy": "onnx", "fallback": None, "steps": 3,
        "model": "/var/lib/edge-agent/load_shaving.onnx", "model_sha256": "ab" * 32,
        "model_trust": "UNSIGNED, allowed by [control] allow_unsigned_model",
        "missing_inputs": [], "writes": [], "backed_off": [],
    }  # fmt: skip
    out = StringIO()
    cli_local._print_control(state, Console(file=out, width=300, markup=False))
    assert (
        "model /var/lib/edge-agent/load_shaving.onnx: UNSIGNED, allowed by [control] allow_unsigned_model,"
        f" sha256 {'ab' * 32}"
    ) in out.getvalue()
