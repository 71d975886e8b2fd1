"""Demand response against openleadr's own VTN (OpenADRServer) on loopback: an event lowers the demand
target for its window and the previous one comes back after it; the gateway opts in (or out, saying why);
the 15-minute demand and the reduction against the pre-event baseline reach the VTN's report callback."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from openleadr import OpenADRServer
from openleadr.service.vtn_service import VTNService
from openleadr.utils import certificate_fingerprint
from rich.console import Console

from edge_agent.cli import local as cli_local
from edge_agent.clock import WallClock
from edge_agent.config import parse_config
from edge_agent.config.openadr import OpenAdrConfig
from edge_agent.control.settings import ControlMode, ControlSettings
from edge_agent.demand_response.schedule import DemandResponse
from edge_agent.demand_response.signals import Levels
from edge_agent.demand_response.ven import Ven
from edge_agent.service.local_socket import request, socket_path
from tests.openadr_pki import make_pki
from tests.support import Broker, async_wait_until, free_port, in_background, running_agent

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore::aiohttp.web_exceptions.NotAppKeyWarning"),  # openleadr's server
]

VEN_ID = "ven-gw-test"
PREFIX = "/OpenADR2/Simple/2.0b"


@dataclass
class Vtn:
    server: OpenADRServer
    url: str
    opts: list[tuple[str, str]] = field(default_factory=list)  # (event id, optIn/optOut)
    reports: dict[str, list[float]] = field(default_factory=dict)  # resource id -> values received

    def event(self, payload: float, starts_in_s: float, lasts_s: float) -> str:
        """A SIMPLE event for our VEN; its id."""
        start = datetime.now(UTC) + timedelta(seconds=starts_in_s)
        interval = {"dtstart": start, "duration": timedelta(seconds=lasts_s), "signal_payload": payload}

        def opted(ven_id: str, event_id: str, opt_type: str) -> None:
            self.opts.append((event_id, opt_type))

        event_id: str = self.server.add_event(
            ven_id=VEN_ID, signal_name="simple", signal_type="level", intervals=[interval], callback=opted
        )
        return event_id


def openleadr_vtn(port: int, **tls: Any) -> Vtn:
    """openleadr's VTN on loopback `port`, answering as a utility's would; started by the caller. `tls`:
    the server's certificate arguments."""
    server = OpenADRServer(
        vtn_id="TEST_VTN",
        http_host="127.0.0.1",
        http_port=port,
        http_path_prefix=PREFIX,
        requested_poll_freq=timedelta(seconds=1),
        show_fingerprint=False,
        **tls,
    )
    scheme = "https" if tls else "http"
    running = Vtn(server, f"{scheme}://127.0.0.1:{port}{PREFIX}")

    async def on_create_party_registration(info: dict[str, Any]) -> tuple[str, str]:
        return VEN_ID, "registration-1"

    async def on_register_report(  # openleadr's "compact" form: it calls with these names
        *,
        ven_id: str,
        resource_id: str,
        measurement: str,
        unit: str,
        scale: str,
        min_sampling_interval: timedelta,
        max_sampling_interval: timedelta,
    ) -> tuple[Callable[[list[tuple[datetime, float]]], None], timedelta]:
        def received(values: list[tuple[datetime, float]]) -> None:
            running.reports.setdefault(resource_id, []).extend(v for _, v in values)

        return received, min_sampling_interval

    server.add_handler("on_create_party_registration", on_create_party_registration)
    server.add_handler("on_register_report", on_register_report)
    return running


@pytest.fixture
async def vtn() -> AsyncIterator[Vtn]:
    running = openleadr_vtn(free_port())
    await running.server.run()
    try:
        yield running
    finally:
        await running.server.stop()


@dataclass
class Site:
    """The slice of the agent demand response talks to: control's settings, a meter, what central hears."""

    settings: ControlSettings
    power_kw: float = 450.0
    sent: list[dict[str, Any]] = field(default_factory=list)

    def response(self, vtn_url: str, month_peak_kw: float = 400.0, retry_s: float = 5.0, **tls: Any) -> Ven:
        config = OpenAdrConfig(vtn_url=vtn_url, ven_name="gw-test", level_fractions=[0.9, 0.8, 0.7], **tls)
        kind, targets = config.levels()
        response = DemandResponse(
            "gw-test",
            vtn_url,
            self.settings,
            Levels(kind, targets),
            meter=lambda: self.power_kw,
            month_peak=lambda: month_peak_kw,
            control_configured=True,
            send_event=lambda payload: self.sent.append(json.loads(payload)),
        )
        return Ven(config, response, WallClock(), retry_s)


