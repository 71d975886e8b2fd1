"""The ONNX policy: the shipped model loads and decides within range; a bad model is refused, saying why."""

from __future__ import annotations

import hashlib
from pathlib import Path

import onnx
import pytest
from onnx import numpy_helper

from edge_agent.control.features import FEATURE_UNITS, Features
from edge_agent.control.limits import KNOBS
from edge_agent.control.model_trust import ModelTrust
from edge_agent.control.onnx_policy import load_policy
from edge_agent.errors import ModelError
from edge_sim.control_study import run_controlled
from edge_sim.study import SITE, run_scenario
from tests.onnx_models import TRUSTED, signed, small_model

SHIPPED = Path(__file__).parents[1] / "models" / "load_shaving.onnx"
UNSIGNED = ModelTrust(allow_unsigned=True)  # the shipped model is unsigned (models/README.md)

# A hot afternoon in a peak band, the 15-minute interval heading over the target.
AFTERNOON = Features(
    hour_of_day=14.5, day_of_week=1.0, holiday=0.0, open=1.0, hours_to_open=0.0,
    outdoor_temperature=33.0, zone_temperature_mean=26.2, zone_temperature_max=26.6,
    zone_temperature_min=25.6, cooling_setpoint_mean=26.0, heating_setpoint_mean=20.0, co2_max=760.0,
    demand=96.0, interval_average=93.0, interval_projection=95.0, interval_elapsed=0.6,
    demand_target=85.0, month_peak=88.0, tou_band=2.0, hours_to_peak_band=0.0,
)  # fmt: skip


def test_the_shipped_model_loads_and_decides_within_every_knobs_range() -> None:
    policy = load_policy(SHIPPED, UNSIGNED)
    assert policy.name == "onnx"
    assert policy.info.inputs == tuple(FEATURE_UNITS.items())
    assert len(policy.info.fingerprint) == 64
    decision = policy.decide(AFTERNOON)
    for name, value in decision.values().items():
        assert KNOBS[name].low <= value <= KNOBS[name].high, name
    assert decision.sheds  # over target in a peak band: it asks the building for less


def test_the_shipped_models_decisions_are_deterministic() -> None:
    first, second = load_policy(SHIPPED, UNSIGNED), load_policy(SHIPPED, UNSIGNED)
    assert first.decide(AFTERNOON) == first.decide(AFTERNOON) == second.decide(AFTERNOON)


def test_a_missing_or_truncated_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="cannot be read") as missing:
        load_policy(tmp_path / "absent.onnx", UNSIGNED)
    assert missing.value.path == str(tmp_path / "absent.onnx")
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(SHIPPED.read_bytes()[:1000])
    with pytest.raises(ModelError, match="not a valid ONNX model") as corrupt:
        load_policy(truncated, UNSIGNED)
    assert str(truncated) in str(corrupt.value)


def test_a_model_naming_an_input_differently_is_refused(tmp_path: Path) -> None:
    names = [[n, u] for n, u in FEATURE_UNITS.items()]
    names[3] = ["occupied", "people"]
    with pytest.raises(ModelError) as error:
        load_policy(small_model(tmp_path / "renamed.onnx", inputs=names), UNSIGNED)
    assert error.value.reason == "input 3 is 'occupied' (people), the agent's is 'open' (1 while open)"


def test_a_model_with_another_unit_is_refused(tmp_path: Path) -> None:
    names = [[n, u] for n, u in FEATURE_UNITS.items()]
    names[5] = ["outdoor_temperature", "degF"]
    with pytest.raises(ModelError, match=r"input 5 is 'outdoor_temperature' \(degF\)"):
        load_policy(small_model(tmp_path / "fahrenheit.onnx", inputs=names), UNSIGNED)


def test_a_model_of_another_shape_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"input 'features' has shape \['batch', 19\].*\[batch, 20\]"):
        load_policy(small_model(tmp_path / "narrow.onnx", width=19), UNSIGNED)


def test_a_model_answering_nan_fails_at_decide_naming_the_knob(tmp_path: Path) -> None:
    policy = load_policy(small_model(tmp_path / "nan.onnx", bias=float("nan")), UNSIGNED)
    with pytest.raises(ModelError, match="knob cooling_offset is nan"):
        policy.decide(AFTERNOON)


def test_the_shipped_model_with_every_weight_negated_is_told_apart_and_refused(tmp_path: Path) -> None:
    """The same version and fingerprint, the opposite decisions: signed, it loads; negated, it is refused,
    and even where unsigned models are allowed its sha256 tells it apart."""
    model = signed(tmp_path / "load_shaving.onnx", data=SHIPPED.read_bytes())
    trust = ModelTrust(keys=(TRUSTED,))
    original = load_policy(model, trust)
    proto = onnx.load(str(model))
    for weights in proto.graph.initializer:
        negated = -numpy_helper.to_array(weights)
        weights.CopyFrom(numpy_helper.from_array(negated, weights.name))
    onnx.save(proto, str(model))  # the old .sig stays beside it
    with pytest.raises(ModelError, match="changed after it was signed") as refused:
        load_policy(model, trust)
    assert refused.value.path == str(model)
    model.with_name("load_shaving.onnx.sig").unlink()
    with pytest.raises(ModelError, match=r"unsigned: no signature file load_shaving\.onnx\.sig"):
        load_policy(model, trust)
    negated_policy = load_policy(model, UNSIGNED)
    assert (negated_policy.info.version, negated_policy.info.fingerprint) == (
        original.info.version,
        original.info.fingerprint,
    )
    assert negated_policy.info.sha256 != original.info.sha256
    assert negated_policy.info.sha256 == hashlib.sha256(model.read_bytes()).hexdigest()


def test_the_shipped_model_is_unsigned_and_refused_by_default() -> None:
    with pytest.raises(ModelError, match="unsigned"):
        load_policy(SHIPPED, ModelTrust())


@pytest.mark.integration
def test_the_shipped_model_on_a_summer_day_lowers_the_peak_without_discomfort() -> None:
    baseline_run = run_scenario("summer", seed=0, days=1)
    baseline = baseline_run.kpis[SITE]
    targets = {b: 0.8 * k.peak_15min_kw for b, k in baseline_run.kpis.items() if b != SITE}
    onnx_run, _ = run_controlled("summer", lambda: load_policy(SHIPPED, UNSIGNED), targets, seed=0, days=1)
    controlled = onnx_run.kpis[SITE]
    assert controlled.tdis_kh <= baseline.tdis_kh + 0.1
    assert controlled.peak_15min_kw < 0.9 * baseline.peak_15min_kw
