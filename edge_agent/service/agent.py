"""The agent: one supervisor (a TaskGroup) owns every long-lived task.

    pollers ──readings──▶ ReadingPath (acquisition/path.py) ──▶ Buffer (SQLite) ──▶ Uplink (MQTT)
                                  └──▶ LatestValues ──▶ ControlLoop ──▶ Points ──▶ pollers

On stop, polling ends first, the queue is committed to the buffer, then the uplink is cancelled: nothing
accepted from a device is lost unreported. Readings the disk refuses (full) are dropped and counted by the
buffer; readings a stop cannot commit in time (a lock, an I/O error) are counted as dropped too and kept in
the buffer's ledger, so the next session's envelopes report them: the stop logs them at error and exits 0.
Only when even that count cannot be kept does the stop fail (ShutdownIncomplete, exit 1).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import asdict, dataclass, field

import structlog
from pydantic import JsonValue

from edge_agent import __version__
from edge_agent.acquisition.clock_guard import ClockStatistics, last_time_file
from edge_agent.acquisition.latest import LatestValues
from edge_agent.acquisition.path import QueueStatistics, ReadingPath
from edge_agent.acquisition.phases import start_offsets
from edge_agent.acquisition.pipeline import PointFilters
from edge_agent.acquisition.poller import ClientFactory, DevicePoller, PollerStatistics, Subscribe
from edge_agent.clock import Clock, WallClock
from edge_agent.config import AgentConfig, BacnetDevice, ModbusDevice, ModbusTcpDevice
from edge_agent.control.loop import ControlLoop, ControlStatus, HeldWrite
from edge_agent.control.model_rollout import ROLLOUT_FILE, RolloutFile
from edge_agent.control.peak_file import DEMAND_PEAK, PeakFile
from edge_agent.control.planner.history_file import PLANNER_HISTORY, HistoryFile
from edge_agent.control.recovery import Recovery
from edge_agent.control.savings.ledger import SAVINGS_LEDGER, SavingsLedger
from edge_agent.control.settings import ControlSettings
from edge_agent.demand_response.schedule import DemandResponseStatus
from edge_agent.errors import ShutdownIncomplete
from edge_agent.protocols.bacnet.app import BacnetApplication
from edge_agent.protocols.bacnet.client import BacnetClient, local_stack
from edge_agent.protocols.bacnet.cov import CovSubscriber, renewal_interval_s
from edge_agent.protocols.bacnet.discovery import foreign_device_stack
from edge_agent.protocols.base import ProtocolClient
from edge_agent.protocols.modbus.client import ModbusClient
from edge_agent.protocols.modbus.endpoint import endpoint_for
from edge_agent.protocols.modbus.link import Link, link_for
from edge_agent.service import bus_requests
from edge_agent.service.building_model import BuildingModelStatus, load_configured_building_model
from edge_agent.service.config_rollout import ConfigRollout, Health
from edge_agent.service.control_setup import agent_control_setup, control_settings
from edge_agent.service.demand_response_setup import demand_response_ven
from edge_agent.service.local_socket import serving, socket_path
from edge_agent.service.model_push import MODEL_STORE, ModelPush
from edge_agent.service.points import CentralWrites, DevicePoints
from edge_agent.service.sdnotify import Heartbeats, Notifier, keep_alive
from edge_agent.store.buffer import Buffer, BufferStatistics
from edge_agent.store.holds import HOLDS_JOURNAL, open_journal
from edge_agent.uplink.admission import CommandAdmission
from edge_agent.uplink.command_log import COMMAND_LOG
from edge_agent.uplink.commands import ApplyModelArgs, CommandRouter, Delivery
from edge_agent.uplink.payloads import (
    BuildingModelInfo,
    ConfigInfo,
    ControlModelInfo,
    device_infos,
    float32_points,
)
from edge_agent.uplink.session import OFFLINE_TIMEOUT_S, Uplink, UplinkStatistics
from edge_agent.uplink.sparkplug.node import SparkplugUplink

log = structlog.get_logger("edge_agent.service")

TICK_S = 1.0  # the event loop's own heartbeat (a stuck loop withholds systemd's watchdog)
COMMIT_WATCHDOG_INTERVALS = 4  # a buffer commit stuck this many watchdog intervals withholds it (60 s)
READY_WITHIN_S = 30.0  # READY=1 after every device's first poll, or this long at most
SHUTDOWN_STEP_S = 5.0  # bound on each shutdown stage: pollers stopping, the queue committing
OFFLINE_EVENTS_S = 2.0  # how long a stop waits for control's last events to reach the broker


@dataclass(frozen=True, slots=True)
class AgentStatus:
    gateway: str
    devices: list[PollerStatistics]
    queue: QueueStatistics
    buffer: BufferStatistics
    uplink: UplinkStatistics
    clock: ClockStatistics
    control: ControlStatus | ControlSettings  # the loop's status when [control] is configured
    demand_response: DemandResponseStatus | None = None  # with [openadr]: the VTN's events
    building_model: BuildingModelStatus | None = None  # [control] building_model, loaded or refused
    labels: dict[str, str] | None = None  # 'device/point' -> the point's label, for points that have one
    holds: list[HeldWrite] = field(default_factory=list)  # every write of ours still on a device


def point_labels(config: AgentConfig) -> dict[str, str]:
    """'device/point' -> label, for the points configured with one ("1층 열람실 온도")."""
    return {f"{d.name}/{p.name}": p.label for d in config.devices for p in d.points if p.label is not None}


def _subscribe(device: ModbusDevice | BacnetDevice) -> Subscribe | None:
    """COV for the BACnet points that ask for it."""
    if not isinstance(device, BacnetDevice) or not any(p.cov for p in device.points):
        return None
    names = [p.name for p in device.points if p.cov]

    def subscribe(client: ProtocolClient) -> CovSubscriber:
        if not isinstance(client, BacnetClient):
            raise TypeError(f"{device.name}: COV needs a BACnet client")
        return CovSubscriber(client, names, lifetime_s=device.cov_lifetime_s, confirmed=device.cov_confirmed)

    return subscribe


def _poll_intervals(config: AgentConfig) -> dict[str, float]:
    """'device/point' -> the shortest interval it is polled at; a COV point's value is confirmed at each
    renewal of its subscription instead (cov.py), however rarely it changes."""
    intervals: dict[str, float] = {}
    for poller in config.pollers:
        device = next(d for d in config.devices if d.name == poller.device)
        cov = {p.name for p in device.points if p.cov} if isinstance(device, BacnetDevice) else set()
        for name in poller.points or [p.name for p in device.points]:
            key = f"{device.name}/{name}"
            interval = poller.interval_s
            if name in cov and isinstance(device, BacnetDevice):
                interval = max(interval, renewal_interval_s(device.cov_lifetime_s))
            intervals[key] = min(intervals.get(key, interval), interval)
    return intervals


def _point_filters(config: AgentConfig) -> dict[str, PointFilters]:
    filters: dict[str, PointFilters] = {}
    for device in config.devices:
        for point in device.points:
            if point.plausible is None and point.deadband is None and point.deadband_pct is None:
                continue
            low, high = point.plausible or (None, None)
            filters[f"{device.name}/{point.name}"] = PointFilters(
                plausible_low=low,
                plausible_high=high,
                deadband_abs=point.deadband,
                deadband_pct=point.deadband_pct,
                max_silence_s=point.max_silence_s,
            )
    return filters


class Agent:
    def __init__(
        self, config: AgentConfig, clock: Clock | None = None, rollout: ConfigRollout | None = None
    ) -> None:
        self.config = config
        self.clock = clock or WallClock()
        self.rollout = rollout  # the configuration file's remote rollout (apply_config); None: built-in
        self.latest = LatestValues(_poll_intervals(config))
        self.buffer = Buffer(
            config.buffer.resolved_path(),
            cap_bytes=int(config.buffer.cap_mb * 1024 * 1024),
            durability=config.buffer.durability,
        )
        self.control = control_settings(config.control)
        self._admission = CommandAdmission(
            config.commands, config.buffer.resolved_path().parent / COMMAND_LOG
        )
        self._router = CommandRouter(self, admission=self._admission, config_push=rollout)
        self.building_model = load_configured_building_model(config)
        loaded = None if self.building_model is None else self.building_model.loaded
        uplink = SparkplugUplink if config.mqtt.format == "sparkplug" else Uplink
        self.uplink = uplink(
            config.mqtt,
            config.gateway.id,
            self.buffer,
            device_infos(config),
            self._delivery,
            building_model=None if loaded is None else BuildingModelInfo(**asdict(loaded)),
            float32=float32_points(config),
        )
        if isinstance(self.uplink, SparkplugUplink):
            self.uplink.latest = self.latest.get
        self.uplink.config_info = None if rollout is None else rollout.info()
        self._bacnet: BacnetApplication | None = None
        self._links: dict[str, Link] = {}  # shared by the units of one bus, RTU gateway or TCP endpoint
        self._heartbeats = Heartbeats()
        self._bus = bus_requests.BusRequests(config, self._links)  # technicians' requests on our buses
        self.path = ReadingPath(
            self.latest,
            self.buffer,
            _point_filters(config),
            lambda: self._heartbeats.working("buffer writer"),
            last_time_file(config.buffer.resolved_path()),
        )
        shortest: dict[str, float] = {}  # each polled device's shortest interval
        for poller in config.pollers:
            shortest[poller.device] = min(poller.interval_s, shortest.get(poller.device, poller.interval_s))
        intervals = [shortest.get(device.name) for device in config.devices]
        self.pollers = [
            DevicePoller(
                device,
                config.pollers,
                self._client_factory(device),
                self.path.accept,
                _subscribe(device),
                first_poll_s=offset,
                underway=self.path.underway,
            )
            for device, offset in zip(config.devices, start_offsets(intervals), strict=True)
        ]
        self._devices = devices = DevicePoints(self.latest, self.pollers)
        self.journal = open_journal(config.buffer.resolved_path().parent / HOLDS_JOURNAL)
        self.points = CentralWrites(devices, self.journal)  # central's write_point commands, journaled
        self.controller: ControlLoop | None = None
        if config.control.configured:
            self.controller = ControlLoop(
                config.gateway.id,
                agent_control_setup(config),
                self.control,
                devices,
                clock=self.clock,
                send_event=self.uplink.send_event,
                send_savings=self.uplink.send_savings,
                ledger=SavingsLedger(config.buffer.resolved_path().parent / SAVINGS_LEDGER),
                journal=self.journal,
                stored=devices.stored,
                peak_file=PeakFile(config.buffer.resolved_path().parent / DEMAND_PEAK),
                planner_file=HistoryFile(config.buffer.resolved_path().parent / PLANNER_HISTORY),
                rollout_file=RolloutFile(config.buffer.resolved_path().parent / ROLLOUT_FILE),
                model_store=config.buffer.resolved_path().parent / MODEL_STORE,
            )
            self.controller.on_model_change = self.rebirth  # the birth names the model and its stage
        self._models = ModelPush(self.controller, config.buffer.resolved_path().parent / MODEL_STORE)
        self.uplink.control_model = self._control_model
        self.ven = demand_response_ven(  # [openadr]: a utility's events set the demand target
            config,
            self.control,
            devices=devices,
            controller=self.controller,
            clock=self.clock,
            send_event=self.uplink.send_event,
        )

    def _client_factory(self, device: ModbusDevice | BacnetDevice) -> ClientFactory:
        if isinstance(device, BacnetDevice):
            return lambda: BacnetClient(
                device, self._bacnet_stack(), max_apdu=device.max_apdu, max_batch=device.max_batch
            )
        link = self._links.get(device.link)
        if link is None:
            link = endpoint_for(device) if isinstance(device, ModbusTcpDevice) else link_for(device)
            self._links[device.link] = link
        return lambda: ModbusClient(device, link)  # units on one bus, gateway or endpoint share its wire

    def _bacnet_stack(self) -> BacnetApplication:
        if self._bacnet is None:
            raise RuntimeError("the BACnet stack is not running")
        return self._bacnet

    def status(self) -> AgentStatus:
        control = self.control if self.controller is None else self.controller.status()
        if isinstance(control, ControlStatus):
            holds = control.writes
        else:  # no control loop: the journal still lists central's writes and a previous run's leftovers
            holds = [
                HeldWrite.of(h, "central" if h.owner == "central" else "recovered")
                for h in self.journal.holds()
            ]
        return AgentStatus(
            self.config.gateway.id,
            [p.statistics() for p in self.pollers],
            self.path.statistics(),
            self.buffer.statistics(),
            self.uplink.statistics(),
            self.path.clock_guard.statistics(),
            control,
            None if self.ven is None else self.ven.response.status(),
            self.building_model,
            point_labels(self.config),
            holds,
        )

    # --- what central commands act on (commands.CommandHandlers), besides config, control and points ---

    async def _command(self, payload: bytes) -> bytes:
        """The local socket's requests: central's commands, and a technician's `modbus_request`."""
        if bus_requests.COMMAND.encode() in payload:
            local = await self._bus.answer(payload)
            if local is not None:
                return local
        return (await self._router.handle(payload)).to_json()

    async def _delivery(self, delivery: Delivery) -> bytes:
        return (await self._router.handle_delivery(delivery)).to_json()

    def rebirth(self) -> None:
        self.uplink.request_rebirth()

    async def apply_model(self, args: ApplyModelArgs) -> dict[str, JsonValue]:
        return await self._models.apply(args)

    def _control_model(self) -> ControlModelInfo | None:
        stage = None if self.controller is None else self.controller.model_stage()
        return (
            None
            if stage is None
            else ControlModelInfo(file=stage.file, sha256=stage.sha256, stage=stage.stage)
        )

    def _config_named(self, info: ConfigInfo | None) -> None:
        """The running file got a version (apply_config of the same file): births say it from now on."""
        self.uplink.config_info = info
        self.uplink.request_rebirth()

    def _config_health(self) -> Health:
        """What a configuration on trial is judged on (config_rollout.py)."""
        devices = {
            s.device: None if s.polls else s.last_error or "no answer yet"
            for s in (p.statistics() for p in self.pollers)
        }
        return Health(devices, self.uplink.statistics().connects > 0)

    async def _open(self, resources: contextlib.AsyncExitStack) -> None:
        """Buffer, journals, links, BACnet stack and local socket, each closed by `resources`."""
        await resources.enter_async_context(self.buffer)
        resources.callback(self.journal.close)
        resources.callback(self._admission.close)
        for link in self._links.values():
            resources.callback(link.close)
        if any(isinstance(d, BacnetDevice) for d in self.config.devices):
            bacnet = self.config.bacnet
            stack = (
                local_stack(bacnet)
                if bacnet.bbmd is None
                else foreign_device_stack(bacnet, bacnet.bbmd, bacnet.bbmd_ttl_s)
            )
            self._bacnet = await resources.enter_async_context(stack)
            resources.callback(setattr, self, "_bacnet", None)
        await resources.enter_async_context(serving(socket_path(self.config), self._command))
        if self.controller is None:  # control's holds from a run when it was configured: given back
            devices = self._devices
            leftover = Recovery(self.journal, devices, lambda *_args, **_fields: None, devices.stored)
            if leftover.pending:
                resources.callback(asyncio.create_task(leftover.settle(), name="recovery").cancel)

    async def run(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set, then shut down without losing an accepted reading."""
        uncommitted = 0
        async with contextlib.AsyncExitStack() as resources:
            await self._open(resources)
            log.info(
                "agent started",
                version=__version__,
                gateway=self.config.gateway.id,
                devices=len(self.config.devices),
                buffer=str(self.buffer.path),
                buffered=self.buffer.statistics().depth,
            )
            if self.controller is not None:
                knobs = self.config.control.knobs()
                log.info(
                    "control knobs",
                    mode=self.config.control.mode,
                    has=[knob for knob, refs in knobs.items() if refs],
                    lacks=[knob for knob, refs in knobs.items() if not refs],
                )
            notifier, heartbeats = Notifier.from_environment(), self._heartbeats
            heartbeats.register("event loop", max_age_s=10 * TICK_S)
            watchdog_s = notifier.watchdog_interval_s or 15.0  # a disk that hangs: systemd restarts us
            heartbeats.register_work("buffer writer", COMMIT_WATCHDOG_INTERVALS * watchdog_s)
            async with asyncio.TaskGroup() as tasks:
                ticking = tasks.create_task(_tick(heartbeats), name="heartbeat")
                watchdog = tasks.create_task(keep_alive(notifier, heartbeats), name="watchdog")
                ready = tasks.create_task(self._ready(notifier), name="ready")
                uplink = tasks.create_task(self.uplink.run(), name="uplink")
                writer = tasks.create_task(self.path.write(), name="buffer writer")
                polls = [tasks.create_task(p.run(), name=f"poll {p.device.name}") for p in self.pollers]
                control = self.controller
                deciding = tasks.create_task(control.run(), name="control") if control else None
                responding = tasks.create_task(self.ven.run(), name="openadr") if self.ven else None
                if self.rollout is not None:  # ends by itself, at the latest soon after `stop`
                    judge = self.rollout.run(
                        self.config, stop, self.uplink.send_event, self._config_health, self._config_named
                    )
                    tasks.create_task(judge, name="config rollout")
                await stop.wait()
                if self.rollout is not None and self.rollout.restart_wanted:  # same pid: a reload to systemd
                    notifier.reloading("restarting on a new configuration: committing the buffer")
                else:
                    notifier.stopping("stopping: releasing writes, committing the buffer")
                for helper in (ticking, watchdog, ready):
                    helper.cancel()
                if responding is not None:
                    responding.cancel()  # demand response: the previous demand target back
                if control is not None and deciding is not None:  # release while the devices are connected
                    deciding.cancel()
                    await asyncio.wait([deciding], timeout=SHUTDOWN_STEP_S)
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(SHUTDOWN_STEP_S):
                            await control.stop()
                for task in polls:
                    task.cancel()
                if polls:  # a configuration may have no devices
                    await asyncio.wait(polls, timeout=SHUTDOWN_STEP_S)
                uncommitted = await self._commit_accepted(writer)
                self.path.clock_guard.save()  # the next start's floor
                await self.uplink.flush_events(OFFLINE_EVENTS_S)  # the releases' audit trail
                writer.cancel()
                await _cancelled(uplink)
            log.info("agent stopped", buffered=self.buffer.statistics().depth)
        if uncommitted:
            raise ShutdownIncomplete(uncommitted)  # a non-zero exit: the loss is reported, not hidden

    async def _commit_accepted(self, writer: asyncio.Task[None]) -> int:
        """At a stop: every accepted reading committed, unless the disk refuses for too long; then the writer
        is stopped and what it could not commit is counted as dropped. The readings lost and not even
        counted on disk (0 nearly always)."""
        try:
            async with asyncio.timeout(SHUTDOWN_STEP_S):
                await self.path.drain()
        except TimeoutError:
            writer.cancel()
            lost, kept = await self.path.abandon()
            log.error(  # noqa: TRY400 - the message says it all
                "shutdown: readings not committed: counted as dropped" if kept
                else "shutdown: readings not committed, lost, and the count could not be kept",
                readings=lost,
            )  # fmt: skip
            return 0 if kept else lost
        return 0

    async def _ready(self, notifier: Notifier) -> None:
        """READY=1 once every device has had its first poll (answered or not), or after READY_WITHIN_S."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(READY_WITHIN_S):
                while not all(s.polls or s.failures for s in (p.statistics() for p in self.pollers)):  # noqa: ASYNC110 - statistics are read, not awaited
                    await asyncio.sleep(0.1)
        notifier.ready(f"polling {len(self.pollers)} devices")


async def _cancelled(task: asyncio.Task[None], attempts: int = 5) -> None:
    """Cancel `task` until it ends. Python 3.11's asyncio.wait_for, under aiomqtt's connect, can swallow a
    cancellation that arrives as the connection completes; the session would then run on."""
    for _ in range(attempts):
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=OFFLINE_TIMEOUT_S + 1.0)  # room for the death message
        if done:
            return


async def _tick(heartbeats: Heartbeats) -> None:
    while True:
        heartbeats.beat("event loop")
        await asyncio.sleep(TICK_S)
