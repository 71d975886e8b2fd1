"""The reading pipeline: what reaches the sinks, what is held back, and what is marked untrustworthy."""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_agent.acquisition.pipeline import (
    DEFAULT_MAX_SILENCE_S,
    Deadband,
    Pipeline,
    Plausibility,
    PointFilters,
    pipeline_for_points,
)
from edge_agent.readings import Quality, Reading

T0 = datetime(2026, 11, 29, 0, 0, tzinfo=UTC)
GOOD, BAD = Quality.GOOD, Quality.BAD


def reading(
    value: float | None, t: float = 0.0, quality: Quality = GOOD, device: str = "meter", point: str = "v_l1"
) -> Reading:
    return Reading(device, point, value, "V", quality, T0 + timedelta(seconds=t))


def forwarded(step: Deadband, readings: list[Reading]) -> list[Reading]:
    return [r for r in readings if step(r) is not None]


def values(readings: list[Reading]) -> list[float | None]:
    return [r.value for r in readings]


# Deadband


def test_deadband_forwards_first_and_big_moves_only() -> None:
    band = Deadband(absolute=1.0, max_silence_s=60)
    sent = forwarded(
        band,
        [
            reading(230.0, 0),  # first: always
            reading(230.5, 1),
            reading(231.0, 2),  # exactly the band: not more than it
            reading(229.1, 3),
            reading(231.5, 4),  # 1.5 from 230.0
            reading(232.4, 5),  # 0.9 from 231.5
            reading(230.4, 6),  # 1.1 below 231.5
        ],
    )
    assert values(sent) == [230.0, 231.5, 230.4]


def test_a_slow_drift_is_reported_once_it_adds_up() -> None:
    """Measured from the last forwarded value, not the last seen: small steps cannot hide a large change."""
    band = Deadband(absolute=1.0, max_silence_s=3600)
    sent = forwarded(band, [reading(230.0 + 0.4 * i, i) for i in range(7)])
    assert values(sent) == [230.0, pytest.approx(231.2), pytest.approx(232.4)]


def test_heartbeat_after_max_silence_even_if_unchanged() -> None:
    band = Deadband(absolute=1.0, max_silence_s=60)
    times = [0, 30, 59.9, 60, 61, 119.9, 120, 150]
    sent = forwarded(band, [reading(230.0, t) for t in times])
    assert [(r.ts - T0).total_seconds() for r in sent] == [0, 60, 120]


def test_quality_changes_are_forwarded_both_ways_then_deadband_from_the_new_value() -> None:
    band = Deadband(absolute=1.0, max_silence_s=60)
    sent = forwarded(
        band,
        [
            reading(230.0, 0),
            reading(230.2, 1),  # small: dropped
            reading(None, 2, BAD),  # GOOD -> BAD
            reading(None, 3, BAD),  # not GOOD: never thinned
            reading(240.0, 4),  # BAD -> GOOD, whatever the value
            reading(240.5, 5),  # more than 1 from 230.0, but not from 240.0: dropped
            reading(241.5, 6),  # 1.5 from 240.0
        ],
    )
    assert [(r.value, r.quality) for r in sent] == [
        (230.0, GOOD),
        (None, BAD),
        (None, BAD),
        (240.0, GOOD),
        (241.5, GOOD),
    ]


def test_back_to_good_with_the_same_value_is_still_forwarded() -> None:
    band = Deadband(absolute=1.0, max_silence_s=60)
    sent = forwarded(band, [reading(230.0, 0), reading(230.0, 1, Quality.STALE), reading(230.0, 2)])
    assert [r.quality for r in sent] == [GOOD, Quality.STALE, GOOD]


