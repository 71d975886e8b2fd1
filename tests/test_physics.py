"""The simulated building behaves as a building engineer expects."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from edge_sim.physics.building import SingleZoneBuilding
from edge_sim.physics.cooling import cooling_cop
from edge_sim.physics.zone import ThermalZone, ZoneLoads, ZoneParameters

AFTERNOON = datetime.fromisoformat("2026-08-05T13:00+09:00")


def run(building: SingleZoneBuilding, start: datetime, hours: float, step_s: float = 30.0) -> datetime:
    now = start
    for _ in range(int(hours * 3600 / step_s)):
        now += timedelta(seconds=step_s)
        building.advance(now, step_s)
    return now


def test_cop_falls_as_outdoor_temperature_rises() -> None:
    cops = [cooling_cop(t_out, 13.0) for t_out in (24.0, 28.0, 32.0, 36.0)]
    assert cops == sorted(cops, reverse=True)
    assert 4.0 < cooling_cop(31.0, 13.0) < 5.5


def test_free_floating_zone_approaches_outdoor_temperature() -> None:
    zone = ThermalZone(ZoneParameters(floor_area_m2=100, window_area_m2=20, opaque_area_m2=150), 20.0, 20.0)
    for _ in range(24 * 30):  # 30 days of constant 30 C outside
        zone.advance(3600, 30.0, ZoneLoads())
    assert zone.t_air == pytest.approx(30.0, abs=0.05)
    assert zone.t_mass == pytest.approx(30.0, abs=0.05)


def test_controller_holds_the_setpoint_on_a_hot_afternoon() -> None:
    building = SingleZoneBuilding()
    run(building, AFTERNOON, hours=2)
    assert building.zone.t_air == pytest.approx(26.0, abs=0.3)
    assert building.t_out > 29


def test_raising_the_setpoint_cuts_power_and_warms_the_room() -> None:
    baseline, shed = SingleZoneBuilding(), SingleZoneBuilding()
    now = run(baseline, AFTERNOON, hours=1)
    run(shed, AFTERNOON, hours=1)
    shed.cooling_setpoint = 27.0
    run(baseline, now, hours=1)
    run(shed, now, hours=1)
    assert shed.meter.power_w < 0.9 * baseline.meter.power_w
    assert shed.zone.t_air == pytest.approx(27.0, abs=0.3)


def test_energy_register_integrates_power() -> None:
    building = SingleZoneBuilding()
    energy_before = building.meter.import_energy_kwh
    now, powers = AFTERNOON, []
    for _ in range(120):  # one hour in 30 s steps
        now += timedelta(seconds=30)
        building.advance(now, 30)
        powers.append(building.meter.power_w)
    expected_kwh = sum(powers) * 30 / 3.6e6
    assert building.meter.import_energy_kwh - energy_before == pytest.approx(expected_kwh, rel=1e-9)


def test_closed_library_uses_little_power_at_night() -> None:
    building = SingleZoneBuilding()
    run(building, datetime.fromisoformat("2026-08-05T22:00+09:00"), hours=5)
    assert building.meter.power_w < 5_000
