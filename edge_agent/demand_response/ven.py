"""The OpenADR 2.0b VEN (openleadr's client): registers with the utility's VTN, answers its events through
DemandResponse, offers a TELEMETRY_USAGE report of the building's 15-minute demand and of the reduction
against the pre-event baseline, and ticks the schedule on the agent's clock."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import warnings
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import structlog

from edge_agent.backoff import Backoff
from edge_agent.clock import Clock
from edge_agent.config.openadr import OpenAdrConfig
from edge_agent.demand_response.schedule import OPT_OUT, DemandResponse
from edge_agent.errors import StartupError

with warnings.catch_warnings():  # signxml names DSA keys in its type hints; cryptography deprecates DSA
    warnings.filterwarnings("ignore", "DSA is deprecated")
    from openleadr import OpenADRClient, objects

logging.getLogger("openleadr").setLevel(logging.WARNING)  # its INFO is every poll and report: noise here

log = structlog.get_logger("edge_agent.demand_response")

TICK_S = 1.0  # how often the schedule looks at the clock and the meter
REGISTRATION_CHECK_S = 5.0  # how often the registration is checked for a cancellation by the VTN
REPORT_ID = "edge-agent-demand"  # the report's specifier id: stable across restarts
DEMAND_RID, REDUCTION_RID = "demand_15min", "reduction"  # the report's data points (also its resources)
FASTEST, SLOWEST = timedelta(seconds=5), timedelta(minutes=15)  # the sampling rates the VTN may ask for


class Ven:
    def __init__(
        self, config: OpenAdrConfig, response: DemandResponse, clock: Clock, retry_s: float = 5.0
    ) -> None:
        self.config, self.response, self._clock = config, response, clock
        self._retry_s = retry_s  # the first retry's backoff; at most 300 s
        self.client: Any = None  # the openleadr client of the current registration
        for name in ("cert_file", "key_file", "ca_file"):  # an operator's mistake: said at start
            path = getattr(config, name)
            try:
                if path is not None:
                    path.read_bytes()
            except OSError as exc:
                message = f"[openadr] {name}: cannot read {path}: {exc.strerror or exc}"
                raise StartupError(message, restart_helps=False) from exc

    async def run(self) -> None:
        """Register (again after failures, with backoff) and tick the schedule until cancelled; on the way
        out the previous demand target is restored."""
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._ticking(), name="demand response clock")
                tasks.create_task(self._registered(), name="openadr ven")
        finally:
            self.response.restore()

    async def _ticking(self) -> None:
        while True:
            now = self._clock.now()
            try:
                self.response.tick(now)
                self.response.forget_done(now)
            except Exception as exc:  # logged: demand response must not stop the agent
                log.error("demand response: tick failed", error=repr(exc))  # noqa: TRY400
            await asyncio.sleep(TICK_S)

    async def _registered(self) -> None:
        backoff = Backoff(base_s=self._retry_s, cap_s=300.0)
        while True:
            client = None
            try:
                self.client = client = self._new_client()
                await client.run()  # registration, report registration, first poll; then its scheduler polls
                if client.registration_id:
                    self.response.registered = True
                    self._set_poll_interval(client)
                    log.info("openadr: registered", vtn=self.config.vtn_url, ven_id=client.ven_id)
                    backoff.reset()
                    while client.registration_id:  # noqa: ASYNC110 - openleadr sets no event; the VTN may cancel it
                        await asyncio.sleep(REGISTRATION_CHECK_S)
                    log.warning("openadr: the VTN cancelled the registration", vtn=self.config.vtn_url)
                else:
                    log.warning("openadr: the VTN did not register this gateway", vtn=self.config.vtn_url)
            except Exception as exc:  # a VTN's fault never stops the agent: retried
                log.error("openadr: registration failed", vtn=self.config.vtn_url, error=repr(exc))  # noqa: TRY400
            finally:
                self.response.registered = False
                if client is not None:
                    await _stop(client)
            await asyncio.sleep(backoff.next_delay())

    def _new_client(self) -> Any:
        config = self.config
        client = OpenADRClient(
            ven_name=config.ven_name,
            vtn_url=config.vtn_url,
            ven_id=config.ven_id,
            cert=None if config.cert_file is None else str(config.cert_file),
            key=None if config.key_file is None else str(config.key_file),
            ca_file=None if config.ca_file is None else str(config.ca_file),
            vtn_fingerprint=config.vtn_fingerprint,
            show_fingerprint=False,
            disable_signature=config.cert_file is None,
        )
        send_report = client.update_report

        async def update_report(report_request_id: str) -> None:
            if self.response.demand_kw() is None:  # nothing measured yet: an empty report, a VTN may refuse
                return
            await send_report(report_request_id)

        client.update_report = update_report  # what openleadr's report jobs call, looked up on the client
        client.add_handler("on_event", self._on_event)
        client.add_handler("on_update_event", self._on_event)
        values = {DEMAND_RID: self.response.demand_kw, REDUCTION_RID: self.response.reduction_kw}
        for r_id, value in values.items():
            client.add_report(
                callback=_report(value, self._clock),
                resource_id=r_id,
                r_id=r_id,
                report_specifier_id=REPORT_ID,
                measurement="RealPower",
                unit="W",
                scale="k",
                sampling_rate=objects.SamplingRate(min_period=FASTEST, max_period=SLOWEST, on_change=False),
                report_duration=SLOWEST,
            )
        return client

    async def _on_event(self, event: dict[str, Any]) -> str:
        self.response.tick(self._clock.now())  # the schedule up to date before the answer
        try:
            return self.response.on_event(event)
        except (KeyError, TypeError, ValueError) as exc:  # a malformed event: refuse it, say why
            log.warning("openadr: event not understood, opting out", error=repr(exc))
            return OPT_OUT

    def _set_poll_interval(self, client: Any) -> None:
        if self.config.poll_interval_s is None:
            return
        for job in client.scheduler.get_jobs():
            if job.func == client._poll:
                job.reschedule(trigger="interval", seconds=self.config.poll_interval_s)


def _report(value: Callable[[], float | None], clock: Clock) -> Callable[[], list[tuple[datetime, float]]]:
    """openleadr's report callback: [(when, kW)], or nothing while the value is unknown."""

    def read() -> list[tuple[datetime, float]]:
        kw = value()
        return [] if kw is None else [(clock.now(), round(kw, 3))]

    return read


async def _stop(client: Any) -> None:
    if client.client_session is None:  # never reached the network
        if client.scheduler.running:
            client.scheduler.shutdown(wait=False)
        return
    with contextlib.suppress(Exception):  # closing: nothing more to save
        await client.stop()
