"""A running agent given a signed model that was changed afterwards: it refuses the model, the rule-based
limiter runs the building, and `status` and `model check` say why."""

from __future__ import annotations

import asyncio
import signal
from datetime import datetime
from pathlib import Path

import pytest

from edge_agent.clock import ScaledClock
from edge_sim.simulator import Simulator
from tests.onnx_models import TRUSTED, signed
from tests.support import Broker, agent_process, free_base_port
from tests.test_cli_local import cli, status
from tests.test_control_bacnet import SPEED, START, agent_toml, eventually, slots

SHIPPED = Path(__file__).resolve().parents[1] / "models" / "load_shaving.onnx"
CHANGED = f"model refused: the file does not match its signature by {TRUSTED}: changed after it was signed"


@pytest.mark.integration
async def test_a_model_changed_after_signing_leaves_the_building_to_the_rules(
    broker: Broker, tmp_path: Path
) -> None:
    model = signed(tmp_path / "load_shaving.onnx", data=SHIPPED.read_bytes())
    data = bytearray(model.read_bytes())
    data[-100] ^= 0x01  # one bit of one byte, after signing
    model.write_bytes(bytes(data))

    clock = ScaledClock(datetime.fromisoformat(START), SPEED)
    async with Simulator(clock, free_base_port(), serial_bus=False, control=False) as sim:
        config = tmp_path / "agent.toml"
        trust = f'[control]\nmodel = "{model}"\nmodel_keys = ["{TRUSTED}"]\n'
        config.write_text(agent_toml(sim, broker, tmp_path).replace("[control]\n", trust, 1))

        code, _, err = await cli("model", "check", "--config", str(config))
        assert code == 2
        assert CHANGED.removeprefix("model refused: ") in err

        with (tmp_path / "agent.log").open("wb") as log:
            options = ("--clock-speed", str(SPEED), "--clock-start", START)
            agent = await agent_process(config, *options, stderr=log)
        try:

            async def plant_held() -> bool:
                return (await slots(sim, "library-plant", "edge-sim-plant", "demand_limit"))[9] is not None

            await eventually(plant_held, 30, "the rules holding the plant's demand limit")
            control = (await status(config))["control"]
            assert control["policy"] == "rules"
            assert control["fallback"].startswith(CHANGED)
            assert control["model"] == str(model)
            assert control["model_trust"] is None
            code, out, err = await cli("status", "--config", str(config))
            assert code == 0, err
            printed = " ".join(out.split())  # the console wraps long lines
            assert f"decided by rules (fallback: {CHANGED}" in printed
        finally:
            agent.send_signal(signal.SIGTERM)
            async with asyncio.timeout(45):
                await agent.wait()
    assert agent.returncode == 0
    assert "model refused: the rule-based limiter decides" in (tmp_path / "agent.log").read_text()
