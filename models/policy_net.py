"""The load-shaving policy's parametric form: numpy to train it, ONNX to ship it, the same arithmetic.

    e = [standardised features (20), standardised ratios to the demand target (4)]
    p = sigmoid(W2 relu(W1 e + b1) + b2)          a small MLP, fitted to imitate the rule-based limiter
    q = clip(p + V e + c, 0, 1)                   a linear correction, tuned on the simulator's cost
    knob = low + (high - low) q                   in KNOBS' order and ranges

The ratios (interval projection, interval average, demand and month peak over the target) are what the
limiter reasons with; computing them in the graph keeps the model's inputs the agent's plain features.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper, numpy_helper

from edge_agent.control.features import FEATURE_UNITS
from edge_agent.control.limits import KNOBS
from edge_agent.control.onnx_policy import FINGERPRINT_KEY, INPUTS_KEY, OUTPUTS_KEY, VERSION_KEY

Array = npt.NDArray[np.float64]
FEATURES = list(FEATURE_UNITS)
RATIO_OF = ("interval_projection", "interval_average", "demand", "month_peak")  # over demand_target
WIDTH = len(FEATURES) + len(RATIO_OF)  # e
LOW = np.array([k.low for k in KNOBS.values()])
SPAN = np.array([k.high - k.low for k in KNOBS.values()])
OPSET = 17


@dataclass(frozen=True)
class Weights:
    mean: Array  # [24], of e before standardising
    scale: Array  # [24], 1 / standard deviation
    w1: Array  # [24, H]
    b1: Array  # [H]
    w2: Array  # [H, 7]
    b2: Array  # [7]
    v: Array  # [24, 7], the correction
    c: Array  # [7]

    def with_correction(self, v: Array, c: Array) -> Weights:
        return replace(self, v=v, c=c)


def raw_inputs(x: Array) -> Array:
    """[N, 20] features -> [N, 24]: the features and their ratios to the demand target."""
    target = np.maximum(x[:, [FEATURES.index("demand_target")]], 1.0)
    ratios = x[:, [FEATURES.index(name) for name in RATIO_OF]] / target
    return np.concatenate([x, ratios], axis=1)


def hidden(weights: Weights, e: Array) -> Array:
    return np.maximum(0.0, e @ weights.w1 + weights.b1)


def sigmoid(z: Array) -> Array:
    return 1.0 / (1.0 + np.exp(-z))


def knobs(weights: Weights, x: Array) -> Array:
    """The model's output in numpy, for checks against onnxruntime."""
    e = (raw_inputs(x) - weights.mean) * weights.scale
    p = sigmoid(hidden(weights, e) @ weights.w2 + weights.b2)
    q = np.clip(p + e @ weights.v + weights.c, 0.0, 1.0)
    return LOW + SPAN * q


def to_onnx(weights: Weights, version: str, fingerprint: str, description: str) -> bytes:
    """The model file: the graph above, and the metadata the agent checks at load."""
    n = len(FEATURES)
    select = np.zeros((n, len(RATIO_OF)))
    for column, name in enumerate(RATIO_OF):
        select[FEATURES.index(name), column] = 1.0
    pick_target = np.zeros((n, 1))
    pick_target[FEATURES.index("demand_target"), 0] = 1.0
    constants = {
        "select": select,
        "pick_target": pick_target,
        "one": np.array([1.0]),
        "mean": weights.mean,
        "scale": weights.scale,
        "w1": weights.w1,
        "b1": weights.b1,
        "w2": weights.w2,
        "b2": weights.b2,
        "v": weights.v,
        "c": weights.c,
        "zero": np.array(0.0),
        "unit": np.array(1.0),
        "low": LOW,
        "span": SPAN,
    }
    initializers = [numpy_helper.from_array(np.asarray(a, dtype=np.float32), k) for k, a in constants.items()]
    node = helper.make_node
    nodes = [
        node("MatMul", ["features", "select"], ["numerators"]),
        node("MatMul", ["features", "pick_target"], ["target_raw"]),
        node("Max", ["target_raw", "one"], ["target"]),
        node("Div", ["numerators", "target"], ["ratios"]),
        node("Concat", ["features", "ratios"], ["raw"], axis=1),
        node("Sub", ["raw", "mean"], ["centred"]),
        node("Mul", ["centred", "scale"], ["e"]),
        node("Gemm", ["e", "w1", "b1"], ["pre_hidden"]),
        node("Relu", ["pre_hidden"], ["hidden"]),
        node("Gemm", ["hidden", "w2", "b2"], ["logits"]),
        node("Sigmoid", ["logits"], ["imitation"]),
        node("Gemm", ["e", "v", "c"], ["correction"]),
        node("Add", ["imitation", "correction"], ["corrected"]),
        node("Clip", ["corrected", "zero", "unit"], ["share"]),
        node("Mul", ["share", "span"], ["scaled"]),
        node("Add", ["scaled", "low"], ["knobs"]),
    ]
    graph = helper.make_graph(
        nodes,
        "load_shaving",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", n])],
        [helper.make_tensor_value_info("knobs", TensorProto.FLOAT, ["batch", len(KNOBS)])],
        initializers,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="edge-agent models/train.py"
    )
    model.ir_version = 8
    model.doc_string = description
    helper.set_model_props(
        model,
        {
            INPUTS_KEY: json.dumps([[name, unit] for name, unit in FEATURE_UNITS.items()]),
            OUTPUTS_KEY: json.dumps([[name, knob.unit] for name, knob in KNOBS.items()]),
            VERSION_KEY: version,
            FINGERPRINT_KEY: fingerprint,
        },
    )
    onnx.checker.check_model(model, full_check=True)
    return bytes(model.SerializeToString())
