"""A control model pushed to a running agent over a real mosquitto, in signed commands: an unsigned model and
a model changed after signing are refused and nothing changes; a good one, fetched from the url the command
names, runs in shadow, then decides: the birth message, the events and `status` follow each step, and a
restart keeps it. A Sparkplug NBIRTH names the model too."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import http.server
import json
import signal
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from edge_agent import signing
from edge_agent.clock import ScaledClock
from edge_agent.control.model_trust import signature_path
from edge_agent.uplink.admission import signed_bytes
from edge_agent.uplink.payloads import ControlModelInfo
from edge_sim.devices.meters.sdm630 import Sdm630
from edge_sim.devices.modbus_servers import ModbusTcpMeterServer
from edge_sim.simulator import Simulator
from tests.onnx_models import TRUSTED, signed, small_model
from tests.support import (
    LOOPBACK,
    Broker,
    agent_process,
    async_wait_until,
    free_base_port,
    in_background,
    running_agent,
)
from tests.test_cli_local import status
from tests.test_control_bacnet import GATEWAY, SPEED, START, agent_toml, eventually
from tests.test_sparkplug_uplink import HOST, host_client, state
from tests.test_sparkplug_uplink import config as sparkplug_config

pytestmark = pytest.mark.integration

SHIPPED = Path(__file__).resolve().parents[1] / "models" / "load_shaving.onnx"
BASE = f"edge/{GATEWAY}"
CENTRAL_KEY = signing.new_private_key()  # central's command key, trusted by [commands]
SHADOW_S = 300.0  # building seconds: 5 s of wall-clock time at SPEED
PUSHED = (2.0, 0.0, 100.0, 100.0, 100.0, 100.0, 0.0)  # a constant decision, in every knob's limits


class Central:
    """Central's MQTT client: signed commands out; replies, births and events in."""

    def __init__(self, client: aiomqtt.Client) -> None:
        self.client = client
        self.replies: dict[str, dict[str, Any]] = {}
        self.births: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self._count = 0

    async def collect(self) -> None:
        async for message in self.client.messages:
            assert isinstance(message.payload, bytes)
            topic = str(message.topic)
            if not message.payload:
                continue
            data = json.loads(message.payload)
            if topic == f"{BASE}/reply":
                self.replies[str(data["id"])] = data
            elif topic == f"{BASE}/status" and data["online"]:
                self.births.append(data)
            elif topic == f"{BASE}/events" and data["kind"] == "model":
                self.events.append(data)

    async def apply_model(self, args: dict[str, Any]) -> dict[str, Any]:
        """A signed apply_model command, and the gateway's reply to it."""
        self._count += 1
        command_id = f"model-{self._count}"
        expires = (datetime.now(UTC) + timedelta(minutes=1)).isoformat(timespec="seconds")
        text = json.dumps(
            {
                "id": command_id,
                "expires": expires.replace("+00:00", "Z"),
                "command": "apply_model",
                "args": args,
            }
        )
        topic = f"{BASE}/command"
        envelope = {"signed": text, "signature": signing.sign(CENTRAL_KEY, signed_bytes(topic, text))}
        await self.client.publish(topic, json.dumps(envelope).encode(), qos=1)

        async def answered() -> bool:
            return command_id in self.replies

        await eventually(answered, 30, f"a reply to {command_id}")
        return self.replies[command_id]

    def control_model(self) -> dict[str, Any] | None:
        if not self.births:
            return None
        model: dict[str, Any] | None = self.births[-1].get("control_model")
        return model


@contextlib.asynccontextmanager
async def central(broker: Broker) -> AsyncIterator[Central]:
    async with aiomqtt.Client(LOOPBACK, broker.port, identifier="central", keepalive=600) as client:
        await client.subscribe(f"{BASE}/#", qos=1)
        seen = Central(client)
        async with in_background(seen.collect()):
            yield seen


@contextlib.contextmanager
def file_server(directory: Path) -> Iterator[str]:
    """A plain http server on loopback serving `directory`; its base url."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer((LOOPBACK, 0), partial(Quiet, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{LOOPBACK}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def model_args(model: Path, *, signature: bool = True) -> dict[str, Any]:
    """apply_model's args for `model`, inline; with its `.sig` line unless told otherwise."""
    data = model.read_bytes()
    args: dict[str, Any] = {
        "file": model.name,
        "sha256": hashlib.sha256(data).hexdigest(),
        "data": base64.b64encode(data).decode(),
    }
    if signature:
        args["signature"] = signature_path(model).read_text()
    return args


