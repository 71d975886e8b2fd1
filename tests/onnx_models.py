"""Small ONNX models for tests: the agent's signature (or a deliberately wrong one), a constant output; and
a test key to sign them with, as `edge-agent model sign` does."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from onnx import TensorProto, helper, numpy_helper

from edge_agent import signing
from edge_agent.control.features import FEATURE_UNITS
from edge_agent.control.limits import KNOBS
from edge_agent.control.model_trust import signature_line, signature_path
from edge_agent.control.onnx_policy import FINGERPRINT_KEY, INPUTS_KEY, OUTPUTS_KEY, VERSION_KEY

SIGNER = signing.new_private_key()
TRUSTED = signing.public_key_text(SIGNER)  # what a test's [control] model_keys lists


def signed(model: Path, key: Ed25519PrivateKey = SIGNER, data: bytes | None = None) -> Path:
    """`model` (written with `data` first, if given), with its `.sig` file by `key`."""
    if data is not None:
        model.write_bytes(data)
    signature = signing.sign(key, model.read_bytes())
    signature_path(model).write_text(signature_line(signing.public_key_text(key), signature))
    return model


def small_model(
    path: Path,
    *,
    inputs: Sequence[Sequence[str]] | None = None,
    width: int = len(FEATURE_UNITS),
    bias: float = 0.5,
    outputs: Sequence[float] | None = None,
) -> Path:
    """A model of the agent's signature (unless told otherwise) whose every output is `bias`, or whose
    outputs are always `outputs` (KNOBS' order)."""
    weights = numpy_helper.from_array(np.zeros((width, len(KNOBS)), dtype=np.float32), "w")
    constant = np.full(len(KNOBS), bias) if outputs is None else np.asarray(outputs)
    offset = numpy_helper.from_array(constant.astype(np.float32), "b")
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["features", "w", "b"], ["knobs"])],
        "test",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", width])],
        [helper.make_tensor_value_info("knobs", TensorProto.FLOAT, ["batch", len(KNOBS)])],
        [weights, offset],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    names = inputs if inputs is not None else [[n, u] for n, u in FEATURE_UNITS.items()]
    helper.set_model_props(
        model,
        {
            INPUTS_KEY: json.dumps(names),
            OUTPUTS_KEY: json.dumps([[n, k.unit] for n, k in KNOBS.items()]),
            VERSION_KEY: "test",
            FINGERPRINT_KEY: "0" * 64,
        },
    )
    onnx.save(model, str(path))
    return path
