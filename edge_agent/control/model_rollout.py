"""A model pushed to a running agent (the apply_model command): run in shadow beside whatever decides, then
promoted, or rolled back; the model it replaces is kept for a rollback.

    pushed ─▶ shadow: at every step it decides on the same features as the deciding policy; logged and
              compared, never written
           ├─▶ active: after `shadow_s` of building time and at least MIN_SHADOW_STEPS decisions
           └─▶ rolled back: it fails (an exception, a non-finite output), its decisions fall outside the
              knobs' limits REJECTED_IN_A_ROW steps in a row, or it no longer loads after a restart

Steps where a deciding model would hand over to the rules anyway (no demand target, inputs outside the
model's range) are not judged. Which model decides, which one it replaced and which one is in shadow
survive a restart: ROLLOUT_FILE, beside the buffer, replaced atomically at each change. The record holds
for the `[control] model` it was written under: once an operator configures another one, that one decides.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import structlog

from edge_agent.atomic_file import write_atomically
from edge_agent.control.decision import Decision
from edge_agent.control.features import Features
from edge_agent.control.limits import KNOBS
from edge_agent.control.model_trust import signature_path
from edge_agent.errors import ModelError

if TYPE_CHECKING:
    from edge_agent.control.onnx_policy import OnnxPolicy  # onnxruntime: imported only where a model runs

log = structlog.get_logger("edge_agent.control")

ROLLOUT_FILE = "model_rollout.json"  # the record's name, next to the buffer file
MIN_SHADOW_STEPS = 3  # decisions a model must have made in shadow before it is promoted
REJECTED_IN_A_ROW = 5  # shadow decisions outside the knobs' limits, one after the other, that roll it back

Stage = Literal["shadow", "active"]
Emit = Callable[..., None]  # ControlLoop.emit: (kind, message, **fields)


@dataclass(frozen=True, slots=True)
class StoredModel:
    path: str
    sha256: str

    @property
    def file(self) -> str:
        return Path(self.path).name


@dataclass(frozen=True, slots=True)
class RolloutRecord:
    base: str | None = None  # [control] model when the record was written
    active: StoredModel | None = None  # a promoted model: it decides instead of `base`
    previous: StoredModel | None = None  # what decided before `active` was promoted, kept for a rollback
    shadow: StoredModel | None = None
    shadow_since: datetime | None = None  # building time


@dataclass(frozen=True, slots=True)
class ModelStage:
    """What the birth message says of the control model: the one in shadow while there is one."""

    file: str
    sha256: str
    stage: Stage


@dataclass(frozen=True, slots=True)
class ShadowStatus:
    model: str
    sha256: str
    since: datetime  # building time
    until: datetime  # promoted then, if it has decided MIN_SHADOW_STEPS times
    steps: int  # decisions made in shadow (since the last start)
    rejected_in_a_row: int  # its latest decisions outside the knobs' limits
    largest_difference: dict[str, float]  # per knob, from the deciding policy's decisions


class RolloutFile:
    """The record on disk; one that cannot be read is logged and counts as empty (the configured model)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> RolloutRecord:
        try:
            return _parse(json.loads(self.path.read_bytes()))
        except FileNotFoundError:
            return RolloutRecord()
        except (OSError, ValueError, TypeError, KeyError) as error:
            log.error(  # noqa: TRY400 - the error says it all
                "model rollout record not read: the configured model decides",
                file=str(self.path),
                error=str(error),
            )
            return RolloutRecord()

    def save(self, record: RolloutRecord) -> None:
        def ref(model: StoredModel | None) -> dict[str, str] | None:
            return None if model is None else {"path": model.path, "sha256": model.sha256}

        data = {
            "base": record.base,
            "active": ref(record.active),
            "previous": ref(record.previous),
            "shadow": ref(record.shadow),
            "shadow_since": None if record.shadow_since is None else record.shadow_since.isoformat(),
        }
        try:
            write_atomically(self.path, json.dumps(data).encode() + b"\n")
        except OSError as error:
            log.error("model rollout record not written", file=str(self.path), error=str(error))  # noqa: TRY400


def _parse(data: object) -> RolloutRecord:
    if not isinstance(data, dict):
        raise TypeError("not a model rollout record")

    def ref(value: object) -> StoredModel | None:
        if value is None:
            return None
        if (
            not isinstance(value, dict)
            or not isinstance(value["path"], str)
            or not isinstance(value["sha256"], str)
        ):
            raise TypeError(f"not a stored model: {value!r}")
        return StoredModel(value["path"], value["sha256"])

    base, since = data["base"], data["shadow_since"]
    if base is not None and not isinstance(base, str):
        raise TypeError(f"base is not a path: {base!r}")
    return RolloutRecord(
        base,
        ref(data["active"]),
        ref(data["previous"]),
        ref(data["shadow"]),
        None if since is None else datetime.fromisoformat(since),
    )


