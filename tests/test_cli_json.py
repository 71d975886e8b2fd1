"""Issue 20, item 8: every command that prints data takes --json and prints one JSON document (savings with
an empty ledger, keys new, model sign; baseline fit in test_cli_savings.py), and `edge-sim --base-port`'s
help says where the simulator's devices really are."""

from __future__ import annotations

import json
import re
import shutil
from datetime import datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edge_agent.cli.app import app
from edge_agent.clock import ScaledClock
from edge_sim.cli import app as sim_app
from edge_sim.layout import DEFAULT_START
from edge_sim.simulator import Simulator
from tests.support import free_base_port
from tests.test_cli_keys import COMMITTED

runner = CliRunner()


def test_savings_with_an_empty_ledger_prints_an_empty_list(tmp_path: Path) -> None:
    site = tmp_path / "site.toml"
    site.write_text(f'[buffer]\npath = "{tmp_path}/buffer.db"\n')
    result = runner.invoke(app, ["savings", "-c", str(site), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == []
    text = runner.invoke(app, ["savings", "-c", str(site)])
    assert text.exit_code == 0
    assert "no savings reported yet" in text.stdout


def test_keys_new_and_model_sign_print_json(tmp_path: Path) -> None:
    made = runner.invoke(app, ["keys", "new", str(tmp_path / "signer"), "--json"])
    assert made.exit_code == 0, made.output
    keys = json.loads(made.stdout)
    assert keys["public_key"].startswith("ed25519:")
    assert keys["public_key_file"] == f"{tmp_path / 'signer'}.pub"
    assert Path(keys["private_key_file"]).exists()

    model = tmp_path / "load_shaving.onnx"
    shutil.copyfile(COMMITTED, model)
    signed = runner.invoke(app, ["model", "sign", "--key", keys["private_key_file"], str(model), "--json"])
    assert signed.exit_code == 0, signed.output
    signature = json.loads(signed.stdout)
    assert signature["signed_by"] == keys["public_key"]
    assert signature["signature_file"] == f"{model}.sig"
    assert len(signature["sha256"]) == 64


@pytest.mark.integration
async def test_the_base_port_help_says_where_the_simulators_devices_are() -> None:
    base = free_base_port()
    clock = ScaledClock(datetime.fromisoformat(DEFAULT_START), 1.0)
    async with Simulator(clock, base, serial_bus=False) as sim:  # where its servers really listen
        meters = {int(e.address.rsplit(":", 1)[1]) for e in sim.endpoints() if e.protocol == "modbus-tcp"}
        controllers = {int(c.info.address.rsplit(":", 1)[1]) for c in sim.controllers}
    assert sim.control_port is not None
    offsets = {"meters": sorted({p - base for p in meters}), "first controller": min(controllers) - base}
    assert offsets == {"meters": [0, 1, 2], "first controller": 10}, offsets

    result = runner.invoke(sim_app, ["run", "--help"], terminal_width=400)
    text = re.sub(r"[\s│]+", " ", result.stdout)
    assert "Modbus TCP meters on this port and the next two" in text
    assert "BACnet/IP controllers (UDP) from this port + 10" in text
    assert f"fault channel (TCP) on this port + {sim.control_port - base}" in text