def _state(ven: Ven, event_id: str) -> str | None:
    return next((e.state for e in ven.response.status().events if e.event_id == event_id), None)


async def test_an_event_lowers_the_target_for_its_window_and_the_reduction_reaches_the_vtn(vtn: Vtn) -> None:
    site = Site(ControlSettings(ControlMode.ACTIVE, 500.0, (1.0, 100_000.0)))
    ven = site.response(vtn.url, month_peak_kw=400.0)
    async with in_background(ven.run()):
        await async_wait_until(lambda: ven.response.registered, 20, "the VTN to register the gateway")
        event_id = vtn.event(payload=2, starts_in_s=4, lasts_s=12)  # level 2: 0.8 x this month's 400 kW peak

        await async_wait_until(lambda: bool(vtn.opts), 10, "the gateway's answer to the event")
        assert vtn.opts == [(event_id, "optIn")]
        if _state(ven, event_id) == "pending":  # answered before its window: the old target holds
            assert site.settings.demand_target_kw == 500.0

        await async_wait_until(lambda: site.settings.demand_target_kw == 320.0, 15, "the event's target")
        assert _state(ven, event_id) == "active"
        site.power_kw = 300.0  # the building sheds

        def reduced() -> bool:
            return any(value > 0 for value in vtn.reports.get("reduction", []))

        await async_wait_until(reduced, 20, "a positive reduction in the VTN's reports")
        assert all(0 < value <= 450.0 for value in vtn.reports["demand_15min"])

        await async_wait_until(lambda: site.settings.demand_target_kw == 500.0, 20, "the target back")
        assert _state(ven, event_id) == "done"
    messages = [e["message"] for e in site.sent if e["kind"] == "demand_response"]
    assert any("optIn" in m for m in messages), messages
    assert any("target back to 500.0 kW" in m for m in messages), messages


async def test_with_control_off_the_gateway_opts_out_and_keeps_its_target(vtn: Vtn) -> None:
    site = Site(ControlSettings(ControlMode.OFF, 500.0, (1.0, 100_000.0)))
    ven = site.response(vtn.url)
    async with in_background(ven.run()):
        await async_wait_until(lambda: ven.response.registered, 20, "the VTN to register the gateway")
        event_id = vtn.event(payload=3, starts_in_s=1, lasts_s=3)

        await async_wait_until(lambda: bool(vtn.opts), 10, "the gateway's answer to the event")
        assert vtn.opts == [(event_id, "optOut")]
        await async_wait_until(lambda: _state(ven, event_id) == "done", 15, "the event's window to pass")
        assert site.settings.demand_target_kw == 500.0
        (event,) = ven.response.status().events
        assert event.opt == "optOut"
        assert event.reason == "control is off"
    assert any(e.get("reason") == "control is off" for e in site.sent), site.sent


