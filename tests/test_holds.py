"""The write journal (issue 17): every write of ours is on the disk before the device sees it, and a start
after a crash gives back what is still ours: a BACnet slot with our value relinquished, a Modbus register
with our value restored, and a point someone else has changed since left alone."""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import structlog
from rich.console import Console

from edge_agent.acquisition.latest import LatestValues
from edge_agent.acquisition.poller import DevicePoller
from edge_agent.cli.local import _print_control
from edge_agent.clock import ManualClock
from edge_agent.config import AgentConfig
from edge_agent.control.actuator import Actuator
from edge_agent.control.holds import Hold
from edge_agent.control.loop import ControlLoop
from edge_agent.control.points import Holder
from edge_agent.control.recovery import Recovery
from edge_agent.errors import DeviceUnreachable, StartupError
from edge_agent.readings import Quality, Reading, utc_now
from edge_agent.service.control_setup import control_settings, control_setup
from edge_agent.service.points import CentralWrites, DevicePoints
from edge_agent.store.holds import HoldFile, open_journal
from tests.one_zone import ALWAYS_OPEN, one_zone_control

SINCE = datetime(2026, 8, 5, 5, 0, tzinfo=UTC)


def real(value: float) -> float:
    """What a BACnet REAL keeps of a value."""
    return float(struct.unpack("<f", struct.pack("<f", value))[0])


@dataclass
class Devices:
    """The loop's Points over a toy plant: BACnet priority arrays and Modbus registers that take writes,
    devices that can be down, and the journal file as it was at the moment of each write."""

    arrays: dict[str, list[float | None]] = field(default_factory=dict)
    registers: dict[str, float] = field(default_factory=dict)
    values: LatestValues = field(default_factory=lambda: LatestValues({}))
    down: set[str] = field(default_factory=set)
    unanswered: set[str] = field(default_factory=set)  # devices that take a write and never say so
    journal: Path | None = None
    writes: list[tuple[str, float | None, int | None]] = field(default_factory=list)
    journaled: list[list[Hold]] = field(default_factory=list)

    def latest(self, ref: str) -> Reading | None:
        if ref in self.registers:
            device, point = ref.split("/")
            return Reading(device, point, self.registers[ref], "", Quality.GOOD, utc_now())
        return self.values.get(ref)

    async def write(self, ref: str, value: float | None, priority: int | None) -> None:
        self._reachable(ref)
        if self.journal is not None:
            self.journaled.append(HoldFile(self.journal).load())  # read afresh, as after a kill
        self.writes.append((ref, value, priority))
        if ref in self.arrays and priority is not None:
            self.arrays[ref][priority - 1] = None if value is None else real(value)
        elif value is not None:
            self.registers[ref] = value
        if ref.split("/", maxsplit=1)[0] in self.unanswered:
            raise DeviceUnreachable(ref, "", "no answer", "timeout")

    async def holder(self, ref: str) -> Holder:
        self._reachable(ref)
        if ref not in self.arrays:
            return Holder(False)
        slots = self.arrays[ref]
        active = next((i + 1 for i, slot in enumerate(slots) if slot is not None), None)
        return Holder(True, active, tuple(slots))

    def _reachable(self, ref: str) -> None:
        device = ref.split("/", maxsplit=1)[0]
        if device in self.down:
            raise DeviceUnreachable(device, ref, "not connected", "not connected")


def free() -> list[float | None]:
    return [None] * 16


def held_at(priority: int, value: float) -> list[float | None]:
    slots = free()
    slots[priority - 1] = real(value)
    return slots


def hold(point: str, value: float, *, priority: int | None = 10, **fields: float | None) -> Hold:
    return Hold(
        point,
        priority,
        value,
        previous=fields.get("previous"),
        restore=fields.get("restore"),
        since=SINCE,
        lease_until=SINCE + timedelta(minutes=5),
    )


