"""Without a demand target from the operator, control aims at the month's open-hours peak: never at the
night's load after a fresh start (the plant is not limited at dawn with the HVAC off), nothing shed before
that peak is known, and the peak survives a restart (a file beside the buffer)."""

from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import structlog
from rich.console import Console

from edge_agent.acquisition.latest import LatestValues
from edge_agent.cli import local as cli_local
from edge_agent.clock import ManualClock
from edge_agent.control.calendar import OpeningHours
from edge_agent.control.decision import Decision
from edge_agent.control.demand import MIN_OPEN_INTERVALS, IntervalDemand, MonthPeak
from edge_agent.control.features import Features, build_features
from edge_agent.control.loop import ControlLoop
from edge_agent.control.observation import Observation, ZoneObservation
from edge_agent.control.peak_file import PeakFile
from edge_agent.control.points import Holder
from edge_agent.control.policy import NO_TARGET, ModelOrRules
from edge_agent.control.rules import RuleBasedPolicy
from edge_agent.control.settings import ControlMode
from edge_agent.readings import Quality, Reading, utc_now
from edge_agent.service.control_setup import control_settings, control_setup
from tests.one_zone import one_zone_control

NIGHT = datetime.fromisoformat("2026-08-05T05:00:00+09:00")  # a Wednesday in August, before dawn
STEP_S = 300.0
POINTS = {
    "meter/total_power": "kW",
    "ahu/outdoor_air_temperature": "degC",
    "vav/zone_temperature": "degC",
    "vav/cooling_setpoint": "degC",
    "plant/demand_limit": "%",
}


def library_kw(at: datetime) -> float:
    """A library's day: 40 kW at night, lights and lifts from 06:00, cooling while open (9-18), the
    afternoon the highest."""
    hour = at.hour + at.minute / 60
    if 9 <= hour < 18 and at.weekday() < 5:
        return 190.0 if 14 <= hour < 16 else 150.0
    return 60.0 if 6 <= hour < 9 else 40.0


@dataclass
class Building:
    values: LatestValues = field(default_factory=lambda: LatestValues(dict.fromkeys(POINTS, 3600.0)))
    writes: list[tuple[datetime, str, float | None]] = field(default_factory=list)
    clock: ManualClock = field(default_factory=lambda: ManualClock(NIGHT))

    def latest(self, ref: str) -> Reading | None:
        return self.values.get(ref)

    async def write(self, ref: str, value: float | None, priority: int | None) -> None:
        self.writes.append((self.clock.now(), ref, value))

    async def holder(self, ref: str) -> Holder:
        return Holder(prioritised=True)

    def feed(self) -> None:
        now, at = utc_now(), self.clock.now()
        values = {
            "meter/total_power": library_kw(at),
            "ahu/outdoor_air_temperature": 31.0,
            "vav/zone_temperature": 26.0,
            "vav/cooling_setpoint": 26.0,
            "plant/demand_limit": 100.0,
        }
        for ref, value in values.items():
            device, point = ref.split("/")
            self.values.update([Reading(device, point, value, POINTS[ref], Quality.GOOD, now)])


def control_loop(building: Building, **kwargs: object) -> ControlLoop:
    config = one_zone_control(
        mode="active",  # no demand_target_kw: the month's peak is the target
        step_s=STEP_S,
    )
    return ControlLoop(
        "gw",
        control_setup(config, units=POINTS),
        control_settings(config),
        building,
        clock=building.clock,
        **kwargs,  # type: ignore[arg-type]
    )


async def run_until(
    loop: ControlLoop, building: Building, end: datetime
) -> list[tuple[datetime, dict[str, float]]]:
    """Step every STEP_S of building time until `end`: the policy's decisions, by time."""
    decisions = []
    while building.clock.now() < end:
        building.feed()
        await loop.step()
        if loop.last_decision is not None:
            decisions.append((building.clock.now(), loop.last_decision))
        building.clock.advance(STEP_S)
    return decisions


def plant_caps(
    decisions: list[tuple[datetime, dict[str, float]]], start: datetime, end: datetime
) -> set[float]:
    return {d["plant_limit"] for at, d in decisions if start <= at < end}


async def test_after_a_fresh_start_at_night_the_plant_is_not_limited_at_dawn_nor_on_the_first_day() -> None:
    building = Building()
    loop = control_loop(building)
    decisions = await run_until(loop, building, NIGHT + timedelta(hours=13))  # to 18:00
    # Before the warm-up (from 07:30 the guards, not the limiter, pace the start): the night's load set no
    # target, so neither the dawn's lights nor the morning were shed against it.
    assert plant_caps(decisions, NIGHT, NIGHT + timedelta(hours=2, minutes=30)) == {100.0}
    assert not [
        w for w in building.writes if w[1] == "plant/demand_limit" and w[0] < NIGHT + timedelta(hours=2)
    ]
    # Nor during the first open day: no target is known yet, nothing is shed to meet one.
    assert plant_caps(decisions, NIGHT + timedelta(hours=4), NIGHT + timedelta(hours=13)) == {100.0}


