"""Demand-response events as demand targets (no network: the VTN's side is tests/test_openadr_vtn.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from edge_agent.clock import WallClock
from edge_agent.config import ConfigError, parse_config
from edge_agent.config.openadr import OpenAdrConfig
from edge_agent.control.settings import ControlMode, ControlSettings
from edge_agent.demand_response.schedule import DemandResponse
from edge_agent.demand_response.signals import Levels, plan_event
from edge_agent.demand_response.ven import Ven
from edge_agent.errors import StartupError

T0 = datetime(2026, 8, 5, 5, 0, tzinfo=UTC)  # 14:00 in Seoul
FRACTIONS = Levels("fraction", (0.9, 0.8, 0.7))


def event(
    event_id: str = "ev-1",
    *,
    payloads: tuple[float, ...] = (2,),
    start: datetime = T0,
    minutes: int = 60,
    signal: tuple[str, str] = ("simple", "level"),
    status: str = "far",
    modification: int = 0,
    measurement: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An event as openleadr's client hands it over (its parsed oadrEvent)."""
    intervals = [
        {"dtstart": start + i * timedelta(minutes=minutes), "duration": timedelta(minutes=minutes), "uid": i,
         "signal_payload": float(p)}
        for i, p in enumerate(payloads)
    ]  # fmt: skip
    sig: dict[str, Any] = {"signal_name": signal[0], "signal_type": signal[1], "intervals": intervals}
    if measurement is not None:
        sig["measurement"] = measurement
    return {
        "event_descriptor": {
            "event_id": event_id,
            "modification_number": modification,
            "event_status": status,
        },
        "active_period": {"dtstart": start, "duration": timedelta(minutes=minutes * len(payloads))},
        "event_signals": [sig],
        "response_required": "always",
    }


class Site:
    def __init__(
        self, mode: ControlMode = ControlMode.ACTIVE, target: float | None = 500.0, configured: bool = True
    ) -> None:
        self.settings = ControlSettings(mode, target, (50.0, 2000.0))
        self.power_kw: float | None = 450.0
        self.sent: list[dict[str, Any]] = []
        self.response = DemandResponse(
            "gw",
            "https://vtn.example/OpenADR2/Simple/2.0b",
            self.settings,
            FRACTIONS,
            meter=lambda: self.power_kw,
            month_peak=lambda: 400.0,
            control_configured=configured,
            send_event=lambda payload: self.sent.append(json.loads(payload)),
        )

    def run(self, start: datetime, end: datetime, step_s: float = 60.0) -> None:
        at = start
        while at <= end:
            self.response.tick(at)
            at += timedelta(seconds=step_s)


# --- signals ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("signal", "payload", "measurement", "target"),
    [
        (("simple", "level"), 1, None, 360.0),  # 0.9 x the month's 400 kW peak
        (("simple", "level"), 3, None, 280.0),
        (("simple", "level"), 5, None, 280.0),  # above the configured levels: the most severe
        (("simple", "level"), 0, None, None),  # normal operation: no target
        (("LOAD_DISPATCH", "setpoint"), 330, None, 330.0),  # kW when the signal says no unit
        (("LOAD_DISPATCH", "setpoint"), 330_000, {"unit": "W", "scale": "none"}, 330.0),
        (("LOAD_DISPATCH", "delta"), 50, {"unit": "W", "scale": "k"}, 350.0),  # 50 kW below the peak
        (("LOAD_CONTROL", "x-loadControlCapacity"), 0.75, None, 300.0),
    ],
)
def test_signals_become_demand_targets(
    signal: tuple[str, str], payload: float, measurement: dict[str, Any] | None, target: float | None
) -> None:
    plan = plan_event(event(payloads=(payload,), signal=signal, measurement=measurement), FRACTIONS, 400.0)
    assert plan.refusal is None
    assert [w.target_kw for w in plan.windows] == [pytest.approx(target) if target else None]