async def journal_with(tmp_path: Path, *holds: Hold) -> HoldFile:
    journal = HoldFile(tmp_path / "holds.db")
    for each in holds:
        await journal.record(each)
    journal.close()
    return HoldFile(tmp_path / "holds.db")  # as the next start opens it


def recorder(events: list[dict[str, object]]) -> Callable[..., None]:
    def emit(kind: str, message: str, **fields: object) -> None:
        events.append({"kind": kind, "message": message, **fields})

    return emit


# --- while running: written down first, taken out once the device gave it back ---------------------------


async def test_a_write_is_on_the_disk_before_the_device_sees_it_and_gone_once_released(
    tmp_path: Path,
) -> None:
    devices = Devices(arrays={"vav/cooling_setpoint": free()}, journal=tmp_path / "holds.db")
    journal = HoldFile(tmp_path / "holds.db")
    events: list[dict[str, object]] = []
    actuator = Actuator(devices, recorder(events), priority=10, lease_s=300, journal=journal)
    await actuator.apply({"vav/cooling_setpoint": 27.0})
    assert devices.writes == [("vav/cooling_setpoint", 27.0, 10)]
    assert journal._connection is not None
    assert journal._connection.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL: synced on commit
    [on_disk] = devices.journaled[0]  # what a kill -9 during the write would have left
    assert (on_disk.point, on_disk.priority, on_disk.value, on_disk.owner) == (
        "vav/cooling_setpoint",
        10,
        27.0,
        "control",
    )
    assert on_disk.lease_until is not None
    assert on_disk.lease_until - on_disk.since == timedelta(seconds=300)

    await actuator.apply({"vav/cooling_setpoint": 27.5})  # a change: the old value is still ours meanwhile
    changing = devices.journaled[1][0]
    assert (changing.value, changing.previous, changing.since) == (27.5, 27.0, on_disk.since)

    await actuator.apply({"vav/cooling_setpoint": None})
    assert devices.arrays["vav/cooling_setpoint"] == free()
    assert HoldFile(tmp_path / "holds.db").load() == []


async def test_a_write_the_journal_cannot_record_is_not_sent(tmp_path: Path) -> None:
    devices = Devices(arrays={"vav/cooling_setpoint": free()})
    journal = HoldFile(tmp_path / "gone" / "holds.db")  # its directory is missing: nothing can be written
    events: list[dict[str, object]] = []
    actuator = Actuator(devices, recorder(events), journal=journal)
    await actuator.apply({"vav/cooling_setpoint": 27.0})
    assert devices.writes == []
    assert actuator.held == {}
    [error] = [e for e in events if e["kind"] == "error"]
    assert "not sent" in str(error["message"])
    assert "holds.db" in str(error["reason"])


async def test_a_release_the_device_did_not_take_stays_in_the_journal(tmp_path: Path) -> None:
    devices = Devices(registers={"valve/position": 10.0})
    journal = HoldFile(tmp_path / "holds.db")
    actuator = Actuator(devices, recorder([]), journal=journal)
    await actuator.apply({"valve/position": 77.0})
    devices.down.add("valve")
    assert not await actuator.release("valve/position", "test")
    [left] = HoldFile(tmp_path / "holds.db").load()
    assert (left.value, left.restore, left.priority) == (77.0, 10.0, None)
    devices.down.clear()
    assert await actuator.release("valve/position", "test")
    assert devices.registers["valve/position"] == 10.0
    assert HoldFile(tmp_path / "holds.db").load() == []


async def test_a_write_that_got_no_answer_is_still_given_back(tmp_path: Path) -> None:
    """It may have arrived: control treats it as held, writes it again, and releases it like any other."""
    devices = Devices(arrays={"vav/cooling_setpoint": free()}, unanswered={"vav"})
    journal = HoldFile(tmp_path / "holds.db")
    actuator = Actuator(devices, recorder([]), journal=journal)
    await actuator.apply({"vav/cooling_setpoint": 27.0})
    assert devices.arrays["vav/cooling_setpoint"] == held_at(10, 27.0)
    await actuator.apply({"vav/cooling_setpoint": 27.0})
    assert len(devices.writes) == 2  # not taken for confirmed: written again
    devices.unanswered.clear()
    await actuator.apply({"vav/cooling_setpoint": None})
    assert devices.arrays["vav/cooling_setpoint"] == free()
    assert HoldFile(tmp_path / "holds.db").load() == []