async def test_the_month_s_open_hours_peak_survives_a_restart_and_is_the_next_day_s_target(
    tmp_path: Path,
) -> None:
    peak_file = tmp_path / "demand_peak.json"
    building = Building()
    first = control_loop(building, peak_file=PeakFile(peak_file))
    first.load_peak()
    await run_until(first, building, NIGHT + timedelta(hours=19))  # to midnight
    assert first.status().month_target_kw == 190.0  # a whole open day seen: its peak is the target
    saved = json.loads(peak_file.read_text())
    assert saved["month"] == "2026-08"
    assert saved["open_peak_kw"] == 190.0
    assert saved["open_intervals"] == 36 >= MIN_OPEN_INTERVALS  # 09:00-18:00, every interval seen whole

    building.clock.advance(5 * 3600)  # the gateway reboots; Thursday 05:00
    restarted = control_loop(building, peak_file=PeakFile(peak_file))
    restarted.load_peak()
    assert restarted.status().month_target_kw == 190.0
    assert restarted.status().month_peak_kw == 190.0
    day = NIGHT + timedelta(days=1)
    decisions = await run_until(restarted, building, day + timedelta(hours=10))  # to 15:00
    assert plant_caps(decisions, day, day + timedelta(hours=2, minutes=30)) == {100.0}  # the night: no shed
    # Open at 150 kW: under the 190 kW target, nothing shed; 190 kW from 14:00 meets it: the limiter sheds.
    assert plant_caps(decisions, day + timedelta(hours=5), day + timedelta(hours=8, minutes=45)) == {100.0}
    assert min(plant_caps(decisions, day + timedelta(hours=9, minutes=15), day + timedelta(hours=10))) < 100.0


async def test_a_fresh_month_starts_from_last_month_s_open_hours_peak() -> None:
    august = MonthPeak("2026-08", peak_kw=210.0, open_peak_kw=200.0, open_intervals=400)
    demand = IntervalDemand(august)
    september = datetime.fromisoformat(
        "2026-09-01T00:10:00+09:00"
    )  # 2026-08-31 15:10 UTC: September in Korea
    assert demand.state(september).target_kw == 200.0
    assert demand.state(september).peak_kw == 0.0  # nothing billed in September yet
    two_months_on = datetime.fromisoformat("2026-10-01T10:00:00+09:00")
    assert demand.state(two_months_on).target_kw is None
    young = MonthPeak("2026-09", open_peak_kw=230.0, open_intervals=4, previous_open_peak_kw=200.0)
    assert young.target_kw() == 230.0  # already above last month's: that is where the bill stands
    assert MonthPeak("2026-09", open_peak_kw=120.0, open_intervals=4).target_kw() is None


def test_an_unreadable_peak_file_is_logged_and_the_month_starts_afresh(tmp_path: Path) -> None:
    path = tmp_path / "demand_peak.json"
    for text in (
        "{not json",
        '{"month": "2026-13", "peak_kw": 1, "open_peak_kw": 1, "open_intervals": 1}',
        '{"month": "2026-08", "peak_kw": -5, "open_peak_kw": 1, "open_intervals": 1}',
        "[]",
    ):
        path.write_text(text)
        with structlog.testing.capture_logs() as logs:
            assert PeakFile(path).load() is None
        assert [e["event"] for e in logs] == ["demand peak not read: the month starts afresh"], text
    PeakFile(path).save(MonthPeak("2026-08", 210.0, 200.0, 40, 180.0))
    assert PeakFile(path).load() == MonthPeak("2026-08", 210.0, 200.0, 40, 180.0)
    assert not path.with_name(path.name + ".tmp").exists()


def test_the_model_does_not_decide_without_a_target() -> None:
    reasons: list[str | None] = []

    class Model:
        name = "onnx"

        def decide(self, features: Features) -> Decision:
            raise AssertionError("the model was asked without a target")

    policy = ModelOrRules(Model(), RuleBasedPolicy(), lambda: NIGHT, lambda new, old: reasons.append(new))
    state = IntervalDemand().state(NIGHT)
    observation = Observation(NIGHT, 31.0, 40.0, (ZoneObservation("z", 26.0, 26.0, 20.0),))
    features = build_features(observation, state, None, OpeningHours())
    assert features.demand_target == 0.0
    decision = policy.decide(features)
    assert policy.name == "rules"
    assert reasons == [NO_TARGET]
    assert decision.plant_limit == 100.0


async def test_the_month_s_peak_is_learned_while_control_is_off_and_shown_by_status() -> None:
    building = Building()
    loop = control_loop(building)
    loop.settings.mode = ControlMode.OFF  # commissioning: nothing decided, the demand still watched
    await run_until(loop, building, NIGHT + timedelta(hours=19))
    assert loop.steps == 0
    assert loop.status().month_target_kw == 190.0
    out = io.StringIO()
    cli_local._print_control(asdict(loop.status()), Console(file=out, markup=False, width=200))
    assert "target the month's open-hours peak, 190.0 kW" in out.getvalue()
    fresh = control_loop(Building())
    out = io.StringIO()
    cli_local._print_control(asdict(fresh.status()), Console(file=out, markup=False, width=200))
    assert "target none yet (the month's open-hours peak is not known)" in out.getvalue()
