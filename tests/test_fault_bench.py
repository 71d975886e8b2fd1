"""The fault bench (bench/faults, issue 17): its judge, and its short run as a soak test.

The ledger is what decides "lost" and "duplicated" from outside the agent, so it is tested on its own. The
short run repeats every attack on the real agent process and must lose nothing, write nothing wrong and
crash nothing: slow, so it runs only with --run-slow (as root, for the tmpfs of the disk attack)."""

from __future__ import annotations

import asyncio
import json
import struct
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from bench.faults.__main__ import attacks, run
from bench.faults.commands import CommandFormat
from bench.faults.control_attacks import control_toml
from bench.faults.observer import Ledger, as_json_batch, compact_aliases
from bench.faults.parts import ModbusDevice, agent_config
from bench.faults.table import markdown
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_agent import signing
from edge_agent.config import load_config
from edge_sim.logging_modbus import LoggingModbusServer
from tests.support import LOOPBACK


def batch(*seqs: int, value: float = 1.0, dropped: int = 0, last_dropped: int = 0) -> dict[str, Any]:
    readings = [
        {"seq": s, "device": "d", "point": "p", "ts": f"t{s}", "value": value, "quality": "good"}
        for s in seqs
    ]
    return {"readings": readings, "dropped": dropped, "last_dropped_seq": last_dropped}


def test_a_reading_received_again_is_a_duplicate_not_a_loss() -> None:
    ledger = Ledger()
    ledger.add(batch(1, 2, 3), 0.0)
    ledger.add(batch(2, 3), 1.0)
    assert (ledger.duplicated, ledger.lost(set())) == (2, 0)


def test_a_new_reading_under_a_seq_already_delivered_is_lost() -> None:
    ledger = Ledger()
    ledger.add(batch(1, 2, 3), 0.0)
    ledger.add(batch(1, 2, value=9.0), 1.0)  # a restarted sequence: the dedup rule discards these
    assert (ledger.duplicated, ledger.lost(set())) == (0, 2)


def test_a_gap_is_lost_unless_reported_dropped_or_still_buffered() -> None:
    ledger = Ledger()
    ledger.add(batch(1, 5, 9), 0.0)
    assert ledger.lost(set()) == 6
    assert ledger.lost({2, 3, 4}) == 3  # still in the buffer file after a clean stop: pending
    ledger.add(batch(10, dropped=4, last_dropped=4), 1.0)
    assert ledger.lost(set()) == 3  # 2-4 dropped by the cap, and reported: known loss
    assert ledger.lost(set(), excused={6, 7}) == 1  # unreadable even to SQLite
    assert ledger.lost(set(), expected={12: ("d", "p", 1.0)}) == 4  # read in a buffer file, never delivered
    assert ledger.lost(set(), expected={10: ("d", "p", 2.0)}) == 4  # another reading came under its seq
    assert ledger.lost(set(), expected={10: ("d", "p", 1.0)}) == 3  # delivered


def test_recovery_counts_only_readings_not_seen_before() -> None:
    ledger = Ledger()
    ledger.add(batch(1, 2), 10.0)
    ledger.add(batch(2), 11.0)  # a duplicate after the fault: not a recovery
    assert ledger.new_since(10.5) is None
    ledger.add(batch(3), 12.5)
    assert ledger.new_since(10.5) == pytest.approx(2.0)
    assert ledger.new_since(10.5, beyond=3) is None


def test_a_compact_batch_is_read_with_its_birth_as_the_json_batch_says_it() -> None:
    """The observer reads the default format: the same readings in either form are one reading to the
    ledger (a duplicate, not a collision), a float32 point's value the float32 read."""
    birth = {
        "online": True, "format": "compact", "bdSeq": 3,
        "point_lists": [[["p", "kW", True], ["q", "V", False]]],
        "devices": [{"name": "d", "alias": 0, "points": 0}, {"name": "e", "alias": 2, "points": 0}],
    }  # fmt: skip
    value = struct.unpack("<f", struct.pack("<f", 0.1))[0]
    compact = {
        "bdSeq": 3, "seq": 7, "last": 10, "seqs": [7, 9, 10], "dropped": 2, "last_dropped": 5,
        "t": 1_764_375_600_871,
        "r": [[2, 0, 0.100000001], [1, 14, None, "bad"], [["old", "x", "kWh"], 15, 1.5]],
    }  # fmt: skip
    read = as_json_batch(compact, compact_aliases(birth))
    assert read == {
        "dropped": 2,
        "last_dropped_seq": 5,
        "readings": [
            {"seq": 7, "device": "e", "point": "p", "value": value, "quality": "good",
             "ts": "2025-11-29T00:20:00.871Z"},
            {"seq": 9, "device": "d", "point": "q", "value": None, "quality": "bad",
             "ts": "2025-11-29T00:20:00.885Z"},
            {"seq": 10, "device": "old", "point": "x", "value": 1.5, "quality": "good",
             "ts": "2025-11-29T00:20:00.886Z"},
        ],
    }  # fmt: skip
    ledger = Ledger()
    ledger.add(read, 0.0)
    ledger.add({**read, "readings": [dict(read["readings"][0])]}, 1.0)  # sent again, in json this time
    assert (ledger.duplicated, ledger.collisions, ledger.lost(set())) == (1, 0, 2)  # 6 and 8: not dropped


