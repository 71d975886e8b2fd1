"""Run the fault bench and print its table (see bench/faults/__init__.py)."""

from __future__ import annotations

import argparse
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from tests.support import free_base_port

from bench.faults import (
    buffer_attacks,
    clock_attacks,
    command_attacks,
    control_attacks,
    device_attacks,
    uplink_attacks,
)
from bench.faults.commands import Signing
from bench.faults.parts import simulator
from bench.faults.rig import Rig, rig
from bench.faults.table import Row, markdown
from edge_agent import signing

ROOM_OFFSET = 13  # edge-sim's port for room controller 1301 (library, first room), from its base port


def buffer_cases(workdir: Path, room_port: int | None) -> Row:
    row = Row("buffer file at start: locked 5 s, 0 bytes, damaged WAL")
    with rig(workdir, "buffer-locked", room_port) as r:
        unsent = buffer_attacks.locked_at_start(r, row)
        r.finish(row, expected=unsent)
    with rig(workdir, "buffer-empty", room_port) as r:
        buffer_attacks.zero_bytes(r, row)
        r.finish(row)
    with rig(workdir, "buffer-wal", room_port) as r:
        readable, unreadable = buffer_attacks.damaged_wal(r, row)
        r.finish(row, excused=unreadable, expected=readable)
    return row


def control_cases(workdir: Path, room_port: int | None, cases: int) -> Row:
    """On a simulator of its own, on a fast building clock (the agent started on the same one)."""
    fast = ("--speed", str(control_attacks.SPEED), "--start", control_attacks.START)
    with (
        simulator(free_base_port(), workdir / "edge-sim-fast.log", *fast) as site,
        rig(workdir, "control", room_port) as r,
    ):
        return control_attacks.control_recovery(r, site, cases)


def attacks(quick: bool) -> dict[str, Callable[[Path, int | None], Row]]:
    """Each attack by name: it sets up its own rig(s) and returns its row."""

    def on_rig(name: str, attack: Callable[[Rig], Row]) -> Callable[[Path, int | None], Row]:
        def run(workdir: Path, room_port: int | None) -> Row:
            with rig(workdir, name, room_port) as r:
                return attack(r)

        return run

    return {
        "kill9": on_rig("kill9", lambda r: uplink_attacks.kill9_across_outages(r, 3 if quick else 9)),
        "frozen": on_rig(
            "frozen", lambda r: uplink_attacks.frozen_broker(r, 1 if quick else 2, 8 if quick else 30)
        ),
        "commands": on_rig("commands", lambda r: command_attacks.commands(r, 200 if quick else 1000)),
        "disk": on_rig("disk", lambda r: uplink_attacks.disk_full(r, 12 if quick else 25)),
        "buffer": buffer_cases,
        "control": lambda w, p: control_cases(w, p, 2 if quick else 4),
        "modbus": on_rig("modbus", lambda r: device_attacks.misbehaving_modbus(r, 5 if quick else 10)),
        "clock": on_rig("clock", lambda r: clock_attacks.clock_steps(r, 5 if quick else 10)),
    }


def run(workdir: Path, quick: bool = False, only: list[str] | None = None) -> list[Row]:
    chosen = attacks(quick)
    rows: list[Row] = []
    base = free_base_port()
    with simulator(base, workdir / "edge-sim.log"):
        for name, attack in chosen.items():
            if only and name not in only:
                continue
            start = time.monotonic()
            try:
                row = attack(workdir, base + ROOM_OFFSET)
            except Exception as error:  # one broken attack must not hide the others' rows
                traceback.print_exc()
                row = Row(name)
                row.note(f"bench error: {type(error).__name__}: {error}")
            row.note(f"{time.monotonic() - start:.0f} s")
            print(f"{name}: done", flush=True)
            rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description="The fault bench (issue 17).")
    parser.add_argument("--quick", action="store_true", help="fewer, shorter cases")
    parser.add_argument("--only", nargs="*", choices=list(attacks(False)), help="run only these attacks")
    parser.add_argument("--keep", type=Path, help="work in this (new) directory and keep it: logs, buffers")
    parser.add_argument("--signing-key", type=Path, help="sign every command with this ed25519 key (PEM)")
    parser.add_argument("--signed", action="store_true", help="sign every command with a new key")
    args = parser.parse_args()
    if args.signing_key:
        Signing.key = signing.load_private_key(args.signing_key.read_bytes())
    elif args.signed:
        Signing.key = signing.new_private_key()
    if args.keep:
        args.keep.mkdir(parents=True)
        rows = run(args.keep, args.quick, args.only)
    else:
        with tempfile.TemporaryDirectory(prefix="edge-faults-") as workdir:
            rows = run(Path(workdir), args.quick, args.only)
    print(markdown(rows))


if __name__ == "__main__":
    main()
