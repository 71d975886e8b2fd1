"""Guards, step by step: what a facility manager would see written to the zones and the air handler."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from edge_agent.config.control import ControlConfig
from edge_agent.control.decision import Decision
from edge_agent.control.features import Features
from edge_agent.control.guards import Guards
from edge_agent.control.limits import Limits
from edge_agent.control.observation import Observation, ZoneObservation
from edge_agent.service.control_setup import control_limits

KST = timezone(timedelta(hours=9))
LIMITS = Limits()  # the defaults: 26/20 C setpoints, comfort 19-27 C
MONDAY_6AM = datetime(2026, 1, 12, 6, 0, tzinfo=KST)

FEATURES = Features(
    hour_of_day=6.0,
    day_of_week=0.0,
    holiday=0.0,
    open=0.0,
    hours_to_open=3.0,
    outdoor_temperature=-6.0,
    zone_temperature_mean=17.0,
    zone_temperature_max=17.0,
    zone_temperature_min=17.0,
    cooling_setpoint_mean=30.0,
    heating_setpoint_mean=15.0,
    co2_max=450.0,
    demand=60.0,
    interval_average=60.0,
    interval_projection=60.0,
    interval_elapsed=0.5,
    demand_target=150.0,
    month_peak=140.0,
    tou_band=0.0,
    hours_to_peak_band=4.0,
)
WARM_UP = replace(Decision.neutral(), precondition=1.0)  # start early; the guards limit plant and fan


def observe(at: datetime, *temperatures: float, demand_kw: float = 60.0) -> Observation:
    """Zones at their night setback (30/15 C): control can start them early."""
    zones = tuple(ZoneObservation(f"zone-{i}", t, 30.0, 15.0) for i, t in enumerate(temperatures))
    return Observation(at, -6.0, demand_kw, zones)


def test_a_warm_up_keeps_its_plant_limit_while_the_demand_rises() -> None:
    guards = Guards()
    limits_written = []
    for minute in range(0, 90, 1):
        demand = 20.0 if minute < 10 else 120.0  # the plant starts: the demand rises, by design
        features = replace(FEATURES, demand=demand, interval_average=demand, hours_to_open=3 - minute / 60)
        at = MONDAY_6AM + timedelta(minutes=minute)
        warming = minute / 60  # the rooms warm 1 K an hour: at the comfort edge by opening
        observation = observe(at, 17.0 + warming, 18.0 + warming, demand_kw=demand)
        targets = guards.apply(WARM_UP, observation, features, LIMITS)
        limits_written.append((targets.plant_limit_pct, targets.fan_limit_pct))
        assert not any("futile" in note for note in targets.notes)
    assert set(limits_written) == {(60.0, 70.0)}


def test_a_warm_up_that_falls_behind_gets_its_caps_lifted_until_it_is_back_on_course() -> None:
    """A capped warm-up that would leave a room cold at opening (a discomfort the building's own start
    would not have made, and a peak at opening) runs uncapped while a room lags its straight line."""
    guards = Guards()
    caps = {}
    for minute in range(0, 180, 1):
        features = replace(FEATURES, hours_to_open=3 - minute / 60)
        # One room warms on course (17 -> 19.3 C by opening); the other stalls at 16 C for an hour and a
        # half, then catches up fast once its plant and fan are free.
        slow = 16.0 if minute < 90 else min(19.3, 16.0 + (minute - 90) / 20)
        at = MONDAY_6AM + timedelta(minutes=minute)
        targets = guards.apply(WARM_UP, observe(at, 17.0 + minute / 60 * 0.77, slow), features, LIMITS)
        caps[minute] = (targets.plant_limit_pct, targets.fan_limit_pct)
    assert caps[10] == (60.0, 70.0)  # on course early on (within the slack)
    assert caps[60] == (None, None)  # a third of the way gone, the stalled room none: uncapped
    assert caps[170] == (60.0, 70.0)  # back on course: spread again (after the stage hold)


def test_no_warm_up_cap_nor_a_closed_hours_limit_where_control_cannot_start_the_zones_early() -> None:
    """A building whose heating setpoints are not wired starts on its own schedule: a plant limit before
    opening would only push its warm-up into the opening hours (a new peak, rooms cold at opening)."""
    guards = Guards()
    unwired = tuple(ZoneObservation(f"zone-{i}", t, 30.0, None) for i, t in enumerate((17.0, 18.0)))
    shed = replace(Decision.neutral(), plant_limit=70.0, precondition=1.0)
    for minute in range(0, 60, 5):
        at = MONDAY_6AM + timedelta(minutes=minute)
        targets = guards.apply(shed, Observation(at, -6.0, 120.0, unwired), FEATURES, LIMITS)
        assert targets.plant_limit_pct is None


def test_a_plant_limit_is_let_go_while_a_room_is_past_the_comfort_band() -> None:
    guards = Guards()
    shed = replace(Decision.neutral(), plant_limit=70.0)
    open_features = replace(FEATURES, open=1.0, hours_to_open=0.0)
    at = MONDAY_6AM + timedelta(hours=4)
    assert guards.apply(shed, observe(at, 20.0, 20.5), open_features, LIMITS).plant_limit_pct == 70.0
    later = at + timedelta(minutes=1)
    targets = guards.apply(shed, observe(later, 20.0, 19.05), open_features, LIMITS)  # a room at 19.05 C
    assert "comfort: plant limit lifted" in targets.notes
    assert targets.plant_limit_pct is not None
    assert targets.plant_limit_pct > 70.0  # raised at the release rate, not at once (no rebound peak)


def test_shedding_that_does_not_lower_the_demand_is_paused_but_the_energy_offset_stays() -> None:
    guards = Guards()
    shed = replace(Decision.neutral(), cooling_offset=2.2, plant_limit=80.0)
    # Over the target all along, and no lower for it: futile.
    opened = replace(
        FEATURES, open=1.0, hours_to_open=0.0, outdoor_temperature=31.0, interval_projection=160.0
    )
    targets = None
    for minute in range(0, 20):
        at = MONDAY_6AM.replace(hour=14) + timedelta(minutes=minute)
        targets = guards.apply(shed, observe(at, 25.0, 25.5, demand_kw=150.0), opened, LIMITS)
    assert targets is not None
    assert any("futile" in note for note in targets.notes)
    assert targets.plant_limit_pct is not None
    assert targets.plant_limit_pct > 80.0  # given back gradually
    written = {name: zone.cooling_setpoint_c for name, zone in targets.zones.items()}
    # Released at 0.1 K a minute from 28.2, down to the energy offset, not to 26.
    at = MONDAY_6AM.replace(hour=14, minute=30)
    for step in range(20):
        targets = guards.apply(shed, observe(at + timedelta(minutes=step), 25.0, 25.5), opened, LIMITS)
    written = {name: zone.cooling_setpoint_c for name, zone in targets.zones.items()}
    assert written == {"zone-0": 26.7, "zone-1": 26.7}
    assert targets.plant_limit_pct is None  # the plant's own limit again


def test_a_zone_at_its_comfort_edge_is_held_there_not_dropped_to_the_base() -> None:
    guards = Guards()
    shed = replace(Decision.neutral(), cooling_offset=2.2)
    opened = replace(FEATURES, open=1.0, hours_to_open=0.0, outdoor_temperature=31.0, demand=90.0)
    at = MONDAY_6AM.replace(hour=15)
    for step in range(5):  # raised in steps to 28.2 C while the rooms are cool
        targets = guards.apply(shed, observe(at + timedelta(minutes=step), 25.0, 25.0), opened, LIMITS)
    assert {z.cooling_setpoint_c for z in targets.zones.values()} == {28.2}
    # One room drifts 0.1 K past the comfort edge (27 C less the 0.3 K margin): its setpoint goes to the
    # edge less what the room is past it, 26.6 C, not to the base.
    hot = observe(at + timedelta(minutes=6), 26.8, 25.0)
    targets = guards.apply(shed, hot, opened, LIMITS)
    assert targets.zones["zone-0"].cooling_setpoint_c == pytest.approx(26.6)
    assert targets.zones["zone-1"].cooling_setpoint_c == 28.2
    assert "comfort: zone-0" in targets.notes
    # Back just inside the edge, it is not raised past the edge again: no cycle of warm-up and burst.
    for step in range(7, 12):
        targets = guards.apply(shed, observe(at + timedelta(minutes=step), 26.5, 25.0), opened, LIMITS)
        assert (targets.zones["zone-0"].cooling_setpoint_c or 26.0) <= 26.7 + 1e-9
    # Well inside, the shedding resumes.
    targets = guards.apply(shed, observe(at + timedelta(minutes=13), 26.0, 25.0), opened, LIMITS)
    assert targets.zones["zone-0"].cooling_setpoint_c is not None
    assert targets.zones["zone-0"].cooling_setpoint_c > 26.7


def test_during_a_warm_up_the_supply_air_goes_to_the_heating_setpoint_until_the_rooms_are_warm() -> None:
    guards = Guards()
    cold = guards.apply(WARM_UP, observe(MONDAY_6AM, 17.0, 18.5), FEATURES, LIMITS)
    assert cold.supply_air_c == 20.0
    assert {(z.heating_setpoint_c, z.cooling_setpoint_c) for z in cold.zones.values()} == {(20.0, 26.0)}
    warm = guards.apply(WARM_UP, observe(MONDAY_6AM + timedelta(minutes=1), 20.1, 20.2), FEATURES, LIMITS)
    assert warm.supply_air_c is None  # the air handler's own reset
    opened = guards.apply(
        Decision.neutral(),
        observe(MONDAY_6AM.replace(hour=9), 17.0, 18.0),
        replace(FEATURES, open=1.0, hours_to_open=0.0),
        LIMITS,
    )
    assert opened.supply_air_c is None  # only before opening, with the outdoor air closed


def test_a_release_after_a_lowered_base_gives_the_setpoints_back_slowly() -> None:
    """Pre-cooling through the configuration (a 24.5 C base), shedding at level 3, then a release: the
    setpoints come down at the release rate, not 1.5 K in three minutes (a new, higher peak)."""
    limits = Limits(cooling_base_c=24.5)
    guards = Guards()
    opened = replace(FEATURES, open=1.0, hours_to_open=0.0, outdoor_temperature=31.0, demand=90.0)
    shed = replace(Decision.neutral(), cooling_offset=2.2)
    energy = replace(Decision.neutral(), cooling_offset=0.7)
    at = MONDAY_6AM.replace(hour=14)
    for minute in range(10):
        guards.apply(shed, observe(at + timedelta(minutes=minute), 25.0, 25.0, 25.0, 25.0), opened, limits)
    written: list[float] = []
    for minute in range(10, 40):
        targets = guards.apply(
            energy, observe(at + timedelta(minutes=minute), 25.0, 25.0, 25.0, 25.0), opened, limits
        )
        written.append(min(z.cooling_setpoint_c or 24.5 for z in targets.zones.values()))
    assert written[0] > 26.5  # still near 26.7 (24.5 + 2.2) at the first release step
    drops = [written[i] - written[i + 3] for i in range(len(written) - 3)]
    assert max(drops) <= 0.3 + 1e-6  # 0.1 K a minute, the default release rate
    assert written[-1] == pytest.approx(25.2)  # down to the energy offset in the end


def test_at_opening_a_room_running_above_its_setpoint_is_not_pushed_past_the_comfort_edge() -> None:
    """A room at 26.4 C under its own 26 C setpoint at opening: the all-day energy offset (0.7 K) would
    take it to 27.1 C. Its setpoint is raised only by the room's headroom to 26.7 C (27 C less 0.3 K)."""
    guards = Guards()
    opened = replace(FEATURES, open=1.0, hours_to_open=0.0, outdoor_temperature=31.0, demand=90.0)
    energy = replace(Decision.neutral(), cooling_offset=0.7)
    at = MONDAY_6AM.replace(hour=9)
    room = 26.4
    for minute in range(20):
        targets = guards.apply(energy, observe(at + timedelta(minutes=minute), room, 25.0), opened, LIMITS)
        setpoint = targets.zones["zone-0"].cooling_setpoint_c or 26.0
        room = setpoint + 0.4  # the room follows its setpoint, 0.4 K above it
        assert room <= 26.7 + 1e-6
    assert targets.zones["zone-1"].cooling_setpoint_c == pytest.approx(26.7)  # a room with headroom saves