def test_percent_band_is_relative_to_the_last_forwarded_value() -> None:
    band = Deadband(percent=1.0, max_silence_s=3600)
    sent = forwarded(
        band,
        [
            reading(200.0, 0),
            reading(201.9, 1),  # 0.95 %
            reading(202.1, 2),  # 1.05 %: forwarded; the band is now 2.021
            reading(204.1, 3),  # 2.0 from 202.1: dropped
            reading(204.2, 4),  # 2.1: forwarded
            reading(10.0, 5),  # a drop to 10 is far more than 1 % of 204.2
            reading(10.05, 6),  # 0.5 % of 10: dropped
        ],
    )
    assert values(sent) == [200.0, 202.1, 204.2, 10.0]


def test_percent_band_at_zero_forwards_any_change() -> None:
    """1 % of 0 is 0: after a forwarded 0.0 only an exact repeat is held back."""
    band = Deadband(percent=1.0, max_silence_s=3600)
    sent = forwarded(band, [reading(0.0, 0), reading(0.0, 1), reading(0.001, 2), reading(0.001005, 3)])
    assert values(sent) == [0.0, 0.001]  # 0.001005 is 0.5 % above 0.001: within the band again


def test_absolute_band_is_a_floor_under_the_percent_band() -> None:
    band = Deadband(absolute=0.5, percent=1.0, max_silence_s=3600)
    sent = forwarded(
        band,
        [
            reading(0.0, 0),
            reading(0.3, 1),  # within the absolute floor
            reading(0.6, 2),
            reading(1000.0, 3),
            reading(1009.0, 4),  # 0.9 %: the percent band (10.0) is wider here
            reading(1010.5, 5),
        ],
    )
    assert values(sent) == [0.0, 0.6, 1000.0, 1010.5]


def test_deadband_keeps_points_apart_and_one_entry_each() -> None:
    band = Deadband(absolute=1.0, max_silence_s=60)
    sent = forwarded(
        band,
        [reading(float(i % 3), i, point=f"p{i % 2}", device=f"d{i % 5}") for i in range(100)],
    )
    assert len(band) == 10  # bounded: one entry per point key, however many readings
    assert {r.key for r in sent} == {f"d{d}/p{p}" for d in range(5) for p in range(2)}


def test_a_clock_set_back_does_not_silence_the_point() -> None:
    band = Deadband(absolute=1.0, max_silence_s=60)
    sent = forwarded(band, [reading(230.0, 3600), reading(230.0, 0), reading(230.0, 30), reading(230.0, 60)])
    assert [(r.ts - T0).total_seconds() for r in sent] == [3600, 0, 60]


def test_nan_always_counts_as_moved() -> None:
    band = Deadband(absolute=1.0, max_silence_s=60)
    sent = forwarded(band, [reading(230.0, 0), reading(math.nan, 1), reading(math.nan, 2), reading(230.0, 3)])
    assert len(sent) == 4


@pytest.mark.parametrize(
    "kwargs",
    [{"absolute": -1.0}, {"percent": math.nan}, {"max_silence_s": 0.0}, {"max_silence_s": math.inf}],
)
def test_deadband_rejects_settings_that_cannot_work(kwargs: dict[str, float]) -> None:
    settings = {"max_silence_s": 60.0} | kwargs
    with pytest.raises(ValueError, match="must be a finite number"):
        Deadband(**settings)


# Plausibility


def test_implausible_value_becomes_bad_and_keeps_the_number() -> None:
    check = Plausibility(0.0, 300.0)
    marked = check(reading(9999.0, 5))
    assert marked == Reading("meter", "v_l1", 9999.0, "V", BAD, T0 + timedelta(seconds=5))


def test_plausible_and_already_flagged_readings_pass_untouched() -> None:
    check = Plausibility(0.0, 300.0)
    for untouched in [
        reading(230.0),
        reading(0.0),  # the bounds are plausible
        reading(300.0),
        reading(9999.0, quality=BAD),
        reading(None, quality=BAD),
        reading(None, quality=Quality.UNAVAILABLE),
    ]:
        assert check(untouched) is untouched