@pytest.mark.timeout(300)  # two agent starts and a simulated building on a shared machine
async def test_unsigned_and_tampered_models_are_refused_a_good_one_runs_in_shadow_then_decides(
    broker: Broker, tmp_path: Path
) -> None:
    configured = signed(tmp_path / "load_shaving.onnx", data=SHIPPED.read_bytes())
    offered = tmp_path / "offered"
    offered.mkdir()
    unsigned = small_model(offered / "unsigned.onnx", outputs=PUSHED)
    tampered = signed(small_model(offered / "tampered.onnx", outputs=PUSHED))
    data = bytearray(tampered.read_bytes())
    data[-30] ^= 0x01  # one bit, after signing
    tampered.write_bytes(bytes(data))
    good = signed(small_model(offered / "shed-2k.onnx", outputs=PUSHED))
    good_sha = hashlib.sha256(good.read_bytes()).hexdigest()

    clock = ScaledClock(datetime.fromisoformat(START), SPEED)
    async with Simulator(clock, free_base_port(), serial_bus=False, control=False) as sim:
        config = tmp_path / "agent.toml"
        trust = (
            f'[control]\nmodel = "{configured}"\nmodel_keys = ["{TRUSTED}"]\nmodel_shadow_s = {SHADOW_S}\n'
        )
        text = agent_toml(sim, broker, tmp_path).replace("[control]\n", trust, 1)
        text += f'[commands]\ntrusted_keys = ["{signing.public_key_text(CENTRAL_KEY)}"]\n'
        config.write_text(text)
        options = ("--clock-speed", str(SPEED), "--clock-start", START)
        log_file = tmp_path / "agent.log"
        async with central(broker) as seen:
            with log_file.open("wb") as log:
                agent = await agent_process(config, *options, stderr=log)
            try:

                async def born_with(file: str, stage: str) -> bool:
                    model = seen.control_model()
                    return model is not None and (model["file"], model["stage"]) == (file, stage)

                await eventually(partial(born_with, "load_shaving.onnx", "active"), 30, "the first birth")
                births = len(seen.births)

                reply = await seen.apply_model(model_args(unsigned, signature=False))
                assert reply["ok"] is False
                assert (reply["error"]["code"], reply["error"]["field"]) == ("unsigned", "args.signature")

                reply = await seen.apply_model(model_args(tampered))
                assert reply["ok"] is False
                assert (reply["error"]["code"], reply["error"]["field"]) == (
                    "bad-signature",
                    "args.signature",
                )
                assert "changed after it was signed" in reply["error"]["message"]

                altered = {**model_args(good), "sha256": hashlib.sha256(b"another file").hexdigest()}
                reply = await seen.apply_model(altered)
                assert (reply["ok"], reply["error"]["code"]) == (False, "invalid")
                assert reply["error"]["field"] == "args.sha256"

                assert len(seen.births) == births  # nothing changed: no new birth, no event
                assert seen.events == []
                assert (await status(config))["control"]["model"] == str(configured)

                with file_server(offered) as url:
                    args = {**model_args(good), "url": f"{url}/{good.name}"}
                    del args["data"]
                    reply = await seen.apply_model(args)
                assert reply["ok"] is True, reply
                stored = f"{good_sha[:12]}-shed-2k.onnx"
                assert (reply["result"]["file"], reply["result"]["stage"]) == (stored, "shadow")
                assert reply["result"]["signer"] == TRUSTED

                await eventually(
                    partial(born_with, stored, "shadow"), 30, "a birth naming the model in shadow"
                )
                await eventually(partial(born_with, stored, "active"), 60, "a birth naming it active")
                assert [(e["model"], e["stage"]) for e in seen.events] == [
                    (stored, "shadow"),
                    (stored, "active"),
                ]
                assert "load_shaving.onnx kept for a rollback" in seen.events[-1]["message"]
                control = (await status(config))["control"]
                assert control["model"] == str(tmp_path / "models" / stored)
                assert control["model_sha256"] == good_sha
                assert control["shadow"] is None

                agent.send_signal(signal.SIGTERM)
                async with asyncio.timeout(45):
                    await agent.wait()
                assert agent.returncode == 0
                births = len(seen.births)
                with log_file.open("ab") as log:
                    agent = await agent_process(config, *options, stderr=log)

                async def born_again() -> bool:
                    return len(seen.births) > births

                await eventually(born_again, 30, "the birth after a restart")
                assert seen.control_model() == {"file": stored, "sha256": good_sha, "stage": "active"}
            finally:
                agent.send_signal(signal.SIGTERM)
                async with asyncio.timeout(45):
                    await agent.wait()
    assert agent.returncode == 0


async def test_a_sparkplug_nbirth_names_the_control_model_and_its_stage(
    broker: Broker, tmp_path: Path
) -> None:
    async with (
        ModbusTcpMeterServer(LOOPBACK, 0, [Sdm630(unit_id=1)]) as meter,
        host_client(broker) as (client, seen),
    ):
        await client.publish(f"spBv1.0/STATE/{HOST}", state(True), qos=1, retain=True)
        async with running_agent(sparkplug_config(broker, tmp_path, meter.port)) as agent:

            def births() -> list[dict[str, str]]:
                return [
                    {m.name: m.string_value for m in payload.metrics if m.name.startswith("Control Model/")}
                    for kind, payload in seen
                    if kind == "NBIRTH"
                ]

            await async_wait_until(lambda: len(births()) == 1, 20, "the NBIRTH")
            assert births() == [{}]  # no control here: no model
            sha = "ab" * 32
            agent.uplink.control_model = lambda: ControlModelInfo(file="m.onnx", sha256=sha, stage="shadow")
            agent.rebirth()  # as a push does
            await async_wait_until(lambda: len(births()) == 2, 20, "the NBIRTH again")
            model = {
                "Control Model/File": "m.onnx",
                "Control Model/SHA256": sha,
                "Control Model/Stage": "shadow",
            }
            assert births()[-1] == model