@dataclass(frozen=True, slots=True)
class Promote:
    pass


@dataclass(frozen=True, slots=True)
class RollBack:
    reason: str


@dataclass(slots=True)
class ShadowRun:
    """One model in shadow, judged step by step against the policy that decides."""

    model: OnnxPolicy
    since: datetime
    until: datetime
    steps: int = 0
    rejected_in_a_row: int = 0
    largest_difference: dict[str, float] = field(default_factory=dict)

    def judge(self, features: Features, deciding: Decision, now: datetime) -> Promote | RollBack | None:
        if features.demand_target <= 0 or features.out_of_range():
            return None  # a deciding model would hand over to the rules too: nothing to judge
        try:
            values = self.model.outputs(features)
        except ModelError as error:
            return RollBack(f"failed in shadow: {error.reason}")
        refusal = self._refusal(values)
        if refusal is not None:
            return refusal
        decision = Decision.from_vector(values)
        theirs = deciding.values()
        for name, value in decision.values().items():
            difference = abs(value - theirs[name])
            self.largest_difference[name] = max(self.largest_difference.get(name, 0.0), difference)
        self.steps += 1
        log.info(
            "shadow model decided",
            model=self.model.info.path,
            decision=decision.values(),
            deciding=theirs,
            outside_limits=self.rejected_in_a_row > 0,
        )
        if self.steps >= MIN_SHADOW_STEPS and now >= self.until:
            return Promote()
        return None

    def _refusal(self, values: list[float]) -> RollBack | None:
        """Why the model is rolled back for these outputs: not the agent's knobs, not finite, or outside the
        knobs' limits too many steps in a row."""
        if len(values) != len(KNOBS):
            return RollBack(f"failed in shadow: {len(values)} outputs, the agent has {len(KNOBS)} knobs")
        pairs = list(zip(KNOBS.items(), values, strict=True))
        broken = [f"{name} = {value}" for (name, _), value in pairs if not math.isfinite(value)]
        if broken:
            return RollBack(f"non-finite output in shadow: {', '.join(broken)}")
        outside = [
            f"{name} = {value:g} (limits [{knob.low:g}, {knob.high:g}])"
            for (name, knob), value in pairs
            if not knob.low <= value <= knob.high
        ]
        self.rejected_in_a_row = self.rejected_in_a_row + 1 if outside else 0
        if self.rejected_in_a_row >= REJECTED_IN_A_ROW:
            return RollBack(
                f"decisions outside the limits {self.rejected_in_a_row} steps in a row: {', '.join(outside)}"
            )
        return None


