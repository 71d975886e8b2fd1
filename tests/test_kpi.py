"""KPIs and tariff give the numbers a building engineer would work out by hand."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import pytest

from edge_agent.control.savings.kpi import KpiAccumulator, Kpis, format_table
from edge_agent.control.savings.tariff import GENERAL_2023, GENERAL_2026, tariff_for
from edge_sim.physics.sun import KST

MIDNIGHT = datetime(2026, 8, 5, tzinfo=KST)
BAND = (20.0, 26.0)


def run(
    power_kw: Callable[[datetime], float],
    start: datetime,
    hours: float,
    step_s: float,
    acc: KpiAccumulator | None = None,
) -> Kpis:
    """Feed whole-building power (taken at each step's start) to a one-zone accumulator."""
    acc = acc or KpiAccumulator({"hall": 1000.0})
    now = start
    for _ in range(round(hours * 3600 / step_s)):
        kw = power_kw(now)
        now += timedelta(seconds=step_s)
        acc.add(
            now,
            step_s,
            zone_temperatures={"hall": 24.0},
            comfort_bands={"hall": BAND},
            hvac_w=kw * 500.0,
            total_w=kw * 1000.0,
        )
    return acc.result()


def test_constant_100_kw_for_an_hour() -> None:
    kpis = run(lambda _: 100.0, MIDNIGHT, 1.0, 60.0)
    assert kpis.total_energy_kwh == pytest.approx(100.0)
    assert kpis.hvac_energy_kwh == pytest.approx(50.0)
    assert kpis.total_energy_kwh_per_m2 == pytest.approx(0.1)
    assert kpis.peak_15min_kw == pytest.approx(100.0)
    assert kpis.peak_15min_w_per_m2 == pytest.approx(100.0)
    assert kpis.load_factor == pytest.approx(1.0)
    assert kpis.demand_charge_krw == pytest.approx(100.0 * 8320.0)


def test_half_hour_burst_from_ten_past_peaks_in_the_quarter_past_interval() -> None:
    # 200 kW from 14:10 to 14:40: 5 min of the :00 interval, all of :15, 10 min of :30.
    start = MIDNIGHT.replace(hour=14)
    burst_start, burst_end = start + timedelta(minutes=10), start + timedelta(minutes=40)
    kpis = run(lambda t: 200.0 if burst_start <= t < burst_end else 0.0, start, 1.0, 60.0)
    assert kpis.peak_15min_kw == pytest.approx(200.0)
    assert kpis.peak_15min_start == start + timedelta(minutes=15)
    assert kpis.total_energy_kwh == pytest.approx(100.0)


def test_five_minute_burst_counts_as_metered_over_the_whole_interval() -> None:
    start = MIDNIGHT.replace(hour=14)
    kpis = run(lambda t: 200.0 if t.minute >= 10 else 0.0, start, 0.25, 60.0)
    assert kpis.peak_15min_kw == pytest.approx(200.0 / 3)


def test_run_ending_mid_interval_counts_only_metered_energy() -> None:
    kpis = run(lambda _: 100.0, MIDNIGHT, 5 / 60, 60.0)
    assert kpis.peak_15min_kw == pytest.approx(100.0 / 3)


def test_steps_straddling_interval_boundaries_are_split() -> None:
    # Power changes every 7 minutes, so 7-minute steps see the same profile as 1 s steps, but most of them
    # straddle a :00/:15/:30/:45 boundary.
    start = MIDNIGHT.replace(hour=9)

    def profile(t: datetime) -> float:
        minutes = int((t - start).total_seconds()) // 60
        return (50.0, 300.0, 120.0, 10.0, 220.0)[(minutes // 7) % 5]

    fine = run(profile, start, 7 * 21 / 60, 1.0)
    coarse = run(profile, start, 7 * 21 / 60, 420.0)
    assert coarse.peak_15min_kw == pytest.approx(fine.peak_15min_kw, abs=1e-9)
    assert coarse.peak_15min_start == fine.peak_15min_start
    assert coarse.daily_peak_avg_kw == pytest.approx(fine.daily_peak_avg_kw, abs=1e-9)
    assert coarse.energy_cost_krw == pytest.approx(fine.energy_cost_krw, rel=1e-12)
    # By hand: 10:15-10:30 holds 2 min at 50 kW, 7 min at 300 kW, 6 min at 120 kW.
    assert fine.peak_15min_kw == pytest.approx((2 * 50.0 + 7 * 300.0 + 6 * 120.0) / 15)
    assert fine.peak_15min_start == start + timedelta(hours=1, minutes=15)


def test_step_crossing_the_hour_is_priced_in_each_hour() -> None:
    # 17:45-18:15 in August 2026: mid before 18:00, peak after (new bands).
    acc = KpiAccumulator({"hall": 100.0})
    end = MIDNIGHT.replace(hour=18, minute=15)
    acc.add(
        end, 1800.0, zone_temperatures={"hall": 24.0}, comfort_bands={"hall": BAND}, hvac_w=0, total_w=2000
    )
    summer = GENERAL_2026.prices_krw_per_kwh["summer"]
    assert acc.result().energy_cost_krw == pytest.approx(0.5 * summer["mid"] + 0.5 * summer["peak"])


def test_discomfort_one_kelvin_above_band_for_two_hours() -> None:
    acc = KpiAccumulator({"reading-room": 400.0, "stacks": 600.0})
    now = MIDNIGHT.replace(hour=13)
    for _ in range(120):
        now += timedelta(minutes=1)
        acc.add(
            now,
            60.0,
            zone_temperatures={"reading-room": 27.0, "stacks": 25.0},
            comfort_bands={"reading-room": (22.0, 26.0), "stacks": (22.0, 26.0)},
            hvac_w=0.0,
            total_w=0.0,
        )
    kpis = acc.result()
    assert kpis.discomfort_kh["reading-room"] == pytest.approx(2.0)
    assert kpis.discomfort_kh["stacks"] == 0.0
    assert kpis.tdis_kh == pytest.approx(1.0)


def test_discomfort_below_band_uses_each_steps_own_band() -> None:
    acc = KpiAccumulator({"hall": 100.0})
    now = MIDNIGHT
    for band in [(20.0, 26.0), (15.0, 30.0)]:  # occupied hour, then unoccupied hour
        now += timedelta(hours=1)
        acc.add(
            now, 3600.0, zone_temperatures={"hall": 18.0}, comfort_bands={"hall": band}, hvac_w=0, total_w=0
        )
    assert acc.result().discomfort_kh["hall"] == pytest.approx(2.0)


@pytest.mark.parametrize(
    ("moment", "band"),
    [
        ("2025-08-05T14:30+09:00", "peak"),
        ("2026-08-05T23:30+09:00", "light"),
        ("2026-08-05T08:59+09:00", "light"),
        ("2026-01-12T18:00+09:00", "peak"),  # winter evening, old bands
        ("2026-01-12T15:00+09:00", "mid"),
        ("2026-08-05T19:00+09:00", "peak"),  # new bands: 18-21 peak
        ("2026-08-05T14:30+09:00", "mid"),  # new bands: 13-15 mid
        ("2026-08-05T11:30+09:00", "mid"),  # new bands: 11-12 mid
        ("2026-08-05T10:00Z", "peak"),  # 19:00 KST
    ],
)
def test_band_at_the_hour(moment: str, band: str) -> None:
    local = datetime.fromisoformat(moment)
    assert tariff_for(local).band(local) == band


def test_versions_change_on_2026_06_01() -> None:
    assert tariff_for(datetime(2026, 5, 31, 23, 59, tzinfo=KST)) is GENERAL_2023
    assert tariff_for(datetime.fromisoformat("2026-05-31T15:00Z")) is GENERAL_2026  # 00:00 KST on 1 June
    # Under the old bands an August afternoon is peak.
    assert GENERAL_2023.band(datetime.fromisoformat("2026-08-05T14:30+09:00")) == "peak"


def test_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        GENERAL_2023.band(datetime(2026, 8, 5, 14, 30))


@pytest.mark.parametrize("start", ["2025-08-05T14:00+09:00", "2026-08-05T19:00+09:00"])
def test_one_kwh_at_summer_peak_costs_the_summer_peak_price(start: str) -> None:
    kpis = run(lambda _: 1.0, datetime.fromisoformat(start), 1.0, 60.0)
    assert kpis.energy_cost_krw == pytest.approx(229.0)
    assert kpis.total_cost_krw == pytest.approx(229.0 + 8320.0)


def test_one_mwh_emits_the_grid_factor() -> None:
    kpis = run(lambda _: 1000.0, MIDNIGHT, 1.0, 900.0)
    assert kpis.emissions_t == pytest.approx(0.4173)


def test_daily_peak_average_and_load_factor() -> None:
    # Day 1: 100 kW all day; day 2: 100 kW with one 200 kW hour.
    kpis = run(lambda t: 200.0 if (t.day, t.hour) == (6, 12) else 100.0, MIDNIGHT, 48.0, 300.0)
    assert kpis.daily_peak_avg_kw == pytest.approx(150.0)
    assert kpis.peak_15min_kw == pytest.approx(200.0)
    assert kpis.peak_15min_start == datetime(2026, 8, 6, 12, tzinfo=KST)
    assert kpis.load_factor == pytest.approx((4900.0 / 48) / 200.0)


def test_result_does_not_disturb_accumulation() -> None:
    acc = KpiAccumulator({"hall": 1000.0})
    half = run(lambda _: 100.0, MIDNIGHT, 0.125, 30.0, acc)
    whole = run(lambda _: 100.0, MIDNIGHT + timedelta(minutes=7.5), 0.125, 30.0, acc)
    assert half.peak_15min_kw == pytest.approx(50.0)
    assert whole.peak_15min_kw == pytest.approx(100.0)


def test_overlapping_steps_are_refused() -> None:
    acc = KpiAccumulator({"hall": 100.0})
    temperatures, bands = {"hall": 24.0}, {"hall": BAND}
    acc.add(
        MIDNIGHT + timedelta(minutes=10),
        600.0,
        zone_temperatures=temperatures,
        comfort_bands=bands,
        hvac_w=0.0,
        total_w=1.0,
    )
    with pytest.raises(ValueError, match="overlaps"):
        acc.add(
            MIDNIGHT + timedelta(minutes=15),
            600.0,
            zone_temperatures=temperatures,
            comfort_bands=bands,
            hvac_w=0.0,
            total_w=1.0,
        )


def test_table_lists_every_column_and_zone() -> None:
    library = run(lambda _: 100.0, MIDNIGHT, 1.0, 60.0)
    table = format_table({"library": library, "site": library})
    lines = table.splitlines()
    assert lines[0].split() == ["KPI", "library", "site"]
    assert any(line.startswith("  discomfort hall (K.h)") for line in lines)
    assert any(line.startswith("peak 15-min demand (kW)") and line.split()[-1] == "100.0" for line in lines)
    assert len({len(line) for line in lines}) == 1  # aligned