# --- the next start: what is still ours is given back, what someone else changed is left alone ----------


async def test_the_next_start_relinquishes_a_bacnet_slot_that_still_has_our_value(tmp_path: Path) -> None:
    devices = Devices(arrays={"vav/cooling_setpoint": held_at(10, 26.7)})
    events: list[dict[str, object]] = []
    journal = await journal_with(tmp_path, hold("vav/cooling_setpoint", 26.7))
    journal.load()
    recovery = Recovery(journal, devices, recorder(events), lambda _ref, value: real(value))
    await recovery.attempt()
    assert devices.writes == [("vav/cooling_setpoint", None, 10)]
    assert devices.arrays["vav/cooling_setpoint"] == free()
    assert recovery.pending == []
    assert HoldFile(tmp_path / "holds.db").load() == []
    assert [e["kind"] for e in events] == ["release"]


async def test_a_change_in_flight_when_killed_is_ours_either_way(tmp_path: Path) -> None:
    """Killed after the journal took 28 and before the device did: the slot still shows our 27."""
    devices = Devices(arrays={"vav/cooling_setpoint": held_at(10, 27.0)})
    journal = await journal_with(tmp_path, hold("vav/cooling_setpoint", 28.0, previous=27.0))
    journal.load()
    await Recovery(journal, devices, recorder([])).attempt()
    assert devices.arrays["vav/cooling_setpoint"] == free()


async def test_a_bacnet_slot_someone_else_changed_is_left_alone_and_logged(tmp_path: Path) -> None:
    slots = held_at(10, 24.0)  # another writer at our priority since the crash
    slots[7] = 25.5  # and an operator at 8
    devices = Devices(arrays={"vav/cooling_setpoint": list(slots)})
    events: list[dict[str, object]] = []
    journal = await journal_with(tmp_path, hold("vav/cooling_setpoint", 26.7))
    journal.load()
    with structlog.testing.capture_logs() as logs:
        await Recovery(journal, devices, recorder(events)).attempt()
    assert devices.writes == []
    assert devices.arrays["vav/cooling_setpoint"] == slots
    [line] = [line for line in logs if "left alone" in str(line["event"])]
    assert line["point"] == "vav/cooling_setpoint"
    assert line["found"] == real(24.0)
    assert [e["kind"] for e in events] == ["operator"]
    assert HoldFile(tmp_path / "holds.db").load() == []  # no longer ours to track


async def test_the_next_start_restores_a_modbus_register_that_still_reads_our_value(tmp_path: Path) -> None:
    devices = Devices(registers={"valve/position": 77.0})
    events: list[dict[str, object]] = []
    journal = await journal_with(tmp_path, hold("valve/position", 77.0, priority=None, restore=10.0))
    journal.load()
    await Recovery(journal, devices, recorder(events)).attempt()
    assert devices.writes == [("valve/position", 10.0, None)]
    assert devices.registers["valve/position"] == 10.0
    assert HoldFile(tmp_path / "holds.db").load() == []
    assert events[0]["kind"] == "release"
    assert events[0]["value"] == 10.0


async def test_a_modbus_register_someone_else_changed_is_left_alone(tmp_path: Path) -> None:
    devices = Devices(registers={"valve/position": 42.0})
    events: list[dict[str, object]] = []
    journal = await journal_with(tmp_path, hold("valve/position", 77.0, priority=None, restore=10.0))
    journal.load()
    with structlog.testing.capture_logs() as logs:
        await Recovery(journal, devices, recorder(events)).attempt()
    assert devices.writes == []
    assert devices.registers["valve/position"] == 42.0
    assert any("left alone" in str(line["event"]) for line in logs)
    assert [e["kind"] for e in events] == ["operator"]


