"""The simulated site behaves as a building engineer expects (issue 3's physics checks)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from edge_sim.physics.climate import SCENARIOS, Weather
from edge_sim.physics.plant import PlantSection, cooling_cop_full_load, heating_cop_full_load
from edge_sim.physics.sun import KST, solar_position
from edge_sim.physics.zone import RHO_CP_AIR, ThermalZone, ZoneLoads, ZoneParameters
from edge_sim.site.site import Site
from edge_sim.study import SITE, run_scenario

SUMMER = SCENARIOS["summer"]


def test_cop_falls_as_outdoor_temperature_rises() -> None:
    cooling = [cooling_cop_full_load(t, 7.0) for t in (20, 25, 30, 35, 40)]
    heating = [heating_cop_full_load(t) for t in (10, 0, -10, -15)]
    assert cooling == sorted(cooling, reverse=True)
    assert heating == sorted(heating, reverse=True)
    assert 2.2 < heating_cop_full_load(-7.0) < 3.0  # air-source heat pumps rate about 2.5 at -7 C


def test_part_load_plant_cycles_with_minimum_times() -> None:
    plant = PlantSection("cooling", 100_000.0, supply_temp_c=7.0)
    states = []
    for _ in range(240):  # 4 hours of a 10 kW load on a 100 kW machine with a 25% minimum
        delivered = plant.step(10_000.0, 30.0, 60.0, enabled=True, limit_fraction=1.0)
        assert delivered == pytest.approx(10_000.0)  # the loop's mass covers the load while off
        states.append(plant.running)
    runs = [len(list(g)) for g in _groups(states)]
    assert plant.starts >= 3
    assert min(runs[1:-1]) >= 5  # no state shorter than the 5-minute minimum off / 15-minute minimum on


def _groups(states: list[bool]) -> list[list[bool]]:
    groups: list[list[bool]] = []
    for state in states:
        if groups and groups[-1][0] == state:
            groups[-1].append(state)
        else:
            groups.append([state])
    return groups


def test_zone_follows_its_time_constant_after_a_supply_step() -> None:
    params = ZoneParameters(floor_area_m2=200, window_area_m2=20, opaque_area_m2=100)
    flow = 0.5
    zone = ThermalZone(params, 24.0, 24.0)
    # The air node's fast time constant, with the mass node nearly still over minutes.
    g_total = params.h_win + params.h_ms + RHO_CP_AIR * flow
    tau_s = params.c_air / g_total
    loads = ZoneLoads(supply_m3_s=flow, supply_temp_c=14.0)
    equilibrium = (params.h_win * 24.0 + params.h_ms * 24.0 + RHO_CP_AIR * flow * 14.0) / g_total
    zone.advance(tau_s, 24.0, loads)
    reached = (24.0 - zone.t_air) / (24.0 - equilibrium)
    assert reached == pytest.approx(0.632, abs=0.06)


def test_weather_is_seeded_and_follows_the_normals() -> None:
    a, b, c = Weather(seed=3), Weather(seed=3), Weather(seed=4)
    when = datetime(2026, 8, 5, 14, 30, tzinfo=KST)
    assert a.sample(when) == b.sample(when)
    assert a.sample(when) != c.sample(when)
    days = [SUMMER.start + timedelta(days=d, hours=h) for d in range(30) for h in range(24)]
    mean = sum(Weather(seed=1).sample(t).temperature_c for t in days) / len(days)
    assert 24.0 < mean < 29.0  # August in Seoul: daily mean about 26 C
    altitude, azimuth = solar_position(datetime(2026, 6, 21, 12, 32, tzinfo=KST))
    assert altitude == pytest.approx(90 - 37.57 + 23.44, abs=0.5)  # solar noon at the solstice
    assert azimuth == pytest.approx(180, abs=3)


def test_sub_meters_add_up_to_the_main_meter() -> None:
    site = Site(SUMMER.start + timedelta(hours=10), seed=1)
    site.advance(3 * 3600)
    for building in site.buildings.values():
        p = building.power
        assert p.total == pytest.approx(p.cooling + p.heating + p.fans + p.lighting + p.plugs)
        assert building.main_energy_kwh == pytest.approx(sum(building.energy_kwh.values()))
        assert building.energy_kwh["hvac"] > 0


def test_co2_rises_with_occupancy() -> None:
    site = Site(SUMMER.start + timedelta(hours=6), seed=1)
    reading = site.building("library").zone("reading-1")
    site.advance(2 * 3600)  # 08:00, before opening
    before = reading.thermal.co2_ppm
    site.advance(7 * 3600)  # 15:00, full house
    assert before < 500
    assert reading.thermal.co2_ppm > before + 300


def test_co2_falls_with_ventilation() -> None:
    params = ZoneParameters(floor_area_m2=100, infiltration_ach=0.0)
    little, lots = ThermalZone(params, 24.0, 24.0, 420.0), ThermalZone(params, 24.0, 24.0, 420.0)
    for _ in range(48):  # 4 hours, 25 people, 0.1 vs 0.2 m3/s of outdoor air
        little.advance_co2(300, 25, 0.1, 420.0, 420.0)
        lots.advance_co2(300, 25, 0.2, 420.0, 420.0)
    excess_little, excess_lots = little.co2_ppm - 420, lots.co2_ppm - 420
    assert excess_little == pytest.approx(25 * 4.8 / 0.1, rel=0.01)  # steady state: generation / flow
    assert excess_lots == pytest.approx(excess_little / 2, rel=0.01)


@pytest.mark.integration
def test_baseline_keeps_occupied_comfort_on_a_summer_week() -> None:
    result = run_scenario("summer", seed=0, days=3)
    site = result.kpis[SITE]
    assert site.tdis_kh < 1.0  # K.h averaged over zones, in three days of a heat wave
    assert 100 < site.peak_15min_kw < 300
    assert 0.3 < site.load_factor < 0.7


@pytest.mark.integration
def test_raising_the_cooling_setpoint_lowers_demand() -> None:
    def shed(site: Site) -> None:
        for building in site.buildings.values():
            for zone in building.zones:
                zone.overrides.cooling_sp = 27.0

    baseline = run_scenario("summer", seed=0, days=2).kpis[SITE]
    shedding = run_scenario("summer", seed=0, days=2, before_step=shed).kpis[SITE]
    assert shedding.peak_15min_kw < 0.97 * baseline.peak_15min_kw
    assert shedding.hvac_energy_kwh < 0.95 * baseline.hvac_energy_kwh  # about 6-10% per kelvin