DOC_KEY = bytes(range(32))  # docs/mqtt.md's worked example of a signed command
DOC_COMMAND = {
    "id": "c-1",
    "expires": "2026-12-07T17:00:00Z",
    "command": "set_demand_target",
    "args": {"kw": 180},
}
DOC_SIGNATURE = "i8zuXLdiL7MGhqVG1jt1KcsxE4bzdJWtxna5CQrxP31KYI+RlgGm618WvyN8x/9s6DUQprk4uH6QEMS653fmBA=="


def test_the_bench_signs_commands_as_the_contract_s_worked_example_does() -> None:
    commands = CommandFormat("edge/gw-01/command", key=Ed25519PrivateKey.from_private_bytes(DOC_KEY))
    sent = json.loads(commands.encode(DOC_COMMAND))
    assert sent == {"signed": json.dumps(DOC_COMMAND, separators=(",", ":")), "signature": DOC_SIGNATURE}
    assert json.loads(commands.encode(DOC_COMMAND, key=None)) == DOC_COMMAND  # bare: unsigned


def test_every_command_of_the_bench_carries_a_near_expiry() -> None:
    body = CommandFormat("edge/x/command").body("status")
    expires = datetime.fromisoformat(body["expires"].replace("Z", "+00:00"))
    assert body["expires"].endswith("Z")
    assert datetime.now(UTC) < expires < datetime.now(UTC) + timedelta(minutes=5)


def test_the_bench_s_agent_trusts_the_key_it_signs_with(tmp_path: Path) -> None:
    key = signing.new_private_key()
    device = ModbusDevice("load", 1502, tmp_path / "load.jsonl")
    path = agent_config(tmp_path, "mqtt://127.0.0.1:1883", tmp_path / "b.db", device, room_port=None,
                        trusted_key=signing.public_key_text(key), protocol="3.1.1")  # fmt: skip
    config = load_config(path)
    assert config.commands.trusted_keys == [signing.public_key_text(key)]
    assert config.mqtt.protocol == "3.1.1"


@pytest.mark.parametrize("mode", ["active", "shadow"])
def test_the_control_attack_runs_load_shaving_on_edge_sim_s_library(tmp_path: Path, mode: str) -> None:
    site = {
        "library-main-meter": ("127.0.0.1:15000", "(SchneiderIem3255)"),
        "library-plant": ("127.0.0.1:15011", "1100"),
        "library-ahu": ("127.0.0.1:15012", "1200"),
        "library-reading-1-vav": ("127.0.0.1:15014", "1301"),
        "library-reading-2-vav": ("127.0.0.1:15015", "1302"),
    }  # as edge-sim prints them
    key = signing.public_key_text(signing.new_private_key())
    path = tmp_path / "agent.toml"
    path.write_text(control_toml(site, mode, tmp_path / "b.db", "mqtt://127.0.0.1:1883", key))
    config = load_config(path)
    assert config.control.mode == mode
    assert config.commands.trusted_keys == [key]
    assert {d.name for d in config.devices} == {"meter", "ahu", "plant", "room1", "room2"}


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.timeout(1200)
def test_the_short_fault_bench_loses_nothing_writes_nothing_wrong_and_stays_up(tmp_path: Path) -> None:
    rows = run(tmp_path, quick=True)
    table = markdown(rows)
    assert [r.attack for r in rows if any(n.startswith("bench error") for n in r.notes)] == [], table
    assert len(rows) == len(attacks(quick=True)), table
    assert [r.attack for r in rows if r.failed] == [], table


async def exchange(port: int, unit: int, pdu: bytes) -> tuple[int, bytes]:
    """One Modbus TCP request; the answering unit id and the response PDU."""
    reader, writer = await asyncio.open_connection(LOOPBACK, port)
    try:
        writer.write(struct.pack(">HHHB", 7, 0, len(pdu) + 1, unit) + pdu)
        async with asyncio.timeout(5):
            _, _, length, answered = struct.unpack(">HHHB", await reader.readexactly(7))
            return answered, await reader.readexactly(length - 1)
    finally:
        writer.close()


@pytest.mark.integration
@pytest.mark.parametrize("mode", ["normal", "wrong-unit"])
async def test_the_logging_modbus_server_logs_every_write(tmp_path: Path, mode: str) -> None:
    with (tmp_path / "writes.jsonl").open("w") as log:
        device = LoggingModbusServer(log, mode)
        server = await asyncio.start_server(device.serve_client, LOOPBACK, 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            write = bytes([16]) + struct.pack(">HHB", 100, 2, 4) + struct.pack(">f", 42.5)
            unit, answer = await exchange(port, 1, write)
            _, read = await exchange(port, 1, bytes([3]) + struct.pack(">HH", 100, 2))
    assert unit == (1 if mode == "normal" else 2)
    assert answer == write[:5]
    assert struct.unpack(">f", read[2:6]) == (42.5,)
    records = [json.loads(line) for line in (tmp_path / "writes.jsonl").read_text().splitlines()]
    assert [(r["fc"], r["address"], r["value"]) for r in records] == [(16, 100, 42.5)]
