"""What a model file says about itself (`model info`), and a trial run as the agent does it (`model check`).

`describe` reads the ONNX file's outer protobuf fields itself (IR version, opsets, producer, metadata, the
graph's input and output tensors): no onnxruntime, so it also describes a model the agent would refuse.
`trial` loads the file with the agent's own loader (onnx_policy.load_policy: the signature first, under the
configuration's trust) and runs one decision on a representative feature vector.
"""

from __future__ import annotations

import hashlib
import json
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from edge_agent.control.decision import Decision
from edge_agent.control.features import Features
from edge_agent.control.model_trust import ModelTrust, Verdict
from edge_agent.errors import InferenceFailed, ModelError

# onnx_policy.py's metadata keys, repeated here: importing it would load onnxruntime for `model info`.
VERSION_KEY, FINGERPRINT_KEY = "edge_agent.version", "edge_agent.training_fingerprint"
INPUTS_KEY, OUTPUTS_KEY = "edge_agent.inputs", "edge_agent.outputs"
DEFAULT_MODEL = Path("models") / "load_shaving.onnx"
TIMED_RUNS = 100

# onnx.proto's TensorProto.DataType, the common ones.
ELEMENT_TYPES = {
    1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64", 8: "string",
    9: "bool", 10: "float16", 11: "float64", 12: "uint32", 13: "uint64", 16: "bfloat16",
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Tensor:
    name: str
    element: str
    shape: tuple[str, ...]  # a number, or the name of a symbolic dimension (e.g. 'batch')

    def describe(self) -> str:
        return f"{self.name} {self.element} [{', '.join(self.shape)}]"


@dataclass(frozen=True, slots=True)
class ModelCard:
    path: str
    size_bytes: int
    sha256: str
    ir_version: int
    opsets: tuple[tuple[str, int], ...]  # (domain, version); '' is the default domain, ai.onnx
    producer: str
    version: str | None  # edge_agent.version
    fingerprint: str | None  # edge_agent.training_fingerprint
    inputs: tuple[tuple[str, str], ...] | None  # (name, unit) from edge_agent.inputs
    outputs: tuple[tuple[str, str], ...] | None
    input_tensors: tuple[Tensor, ...]
    output_tensors: tuple[Tensor, ...]
    metadata: dict[str, str]

    @property
    def opset(self) -> int | None:
        """The ai.onnx opset, the one that matters to the runtime."""
        return next((v for d, v in self.opsets if d in ("", "ai.onnx")), None)


@dataclass(frozen=True, slots=True)
class Trial:
    path: str
    version: str
    fingerprint: str
    trust: Verdict  # its sha256, and who signed it (or that it runs unsigned)
    features: Features
    decision: Decision
    first_inference_s: float  # includes onnxruntime's lazy set-up
    median_inference_s: float


def default_model_path(configured: Path | None) -> Path:
    """The configured model; else models/load_shaving.onnx here, or in the checkout this package is from."""
    if configured is not None:
        return configured
    if DEFAULT_MODEL.exists():
        return DEFAULT_MODEL
    beside = Path(__file__).resolve().parents[1] / DEFAULT_MODEL
    return beside if beside.exists() else DEFAULT_MODEL


# --- protobuf wire format: just enough to walk ModelProto's fields ------------------------------------
# A file that does not parse raises ValueError or TypeError: `describe` turns either into a ModelError.


def _varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if at >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, at
        shift += 7


def _fields(data: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) of one message: an int for varints, bytes for length-delimited fields;
    fixed-width fields are skipped."""
    at = 0
    while at < len(data):
        key, at = _varint(data, at)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, at = _varint(data, at)
            yield number, value
        elif wire == 2:
            length, at = _varint(data, at)
            if at + length > len(data):
                raise ValueError(f"field {number} runs past the end")
            yield number, data[at : at + length]
            at += length
        elif wire in (1, 5):
            at += 8 if wire == 1 else 4
        else:
            raise ValueError(f"field {number} has wire type {wire}")
    if at != len(data):
        raise ValueError("truncated field")


def _text(value: int | bytes) -> str:
    if not isinstance(value, bytes):
        raise TypeError("a string field holds a number")
    return value.decode("utf-8", errors="replace")


def _message(value: int | bytes) -> bytes:
    if not isinstance(value, bytes):
        raise TypeError("a message field holds a number")
    return value


def _tensor(value_info: bytes) -> Tensor:
    """ValueInfoProto: name 1, type 2 -> TypeProto.tensor_type 1 -> elem_type 1, shape 2 -> dim 1."""
    name, element, shape = "", "?", []
    for number, value in _fields(value_info):
        if number == 1:
            name = _text(value)
        elif number == 2:
            for kind, tensor_type in _fields(_message(value)):
                if kind != 1:
                    continue  # a sequence or map: not described
                for part, item in _fields(_message(tensor_type)):
                    if part == 1 and isinstance(item, int):
                        element = ELEMENT_TYPES.get(item, f"type {item}")
                    elif part == 2:
                        shape = [_dimension(_message(dim)) for n, dim in _fields(_message(item)) if n == 1]
    return Tensor(name, element, tuple(shape))


def _dimension(dim: bytes) -> str:
    for number, value in _fields(dim):
        if number in (1, 2):  # dim_value, dim_param
            return str(value) if isinstance(value, int) else _text(value)
    return "?"


def _graph_tensors(graph: bytes) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
    """The graph's inputs (less its weights, which older files list as inputs too) and outputs."""
    inputs, outputs, weights = [], [], set()
    for number, value in _fields(graph):
        if number == 11:
            inputs.append(_tensor(_message(value)))
        elif number == 12:
            outputs.append(_tensor(_message(value)))
        elif number == 5:  # initializer: TensorProto, name is field 8
            weights |= {_text(v) for n, v in _fields(_message(value)) if n == 8}
    return tuple(t for t in inputs if t.name not in weights), tuple(outputs)


def _named(metadata: dict[str, str], key: str) -> tuple[tuple[str, str], ...] | None:
    try:
        return tuple((str(name), str(unit)) for name, unit in json.loads(metadata[key]))
    except (KeyError, ValueError, TypeError):
        return None


@dataclass(frozen=True, slots=True)
class _Outline:
    ir_version: int
    opsets: tuple[tuple[str, int], ...]
    producer: str
    metadata: dict[str, str]
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]