class ModelRollout:
    """Which model decides (a promoted one, or `[control] model`), which one is in shadow, and the steps
    between; every step is logged and emitted as a `model` event."""

    def __init__(
        self,
        file: RolloutFile | None,
        configured: Path | None,
        shadow_s: float,
        emit: Emit,
        store: Path | None = None,
    ) -> None:
        self._file = file
        self._configured = configured
        self.shadow_s = shadow_s
        self._emit = emit
        self._store = store  # where pushed models are kept: a file there nothing refers to is deleted
        base = None if configured is None else str(configured)
        record = RolloutRecord(base) if file is None else file.load()
        if record.base != base:
            if record.active is not None or record.shadow is not None:
                log.warning(
                    "[control] model changed since the last push: it decides, pushed models are forgotten",
                    model=base,
                    was=record.base,
                )
            record = RolloutRecord(base)
        self.record = record
        self.deciding: StoredModel | None = None  # the model that decides, once loaded
        self.shadow: ShadowRun | None = None

    def deciding_path(self) -> Path | None:
        """The model to decide with: the one promoted last, or the configured one."""
        return Path(self.record.active.path) if self.record.active is not None else self._configured

    def resume(self, now: datetime, load: Callable[[Path], OnnxPolicy]) -> None:
        """After a start: the model that was in shadow goes on from where it was, or is rolled back."""
        stored = self.record.shadow
        if stored is None:
            return
        try:
            model = load(Path(stored.path))
            if model.info.sha256 != stored.sha256:
                raise ModelError(stored.path, f"changed on disk (sha256 {model.info.sha256})")  # noqa: TRY301
        except ModelError as error:
            self._roll_back(stored, f"does not load after a restart: {error.reason}", now)
            return
        since = self.record.shadow_since or now
        self.shadow = ShadowRun(model, since, since + timedelta(seconds=self.shadow_s))
        log.info(
            "model in shadow again after a restart", model=stored.path, until=self.shadow.until.isoformat()
        )

    def begin(self, model: OnnxPolicy, now: datetime) -> ShadowRun:
        """`model` (loaded and trusted) into shadow, in place of one already there."""
        if self.record.shadow is not None:
            self._roll_back(self.record.shadow, f"replaced by {Path(model.info.path).name}", now)
        stored = StoredModel(model.info.path, model.info.sha256)
        self.shadow = ShadowRun(model, now, now + timedelta(seconds=self.shadow_s))
        self._save(replace(self.record, shadow=stored, shadow_since=now))
        message = f"model {stored.file} in shadow until {self.shadow.until.isoformat()}"
        log.info(
            "model in shadow",
            model=stored.path,
            sha256=stored.sha256,
            until=self.shadow.until.isoformat(),
            version=model.info.version,
        )
        self._emit("model", message, model=stored.file, sha256=stored.sha256, stage="shadow")
        return self.shadow

    def judge(self, features: Features, deciding: Decision, now: datetime) -> OnnxPolicy | None:
        """One step of the model in shadow; the model when it is promoted now."""
        run, stored = self.shadow, self.record.shadow
        if run is None or stored is None:
            return None
        outcome = run.judge(features, deciding, now)
        if isinstance(outcome, RollBack):
            self._roll_back(stored, outcome.reason, now)
            return None
        if outcome is None:
            return None
        previous = self.deciding
        self._save(replace(self.record, active=stored, previous=previous, shadow=None, shadow_since=None))
        self.shadow, self.deciding = None, stored
        largest = {k: round(v, 3) for k, v in run.largest_difference.items()}
        log.info(
            "model promoted: it decides",
            model=stored.path,
            sha256=stored.sha256,
            steps=run.steps,
            largest_difference=largest,
            previous=None if previous is None else previous.path,
        )
        reason = f"{run.steps} decisions in shadow, none refused; largest difference per knob {largest}"
        kept = "" if previous is None else f"; {previous.file} kept for a rollback"
        self._emit(
            "model",
            f"model {stored.file} promoted: it decides{kept}",
            model=stored.file,
            sha256=stored.sha256,
            stage="active",
            reason=reason,
        )
        return run.model

    def refused_at_start(self, reason: str) -> None:
        """The promoted model does not load at a start: the one it replaced decides again (the configured
        one when that was it, or when none was kept)."""
        active, previous = self.record.active, self.record.previous
        if active is None:
            return
        back = None if previous is None or previous.path == self.record.base else previous
        self._save(replace(self.record, active=back, previous=None))
        base = self.record.base
        instead = back.file if back is not None else Path(base).name if base is not None else "the rules"
        log.error(
            "promoted model refused at start: rolled back", model=active.path, reason=reason, instead=instead
        )
        message = f"model {active.file} rolled back: {instead} decides"
        why = f"does not load at start: {reason}"
        self._emit("model", message, model=active.file, sha256=active.sha256, stage="rolled_back", reason=why)

    def _roll_back(self, stored: StoredModel, reason: str, now: datetime) -> None:
        self.shadow = None
        self._save(replace(self.record, shadow=None, shadow_since=None))
        deciding = "the rules decide" if self.deciding is None else f"{self.deciding.file} decides"
        log.warning(
            "model rolled back", model=stored.path, sha256=stored.sha256, reason=reason, deciding=deciding
        )
        self._emit(
            "model",
            f"model {stored.file} rolled back: {deciding}",
            model=stored.file,
            sha256=stored.sha256,
            stage="rolled_back",
            reason=reason,
        )

    def _save(self, record: RolloutRecord) -> None:
        self.record = record
        if self._file is not None:
            self._file.save(record)
        self._forget_unused()

    def _forget_unused(self) -> None:
        """Pushed models nothing refers to any more (rolled back, or older than the previous) are deleted."""
        if self._store is None or not self._store.is_dir():
            return
        kept = {m.path for m in (self.record.active, self.record.previous, self.record.shadow) if m}
        if self.deciding is not None:
            kept.add(self.deciding.path)
        for model in self._store.glob("*.onnx"):
            if str(model) not in kept:
                for path in (model, signature_path(model)):
                    try:
                        path.unlink(missing_ok=True)
                    except OSError as error:
                        log.warning("unused pushed model not deleted", file=str(path), error=str(error))

    def stage(self) -> ModelStage | None:
        """The birth's `control_model`: the model in shadow, else the one deciding (None: the rules)."""
        if self.record.shadow is not None and self.shadow is not None:
            return ModelStage(self.record.shadow.file, self.record.shadow.sha256, "shadow")
        if self.deciding is not None:
            return ModelStage(self.deciding.file, self.deciding.sha256, "active")
        return None

    def status(self) -> ShadowStatus | None:
        run = self.shadow
        if run is None:
            return None
        return ShadowStatus(
            run.model.info.path,
            run.model.info.sha256,
            run.since,
            run.until,
            run.steps,
            run.rejected_in_a_row,
            {k: round(v, 3) for k, v in run.largest_difference.items()},
        )