def test_explicit_kilowatt_levels_need_no_peak() -> None:
    plan = plan_event(event(payloads=(1, 2)), Levels("kW", (450.0, 420.0)), None)
    assert [w.target_kw for w in plan.windows] == [450.0, 420.0]


def test_a_signal_not_followed_or_a_peak_not_known_is_a_refusal_that_says_so() -> None:
    price = plan_event(event(signal=("ELECTRICITY_PRICE", "price")), FRACTIONS, 400.0)
    assert price.refusal == "no signal this gateway follows (ELECTRICITY_PRICE/price)"
    assert (price.start, price.end) == (T0, T0 + timedelta(hours=1))  # its window still shown in status
    unknown = plan_event(event(), FRACTIONS, None)
    assert unknown.refusal == "SIMPLE level 2: this month's peak is not known yet"


# --- the target in time -------------------------------------------------------------------------------


def test_the_target_holds_for_the_window_only_and_the_previous_one_comes_back() -> None:
    site = Site()
    assert site.response.on_event(event(start=T0 + timedelta(hours=1))) == "optIn"
    site.run(T0, T0 + timedelta(minutes=59))
    assert site.settings.demand_target_kw == 500.0
    assert [e.state for e in site.response.status().events] == ["pending"]
    site.run(T0 + timedelta(hours=1), T0 + timedelta(minutes=119))
    assert site.settings.demand_target_kw == 320.0
    assert [e.state for e in site.response.status().events] == ["active"]
    site.run(T0 + timedelta(hours=2), T0 + timedelta(hours=2))
    assert site.settings.demand_target_kw == 500.0
    assert [e.state for e in site.response.status().events] == ["done"]
    kinds = {e["kind"] for e in site.sent}
    assert kinds == {"demand_response"}
    assert site.sent[-1]["message"] == "demand response over: target back to 500.0 kW"


def test_no_target_before_the_event_is_given_back_as_none() -> None:
    site = Site(target=None)
    site.response.on_event(event())
    site.run(T0, T0 + timedelta(minutes=30))
    assert site.settings.demand_target_kw == 320.0
    site.run(T0 + timedelta(hours=1), T0 + timedelta(hours=1))
    assert site.settings.demand_target_kw is None


def test_a_target_central_sets_during_the_event_wins_and_stays_after_it() -> None:
    site = Site()
    site.response.on_event(event())
    site.run(T0, T0 + timedelta(minutes=10))
    site.settings.demand_target_kw = 300.0  # set_demand_target from central
    site.run(T0 + timedelta(minutes=11), T0 + timedelta(hours=1))
    assert site.settings.demand_target_kw == 300.0
    assert site.sent[-1]["message"] == "demand response over: central's target kept"


def test_overlapping_events_hold_the_lowest_target_and_a_cancelled_one_lets_go() -> None:
    site = Site()
    site.response.on_event(event("a", payloads=(1,), minutes=60))  # 360 kW
    site.response.on_event(event("b", payloads=(3,), start=T0 + timedelta(minutes=15), minutes=30))  # 280
    site.run(T0, T0 + timedelta(minutes=10))
    assert site.settings.demand_target_kw == 360.0
    site.run(T0 + timedelta(minutes=15), T0 + timedelta(minutes=20))
    assert site.settings.demand_target_kw == 280.0
    site.response.on_event(event("b", payloads=(3,), start=T0 + timedelta(minutes=15), status="cancelled"))
    site.run(T0 + timedelta(minutes=21), T0 + timedelta(minutes=21))
    assert site.settings.demand_target_kw == 360.0


@pytest.mark.parametrize(
    ("mode", "configured", "payload", "reason"),
    [
        (ControlMode.OFF, True, 2, "control is off"),
        (ControlMode.SHADOW, True, 2, "control is in shadow mode: it decides but does not write"),
        (ControlMode.ACTIVE, False, 2, "no [control] points configured: nothing to shed with"),
    ],
)
def test_a_gateway_that_cannot_shed_opts_out_saying_why(
    mode: ControlMode, configured: bool, payload: float, reason: str
) -> None:
    site = Site(mode, configured=configured)
    assert site.response.on_event(event(payloads=(payload,))) == "optOut"
    site.run(T0, T0 + timedelta(minutes=30))
    assert site.settings.demand_target_kw == 500.0
    (status,) = site.response.status().events
    assert (status.opt, status.reason) == ("optOut", reason)
    assert site.sent[0]["reason"] == reason


