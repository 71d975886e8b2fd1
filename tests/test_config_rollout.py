"""The rollout of a pushed configuration, on its files (no process, no broker): a crash loop rolled back at
the next start, a start that ends in order not counted, a file edited on site ending the trial, the trial
judged by health within its time, and apply_config's refusals, each leaving the file as it was. The whole
path over a real broker and agent process: test_config_push.py."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import JsonValue

from edge_agent import signing
from edge_agent.config import parse_config
from edge_agent.errors import CommandRefused
from edge_agent.service.config_rollout import ConfigRollout, Health, unhealthy
from edge_agent.service.rollout_state import RolloutFiles, RolloutState, Trial, sha256_hex
from edge_agent.uplink.commands import (
    MAX_COMMAND_BYTES,
    ApplyConfigArgs,
    CommandErrorCode,
    CommandRouter,
)
from edge_agent.uplink.payloads import ConfigInfo
from edge_agent.uplink.sparkplug.node import config_metrics
from tests.test_commands import FakeAgent

KEY = signing.public_key_text(signing.new_private_key())


def toml(tmp_path: Path, *, gateway: str = "gw", port: int = 502, keys: bool = True, extra: str = "") -> str:
    trusted = f'[commands]\ntrusted_keys = ["{KEY}"]\n' if keys else ""
    return (
        f'[gateway]\nid = "{gateway}"\n[buffer]\npath = "{tmp_path / "b.db"}"\n{trusted}{extra}'
        f'[[devices]]\nname = "meter"\nprotocol = "modbus-tcp"\nhost = "127.0.0.1"\nport = {port}\n'
        'profile = "eastron-sdm630"\n'
    )


def on_trial(tmp_path: Path, *, starts: int, max_starts: int = 3, timeout_s: float = 60.0) -> RolloutFiles:
    """agent.toml pushed as v2 (port 503) over last-good v1 (port 502), its trial started `starts` times."""
    files = RolloutFiles(tmp_path / "agent.toml")
    good, pushed = toml(tmp_path).encode(), toml(tmp_path, port=503).encode()
    files.last_good.write_bytes(good)
    files.config.write_bytes(pushed)
    trial = Trial(
        version="v2",
        sha256=sha256_hex(pushed),
        last_good_sha256=sha256_hex(good),
        last_good_version="v1",
        health_timeout_s=timeout_s,
        max_starts=max_starts,
        devices_up="all",
        starts=starts,
    )
    files.write_state(RolloutState(sha256=sha256_hex(good), version="v1", trial=trial))
    return files


def state(files: RolloutFiles) -> RolloutState:
    return RolloutState.model_validate_json(files.state.read_bytes())


def test_the_start_after_a_crash_loop_puts_the_last_good_file_back(tmp_path: Path) -> None:
    files = on_trial(tmp_path, starts=1, max_starts=2)
    pushed = files.config.read_bytes()
    rollout = ConfigRollout.at_start(files.config)
    assert rollout is not None
    assert files.config.read_bytes() == pushed  # the second start: still on trial
    assert state(files).trial is not None
    assert state(files).trial.starts == 2  # type: ignore[union-attr]
    info = rollout.info()
    assert info is not None
    assert (info.sha256, info.version) == (sha256_hex(pushed), "v2")

    rollout = ConfigRollout.at_start(files.config)  # the third: past max_starts
    assert rollout is not None
    assert files.config.read_bytes() == files.last_good.read_bytes()
    after = state(files)
    assert after.trial is None
    assert (after.version, after.sha256) == ("v1", sha256_hex(files.config.read_bytes()))
    [notice] = after.notices
    assert notice.step == "rolled-back"
    assert notice.reason is not None
    assert "crash loop" in notice.reason
    assert "ended 2 times" in notice.reason
    info = rollout.info()
    assert info is not None
    assert info.version == "v1"


def test_a_start_that_ends_in_order_is_not_counted(tmp_path: Path) -> None:
    files = on_trial(tmp_path, starts=0, max_starts=1)
    for _ in range(3):  # an operator restarting the service thrice during the trial
        rollout = ConfigRollout.at_start(files.config)
        assert rollout is not None
        rollout.stopped()
    trial = state(files).trial
    assert trial is not None
    assert trial.starts == 0
    assert files.config.read_bytes() != files.last_good.read_bytes()


def test_a_file_edited_on_site_ends_the_trial_and_is_kept(tmp_path: Path) -> None:
    files = on_trial(tmp_path, starts=1)
    edited = toml(tmp_path, port=504)
    files.config.write_text(edited)
    rollout = ConfigRollout.at_start(files.config)
    assert rollout is not None
    assert files.config.read_text() == edited
    after = state(files)
    assert after.trial is None
    assert [n.step for n in after.notices] == ["not-rolled-back"]
    info = rollout.info()
    assert info is not None
    assert (info.sha256, info.version) == (sha256_hex(edited.encode()), None)


def test_an_unreadable_state_file_is_started_afresh(tmp_path: Path) -> None:
    files = RolloutFiles(tmp_path / "agent.toml")
    files.config.write_text(toml(tmp_path))
    files.state.write_text("{not json")
    rollout = ConfigRollout.at_start(files.config)
    assert rollout is not None
    info = rollout.info()
    assert info is not None
    assert info.version is None
    assert [n.step for n in state(files).notices] == ["not-rolled-back"]


def test_health_needs_the_devices_and_the_uplink() -> None:
    down = Health({"meter": None, "room": "timeout"}, connected=True)
    assert unhealthy(down, "any") is None
    why = unhealthy(down, "all")
    assert why is not None
    assert "1 of 2 devices never answered (room: timeout)" in why
    assert unhealthy(Health({"meter": None}, connected=False), "all") == (
        "the uplink never connected to the broker"
    )
    assert unhealthy(Health({}, connected=True), "all") is None


class Events:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def __call__(self, payload: bytes) -> None:
        self.sent.append(json.loads(payload))


async def judged(files: RolloutFiles, health: Health) -> tuple[ConfigRollout, asyncio.Event, Events]:
    rollout = ConfigRollout.at_start(files.config)
    assert rollout is not None
    stop, events = asyncio.Event(), Events()
    config = parse_config(files.config.read_text(), "agent.toml")
    async with asyncio.timeout(10):
        await rollout.run(config, stop, events, lambda: health)
    return rollout, stop, events


async def test_a_trial_healthy_in_time_is_kept(tmp_path: Path) -> None:
    files = on_trial(tmp_path, starts=0)
    pushed = files.config.read_bytes()
    rollout, _, events = await judged(files, Health({"meter": None}, connected=True))
    assert not rollout.restart_wanted
    assert files.config.read_bytes() == pushed
    assert (state(files).version, state(files).trial) == ("v2", None)
    assert [(e["kind"], e["step"], e["version"], e["gateway"]) for e in events.sent] == [
        ("config", "healthy", "v2", "gw")
    ]


async def test_a_trial_not_healthy_in_time_is_rolled_back(tmp_path: Path) -> None:
    files = on_trial(tmp_path, starts=0, timeout_s=0.2)
    rollout, stop, events = await judged(files, Health({"meter": "connection refused"}, connected=True))
    assert rollout.restart_wanted
    await asyncio.wait_for(stop.wait(), 5)  # the orderly stop, before the process executes itself again
    assert files.config.read_bytes() == files.last_good.read_bytes()
    after = state(files)
    assert (after.version, after.trial) == ("v1", None)
    [notice] = after.notices  # said by the next start, on the good file
    assert notice.reason == (
        "not healthy within 0.2 s: 1 of 1 devices never answered (meter: connection refused)"
    )
    assert events.sent == []


async def bound(tmp_path: Path, text: str) -> tuple[ConfigRollout, RolloutFiles, asyncio.Event, Events]:
    files = RolloutFiles(tmp_path / "agent.toml")
    files.config.write_text(text)
    rollout = ConfigRollout.at_start(files.config)
    assert rollout is not None
    stop, events = asyncio.Event(), Events()
    await rollout.run(parse_config(text, "agent.toml"), stop, events, lambda: Health({}, connected=True))
    return rollout, files, stop, events


@pytest.mark.parametrize(
    ("running", "pushed", "code", "words"),
    [
        (
            {},
            {"port": 70000},
            CommandErrorCode.INVALID,
            "args.config: configuration is not valid (1 problem)\n",
        ),
        ({}, {"gateway": "gw-2"}, CommandErrorCode.INVALID, "gateway.id: 'gw-2' is not this gateway's 'gw'"),
        ({"keys": False}, {}, CommandErrorCode.UNSIGNED, "set [commands] trusted_keys"),
    ],
)
async def test_a_refused_push_changes_nothing(
    tmp_path: Path, running: dict[str, Any], pushed: dict[str, Any], code: CommandErrorCode, words: str
) -> None:
    text = toml(tmp_path, **running)
    rollout, files, stop, _ = await bound(tmp_path, text)
    with pytest.raises(CommandRefused) as refusal:
        await rollout.apply(ApplyConfigArgs(version="v2", config=toml(tmp_path, **{**running, **pushed})))
    assert refusal.value.code == code
    assert words in refusal.value.message
    assert files.config.read_text() == text
    assert not files.last_good.exists()
    assert not stop.is_set()


async def test_a_push_that_moves_the_buffer_is_refused(tmp_path: Path) -> None:
    text = toml(tmp_path)
    rollout, *_ = await bound(tmp_path, text)
    moved = text.replace(str(tmp_path / "b.db"), str(tmp_path / "elsewhere.db"))
    with pytest.raises(CommandRefused, match=r"^buffer\.path: "):
        await rollout.apply(ApplyConfigArgs(version="v2", config=moved))


async def test_a_push_is_written_with_the_last_good_file_and_its_trial(tmp_path: Path) -> None:
    text = toml(tmp_path)
    rollout, files, stop, events = await bound(tmp_path, text)
    pushed = toml(tmp_path, port=503)
    result = await rollout.apply(ApplyConfigArgs(version="v2", config=pushed))
    assert result["restart"] is True
    assert (files.config.read_text(), files.last_good.read_text()) == (pushed, text)
    trial = state(files).trial
    assert trial is not None
    assert (trial.version, trial.sha256, trial.health_timeout_s) == ("v2", sha256_hex(pushed.encode()), 300.0)
    assert [e["step"] for e in events.sent] == ["applied"]
    await asyncio.wait_for(stop.wait(), 5)
    with pytest.raises(CommandRefused) as busy:  # one trial at a time
        await rollout.apply(ApplyConfigArgs(version="v3", config=toml(tmp_path, port=504)))
    assert busy.value.code == CommandErrorCode.BUSY


async def test_the_file_already_running_is_not_restarted(tmp_path: Path) -> None:
    text = toml(tmp_path)
    rollout, files, stop, _ = await bound(tmp_path, text)
    result = await rollout.apply(ApplyConfigArgs(version="v7", config=text))
    assert result["restart"] is False
    assert state(files).version == "v7"
    info = rollout.info()
    assert info is not None
    assert info.version == "v7"
    assert not stop.is_set()


class Push:
    def __init__(self) -> None:
        self.args: list[ApplyConfigArgs] = []

    async def apply(self, args: ApplyConfigArgs) -> dict[str, JsonValue]:
        self.args.append(args)
        return {"restart": True}


async def test_apply_config_alone_may_be_larger_than_16_kib() -> None:
    big = "# " + "x" * (MAX_COMMAND_BYTES + 100) + "\n"
    request = {"id": "c-1", "command": "apply_config", "args": {"version": "v2", "config": big}}
    push = Push()
    router = CommandRouter(FakeAgent(), config_push=push)
    reply = await router.handle(json.dumps(request).encode())
    assert reply.ok, reply
    assert push.args[0].config == big
    padded = {"id": "c-2", "command": "status", "pad": big}
    reply = await router.handle(json.dumps(padded).encode())
    assert (reply.id, reply.error.code if reply.error else None) == (None, CommandErrorCode.TOO_LARGE)
    without = await CommandRouter(FakeAgent()).handle(json.dumps({**request, "id": "c-3"}).encode())
    assert without.error is not None
    assert without.error.code == CommandErrorCode.NOT_APPLIED


def test_the_sparkplug_birth_names_the_running_file() -> None:
    assert config_metrics(None) == []
    assert config_metrics(ConfigInfo(sha256="ab12", version=None)) == [("Config/SHA256", "ab12")]
    pushed = ConfigInfo(sha256="ab12", version="v7")
    assert config_metrics(pushed) == [("Config/SHA256", "ab12"), ("Config/Version", "v7")]


async def test_a_stop_asked_for_during_a_push_ends_the_process_on_the_pushed_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def reexec(_self: ConfigRollout) -> None:
        raise AssertionError("executed itself again instead of stopping")

    monkeypatch.setattr(ConfigRollout, "_reexec", reexec)
    rollout, files, stop, _ = await bound(tmp_path, toml(tmp_path))
    await rollout.apply(ApplyConfigArgs(version="v2", config=toml(tmp_path, port=503)))
    rollout.signalled()  # SIGTERM within the second before the restart
    rollout.stopped()  # returns: no restart, and no start of v2 to uncount yet
    trial = state(files).trial
    assert trial is not None
    assert trial.starts == 0  # the next start runs v2, on trial
    stop.set()
    with pytest.raises(CommandRefused) as stopping:
        await rollout.apply(ApplyConfigArgs(version="v3", config=toml(tmp_path, port=504)))
    assert stopping.value.code == CommandErrorCode.BUSY


async def test_a_failed_trial_without_a_last_good_file_keeps_the_pushed_one(tmp_path: Path) -> None:
    files = on_trial(tmp_path, starts=0, timeout_s=0.2)
    pushed = files.config.read_bytes()
    files.last_good.unlink()
    rollout, stop, events = await judged(files, Health({"meter": "timeout"}, connected=True))
    assert not rollout.restart_wanted
    assert not stop.is_set()
    assert files.config.read_bytes() == pushed
    assert state(files).trial is None
    assert [e["step"] for e in events.sent] == ["not-rolled-back"]
