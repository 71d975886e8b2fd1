"""The ONNX policy: a model file checked against the agent's features and knobs before it is trusted.

The model takes one float32 input [batch, 20] in FEATURE_UNITS' order and gives one float32 output
[batch, 7] in KNOBS' order. Its metadata names both with units ("edge_agent.inputs", "edge_agent.outputs",
JSON lists of [name, unit]) and says which model it is ("edge_agent.version",
"edge_agent.training_fingerprint"). Any difference is refused with a ModelError saying what differs; the
caller falls back to the rule-based limiter. Before any of that, `load_policy` checks that the configuration
trusts the file (model_trust.py: its signature); the bytes checked are the bytes loaded. Version and
fingerprint are only what the file claims: its sha256 is what tells two files apart.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort

from edge_agent.control.decision import Decision
from edge_agent.control.features import FEATURE_UNITS, Features
from edge_agent.control.limits import KNOBS
from edge_agent.control.model_trust import ModelTrust, Verdict
from edge_agent.control.model_trust import check as check_trust
from edge_agent.errors import ModelError

INPUTS_KEY, OUTPUTS_KEY = "edge_agent.inputs", "edge_agent.outputs"
VERSION_KEY, FINGERPRINT_KEY = "edge_agent.version", "edge_agent.training_fingerprint"
FLOAT_TENSOR = "tensor(float)"


@dataclasses.dataclass(frozen=True, slots=True)
class ModelInfo:
    path: str
    version: str
    fingerprint: str
    inputs: tuple[tuple[str, str], ...]  # (name, unit)
    outputs: tuple[tuple[str, str], ...]
    sha256: str  # of the file's exact bytes
    trust: Verdict | None = None  # why the agent may use it; None: loaded from bytes, unchecked (training)


class OnnxPolicy:
    name = "onnx"

    def __init__(self, session: ort.InferenceSession, info: ModelInfo) -> None:
        self._session = session
        self._input = session.get_inputs()[0].name
        self.info = info

    def decide(self, features: Features) -> Decision:
        values = self.outputs(features)
        try:
            return Decision.from_vector(values)
        except ValueError as exc:
            raise ModelError(self.info.path, f"output {exc}") from exc

    def outputs(self, features: Features) -> list[float]:
        """The model's raw output, in KNOBS' order: not clipped to the knobs' ranges, maybe not finite."""
        with _translated(self.info.path, lambda exc: f"inference failed: {exc}"):
            (output, *_) = self._session.run(None, {self._input: features.vector()})
            return [float(v) for v in np.asarray(output, dtype=np.float64).reshape(-1)]


def load_policy(path: str | Path, trust: ModelTrust) -> OnnxPolicy:
    """The model at `path`, checked; ModelError when it is missing, not trusted (unsigned, changed after
    signing, signed by an unknown key), corrupt or does not match."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ModelError(str(path), f"cannot be read ({exc.strerror or exc})") from exc
    verdict = check_trust(Path(path), data, trust)
    policy = policy_from_bytes(data, str(path))
    policy.info = dataclasses.replace(policy.info, trust=verdict)
    return policy


def policy_from_bytes(data: bytes, path: str) -> OnnxPolicy:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # a gateway has few cores, and the model is tiny
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    with _translated(path, lambda exc: f"not a valid ONNX model ({_first_line(exc)})"):
        session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    _check_tensors(session, path)
    meta = session.get_modelmeta().custom_metadata_map
    inputs = _named(meta, INPUTS_KEY, path)
    outputs = _named(meta, OUTPUTS_KEY, path)
    _compare("input", inputs, list(FEATURE_UNITS.items()), path)
    _compare("output", outputs, [(name, knob.unit) for name, knob in KNOBS.items()], path)
    for key in (VERSION_KEY, FINGERPRINT_KEY):
        if not meta.get(key):
            raise ModelError(path, f"metadata has no {key}")
    info = ModelInfo(
        path,
        meta[VERSION_KEY],
        meta[FINGERPRINT_KEY],
        tuple(inputs),
        tuple(outputs),
        hashlib.sha256(data).hexdigest(),
    )
    return OnnxPolicy(session, info)


def _check_tensors(session: ort.InferenceSession, path: str) -> None:
    expected = (
        ("input", session.get_inputs(), len(FEATURE_UNITS)),
        ("output", session.get_outputs(), len(KNOBS)),
    )
    for kind, args, width in expected:
        if len(args) != 1:
            raise ModelError(path, f"has {len(args)} {kind}s, the agent needs exactly one")
        arg = args[0]
        if arg.type != FLOAT_TENSOR:
            raise ModelError(path, f"{kind} '{arg.name}' is {arg.type}, the agent needs {FLOAT_TENSOR}")
        shape = list(arg.shape)
        batch_ok = len(shape) == 2 and (not isinstance(shape[0], int) or shape[0] == 1)
        if not batch_ok or shape[1] != width:
            raise ModelError(path, f"{kind} '{arg.name}' has shape {shape}, the agent needs [batch, {width}]")


def _named(meta: dict[str, str], key: str, path: str) -> list[tuple[str, str]]:
    if key not in meta:
        raise ModelError(path, f"metadata has no {key} (names and units)")
    try:
        pairs = [(str(name), str(unit)) for name, unit in json.loads(meta[key])]
    except (ValueError, TypeError) as exc:
        raise ModelError(path, f"metadata {key} is not a JSON list of [name, unit] ({exc})") from exc
    return pairs


def _compare(kind: str, model: list[tuple[str, str]], agent: list[tuple[str, str]], path: str) -> None:
    for index, (theirs, ours) in enumerate(zip(model, agent, strict=False)):
        if theirs != ours:
            raise ModelError(
                path,
                f"{kind} {index} is '{theirs[0]}' ({theirs[1]}), the agent's is '{ours[0]}' ({ours[1]})",
            )
    if len(model) != len(agent):
        raise ModelError(path, f"metadata names {len(model)} {kind}s, the agent has {len(agent)}")


@contextlib.contextmanager
def _translated(path: str, reason: Callable[[Exception], str]) -> Iterator[None]:
    """onnxruntime's errors in the block as a ModelError with `reason(error)`. It raises its own,
    undocumented, exception types (numpy too, on a strange output): any Exception is one."""
    try:
        yield
    except Exception as exc:
        raise ModelError(path, reason(exc)) from exc


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