async def test_the_agent_answers_the_vtn_shows_the_event_and_tells_central(
    vtn: Vtn, broker: Broker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The whole agent with [openadr] but no [control] points: it registers, opts out saying why, `status`
    lists the event with the reason, and central hears it on `.../events`. With no meter it sends the VTN
    no (empty) report, which openleadr's VTN would fail on."""
    config = parse_config(
        f'[gateway]\nid = "gw-dr"\nsocket = "{tmp_path}/agent.sock"\n'
        f'[buffer]\npath = "{tmp_path}/buffer.db"\n'
        f'[mqtt]\nurl = "{broker.url}"\n'
        f'[openadr]\nvtn_url = "{vtn.url}"\nven_name = "gw-dr"\n',
        "agent.toml",
    )
    events: list[dict[str, Any]] = []
    async with aiomqtt.Client("127.0.0.1", broker.port, identifier="central") as central:
        await central.subscribe("edge/gw-dr/events", qos=1)

        async def collect() -> None:
            async for message in central.messages:
                assert isinstance(message.payload, bytes)
                events.append(json.loads(message.payload))

        async with in_background(collect()), running_agent(config) as agent:
            assert agent.ven is not None
            ven = agent.ven
            await async_wait_until(lambda: ven.response.registered, 20, "the VTN to register the agent")
            event_id = vtn.event(payload=1, starts_in_s=60, lasts_s=60)
            await async_wait_until(lambda: bool(vtn.opts), 10, "the agent's answer to the event")
            assert vtn.opts == [(event_id, "optOut")]

            ask = b'{"id": "t", "command": "status", "args": {}}'
            reply = json.loads(await request(socket_path(config), ask, 10))
            printed = StringIO()
            console = Console(file=printed, width=300, markup=False)
            cli_local._print_status(reply["result"], datetime.now(UTC), console)
            assert f"event {event_id}: pending" in printed.getvalue()
            assert "optOut (no [control] points configured: nothing to shed with)" in printed.getvalue()

            def told() -> bool:
                return any(e["kind"] == "demand_response" and event_id in e["message"] for e in events)

            await async_wait_until(told, 10, "central to hear of the event")
            await asyncio.sleep(6)  # a report period (5 s) passes
    assert vtn.reports == {}
    openleadr = [r for r in caplog.records if r.name == "openleadr"]
    assert not [r.getMessage() for r in openleadr if r.levelno >= logging.ERROR]


async def test_a_vtn_away_at_start_is_retried_until_it_registers_the_gateway() -> None:
    port = free_port()
    site = Site(ControlSettings(ControlMode.ACTIVE, 500.0, (1.0, 100_000.0)))
    late = openleadr_vtn(port)
    ven = site.response(late.url, retry_s=0.5)
    async with in_background(ven.run()) as running:
        await async_wait_until(lambda: ven.client is not None, 10, "a first registration attempt")
        await asyncio.sleep(1.0)  # nobody listens: attempts fail, the task carries on
        assert not running.done()
        assert not ven.response.registered
        await late.server.run()
        try:
            await async_wait_until(lambda: ven.response.registered, 30, "registration once the VTN is up")
        finally:
            await late.server.stop()


async def test_over_tls_with_signed_messages_the_gateway_registers_and_opts_in(tmp_path: Path) -> None:
    """cert_file, key_file, ca_file and vtn_fingerprint as a utility's VTN wants them: mutual TLS, and every
    message signed (the VTN checks the gateway's fingerprint; the gateway checks the VTN's)."""
    pki = make_pki(tmp_path)
    ven_fingerprint = certificate_fingerprint(pki.ven_cert.read_text())

    def ven_lookup(ven_id: str) -> dict[str, str]:
        return {"ven_id": ven_id, "ven_name": "gw-test", "fingerprint": ven_fingerprint,
                "registration_id": "registration-1"}  # fmt: skip

    vtn = openleadr_vtn(
        free_port(),
        cert=str(pki.vtn_cert),
        key=str(pki.vtn_key),
        http_cert=str(pki.vtn_cert),
        http_key=str(pki.vtn_key),
        http_ca_file=str(pki.ca),
        ven_lookup=ven_lookup,
    )
    site = Site(ControlSettings(ControlMode.ACTIVE, 500.0, (1.0, 100_000.0)))
    ven = site.response(
        vtn.url,
        cert_file=pki.ven_cert,
        key_file=pki.ven_key,
        ca_file=pki.ca,
        vtn_fingerprint=certificate_fingerprint(pki.vtn_cert.read_text()),
    )
    await vtn.server.run()
    try:
        async with in_background(ven.run()):
            await async_wait_until(lambda: ven.response.registered, 20, "the VTN to register the gateway")
            event_id = vtn.event(payload=1, starts_in_s=60, lasts_s=60)
            await async_wait_until(lambda: bool(vtn.opts), 10, "the gateway's answer to the event")
            assert vtn.opts == [(event_id, "optIn")]
            await async_wait_until(lambda: bool(vtn.reports.get("demand_15min")), 15, "a report at the VTN")
    finally:
        await vtn.server.stop()
        with contextlib.suppress(AttributeError):  # openleadr keeps the lookup on a class: not for the next
            del VTNService.ven_lookup
