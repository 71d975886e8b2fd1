"""A pushed model's rollout in the control loop: in shadow it decides beside the model in use and nothing it
decides is written; after the shadow time it decides, the model it replaced kept; a model that fails in
shadow (non-finite outputs, decisions outside the limits step after step, a file changed on disk) is rolled
back and the model in use goes on. Every step is an event and survives a restart."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from pydantic import TypeAdapter
from rich.console import Console

from edge_agent.acquisition.latest import LatestValues
from edge_agent.cli.local import _print_control
from edge_agent.clock import ManualClock
from edge_agent.control.limits import KNOBS
from edge_agent.control.loop import ControlLoop, ControlStatus
from edge_agent.control.model_rollout import MIN_SHADOW_STEPS, REJECTED_IN_A_ROW, ROLLOUT_FILE, RolloutFile
from edge_agent.service.control_setup import control_settings, control_setup
from tests.one_zone import ALWAYS_OPEN, VALUES, one_zone_control
from tests.onnx_models import TRUSTED, signed, small_model
from tests.test_control_fallback import POLL_S, START, Building, feed

SHADOW_S = 600.0
STEP_S = 60.0
SETTLE = 4  # steps for the guards' rate limits to reach a decision's setpoint
# The configured model sheds 1 K; the pushed one 2 K: which one decides shows in what is written.
CONFIGURED = (1.0, 0.0, 100.0, 100.0, 100.0, 100.0, 0.0)
PUSHED = (2.0, 0.0, 100.0, 100.0, 100.0, 100.0, 0.0)
COOLING = "vav/cooling_setpoint"


class Site:
    """A one-zone building, its control loop with a configured model, and a state directory that outlives
    a loop (a restart is a new loop on the same directory)."""

    def __init__(self, tmp_path: Path) -> None:
        self.state = tmp_path / "state"
        self.store = self.state / "models"
        self.store.mkdir(parents=True)
        self.configured = signed(small_model(tmp_path / "configured.onnx", outputs=CONFIGURED))
        self.clock = ManualClock(START)
        self.events: list[dict[str, object]] = []
        self.changes = 0
        self.loop, self.building = self.start()

    def start(
        self, model: Path | None = None, *, rules: bool = False, **control: object
    ) -> tuple[ControlLoop, Building]:
        """The loop (again), with `model` configured (default: the fixture's), or none with `rules`;
        `control`: more of [control]."""
        config = one_zone_control(
            **ALWAYS_OPEN,
            **control,
            mode="active",
            demand_target_kw=100.0,
            model=None if rules else model or self.configured,
            model_keys=[TRUSTED],
            model_shadow_s=SHADOW_S,
        )
        building = Building(LatestValues(dict.fromkeys(VALUES, POLL_S)))
        loop = ControlLoop(
            "gw",
            control_setup(config, units={ref: unit for ref, (_, unit) in VALUES.items()}),
            control_settings(config),
            building,
            clock=self.clock,
            send_event=lambda payload: self.events.append(json.loads(payload)),
            rollout_file=RolloutFile(self.state / ROLLOUT_FILE),
            model_store=self.store,
        )
        loop.on_model_change = self.changed
        feed(building)
        loop.load_model()
        self.loop, self.building = loop, building
        return loop, building

    def changed(self) -> None:
        self.changes += 1

    def pushed(self, name: str = "pushed.onnx", outputs: tuple[float, ...] = PUSHED) -> Path:
        return signed(small_model(self.store / name, outputs=outputs))

    async def steps(self, count: int) -> None:
        for _ in range(count):
            self.clock.advance(STEP_S)
            feed(self.building)
            await self.loop.step()

    def model_events(self) -> list[dict[str, object]]:
        return [e for e in self.events if e["kind"] == "model"]

    def written(self) -> float | None:
        return self.loop.actuator.held[COOLING].hold.value if COOLING in self.loop.actuator.held else None


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return Site(tmp_path)


async def test_a_good_model_decides_unwritten_in_shadow_then_is_promoted_the_previous_kept(
    site: Site,
) -> None:
    await site.steps(SETTLE)
    configured_writes = site.written() or 0.0
    assert configured_writes == pytest.approx(26.0 + 1.0, abs=0.01)  # the configured model decides
    pushed = site.pushed()
    run = site.loop.push_model(site.loop.load_policy(pushed))
    assert site.changes == 1  # the birth is sent again: the model in shadow
    stage = site.loop.model_stage()
    assert stage is not None
    assert (stage.file, stage.stage) == ("pushed.onnx", "shadow")
    assert run.until == site.clock.now() + (run.until - run.since)
    assert (run.until - run.since).total_seconds() == SHADOW_S

    await site.steps(int(SHADOW_S / STEP_S) - 1)  # not yet
    assert site.written() == configured_writes  # shadow decisions are never written
    status = site.loop.status()
    assert status.shadow is not None
    assert status.shadow.steps == int(SHADOW_S / STEP_S) - 1
    assert status.shadow.largest_difference["cooling_offset"] == pytest.approx(1.0)
    assert status.model == str(site.configured)
    printed = io.StringIO()  # edge-agent status
    state = TypeAdapter(ControlStatus).dump_python(status, mode="json")  # as the local socket sends it
    _print_control(state, Console(file=printed, width=300, markup=False))
    shown = f"in shadow: {pushed}, sha256 {status.shadow.sha256}, 9 decisions, decides from"
    assert shown in printed.getvalue()

    await site.steps(1)  # the shadow time is over: promoted
    stage = site.loop.model_stage()
    assert stage is not None
    assert (stage.file, stage.stage) == ("pushed.onnx", "active")
    assert site.loop.status().shadow is None
    assert site.loop.status().model == str(pushed)
    assert site.changes == 2
    await site.steps(SETTLE)
    assert (site.written() or 0.0) > configured_writes + 0.2  # the pushed model decides now: it sheds more
    stages = [(e["model"], e["stage"]) for e in site.model_events()]
    assert stages == [("pushed.onnx", "shadow"), ("pushed.onnx", "active")]
    assert "configured.onnx kept for a rollback" in str(site.model_events()[-1]["message"])
    record = json.loads((site.state / ROLLOUT_FILE).read_text())
    assert record["active"]["path"] == str(pushed)
    assert record["previous"]["path"] == str(site.configured)
    assert site.configured.exists()

    site.start()  # a restart: the promoted model decides
    stage = site.loop.model_stage()
    assert stage is not None
    assert (stage.file, stage.stage) == ("pushed.onnx", "active")
    await site.steps(SETTLE)
    assert (site.written() or 0.0) > configured_writes + 0.2


async def test_promotion_needs_decisions_not_only_time(site: Site) -> None:
    site.loop.push_model(site.loop.load_policy(site.pushed()))
    site.clock.advance(10 * SHADOW_S)  # control was off: time passed, nothing decided
    await site.steps(MIN_SHADOW_STEPS - 1)
    stage = site.loop.model_stage()
    assert stage is not None
    assert stage.stage == "shadow"
    await site.steps(1)
    stage = site.loop.model_stage()
    assert stage is not None
    assert stage.stage == "active"


async def test_a_model_with_non_finite_outputs_is_rolled_back_at_once_and_deleted(site: Site) -> None:
    await site.steps(SETTLE)
    before = site.written()
    broken = site.pushed("broken.onnx", outputs=(float("nan"), *PUSHED[1:]))
    site.loop.push_model(site.loop.load_policy(broken))
    await site.steps(1)
    events = site.model_events()
    assert [e["stage"] for e in events] == ["shadow", "rolled_back"]
    assert "non-finite output in shadow: cooling_offset = nan" in str(events[-1]["reason"])
    assert "configured.onnx decides" in str(events[-1]["message"])
    stage = site.loop.model_stage()
    assert stage is not None
    assert (stage.file, stage.stage) == ("configured.onnx", "active")
    assert site.changes == 2  # shadow, rolled back: the birth each time
    assert not broken.exists()  # nothing refers to it any more
    await site.steps(1)
    assert site.written() == before


async def test_decisions_outside_the_limits_step_after_step_roll_it_back(site: Site) -> None:
    fan = list(KNOBS).index("fan_limit")
    outside = list(PUSHED)
    outside[fan] = 5.0  # the fan's limit is 50-100 %
    site.loop.push_model(site.loop.load_policy(site.pushed("wild.onnx", outputs=tuple(outside))))
    await site.steps(REJECTED_IN_A_ROW - 1)
    status = site.loop.status().shadow
    assert status is not None
    assert status.rejected_in_a_row == REJECTED_IN_A_ROW - 1
    await site.steps(1)
    events = site.model_events()
    assert events[-1]["stage"] == "rolled_back"
    assert f"outside the limits {REJECTED_IN_A_ROW} steps in a row: fan_limit = 5" in str(
        events[-1]["reason"]
    )
    assert site.loop.status().shadow is None


async def test_a_shadow_survives_a_restart_and_goes_on_where_it_was(site: Site) -> None:
    pushed = site.pushed()
    run = site.loop.push_model(site.loop.load_policy(pushed))
    await site.steps(MIN_SHADOW_STEPS)
    site.start()  # a restart
    status = site.loop.status().shadow
    assert status is not None
    assert (status.model, status.since, status.until) == (str(pushed), run.since, run.until)
    await site.steps(int(SHADOW_S / STEP_S) - MIN_SHADOW_STEPS)
    stage = site.loop.model_stage()
    assert stage is not None
    assert stage.stage == "active"


async def test_a_shadow_model_changed_on_disk_before_a_restart_is_rolled_back(site: Site) -> None:
    pushed = site.pushed()
    site.loop.push_model(site.loop.load_policy(pushed))
    data = bytearray(pushed.read_bytes())
    data[-20] ^= 0x01
    pushed.write_bytes(bytes(data))
    site.start()
    events = site.model_events()
    assert events[-1]["stage"] == "rolled_back"
    assert "does not load after a restart" in str(events[-1]["reason"])
    assert "changed after it was signed" in str(events[-1]["reason"])
    stage = site.loop.model_stage()
    assert stage is not None
    assert (stage.file, stage.stage) == ("configured.onnx", "active")


async def test_a_promoted_model_that_no_longer_loads_at_a_start_gives_way_to_the_one_before(
    site: Site,
) -> None:
    first = site.pushed("first.onnx")
    site.loop.push_model(site.loop.load_policy(first))
    await site.steps(int(SHADOW_S / STEP_S))
    second = site.pushed("second.onnx", outputs=(1.5, *PUSHED[1:]))
    site.loop.push_model(site.loop.load_policy(second))
    await site.steps(int(SHADOW_S / STEP_S))
    stage = site.loop.model_stage()
    assert stage is not None
    assert (stage.file, stage.stage) == ("second.onnx", "active")
    second.write_bytes(second.read_bytes()[:-40])  # the disk let it down
    site.start()
    events = site.model_events()
    assert (events[-1]["model"], events[-1]["stage"]) == ("second.onnx", "rolled_back")
    assert "does not load at start" in str(events[-1]["reason"])
    assert "first.onnx decides" in str(events[-1]["message"])
    stage = site.loop.model_stage()
    assert stage is not None
    assert (stage.file, stage.stage) == ("first.onnx", "active")
    first.write_bytes(b"")  # and the one before too: the configured model
    site.start()
    stage = site.loop.model_stage()
    assert stage is not None
    assert (stage.file, stage.stage) == ("configured.onnx", "active")


async def test_a_second_push_replaces_the_model_in_shadow(site: Site) -> None:
    site.loop.push_model(site.loop.load_policy(site.pushed("first.onnx")))
    site.loop.push_model(site.loop.load_policy(site.pushed("second.onnx", outputs=(1.5, *PUSHED[1:]))))
    events = site.model_events()
    assert [(e["model"], e["stage"]) for e in events] == [
        ("first.onnx", "shadow"),
        ("first.onnx", "rolled_back"),
        ("second.onnx", "shadow"),
    ]
    assert events[1]["reason"] == "replaced by second.onnx"
    assert not (site.store / "first.onnx").exists()


async def test_a_newly_configured_model_voids_what_was_pushed(site: Site, tmp_path: Path) -> None:
    site.loop.push_model(site.loop.load_policy(site.pushed()))
    await site.steps(int(SHADOW_S / STEP_S))
    stage = site.loop.model_stage()
    assert stage is not None
    assert stage.stage == "active"
    other = signed(small_model(tmp_path / "edited-on-site.onnx", outputs=CONFIGURED))
    site.start(model=other)  # an operator configured another model
    stage = site.loop.model_stage()
    assert stage is not None
    assert (stage.file, stage.stage) == ("edited-on-site.onnx", "active")


async def test_without_a_model_the_rules_decide_until_a_pushed_one_is_promoted(site: Site) -> None:
    site.start(rules=True)
    assert site.loop.model_stage() is None  # the birth's control_model: null
    await site.steps(1)
    assert site.loop.status().policy == "rules"
    site.loop.push_model(site.loop.load_policy(site.pushed()))
    await site.steps(int(SHADOW_S / STEP_S))
    stage = site.loop.model_stage()
    assert stage is not None
    assert (stage.file, stage.stage) == ("pushed.onnx", "active")
    await site.steps(1)
    assert site.loop.status().policy == "onnx"
    assert json.loads((site.state / ROLLOUT_FILE).read_text())["previous"] is None
