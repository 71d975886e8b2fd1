"""The control loop when something it depends on fails: stale meter data releases every write, and a
corrupt model, a model with the wrong inputs, one not signed by a trusted key or changed after signing,
or a NaN from the model hand the decision to the rule-based limiter. Each says so in one log line and one
event upstream, and `status` says why."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import structlog

from edge_agent import signing
from edge_agent.acquisition.latest import LatestValues
from edge_agent.clock import ManualClock
from edge_agent.control.features import FEATURE_UNITS
from edge_agent.control.loop import ControlLoop
from edge_agent.control.points import Holder
from edge_agent.control.settings import ControlMode
from edge_agent.readings import Quality, Reading, utc_now
from edge_agent.service.control_setup import control_settings, control_setup
from tests.one_zone import ALWAYS_OPEN, VALUES, one_zone_control
from tests.onnx_models import TRUSTED, signed, small_model

START = datetime.fromisoformat("2026-08-05T14:00:00+09:00")  # open, hot
POLL_S = 1.0


@dataclass
class Building:
    """The loop's view of the devices (its Points): the latest values the test feeds, what it wrote, and
    priority arrays that are always free."""

    values: LatestValues
    writes: list[tuple[str, float | None]] = field(default_factory=list)

    def latest(self, ref: str) -> Reading | None:
        return self.values.get(ref)

    async def write(self, ref: str, value: float | None, priority: int | None) -> None:
        self.writes.append((ref, value))

    async def holder(self, ref: str) -> Holder:
        return Holder(prioritised=True)


def control_loop(
    model: Path | None, events: list[dict[str, object]], **trust: object
) -> tuple[ControlLoop, Building]:
    """`trust`: [control] model_keys and allow_unsigned_model; by default the test key is trusted."""
    config = one_zone_control(
        **ALWAYS_OPEN,
        **{"model_keys": [TRUSTED], **trust},  # the test key, unless `trust` says otherwise
        mode="active",
        demand_target_kw=100.0,  # below the demand: the limiter sheds
        model=model,
    )
    building = Building(LatestValues(dict.fromkeys(VALUES, POLL_S)))
    loop = ControlLoop(
        "gw",
        control_setup(config, units={ref: unit for ref, (_, unit) in VALUES.items()}),
        control_settings(config),
        building,
        clock=ManualClock(START),
        send_event=lambda payload: events.append(json.loads(payload)),
    )
    feed(building)
    return loop, building


def feed(building: Building, age_s: float = 0.0, **values: float) -> None:
    at = utc_now() - timedelta(seconds=age_s)
    readings = []
    for ref, (value, unit) in VALUES.items():
        device, point = ref.split("/")
        readings.append(Reading(device, point, values.get(point, value), unit, Quality.GOOD, at))
    building.values.update(readings)


def decided_by(events: list[dict[str, object]]) -> list[object]:
    return [e["policy"] for e in events if e["kind"] == "decision"]


async def test_stale_meter_data_releases_every_write_with_one_line_and_one_event() -> None:
    events: list[dict[str, object]] = []
    loop, building = control_loop(None, events)
    loop.load_model()
    await loop.step()
    held = set(loop.actuator.held)
    assert held == {"vav/cooling_setpoint", "plant/demand_limit"}
    feed(building, age_s=10 * POLL_S)  # the pollers stopped getting answers
    with structlog.testing.capture_logs() as logs:
        await loop.step()
        await loop.step()
    assert loop.actuator.held == {}
    assert {ref for ref, value in building.writes if value is None} == held  # relinquished, all of them
    stale = [line for line in logs if "stale" in str(line["event"])]
    assert len(stale) == 1
    assert "building demand" in str(stale[0]["inputs"])
    fallbacks = [e for e in events if e["kind"] == "fallback" and "stale" in str(e["message"])]
    assert len(fallbacks) == 1
    feed(building)  # the meter answers again: control resumes
    await loop.step()
    assert "vav/cooling_setpoint" in loop.actuator.held
    assert events[-1]["kind"] == "write" or any(e["kind"] == "recovered" for e in events)


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda p: signed(p.write_bytes(small_model(p).read_bytes()[:100]) and p), "not a valid ONNX model"),
        (
            lambda p: signed(
                small_model(p, inputs=[("outdoor_temperature", "degF"), *list(FEATURE_UNITS.items())[1:]])
            ),
            "input 0",
        ),
        (lambda p: signed(small_model(p, width=19)), "shape"),
    ],
    ids=["corrupt", "wrong-names", "wrong-shape"],
)
async def test_a_refused_model_hands_over_to_the_rules(tmp_path: Path, make: object, reason: str) -> None:
    events: list[dict[str, object]] = []
    model = make(tmp_path / "model.onnx")  # type: ignore[operator]
    loop, _ = control_loop(model, events)
    with structlog.testing.capture_logs() as logs:
        loop.load_model()
        await loop.step()
        await loop.step()
    refused = [line for line in logs if line["event"] == "model refused: the rule-based limiter decides"]
    assert len(refused) == 1
    assert reason in str(refused[0]["reason"])
    assert [e["kind"] for e in events].count("fallback") == 1
    assert decided_by(events) == ["rules", "rules"]
    assert "vav/cooling_setpoint" in loop.actuator.held  # the rules still shed


async def test_a_nan_from_the_model_hands_the_step_to_the_rules(tmp_path: Path) -> None:
    events: list[dict[str, object]] = []
    loop, _ = control_loop(signed(small_model(tmp_path / "nan.onnx", bias=float("nan"))), events)
    loop.load_model()
    assert loop.policy.model is not None  # the model itself is well formed
    with structlog.testing.capture_logs() as logs:
        await loop.step()
        await loop.step()
    falls = [line for line in logs if line["event"] == "control falls back to the rule-based limiter"]
    assert len(falls) == 1
    assert "nan" in str(falls[0]["reason"]).lower()
    assert decided_by(events) == ["rules", "rules"]
    assert [e["kind"] for e in events].count("fallback") == 1


async def test_a_sound_model_decides(tmp_path: Path) -> None:
    events: list[dict[str, object]] = []
    model = signed(small_model(tmp_path / "ok.onnx"))
    loop, _ = control_loop(model, events)
    loop.load_model()
    await loop.step()
    assert decided_by(events) == ["onnx"]
    assert loop.fallback is None
    status = loop.status()
    assert status.model_trust == f"signed by {TRUSTED}"
    assert status.model_sha256 == hashlib.sha256(model.read_bytes()).hexdigest()


@pytest.mark.parametrize("where", [0, 0.5, -1], ids=["first-byte", "middle-byte", "last-byte"])
async def test_a_model_changed_after_signing_is_refused_and_the_rules_decide(
    tmp_path: Path, where: float
) -> None:
    model = signed(small_model(tmp_path / "model.onnx"))
    data = bytearray(model.read_bytes())
    at = int(where * len(data)) if where >= 0 else len(data) - 1
    data[at] ^= 0x01
    model.write_bytes(bytes(data))
    events: list[dict[str, object]] = []
    loop, _ = control_loop(model, events)
    with structlog.testing.capture_logs() as logs:
        loop.load_model()
        await loop.step()
    refused = [line for line in logs if line["event"] == "model refused: the rule-based limiter decides"]
    assert len(refused) == 1
    assert "changed after it was signed" in str(refused[0]["reason"])
    assert decided_by(events) == ["rules"]
    assert "vav/cooling_setpoint" in loop.actuator.held  # the rules run the building
    status = loop.status()
    assert status.policy == "rules"
    assert status.fallback is not None
    assert status.fallback.startswith("model refused: the file does not match its signature")
    assert status.model_trust is None


async def test_an_unsigned_model_is_refused_unless_the_configuration_allows_it(tmp_path: Path) -> None:
    model = small_model(tmp_path / "unsigned.onnx")
    events: list[dict[str, object]] = []
    refused, _ = control_loop(model, events)
    refused.load_model()
    await refused.step()
    assert decided_by(events) == ["rules"]
    assert refused.status().fallback == (
        "model refused: unsigned: no signature file unsigned.onnx.sig (sign it with `edge-agent model sign`,"
        " or set [control] allow_unsigned_model = true)"
    )
    events.clear()
    allowed, _ = control_loop(model, events, allow_unsigned_model=True)
    allowed.load_model()
    await allowed.step()
    assert decided_by(events) == ["onnx"]
    assert allowed.status().model_trust == "UNSIGNED, allowed by [control] allow_unsigned_model"


async def test_a_signature_that_fails_is_refused_even_where_unsigned_models_are_allowed(
    tmp_path: Path,
) -> None:
    model = signed(small_model(tmp_path / "model.onnx"))
    small_model(model, bias=0.25)  # other weights, the same version and fingerprint, the old .sig
    events: list[dict[str, object]] = []
    loop, _ = control_loop(model, events, allow_unsigned_model=True)
    loop.load_model()
    await loop.step()
    assert decided_by(events) == ["rules"]
    assert "changed after it was signed" in str(loop.fallback)


async def test_a_model_signed_by_an_untrusted_key_is_refused(tmp_path: Path) -> None:
    stranger = signing.new_private_key()
    model = signed(small_model(tmp_path / "model.onnx"), stranger)
    events: list[dict[str, object]] = []
    loop, _ = control_loop(model, events)
    loop.load_model()
    await loop.step()
    assert decided_by(events) == ["rules"]
    assert loop.fallback == (
        f"model refused: signed by {signing.public_key_text(stranger)}, a key [control] model_keys does not"
        " trust"
    )
    events.clear()
    trusting, _ = control_loop(model, events, model_keys=[TRUSTED, signing.public_key_text(stranger)])
    trusting.load_model()
    await trusting.step()
    assert decided_by(events) == ["onnx"]
    assert trusting.status().model_trust == f"signed by {signing.public_key_text(stranger)}"


async def test_shadow_writes_nothing_and_off_gives_everything_back() -> None:
    events: list[dict[str, object]] = []
    loop, building = control_loop(None, events)
    loop.load_model()
    loop.settings.mode = ControlMode.SHADOW
    await loop.step()
    assert decided_by(events) == ["rules"]  # decided and reported...
    assert building.writes == []  # ...never written
    loop.settings.mode = ControlMode.ACTIVE
    await loop.step()
    assert loop.actuator.held
    loop.settings.mode = ControlMode.OFF
    await loop.step()
    assert loop.actuator.held == {}
    assert building.writes[-2:] == [("vav/cooling_setpoint", None), ("plant/demand_limit", None)]
    assert [e["mode"] for e in events if e["kind"] == "mode"] == ["shadow", "active", "off"]