def test_a_plant_limit_that_does_not_bind_is_not_shedding_and_is_never_judged_futile() -> None:
    """An unmetered plant limit may sit above what the plant draws: no reason to pause the shedding."""
    guards = Guards()
    capped = replace(Decision.neutral(), plant_limit=70.0)
    opened = replace(
        FEATURES, open=1.0, hours_to_open=0.0, outdoor_temperature=31.0, interval_projection=160.0
    )
    for minute in range(0, 60):
        at = MONDAY_6AM.replace(hour=14) + timedelta(minutes=minute)
        targets = guards.apply(capped, observe(at, 25.0, 25.5, demand_kw=150.0), opened, LIMITS)
        assert not any("futile" in note for note in targets.notes)
        assert targets.plant_limit_pct == 70.0


def test_a_metered_plant_is_limited_where_it_runs_no_lower_than_the_floor() -> None:
    """A 100 kW plant drawing 30 kW: level 3 (70%) is 21% of its rating, not 70%; the floor holds."""
    limits = Limits(plant_rated_kw=100.0, plant_floor_pct=25.0)
    guards = Guards()
    opened = replace(FEATURES, open=1.0, hours_to_open=0.0, outdoor_temperature=31.0)
    capped = replace(Decision.neutral(), plant_limit=70.0)
    at = MONDAY_6AM.replace(hour=14)
    for minute in range(30):
        guards.apply(
            Decision.neutral(),
            replace(observe(at + timedelta(minutes=minute), 25.0), plant_kw=30.0),
            opened,
            limits,
        )
    targets = guards.apply(
        capped, replace(observe(at + timedelta(minutes=30), 25.0), plant_kw=30.0), opened, limits
    )
    assert targets.plant_limit_pct == 25.0  # 21% asked, the floor written
    deeper = Limits(plant_rated_kw=100.0, plant_floor_pct=10.0)
    guards = Guards()
    for minute in range(30):
        guards.apply(
            Decision.neutral(),
            replace(observe(at + timedelta(minutes=minute), 25.0), plant_kw=30.0),
            opened,
            deeper,
        )
    targets = guards.apply(
        capped, replace(observe(at + timedelta(minutes=30), 25.0), plant_kw=30.0), opened, deeper
    )
    assert targets.plant_limit_pct == pytest.approx(21.0)