async def test_a_modbus_register_is_judged_at_its_resolution(tmp_path: Path) -> None:
    """A register scaled by 0.1 keeps 22.4 of the 22.37 written: still ours."""
    config = AgentConfig.model_validate(
        {
            "devices": [
                {
                    "name": "ahu",
                    "protocol": "modbus-tcp",
                    "host": "127.0.0.1",
                    "points": [
                        {
                            "name": "sat",
                            "table": "holding",
                            "address": 1,
                            "type": "uint16",
                            "scale": 0.1,
                            "write_range": [10, 30],
                        }
                    ],
                }
            ]
        }
    )
    [device] = config.devices
    poller = DevicePoller(device, config.pollers, lambda: None, lambda _r: None)  # type: ignore[arg-type, return-value]
    stored = DevicePoints(LatestValues({}), [poller]).stored
    assert stored("ahu/sat", 22.37) == pytest.approx(22.4)
    devices = Devices(registers={"ahu/sat": 22.4})
    journal = await journal_with(tmp_path, hold("ahu/sat", 22.37, priority=None, restore=18.0))
    journal.load()
    await Recovery(journal, devices, recorder([]), stored).attempt()
    assert devices.registers["ahu/sat"] == 18.0


async def test_a_hold_whose_device_is_down_waits_and_is_given_back_when_it_answers(tmp_path: Path) -> None:
    devices = Devices(arrays={"plant/demand_limit": held_at(10, 60.0)}, down={"plant"})
    journal = await journal_with(tmp_path, hold("plant/demand_limit", 60.0))
    journal.load()
    recovery = Recovery(journal, devices, recorder([]))
    await recovery.attempt()
    await recovery.attempt()
    assert recovery.points() == {"plant/demand_limit"}
    assert len(HoldFile(tmp_path / "holds.db").load()) == 1
    devices.down.clear()
    await recovery.attempt()
    assert recovery.points() == set()
    assert devices.arrays["plant/demand_limit"] == free()


async def test_an_unreadable_journal_stops_the_start_and_a_missing_one_does_not(tmp_path: Path) -> None:
    (tmp_path / "holds.db").write_bytes(b"not a database at all, and long enough to be read as one" * 20)
    with pytest.raises(StartupError, match=r"holds\.db"):
        open_journal(tmp_path / "holds.db")
    assert open_journal(tmp_path / "fresh.db").holds() == []


# --- control and central: ordering, keeping off, listing ----------------------------------------------

VALUES = {
    "meter/total_power": (180.0, "kW"),
    "ahu/outdoor_air_temperature": (31.0, "degC"),
    "vav/zone_temperature": (26.0, "degC"),
    "vav/cooling_setpoint": (26.0, "degC"),
    "plant/demand_limit": (100.0, "%"),
}


def control_loop(devices: Devices, journal: HoldFile, events: list[dict[str, object]]) -> ControlLoop:
    config = one_zone_control(
        **ALWAYS_OPEN,
        mode="active",
        demand_target_kw=100.0,  # below the demand: the limiter sheds
    )
    devices.values = LatestValues(dict.fromkeys(VALUES, 5.0))
    now = utc_now()
    devices.values.update(
        [
            Reading(ref.split("/")[0], ref.split("/")[1], value, unit, Quality.GOOD, now)
            for ref, (value, unit) in VALUES.items()
        ]
    )
    return ControlLoop(
        "gw",
        control_setup(config, units={ref: unit for ref, (_, unit) in VALUES.items()}),
        control_settings(config),
        devices,
        clock=ManualClock(datetime.fromisoformat("2026-08-05T14:00:00+09:00")),  # open, hot
        send_event=lambda payload: events.append(json.loads(payload)),
        journal=journal,
    )