def test_a_target_outside_the_limits_is_refused() -> None:
    site = Site()
    answer = site.response.on_event(event(signal=("LOAD_DISPATCH", "setpoint"), payloads=(20,)))
    assert answer == "optOut"
    (status,) = site.response.status().events
    assert status.reason == "target 20.0 kW is outside demand_target_limits_kw [50.0, 2000.0]"


def test_the_reduction_is_counted_against_the_hour_before_the_event() -> None:
    site = Site()
    site.response.on_event(event(start=T0 + timedelta(hours=1)))
    site.power_kw = 440.0
    site.run(T0, T0 + timedelta(minutes=59))  # four closed 15-minute intervals at 440 kW
    site.power_kw = 340.0
    site.run(T0 + timedelta(hours=1), T0 + timedelta(minutes=75))
    status = site.response.status()
    assert status.baseline_kw == pytest.approx(440.0)
    assert status.reduction_kw == pytest.approx(100.0, abs=1.0)
    site.run(T0 + timedelta(hours=2), T0 + timedelta(hours=2))
    assert site.response.status().reduction_kw is None  # no event, no reduction


# --- configuration ----------------------------------------------------------------------------------


def test_the_openadr_section_is_optional_and_read_as_written() -> None:
    assert parse_config("", "t.toml").openadr is None
    config = parse_config(
        '[openadr]\nvtn_url = "https://vtn.example/OpenADR2/Simple/2.0b"\n'
        'ven_name = "gw"\nlevel_kw = [400, 350]\n',
        "t.toml",
    )
    assert config.openadr is not None
    assert config.openadr.levels() == ("kW", (400.0, 350.0))


@pytest.mark.parametrize(
    ("lines", "problem"),
    [
        ('vtn_url = "ftp://vtn"', "openadr.vtn_url: expected https://HOST[:PORT]/PATH"),
        ('cert_file = "ven.pem"', "openadr: cert_file, key_file and ca_file go together"),
        (
            "level_fractions = [0.9]\nlevel_kw = [400.0]",
            "openadr: level_fractions and level_kw",
        ),
        (
            "level_fractions = [0.7, 0.9]",
            "openadr: level_fractions: a higher level",
        ),
        ("level_fractions = [1.5]", "openadr.level_fractions[0]: Input should be less than or equal to 1"),
    ],
)
def test_openadr_mistakes_name_the_key(lines: str, problem: str) -> None:
    text = '[openadr]\nvtn_url = "https://vtn.example/x"\nven_name = "gw"\n'
    if lines.startswith("vtn_url"):
        text = text.replace('vtn_url = "https://vtn.example/x"', lines)
    else:
        text += lines + "\n"
    with pytest.raises(ConfigError) as error:
        parse_config(text, "t.toml")
    assert any(p.startswith(problem) for p in error.value.problems), error.value.problems


def test_a_certificate_that_cannot_be_read_stops_the_agent_at_start_naming_it(tmp_path: Path) -> None:
    (tmp_path / "ven.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    config = OpenAdrConfig(
        vtn_url="https://vtn.example/OpenADR2/Simple/2.0b",
        ven_name="gw",
        cert_file=tmp_path / "ven.pem",
        key_file=tmp_path / "missing.key",
        ca_file=tmp_path / "ven.pem",
    )
    with pytest.raises(StartupError, match=r"\[openadr\] key_file: cannot read .*missing.key") as error:
        Ven(config, Site().response, WallClock())
    assert not error.value.restart_helps  # exit 2: an operator must fix it