def test_non_finite_values_become_bad_without_a_value() -> None:
    """The uplink's JSON cannot carry NaN or infinity; even a one-sided range rejects them."""
    check = Plausibility(low=0.0)
    for value in (math.nan, math.inf, -math.inf):
        marked = check(reading(value))
        assert marked is not None
        assert (marked.value, marked.quality) == (None, BAD)
    assert check(reading(1e12)) == reading(1e12)


def test_plausibility_rejects_an_empty_range() -> None:
    with pytest.raises(ValueError, match="empty"):
        Plausibility(300.0, 0.0)


# Pipeline


def test_steps_run_in_order_and_a_drop_ends_the_way() -> None:
    seen: list[float | None] = []

    def no_negatives(r: Reading) -> Reading | None:
        return None if r.value is not None and r.value < 0 else r

    def record(r: Reading) -> Reading:
        seen.append(r.value)
        return r

    pipeline = Pipeline([no_negatives, Plausibility(0.0, 300.0), record])
    out = pipeline([reading(-1.0), reading(230.0), reading(9999.0)])
    assert [(r.value, r.quality) for r in out] == [(230.0, GOOD), (9999.0, BAD)]
    assert seen == [230.0, 9999.0]  # the dropped reading never reached later steps
    stats = pipeline.statistics()
    assert (stats.received, stats.forwarded) == (3, 2)
    assert [(s.name, s.dropped, s.changed) for s in stats.steps] == [
        ("no_negatives", 1, 0),
        ("plausibility", 0, 1),
        ("record", 0, 0),
    ]


def test_statistics_count_what_the_deadband_held_back() -> None:
    pipeline = Pipeline([Deadband(absolute=1.0, max_silence_s=60)])
    for second in range(10):
        pipeline([reading(230.0, second), reading(float(second * 2), second, point="power")])
    stats = pipeline.statistics()
    assert (stats.received, stats.forwarded) == (20, 11)  # voltage once, power each time
    assert stats.dropped("deadband") == 9
    assert stats.dropped("plausibility") == 0


def test_an_empty_pipeline_passes_everything() -> None:
    batch = [reading(230.0), reading(230.0)]
    assert Pipeline()(batch) == batch


# Per-point pipelines


def test_a_per_point_pipeline_touches_only_its_points() -> None:
    voltage = PointFilters(plausible_low=0.0, plausible_high=300.0, deadband_abs=1.0, max_silence_s=60.0)
    pipeline = pipeline_for_points({"meter/v_l1": voltage})
    batches = [
        [
            reading(230.0 + 0.1 * t, t),
            reading(9999.0, t, point="current"),  # no filters: never marked, never held back
            reading(230.0, t, device="other-meter"),  # same point name, another device
        ]
        for t in range(5)
    ]
    out = [r for batch in batches for r in pipeline(batch)]
    assert [r.value for r in out if r.key == "meter/v_l1"] == [230.0]
    assert [r.quality for r in out if r.key == "meter/current"] == [GOOD] * 5
    assert len([r for r in out if r.key == "other-meter/v_l1"]) == 5
    assert pipeline.statistics().dropped("deadband") == 4


def test_a_point_with_only_max_silence_is_sent_whole() -> None:
    pipeline = pipeline_for_points({"meter/v_l1": PointFilters(plausible_high=300.0, max_silence_s=60.0)})
    assert len(pipeline([reading(230.0, t) for t in range(5)])) == 5


def test_an_implausible_spike_reaches_the_deadband_as_a_quality_change() -> None:
    """Plausibility runs first: the spike is forwarded as BAD, and so is the return to GOOD."""
    filters = PointFilters(plausible_low=0.0, plausible_high=300.0, deadband_abs=5.0)
    pipeline = pipeline_for_points({"meter/v_l1": filters})
    out = pipeline([reading(230.0, 0), reading(9999.0, 1), reading(231.0, 2), reading(232.0, 3)])
    assert [(r.value, r.quality) for r in out] == [(230.0, GOOD), (9999.0, BAD), (231.0, GOOD)]