async def test_control_gives_back_the_previous_runs_holds_before_its_first_step(tmp_path: Path) -> None:
    devices = Devices(
        arrays={"vav/cooling_setpoint": held_at(10, 27.0), "plant/demand_limit": held_at(10, 60.0)},
        down={"plant"},
    )
    journal = await journal_with(
        tmp_path, hold("vav/cooling_setpoint", 27.0), hold("plant/demand_limit", 60.0)
    )
    journal.load()
    events: list[dict[str, object]] = []
    loop = control_loop(devices, journal, events)
    status = loop.status()
    assert {(w.point, w.holder) for w in status.writes} == {
        ("vav/cooling_setpoint", "recovered"),
        ("plant/demand_limit", "recovered"),
    }
    assert all(w.since == SINCE and w.lease_until is not None for w in status.writes)

    await loop.recovery.attempt()  # what run() does first, until each device answered or 30 s passed
    await loop.step()
    kinds = [e["kind"] for e in events]
    assert kinds.index("release") < kinds.index("decision")
    assert devices.writes[0] == ("vav/cooling_setpoint", None, 10)  # given back, then written afresh
    assert "vav/cooling_setpoint" in loop.actuator.held
    assert "plant/demand_limit" not in loop.actuator.held  # still the previous run's: control keeps off
    assert not any(ref == "plant/demand_limit" for ref, _, _ in devices.writes)
    assert [(w.point, w.holder) for w in loop.status().writes] == [
        ("plant/demand_limit", "recovered"),
        ("vav/cooling_setpoint", "control"),
    ]


async def test_central_writes_are_journaled_listed_and_never_given_back_by_the_agent(tmp_path: Path) -> None:
    devices = Devices(arrays={"vav/cooling_setpoint": free(), "plant/demand_limit": free()})
    journal = HoldFile(tmp_path / "holds.db")
    central = CentralWrites(devices, journal)
    await central.write("plant/demand_limit", 70.0, 12)
    [on_disk] = HoldFile(tmp_path / "holds.db").load()
    assert (on_disk.owner, on_disk.priority, on_disk.value, on_disk.lease_until) == (
        "central",
        12,
        70.0,
        None,
    )

    events: list[dict[str, object]] = []
    next_start = HoldFile(tmp_path / "holds.db")
    next_start.load()
    loop = control_loop(devices, next_start, events)
    await loop.recover()
    assert devices.arrays["plant/demand_limit"] == held_at(12, 70.0)  # central's: left where it is
    assert [(w.point, w.holder, w.priority) for w in loop.status().writes] == [
        ("plant/demand_limit", "central", 12)
    ]
    await CentralWrites(devices, next_start).write("plant/demand_limit", None, 12)  # central relinquishes
    assert HoldFile(tmp_path / "holds.db").load() == []


def test_control_lists_every_hold_with_its_holder_since_and_lease() -> None:
    state = {
        "mode": "active",
        "demand_target_kw": 180.0,
        "policy": "rules",
        "fallback": None,
        "steps": 3,
        "missing_inputs": [],
        "backed_off": [],
        "writes": [
            {
                "point": "plant/demand_limit",
                "value": 60.0,
                "priority": 10,
                "since": "2026-08-05T05:00:00Z",
                "lease_until": "2026-08-05T05:05:00Z",
                "holder": "recovered",
            },
            {
                "point": "valve/position",
                "value": 10.0,
                "priority": None,
                "since": "2026-08-05T05:01:00+00:00",
                "lease_until": None,
                "holder": "central",
            },
        ],
    }
    console = Console(record=True, width=200, markup=False)
    _print_control(state, console)
    lines = console.export_text().splitlines()
    assert lines[1] == (
        "  holds (a previous run's, not given back yet) plant/demand_limit = 60 at priority 10, "
        "since 2026-08-05 05:00:00 UTC, lease until 2026-08-05 05:05:00 UTC"
    )
    assert lines[2] == (
        "  holds for central (write_point, never released by the agent) valve/position = 10, "
        "since 2026-08-05 05:01:00 UTC, no lease"
    )
