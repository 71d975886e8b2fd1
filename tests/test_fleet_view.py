"""The fleet as `edge-agent fleet` shows it, fed message by message: births and deaths (json, compact and
Sparkplug), stale deaths, silent gateways, the last reading's age, the backlog, savings, takeovers, and
garbage that is counted and changes nothing."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from edge_agent.uplink.fleet_view import FleetView, GatewayRow
from edge_agent.uplink.sparkplug.metrics import node_birth, node_death
from edge_agent.uplink.sparkplug.proto import DataType, Payload

T0 = datetime(2026, 12, 7, 22, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def birth(gateway: str, bd_seq: int, **fields: Any) -> bytes:
    body = {
        "online": True,
        "gateway": gateway,
        "bdSeq": bd_seq,
        "contract": 2,
        "version": "0.1.0",
        "mqtt": "5",
        "connected_at": "2026-12-07T21:59:00.000Z",
        "backlog_last": 0,
        "dropped": 0,
        "last_dropped_seq": 0,
        "devices": [],
        "building_model": None,
        **fields,
    }
    return json.dumps(body).encode()


def death(gateway: str, bd_seq: int, **fields: Any) -> bytes:
    return json.dumps({"online": False, "gateway": gateway, "bdSeq": bd_seq, **fields}).encode()


def batch(gateway: str, first: int, last: int, newest: str, **fields: Any) -> bytes:
    readings = [
        {"seq": seq, "device": "m", "point": "p", "value": 1.0, "unit": "W", "quality": "good", "ts": newest}
        for seq in range(first, last + 1)
    ]
    readings[0]["ts"] = "2026-12-07T21:00:00.000Z"  # an older one first: the newest counts
    body = {
        "gateway": gateway,
        "seq_first": first,
        "seq_last": last,
        "historical": False,
        "backlog_last": 0,
        "sent_at": newest,
        "dropped": 0,
        "last_dropped_seq": 0,
        "readings": readings,
        **fields,
    }
    return json.dumps(body).encode()


def row(view: FleetView, gateway: str, now: datetime) -> GatewayRow:
    (found,) = [r for r in view.rows(now) if r.gateway == gateway]
    return found


def test_a_birth_shows_the_gateway_online_with_what_it_runs() -> None:
    view = FleetView("edge", T0)
    config = {"sha256": "9f" * 32, "version": "2026-12-07.1"}
    model = {"file": "policy.onnx", "sha256": "ab" * 32, "stage": "shadow"}
    view.feed("edge/library-gw/status", birth("library-gw", 12, config=config, control_model=model), at(1))
    library = row(view, "library-gw", at(2))
    assert (library.state, library.bd_seq, library.version, library.format) == ("online", 12, "0.1.0", "json")
    assert (library.config, library.control_model, library.takeover) == (config, model, None)
    assert library.connected_at == "2026-12-07T21:59:00.000Z"


def test_an_older_birth_without_the_new_fields_reads_as_unknown_and_later_fields_are_skipped() -> None:
    view = FleetView("edge", T0)
    view.feed("edge/gw/status", birth("gw", 3, future={"x": 1}, config="not an object", version=7), at(1))
    gw = row(view, "gw", at(1))
    assert gw.state == "online"
    assert (gw.config, gw.control_model, gw.takeover, gw.version) == (None, None, None, None)
    assert view.ignored.total() == 0


def test_a_death_takes_it_offline_and_a_stale_death_changes_nothing() -> None:
    view = FleetView("edge", T0)
    view.feed("edge/gw/status", birth("gw", 5), at(1))
    view.feed("edge/gw/status", death("gw", 4), at(2))  # the session before: its will came late
    assert row(view, "gw", at(3)).state == "online"
    view.feed("edge/gw/status", death("gw", 5), at(4))
    assert row(view, "gw", at(5)).state == "offline"
    assert row(view, "gw", at(5)).version == "0.1.0"  # still shown: what it ran last
    view.feed("edge/gw/status", birth("gw", 6), at(6))
    assert row(view, "gw", at(7)).state == "online"


def test_a_gateway_heard_nothing_from_for_long_is_silent_but_only_after_watching_that_long() -> None:
    view = FleetView("edge", T0, stale_after_s=60)
    view.feed("edge/gw/status", birth("gw", 1), at(0))
    assert row(view, "gw", at(59)).state == "online"
    assert row(view, "gw", at(61)).state == "silent"
    view.feed("edge/gw/readings", batch("gw", 1, 2, "2026-12-07T22:01:00.000Z"), at(61))
    assert row(view, "gw", at(62)).state == "online"
    # a retained birth from days ago, seen by a watcher that just started: not silent yet
    late = FleetView("edge", at(1000), stale_after_s=60)
    late.feed("edge/gw/status", birth("gw", 1), at(1000))
    assert row(late, "gw", at(1030)).state == "online"
    assert row(late, "gw", at(1061)).state == "silent"


def test_the_last_readings_age_is_the_newest_readings_in_every_format() -> None:
    view = FleetView("edge", T0)
    view.feed("edge/gw/readings", batch("gw", 1, 3, "2026-12-07T22:00:10.000Z"), at(11))
    assert row(view, "gw", at(40)).last_reading_age_s == 30.0
    assert row(view, "gw", at(40)).state == "unknown"  # data, but no birth seen
    compact = {"bdSeq": 1, "seq": 1, "last": 2, "seqs": None, "hist": False, "backlog": 0, "dropped": 0,
               "last_dropped": 0, "sent": 0, "t": int(at(100).timestamp() * 1000),
               "r": [[0, 0, 1.0], [1, 2500, None, "bad"]]}  # fmt: skip
    view.feed("edge/cgw/readings", json.dumps(compact).encode(), at(103))
    assert row(view, "cgw", at(112.5)).last_reading_age_s == 10.0
    assert row(view, "cgw", at(112.5)).format == "compact"
    data = Payload(timestamp=int(at(200).timestamp() * 1000))
    data.metrics.add(
        alias=1, timestamp=int(at(200).timestamp() * 1000), datatype=DataType.DOUBLE, double_value=2
    )
    view.feed("spBv1.0/edge-agent/DDATA/spgw/meter-1", data.SerializeToString(), at(201))
    assert row(view, "spgw", at(205)).last_reading_age_s == 5.0
    assert row(view, "spgw", at(205)).format == "sparkplug"
    # a gateway whose clock runs ahead: no negative age
    view.feed("edge/gw/readings", batch("gw", 4, 5, "2026-12-07T23:00:00.000Z"), at(300))
    assert row(view, "gw", at(301)).last_reading_age_s == 0.0


def test_the_backlog_counts_down_with_historical_batches_and_a_new_session_starts_over() -> None:
    view = FleetView("edge", T0)
    view.feed("edge/gw/status", birth("gw", 7, backlog_last=5000, dropped=3), at(0))
    assert (row(view, "gw", at(1)).backlog_last, row(view, "gw", at(1)).backlog_left) == (5000, None)
    view.feed(
        "edge/gw/readings", batch("gw", 5001, 5002, "2026-12-07T22:00:01.000Z", backlog_last=5000), at(1)
    )
    view.feed(
        "edge/gw/readings",
        batch("gw", 1, 500, "2026-12-07T20:00:00.000Z", historical=True, dropped=5, backlog_last=5000),
        at(2),
    )
    gw = row(view, "gw", at(3))
    assert (gw.backlog_left, gw.last_batch_historical, gw.dropped) == (4500, True, 5)
    view.feed(
        "edge/gw/readings",
        batch("gw", 4501, 5000, "2026-12-07T21:00:00.000Z", historical=True, backlog_last=5000),
        at(4),
    )
    assert row(view, "gw", at(5)).backlog_left == 0
    assert row(view, "gw", at(5)).last_reading_at == datetime(2026, 12, 7, 22, 0, 1, tzinfo=UTC)
    view.feed("edge/gw/status", birth("gw", 8, backlog_last=9000), at(6))
    assert (row(view, "gw", at(7)).backlog_last, row(view, "gw", at(7)).backlog_left) == (9000, None)


def test_the_newest_days_savings_report_is_shown_and_a_resent_older_day_does_not_replace_it() -> None:
    view = FleetView("edge", T0)

    def report(day: str, kwh: float) -> bytes:
        return json.dumps({"gateway": "gw", "day": day, "avoided": {"energy_kwh": kwh, "peak_kw": 21.4},
                           "uncertainty": {"within_noise": False}, "final": True}).encode()  # fmt: skip

    view.feed("edge/gw/savings", report("2026-12-06", 97.5), at(1))
    view.feed("edge/gw/savings", report("2026-12-05", 80.0), at(2))  # the ledger's last 7, after a restart
    saved = row(view, "gw", at(3)).savings
    assert saved is not None
    assert (saved.day, saved.avoided_kwh, saved.avoided_peak_kw, saved.within_noise) == (
        "2026-12-06",
        97.5,
        21.4,
        False,
    )
    view.feed("edge/gw/savings", report("2026-12-06", 99.0), at(4))  # the same day again: the latest wins
    assert row(view, "gw", at(5)).savings.avoided_kwh == 99.0  # type: ignore[union-attr]
    no_uncertainty = json.dumps({"day": "2026-12-07", "avoided": {"energy_kwh": 1.0}, "uncertainty": None})
    view.feed("edge/gw/savings", no_uncertainty.encode(), at(6))
    assert row(view, "gw", at(7)).savings.within_noise is None  # type: ignore[union-attr]


def test_a_takeover_in_the_birth_or_the_death_is_shown_and_a_clean_birth_clears_it() -> None:
    view = FleetView("edge", T0)
    takeover = {"count": 4, "last_at": "2026-12-07T21:58:00Z"}
    view.feed("edge/gw/status", birth("gw", 2, takeover=takeover), at(1))
    assert row(view, "gw", at(2)).takeover == takeover
    view.feed("edge/gw/status", birth("gw", 3, takeover=None), at(3))
    assert row(view, "gw", at(4)).takeover is None
    later = {"count": 5, "last_at": "2026-12-07T22:00:05Z"}
    view.feed("edge/gw/status", death("gw", 3, takeover=later), at(5))
    assert (row(view, "gw", at(6)).state, row(view, "gw", at(6)).takeover) == ("offline", later)
    assert view.snapshot(at(6))["gateways"][0]["takeover"] == later


def test_garbage_is_counted_by_reason_and_changes_nothing() -> None:
    view = FleetView("edge", T0)
    view.feed("edge/gw/status", birth("gw", 9), at(0))
    garbage = [
        ("edge/gw/status", b"\xff\xfe not utf-8"),
        ("edge/gw/status", b"[1, 2]"),
        ("edge/gw/status", b'{"online": "yes"}'),
        ("edge/gw/readings", b'{"gateway": "gw"}'),
        ("edge/gw/readings", b"{"),
        ("edge/gw/savings", b'{"avoided": {}}'),
        ("edge/gw/events", b'{"message": "no kind"}'),
        ("edge/gw/events", b""),
        ("spBv1.0/g/NBIRTH/gw", b"\xff\xff\xff\xff"),
    ]
    for topic, payload in garbage:
        view.feed(topic, payload, at(1))
    gw = row(view, "gw", at(2))
    assert (gw.state, gw.bd_seq, gw.ignored, gw.savings, gw.events) == ("online", 9, len(garbage), None, 0)
    assert view.ignored.total() == len(garbage)
    assert view.ignored["status: not JSON"] == 1
    assert view.snapshot(at(2))["ignored"]["total"] == len(garbage)
    # topics the fleet does not follow are not garbage: not counted, no gateway made up
    view.feed("edge/gw/reply", b"{}", at(3))
    view.feed("edge/other/command", b"garbage", at(3))
    view.feed("elsewhere/x/status", b"garbage", at(3))
    assert [r.gateway for r in view.rows(at(4))] == ["gw"]
    assert view.ignored.total() == len(garbage)


def test_events_are_counted_and_the_last_one_kept() -> None:
    view = FleetView("edge", T0)
    for kind in ("decision", "write"):
        event = {"gateway": "gw", "kind": kind, "at": "2026-08-05T05:12:00Z", "message": f"a {kind}"}
        view.feed("edge/gw/events", json.dumps(event).encode(), at(1))
    gw = row(view, "gw", at(2))
    assert gw.events == 2
    assert gw.last_event is not None
    assert (gw.last_event.kind, gw.last_event.message) == ("write", "a write")


def test_a_cleared_retained_status_removes_a_retired_gateway() -> None:
    view = FleetView("edge", T0)
    view.feed("edge/old/status", death("old", 3), at(0))
    view.feed("edge/new/status", birth("new", 1), at(0))
    view.feed("edge/old/status", b"", at(1))
    assert [r.gateway for r in view.rows(at(2))] == ["new"]


def test_a_compact_birth_and_a_prefix_with_levels() -> None:
    view = FleetView("city/north", T0)
    view.feed("city/north/gw-1/status", birth("gw-1", 4, format="compact", point_lists=[]), at(0))
    view.feed("edge/gw-2/status", birth("gw-2", 4), at(0))  # another prefix
    (only,) = view.rows(at(1))
    assert (only.gateway, only.format, only.state) == ("gw-1", "compact", "online")


def test_sparkplug_births_and_deaths_by_bdseq() -> None:
    view = FleetView("edge", T0)
    ms = int(T0.timestamp() * 1000)
    nbirth = node_birth(300, ms, takeovers=2)  # bdSeq 300 travels as 44 (mod 256)
    nbirth.metrics.add(name="Config/SHA256", datatype=DataType.STRING, string_value="c0ffee")
    nbirth.metrics.add(name="Properties/Version", datatype=DataType.STRING, string_value="0.2.0")
    view.feed("spBv1.0/edge-agent/NBIRTH/도서관-01", nbirth.SerializeToString(), at(0))
    gw = row(view, "도서관-01", at(1))
    assert (gw.state, gw.bd_seq, gw.format, gw.version) == ("online", 44, "sparkplug", "0.2.0")
    assert gw.config == {"sha256": "c0ffee"}
    assert gw.takeover == {"count": 2}  # the NBIRTH's Node Info/Takeovers
    view.feed("spBv1.0/edge-agent/NDEATH/도서관-01", node_death(299, ms), at(2))  # another session's
    assert row(view, "도서관-01", at(3)).state == "online"
    view.feed("spBv1.0/edge-agent/NDEATH/도서관-01", node_death(300, ms), at(4))
    assert row(view, "도서관-01", at(5)).state == "offline"
    # device births and STATE are not the node's status
    view.feed("spBv1.0/edge-agent/DBIRTH/도서관-01/meter", b"", at(6))
    view.feed("spBv1.0/STATE/central", b'{"online": true}', at(6))
    assert [r.gateway for r in view.rows(at(7))] == ["도서관-01"]