def test_the_energy_offset_and_margins_come_from_the_configuration() -> None:
    config = ControlConfig.model_validate(
        {
            "energy_offset_k": 0.3,
            "comfort_margin_k": 0.5,
            "release_k_per_min": 0.05,
            "plant_limit_floor_pct": 15,
        }
    )
    limits = control_limits(config)
    assert (limits.energy_offset_k, limits.comfort_margin_k, limits.release_k_per_min) == (0.3, 0.5, 0.05)
    assert limits.plant_floor_pct == 15.0
    guards = Guards()
    opened = replace(FEATURES, open=1.0, hours_to_open=0.0, outdoor_temperature=31.0, demand=90.0)
    energy = replace(Decision.neutral(), cooling_offset=0.7)  # the policies' energy level
    for minute in range(5):
        targets = guards.apply(
            energy, observe(MONDAY_6AM.replace(hour=10, minute=minute), 24.0), opened, limits
        )
    assert targets.zones["zone-0"].cooling_setpoint_c == pytest.approx(26.3)  # the site's 0.3 K


def test_an_unmetered_plant_is_limited_below_its_rating_once_a_day_of_demand_is_in() -> None:
    """Only the main meter and the plant's 100 kW rating: the plant draws at most the demand above the
    night's 20 kW, 40 kW by day, so level 3 (70%) is written as 28% of its rating, not 70%."""
    limits = Limits(plant_rated_kw=100.0, plant_floor_pct=10.0)
    guards = Guards()
    capped = replace(Decision.neutral(), plant_limit=70.0)
    start = MONDAY_6AM.replace(hour=0)
    written = []
    for minute in range(0, 36 * 60, 5):
        at = start + timedelta(minutes=minute)
        demand = 60.0 if 9 <= at.hour < 18 else 20.0
        opened = replace(FEATURES, open=float(9 <= at.hour < 18), hours_to_open=0.0, outdoor_temperature=31.0)
        decision = capped if at.hour in (10, 11) else Decision.neutral()
        targets = guards.apply(decision, observe(at, 25.0, demand_kw=demand), opened, limits)
        written.append((at, targets.plant_limit_pct))
    first_day = [pct for at, pct in written if at.day == start.day and pct is not None]
    next_day = [pct for at, pct in written if at.day != start.day and pct is not None]
    assert min(first_day) == 70.0  # no night seen yet: a share of the rating
    assert min(next_day) == pytest.approx(28.0)