def _outline(data: bytes) -> _Outline:
    """ModelProto: ir_version 1, producer 2 and 3, graph 7, opset_import 8, metadata_props 14."""
    ir_version, opsets, producer, graph = 0, [], [], None
    metadata: dict[str, str] = {}
    for number, value in _fields(data):
        if number == 1 and isinstance(value, int):
            ir_version = value
        elif number == 8:
            opset = dict(_fields(_message(value)))
            opsets.append((_text(opset.get(1, b"")), int(opset.get(2, 0))))
        elif number in (2, 3):
            producer.append(_text(value))
        elif number == 7:
            graph = _message(value)
        elif number == 14:
            entry = dict(_fields(_message(value)))
            metadata[_text(entry.get(1, b""))] = _text(entry.get(2, b""))
    if graph is None or not ir_version:
        raise ValueError("no graph" if graph is None else "no IR version")
    inputs, outputs = _graph_tensors(graph)
    return _Outline(ir_version, tuple(opsets), " ".join(p for p in producer if p), metadata, inputs, outputs)


def describe(path: Path) -> ModelCard:
    """The model file's card; ModelError when it cannot be read or is not an ONNX model."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelError(str(path), f"cannot be read ({exc.strerror or exc})") from exc
    try:
        outline = _outline(data)
    except (ValueError, TypeError) as exc:
        raise ModelError(str(path), f"not a valid ONNX model ({exc})") from exc
    metadata = outline.metadata
    return ModelCard(
        path=str(path),
        size_bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        ir_version=outline.ir_version,
        opsets=outline.opsets,
        producer=outline.producer,
        version=metadata.get(VERSION_KEY),
        fingerprint=metadata.get(FINGERPRINT_KEY),
        inputs=_named(metadata, INPUTS_KEY),
        outputs=_named(metadata, OUTPUTS_KEY),
        input_tensors=outline.inputs,
        output_tensors=outline.outputs,
        metadata=metadata,
    )


# --- a trial run -----------------------------------------------------------------------------------


def representative_features() -> Features:
    """A summer weekday at 14:30 in Seoul: open, 33 degC outside, the cooling peak band, the building at
    180 kW and heading past a 170 kW target, this month's peak 175 kW."""
    return Features(
        hour_of_day=14.5,
        day_of_week=2.0,
        holiday=0.0,
        open=1.0,
        hours_to_open=0.0,
        outdoor_temperature=33.0,
        zone_temperature_mean=25.6,
        zone_temperature_max=26.4,
        zone_temperature_min=24.9,
        cooling_setpoint_mean=26.0,
        heating_setpoint_mean=20.0,
        co2_max=780.0,
        demand=180.0,
        interval_average=176.0,
        interval_projection=178.0,
        interval_elapsed=0.5,
        demand_target=170.0,
        month_peak=175.0,
        tou_band=2.0,
        hours_to_peak_band=0.0,
    )


def trial(path: Path, trust: ModelTrust) -> Trial:
    """Load the model as the agent does and decide once, then time more decisions. ModelError with the
    agent's reason when it would refuse the file (not trusted, or not matching); InferenceFailed (a
    ModelError too) when a decision fails."""
    from edge_agent.control.onnx_policy import load_policy  # onnxruntime: only for a trial

    policy = load_policy(path, trust)
    features = representative_features()
    times = []
    try:
        for _ in range(1 + TIMED_RUNS):
            start = time.perf_counter()
            decision = policy.decide(features)
            times.append(time.perf_counter() - start)
    except ModelError as error:
        raise InferenceFailed(error) from error
    first = times.pop(0)
    info = policy.info
    assert info.trust is not None  # load_policy checked it
    return Trial(
        str(path),
        info.version,
        info.fingerprint,
        info.trust,
        features,
        decision,
        first,
        statistics.median(times),
    )