def test_point_filters_build_only_the_steps_they_ask_for() -> None:
    assert PointFilters().plausibility() is None
    assert PointFilters().deadband() is None
    assert PointFilters(plausible_high=300.0).deadband() is None
    assert PointFilters(max_silence_s=10.0).deadband() is None  # every configured point has one
    both = PointFilters(deadband_abs=0.5, deadband_pct=1.0, max_silence_s=10.0).deadband()
    assert both is not None
    assert (both.absolute, both.percent, both.max_silence_s) == (0.5, 1.0, 10.0)
    default_silence = PointFilters(deadband_pct=2.0).deadband()
    assert default_silence is not None
    assert default_silence.max_silence_s == DEFAULT_MAX_SILENCE_S


@pytest.mark.parametrize(
    ("key", "filters", "message"),
    [
        ("v_l1", PointFilters(deadband_abs=1.0), "must be 'device/point'"),
        ("meter/v/l1", PointFilters(deadband_abs=1.0), "must be 'device/point'"),
        ("meter/v_l1", PointFilters(plausible_low=10.0, plausible_high=0.0), "empty"),
        ("meter/v_l1", PointFilters(deadband_pct=-1.0), "must be a finite number"),
    ],
)
def test_bad_point_filters_are_refused_naming_the_point(
    key: str, filters: PointFilters, message: str
) -> None:
    with pytest.raises(ValueError, match=message) as raised:
        pipeline_for_points({key: filters})
    assert repr(key) in str(raised.value)


# The promise to a receiver, for any sequence


@st.composite
def point_history(draw: st.DrawFn) -> tuple[list[Reading], int, int]:
    """Readings of one point at increasing timestamps (integer milliseconds), with the silence limit and
    the largest gap between input timestamps, in milliseconds."""
    silence_ms = draw(st.integers(1_000, 100_000))
    steps = draw(
        st.lists(
            st.tuples(
                st.integers(1, 50_000),
                st.sampled_from([GOOD, GOOD, GOOD, BAD, Quality.STALE, Quality.UNAVAILABLE]),
                st.one_of(st.integers(-3, 3).map(float), st.floats(-1e3, 1e3)),
                st.booleans(),  # whether a reading that is not GOOD still carries its (last, raw) value
            ),
            min_size=1,
            max_size=60,
        )
    )
    readings: list[Reading] = []
    t_ms = 0
    for gap_ms, quality, value, keeps_value in steps:
        t_ms += gap_ms
        ts = T0 + timedelta(milliseconds=t_ms)
        kept = value if quality is GOOD or keeps_value else None
        readings.append(Reading("meter", "p", kept, "W", quality, ts))
    max_gap_ms = max([step[0] for step in steps[1:]], default=0)
    return readings, silence_ms, max_gap_ms


@given(point_history(), st.floats(0.0, 10.0), st.one_of(st.none(), st.floats(0.0, 50.0)))
def test_no_silence_longer_than_the_limit_and_every_quality_change_forwarded(
    history: tuple[list[Reading], int, int], absolute: float, percent: float | None
) -> None:
    readings, silence_ms, max_gap_ms = history
    band = Deadband(absolute=absolute, percent=percent, max_silence_s=silence_ms / 1000)
    passed = [band(r) is not None for r in readings]
    sent = [r for r, ok in zip(readings, passed, strict=True) if ok]

    assert passed[0]
    limit = timedelta(milliseconds=silence_ms + max_gap_ms)
    assert all(later.ts - earlier.ts <= limit for earlier, later in itertools.pairwise(sent))
    assert readings[-1].ts - sent[-1].ts < timedelta(milliseconds=silence_ms)  # no silent tail either
    for (before, after), ok in zip(itertools.pairwise(readings), passed[1:], strict=True):
        if after.quality is not before.quality:
            assert ok, f"{before.quality} -> {after.quality} at {after.ts} was held back"
